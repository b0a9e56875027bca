"""CgroupV1Backend on the real cgroup v1 hierarchy of this machine (root needed).

Every test works under its own parent `sc-test-<random>` in each controller; the
`backend` fixture kills what is left in it and removes it, also when a test fails.
"""
from __future__ import annotations

import os
import secrets
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Callable

import pytest

from sc_actors import units
from sc_actors.backends import CgroupV1Backend, make_backend
from sc_actors.backends.base import ContainerNotFound, LimitRefused
from sc_actors.model import Bounds, ContainerLimits, LimitChange
from tests.backends.contract import memory_alone_matches_the_counters, unknown_container_raises_container_not_found

pytestmark = pytest.mark.cgroup

ROOT = Path("/sys/fs/cgroup")
CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
MIB = units.BYTES_PER_MIB

BUSY_LOOP = "while True: pass"
ALLOCATE_100_MIB = (
    "import sys\n"
    "sys.stdin.readline()\n"  # wait until attached: memory is charged where it is touched
    "block = b'\\x01' * (100 << 20)\n"
    "sys.stdin.readline()\n"
)


def wait_for(predicate: Callable[[], bool], timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while not predicate():
        if time.monotonic() >= deadline:
            raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")
        time.sleep(0.02)


def _purge(parent: str) -> list[str]:
    """Kill every task under `parent` in every controller and remove its cgroups.

    Written without the backend, so a bug in remove() cannot leave cgroups behind.
    Returns what could not be removed.
    """
    leftovers = []
    for c in CONTROLLERS:
        top = ROOT / c / parent
        if not top.is_dir():
            continue
        for d in [Path(p) for p, _, _ in os.walk(top, topdown=False)]:
            deadline = time.monotonic() + 5
            while True:
                pids = [int(p) for p in (d / "cgroup.procs").read_text().split()]
                for pid in pids:
                    try:
                        os.kill(pid, signal.SIGKILL)
                    except ProcessLookupError:
                        pass
                try:
                    d.rmdir()
                    break
                except OSError:
                    if time.monotonic() >= deadline:
                        leftovers.append(str(d))
                        break
                    time.sleep(0.02)
    return leftovers


@pytest.fixture
def parent():
    name = f"sc-test-{secrets.token_hex(4)}"
    yield name
    leftovers = _purge(name)
    assert not leftovers, f"cgroups left behind: {leftovers}"


@pytest.fixture
def backend(parent):
    return CgroupV1Backend(root=str(ROOT), parent=parent)


@pytest.fixture
def spawn():
    """Start python child processes; all are killed and reaped at teardown."""
    procs: list[subprocess.Popen] = []

    def _spawn(code: str) -> subprocess.Popen:
        proc = subprocess.Popen([sys.executable, "-c", code], stdin=subprocess.PIPE)
        procs.append(proc)
        return proc

    yield _spawn
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
        proc.wait(timeout=10)


@pytest.fixture
def container(backend):
    backend.create("c1", cpu_num="0")
    return "c1"


def raw(parent: str, controller: str, name: str, file: str) -> str:
    return (ROOT / controller / parent / name / file).read_text().strip()


# --------------------------------------------------------------------------- setup


def test_auto_picks_v1_on_this_machine(parent):
    assert make_backend("auto", str(ROOT), parent).kind == "cgroup_v1"


def test_create_makes_the_container_in_every_controller_with_a_usable_cpuset(
    backend, parent, container
):
    for c in CONTROLLERS:
        assert (ROOT / c / parent / container).is_dir()
    # A v1 cpuset needs cpus and mems (copied from its parent) before it takes tasks.
    assert raw(parent, "cpuset", container, "cpuset.cpus") == "0"
    assert raw(parent, "cpuset", container, "cpuset.mems") == (ROOT / "cpuset/cpuset.mems").read_text().strip()
    assert (ROOT / "cpuset" / parent / "cpuset.cpus").read_text().strip()
    assert backend.list_containers() == [container]


def test_a_new_container_has_no_limits(backend, container):
    assert backend.read_limits(container) == ContainerLimits(
        cpu_allowance_limit=-1, cpu_num="0", mem_limit=-1
    )


# --------------------------------------------------------------------------- limits


def test_cpu_limit_round_trips_as_shares_and_a_cfs_quota(backend, parent, container):
    limits = backend.write_limits(container, LimitChange(cpu_allowance_limit=150, cpu_num="0,1"))

    assert (limits.cpu_allowance_limit, limits.cpu_num) == (150, "0,1")
    assert backend.read_limits(container) == limits
    # 150 shares × 1000 µs per share = 150 000 µs every 100 000 µs = 1.5 cores.
    assert raw(parent, "cpu", container, "cpu.cfs_quota_us") == "150000"
    assert raw(parent, "cpu", container, "cpu.cfs_period_us") == "100000"
    assert raw(parent, "cpuset", container, "cpuset.cpus") == "0-1"  # the kernel's form


def test_unlimited_cpu_is_written_as_quota_minus_one(backend, parent, container):
    backend.write_limits(container, LimitChange(cpu_allowance_limit=150))

    limits = backend.write_limits(container, LimitChange(cpu_allowance_limit=-1))

    assert limits.cpu_allowance_limit == -1
    assert raw(parent, "cpu", container, "cpu.cfs_quota_us") == "-1"


def test_memory_limit_round_trips_in_mib(backend, parent, container):
    limits = backend.write_limits(container, LimitChange(mem_limit=256))

    assert limits.mem_limit == 256
    assert raw(parent, "memory", container, "memory.limit_in_bytes") == "268435456"  # 256 × 1048576


def test_unlimited_memory_reads_back_as_minus_one(backend, container):
    backend.write_limits(container, LimitChange(mem_limit=256))

    assert backend.write_limits(container, LimitChange(mem_limit=-1)).mem_limit == -1


def test_only_the_fields_present_are_written(backend, container):
    backend.write_limits(container, LimitChange(cpu_allowance_limit=150, mem_limit=256))

    limits = backend.write_limits(container, LimitChange(mem_limit=512))

    assert (limits.cpu_allowance_limit, limits.cpu_num, limits.mem_limit) == (150, "0", 512)


@pytest.mark.parametrize(
    "change, bounds",
    [
        pytest.param(LimitChange(mem_limit=32), None, id="mem-below-64-MiB"),
        pytest.param(LimitChange(cpu_allowance_limit=0), None, id="cpu-zero"),
        pytest.param(LimitChange(cpu_allowance_limit=-50), None, id="cpu-negative"),
        pytest.param(LimitChange(cpu_allowance_limit=0.5), None, id="cpu-below-kernel-minimum"),
        pytest.param(LimitChange(cpu_num="0,99"), None, id="core-the-host-lacks"),
        pytest.param(LimitChange(cpu_num=""), None, id="no-core"),
        pytest.param(LimitChange(cpu_num="zero"), None, id="not-a-cpu-list"),
        pytest.param(LimitChange(cpu_allowance_limit=300), Bounds(cpu=(50, 200)), id="cpu-above-max"),
        pytest.param(LimitChange(cpu_allowance_limit=20), Bounds(cpu=(50, 200)), id="cpu-below-min"),
        pytest.param(LimitChange(cpu_allowance_limit=-1), Bounds(cpu=(50, 200)), id="cpu-unlimited-with-max"),
        pytest.param(LimitChange(mem_limit=2048), Bounds(mem=(128, 1024)), id="mem-above-max"),
        pytest.param(LimitChange(mem_limit=100), Bounds(mem=(128, 1024)), id="mem-below-min"),
        pytest.param(
            LimitChange(cpu_allowance_limit=100, cpu_num="1", mem_limit=2048),
            Bounds(cpu=(50, 200), mem=(128, 1024)),
            id="one-bad-field-of-three",
        ),
    ],
)
def test_a_refused_change_writes_nothing(backend, parent, container, change, bounds):
    before = backend.read_limits(container)
    quota_before = raw(parent, "cpu", container, "cpu.cfs_quota_us")

    with pytest.raises(LimitRefused):
        backend.write_limits(container, change, bounds)

    assert backend.read_limits(container) == before
    assert raw(parent, "cpu", container, "cpu.cfs_quota_us") == quota_before


def test_limits_within_bounds_are_written(backend, container):
    limits = backend.write_limits(
        container,
        LimitChange(cpu_allowance_limit=200, mem_limit=128),
        Bounds(cpu=(50, 200), mem=(128, 1024)),
    )

    assert (limits.cpu_allowance_limit, limits.mem_limit) == (200, 128)


def test_unknown_container_raises_container_not_found(backend, container):
    unknown_container_raises_container_not_found(backend)
    with pytest.raises(ContainerNotFound):
        backend.attach("nope", os.getpid())
    assert set(backend.read_counters_many([container, "nope"])) == {container}


def test_a_bad_name_is_refused_before_any_path_is_built(backend):
    with pytest.raises(ValueError):
        backend.create("../escape")
    with pytest.raises(ValueError):
        backend.read_limits("a/b")
    assert not (ROOT / "cpu" / "escape").exists()


# --------------------------------------------------------------------------- usage


def test_a_busy_loop_at_50_shares_uses_half_a_core(backend, container, spawn):
    backend.write_limits(container, LimitChange(cpu_allowance_limit=50, cpu_num="0,1"))
    proc = spawn(BUSY_LOOP)
    backend.attach(container, proc.pid)
    wait_for(lambda: backend.read_counters(container).cpu_ns > 0, 5, "the loop to run in the cgroup")

    # 50 shares = a quota of 50 000 µs per 100 000 µs period = 0.5 core. The quota is
    # a ceiling whatever else runs; reaching it needs a free moment of the machine,
    # so the lower bound is awaited over successive one-second intervals.
    seen: list[float] = []
    wait_for(lambda: seen.append(_measure_shares(backend, container)) or seen[-1] >= 30, 30,
             "an interval with the loop at its quota")
    assert all(s <= 60 for s in seen), [f"{s:.1f}" for s in seen]

    # The contrast: unthrottled, the same loop takes (close to) a whole core.
    backend.write_limits(container, LimitChange(cpu_allowance_limit=-1))
    free: list[float] = []
    wait_for(lambda: free.append(_measure_shares(backend, container)) or free[-1] >= 75, 30,
             "an interval with the loop above its old quota")


def _measure_shares(backend, container, interval_s: float = 1.0) -> float:
    first = backend.read_counters(container)
    wait_for(lambda: time.monotonic() - first.t >= interval_s, interval_s + 5, "the interval")
    second = backend.read_counters(container)
    return units.cpu_ns_to_shares(second.cpu_ns - first.cpu_ns, second.t - first.t)


def test_a_process_allocating_100_mib_shows_in_mem_bytes(backend, container, spawn):
    proc = spawn(ALLOCATE_100_MIB)
    backend.attach(container, proc.pid)
    proc.stdin.write(b"allocate\n")
    proc.stdin.flush()

    wait_for(
        lambda: backend.read_counters(container).mem_bytes >= 90 * MIB, 10, "100 MiB to be charged"
    )


def test_a_memory_sample_alone_reads_what_the_counters_read(backend, container, spawn):
    proc = spawn(ALLOCATE_100_MIB)
    backend.attach(container, proc.pid)
    proc.stdin.write(b"allocate\n")
    proc.stdin.flush()
    wait_for(lambda: backend.read_memory_many([container]).get(container, 0) >= 90 * MIB, 10, "100 MiB")
    memory_alone_matches_the_counters(backend, container)


def test_lowering_memory_below_what_is_used_is_refused(backend, container, spawn):
    proc = spawn(ALLOCATE_100_MIB)
    backend.attach(container, proc.pid)
    proc.stdin.write(b"allocate\n")
    proc.stdin.flush()
    wait_for(lambda: backend.read_counters(container).mem_bytes >= 90 * MIB, 10, "100 MiB")

    # No swap here, so the kernel cannot reclaim 100 MiB of anonymous memory
    # below 64 MiB: v1 answers EBUSY instead of killing.
    with pytest.raises(LimitRefused, match="EBUSY"):
        backend.write_limits(container, LimitChange(mem_limit=64))

    assert backend.read_limits(container).mem_limit == -1
    assert proc.poll() is None


# --------------------------------------------------------------------------- removal


def test_remove_kills_the_tasks_and_removes_every_controller_dir(backend, parent, container, spawn):
    procs = [spawn(BUSY_LOOP), spawn(BUSY_LOOP)]
    for proc in procs:
        backend.attach(container, proc.pid)

    backend.remove(container)

    for proc in procs:
        assert proc.wait(timeout=5) == -signal.SIGKILL
    for c in CONTROLLERS:
        assert not (ROOT / c / parent / container).exists()
    assert backend.list_containers() == []


def test_remove_is_idempotent(backend, container):
    backend.remove(container)
    backend.remove(container)
    backend.remove("never-existed")


@pytest.mark.parametrize("quota, percent, expected", [
    (50_000, 100, 50_000),  # a full period's worth of saved quota
    (50_000, 40, 20_000),  # 50 000 × 0.4
    (50_000, 250, 50_000),  # the kernel allows at most the quota
    (-1, 100, 0),  # no quota, no burst
])
def test_the_burst_is_a_share_of_the_quota(quota, percent, expected):
    from sc_actors.backends.base import burst_us

    assert burst_us(quota, percent) == expected


def test_the_burst_follows_the_quota_down_and_up(parent):
    b = CgroupV1Backend(root=str(ROOT), parent=parent, cpu_burst_percent=100)
    b.create("c1")
    burst = ROOT / "cpu" / parent / "c1" / "cpu.cfs_burst_us"
    b.write_limits("c1", LimitChange(cpu_allowance_limit=80))
    assert int(burst.read_text()) == 80_000
    # Lowering the quota below the old burst: the kernel would refuse the quota first.
    assert b.write_limits("c1", LimitChange(cpu_allowance_limit=30)).cpu_allowance_limit == 30
    assert int(burst.read_text()) == 30_000
    b.write_limits("c1", LimitChange(cpu_allowance_limit=-1))
    assert int(burst.read_text()) == 0
    off = CgroupV1Backend(root=str(ROOT), parent=parent)  # the original had none
    off.write_limits("c1", LimitChange(cpu_allowance_limit=50))
    assert int(burst.read_text()) == 0
