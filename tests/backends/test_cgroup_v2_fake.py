"""CgroupV2Backend on a fake unified tree in tmp_path, plus the checks both backends share.

This machine's cgroup2 mount has no controllers, so the v2 files are plain files
here; the test sets "kernel" values (cpu.stat, memory.current) by writing them.
"""
from __future__ import annotations

import subprocess
import sys

import pytest

from sc_actors import units
from sc_actors.backends import CgroupV2Backend, is_cgroup_v1_root, make_backend
from sc_actors.backends.base import (
    LimitRefused,
    UsageCounters,
    check_change,
    host_cpus,
    parse_cpu_topology,
)
from sc_actors.backends.cgroup_v2 import is_cgroup2_mount, parse_max
from sc_actors.model import Bounds, ContainerLimits, LimitChange
from tests.backends.contract import memory_alone_matches_the_counters, unknown_container_raises_container_not_found

MIB = units.BYTES_PER_MIB
HOST_CPUS = units.format_cpu_list(host_cpus())


@pytest.fixture
def backend(tmp_path):
    return CgroupV2Backend(root=str(tmp_path), parent="serverless", fake=True)


@pytest.fixture
def cdir(backend, tmp_path):
    backend.create("c1", cpu_num="0")
    return tmp_path / "serverless" / "c1"


def read(cdir, file: str) -> str:
    return (cdir / file).read_text().strip()


def put(cdir, file: str, text: str) -> None:
    (cdir / file).write_text(text + "\n")


# --------------------------------------------------------------------------- setup


def test_a_plain_directory_is_detected_as_a_fake_tree(tmp_path):
    assert CgroupV2Backend(root=str(tmp_path)).fake is True


def test_cgroup2_mounts_are_recognised_by_their_longest_prefix(tmp_path):
    mounts = tmp_path / "mounts"
    mounts.write_text(
        "tmpfs /sys/fs/cgroup tmpfs rw 0 0\n"
        "cgroup2 /sys/fs/cgroup/unified cgroup2 rw 0 0\n"
        "cgroup /sys/fs/cgroup/cpu cgroup rw,cpu 0 0\n"
    )
    assert is_cgroup2_mount("/sys/fs/cgroup/unified", str(mounts))
    assert is_cgroup2_mount("/sys/fs/cgroup/unified/x/y", str(mounts))
    assert not is_cgroup2_mount("/sys/fs/cgroup", str(mounts))
    assert not is_cgroup2_mount("/sys/fs/cgroup/cpu", str(mounts))
    assert is_cgroup_v1_root("/sys/fs/cgroup", str(mounts))
    assert not is_cgroup_v1_root("/sys/fs/cgroup/unified", str(mounts))


def test_create_writes_the_files_of_a_fresh_cgroup(backend, cdir):
    assert read(cdir, "cpu.max") == "max 100000"
    assert read(cdir, "memory.max") == "max"
    assert read(cdir, "cpuset.cpus") == "0"
    assert backend.list_containers() == ["c1"]
    assert backend.read_limits("c1") == ContainerLimits(cpu_allowance_limit=-1, cpu_num="0", mem_limit=-1)


def test_an_empty_cpuset_reads_as_the_effective_one(backend):
    backend.create("c2")

    assert backend.read_limits("c2").cpu_num == HOST_CPUS


def test_create_keeps_an_existing_container(backend, cdir):
    backend.write_limits("c1", LimitChange(mem_limit=256))

    backend.create("c1")

    assert backend.read_limits("c1").mem_limit == 256


# --------------------------------------------------------------------------- limits


def test_cpu_limit_is_written_as_cpu_max(backend, cdir):
    limits = backend.write_limits("c1", LimitChange(cpu_allowance_limit=150, cpu_num="0"))

    assert (limits.cpu_allowance_limit, limits.cpu_num) == (150, "0")
    assert read(cdir, "cpu.max") == "150000 100000"  # 150 shares × 1000 µs, period 100 000 µs


def test_unlimited_cpu_is_written_as_max(backend, cdir):
    backend.write_limits("c1", LimitChange(cpu_allowance_limit=150))

    assert backend.write_limits("c1", LimitChange(cpu_allowance_limit=-1)).cpu_allowance_limit == -1
    assert read(cdir, "cpu.max") == "max 100000"


def test_memory_limit_is_written_as_bytes_and_unlimited_as_max(backend, cdir):
    assert backend.write_limits("c1", LimitChange(mem_limit=256)).mem_limit == 256
    assert read(cdir, "memory.max") == "268435456"  # 256 × 1048576

    assert backend.write_limits("c1", LimitChange(mem_limit=-1)).mem_limit == -1
    assert read(cdir, "memory.max") == "max"


@pytest.mark.parametrize(
    "cpu_max, shares",
    [
        pytest.param("max 100000", -1, id="max"),
        pytest.param("max 50000", -1, id="max-other-period"),
        pytest.param("50000 50000", 100, id="one-core-other-period"),
        pytest.param("250000 100000", 250, id="two-and-a-half-cores"),
    ],
)
def test_cpu_max_is_read_as_shares(backend, cdir, cpu_max, shares):
    put(cdir, "cpu.max", cpu_max)

    assert backend.read_limits("c1").cpu_allowance_limit == shares


@pytest.mark.parametrize(
    "memory_max, mib",
    [
        pytest.param("max", -1, id="max"),
        pytest.param("1073741824", 1024, id="1-GiB"),
        pytest.param(str(300 * 1024 * MIB), -1, id="above-256-GiB-is-unlimited"),
    ],
)
def test_memory_max_is_read_as_mib(backend, cdir, memory_max, mib):
    put(cdir, "memory.max", memory_max)

    assert backend.read_limits("c1").mem_limit == mib


def test_max_always_parses_to_minus_one():
    # The original broke on "max" (reference §11.4).
    assert parse_max("max") == -1
    assert parse_max(" max\n") == -1
    assert parse_max("123\n") == 123


@pytest.mark.parametrize(
    "change, bounds",
    [
        pytest.param(LimitChange(mem_limit=32), None, id="mem-below-64-MiB"),
        pytest.param(LimitChange(cpu_allowance_limit=0), None, id="cpu-zero"),
        pytest.param(LimitChange(cpu_num="0,4096"), None, id="core-the-host-lacks"),
        pytest.param(LimitChange(cpu_allowance_limit=300), Bounds(cpu=(50, 200)), id="cpu-above-max"),
        pytest.param(LimitChange(mem_limit=-1), Bounds(mem=(128, 1024)), id="mem-unlimited-with-max"),
        pytest.param(
            LimitChange(cpu_allowance_limit=100, mem_limit=2048),
            Bounds(cpu=(50, 200), mem=(128, 1024)),
            id="cpu-fine-mem-not",
        ),
    ],
)
def test_a_refused_change_writes_nothing(backend, cdir, change, bounds):
    files = {f: read(cdir, f) for f in ("cpu.max", "cpuset.cpus", "memory.max")}

    with pytest.raises(LimitRefused):
        backend.write_limits("c1", change, bounds)

    assert {f: read(cdir, f) for f in files} == files


def test_memory_below_the_use_without_cache_is_refused(backend, cdir):
    # 200 MiB charged, 50 MiB of it page cache: 150 MiB in use.
    put(cdir, "memory.current", str(200 * MIB))
    put(cdir, "memory.stat", f"anon {150 * MIB}\nfile {50 * MIB}")

    with pytest.raises(LimitRefused, match="below its use"):
        backend.write_limits("c1", LimitChange(mem_limit=128))
    assert read(cdir, "memory.max") == "max"

    assert backend.write_limits("c1", LimitChange(mem_limit=160)).mem_limit == 160


def test_unknown_container_raises_container_not_found(backend, cdir):
    unknown_container_raises_container_not_found(backend)


# --------------------------------------------------------------------------- usage


def test_counters_come_from_cpu_stat_and_memory_current_minus_file(backend, cdir):
    put(cdir, "cpu.stat", "usage_usec 1500000\nuser_usec 1000000\nsystem_usec 500000")
    put(cdir, "memory.current", str(300 * MIB))
    put(cdir, "memory.stat", f"anon {200 * MIB}\nfile {100 * MIB}\nkernel 0")

    counters = backend.read_counters("c1")

    assert counters.cpu_ns == 1_500_000_000  # 1.5 s of CPU = 1 500 000 µs × 1000
    assert counters.mem_bytes == 200 * MIB  # 300 MiB − 100 MiB of page cache


def test_a_memory_sample_alone_reads_memory_current_minus_file(backend, cdir):
    put(cdir, "memory.current", str(300 * MIB))
    put(cdir, "memory.stat", f"anon {200 * MIB}\nfile {100 * MIB}\nkernel 0")

    assert backend.read_memory_many(["c1"]) == {"c1": 200 * MIB}
    memory_alone_matches_the_counters(backend, "c1")


def test_memory_use_is_floored_at_zero(backend, cdir):
    put(cdir, "memory.current", str(10 * MIB))
    put(cdir, "memory.stat", f"anon 0\nfile {20 * MIB}")

    assert backend.read_counters("c1").mem_bytes == 0


def test_read_counters_many_skips_containers_that_disappeared(backend, cdir):
    backend.create("c2")
    backend.remove("c2")

    counters = backend.read_counters_many(["c1", "c2"])

    assert list(counters) == ["c1"]
    assert isinstance(counters["c1"], UsageCounters)


# --------------------------------------------------------------------------- lifecycle


def test_remove_deletes_the_container_and_is_idempotent(backend, cdir):
    backend.remove("c1")
    backend.remove("c1")

    assert not cdir.exists()
    assert backend.list_containers() == []


def test_remove_on_a_fake_tree_kills_nobody(backend, cdir):
    # Pids in a fake cgroup.procs confine nothing; killing them would hit
    # whatever process has that pid.
    proc = subprocess.Popen([sys.executable, "-c", "import sys; sys.stdin.read()"], stdin=subprocess.PIPE)
    try:
        backend.attach("c1", proc.pid)
        assert read(cdir, "cgroup.procs") == str(proc.pid)

        backend.remove("c1")

        assert proc.poll() is None
    finally:
        proc.kill()
        proc.wait(timeout=10)


# --------------------------------------------------------------------------- paths


def test_bad_names_are_refused_before_any_path_is_built(backend, tmp_path):
    for bad in ("../escape", "a/b", "..", "", "caf\u00e9"):
        with pytest.raises(ValueError):
            backend.create(bad)
    assert sorted(p.name for p in tmp_path.iterdir()) == []


def test_a_symlink_out_of_the_parent_is_refused(backend, cdir, tmp_path):
    (tmp_path / "serverless" / "evil").symlink_to(cdir.parent.parent)

    with pytest.raises(ValueError):
        backend.read_limits("evil")
    with pytest.raises(ValueError):
        backend.remove("evil")
    assert cdir.exists()


def test_a_bad_parent_is_refused(tmp_path):
    with pytest.raises(ValueError):
        CgroupV2Backend(root=str(tmp_path), parent="../up", fake=True)


# --------------------------------------------------------------------------- factory


def test_make_backend_builds_each_kind(tmp_path):
    assert make_backend("cgroup_v2", str(tmp_path), "serverless").kind == "cgroup_v2"
    assert make_backend("auto", str(tmp_path), "serverless").kind == "cgroup_v2"
    assert make_backend("lxc", str(tmp_path), "serverless").kind == "lxc"  # tests/lxc/ covers it
    with pytest.raises(ValueError, match="unknown backend"):
        make_backend("docker", str(tmp_path), "serverless")


# --------------------------------------------------------------------------- shared checks


@pytest.mark.parametrize(
    "change, bounds",
    [
        pytest.param(LimitChange(cpu_allowance_limit=-1), None, id="cpu-unlimited"),
        pytest.param(LimitChange(cpu_allowance_limit=-1), Bounds(), id="cpu-unlimited-default-bounds"),
        pytest.param(LimitChange(mem_limit=64), None, id="mem-64-MiB"),
        pytest.param(LimitChange(mem_limit=-1), Bounds(), id="mem-unlimited-default-bounds"),
        pytest.param(LimitChange(cpu_allowance_limit=200), Bounds(cpu=(50, 200)), id="cpu-at-max"),
        pytest.param(LimitChange(cpu_num="0"), None, id="core-0"),
        pytest.param(LimitChange(), Bounds(cpu=(50, 200)), id="empty-change"),
    ],
)
def test_accepted_changes(change, bounds):
    check_change(change, bounds, [0, 1])


def test_cpu_topology_groups_hyperthreads_by_socket_and_core():
    cpuinfo = "\n\n".join(
        f"processor\t: {p}\nphysical id\t: {s}\ncore id\t\t: {c}"
        for p, s, c in [(0, 0, 0), (1, 0, 1), (2, 1, 0), (3, 0, 0), (4, 0, 1), (5, 1, 0)]
    )

    assert parse_cpu_topology(cpuinfo) == {"0": {"0": [0, 3], "1": [1, 4]}, "1": {"0": [2, 5]}}


def test_cpu_topology_without_ids_counts_one_core_per_cpu():
    cpuinfo = "processor\t: 0\nBogoMIPS\t: 50.00\n\nprocessor\t: 1\nBogoMIPS\t: 50.00\n"

    assert parse_cpu_topology(cpuinfo) == {"0": {"0": [0], "1": [1]}}
