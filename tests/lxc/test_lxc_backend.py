"""The LXC backend on real busybox containers, and its cgroup v2 items on a fake binding."""
from __future__ import annotations

from pathlib import Path

import pytest

from cluster.deploy import wait_for
from sc_actors import units
from sc_actors.backends.base import ContainerNotFound, LimitRefused
from sc_actors.backends.lxc import LxcBackend
from sc_actors.model import Bounds, LimitChange
from tests.backends.contract import memory_alone_matches_the_counters

pytestmark = pytest.mark.cgroup  # real LXC containers: real cgroups

V1 = Path("/sys/fs/cgroup")


def _kernel(name: str, controller: str, file: str) -> str:
    """What the kernel holds, read beside the bindings (reference §5.2: lxc.payload.<name>)."""
    return (V1 / controller / f"lxc.payload.{name}" / file).read_text().strip()


# --------------------------------------------------------------------------- real containers


def test_a_busybox_container_is_found_limited_through_the_bindings_and_removed(lxc_backend, lxc_containers):
    name = lxc_containers.create()
    assert name in lxc_backend.list_containers()
    fresh = lxc_backend.read_limits(name)
    assert fresh.cpu_allowance_limit == units.UNLIMITED and fresh.mem_limit == units.UNLIMITED

    got = lxc_backend.write_limits(name, LimitChange(cpu_allowance_limit=50, cpu_num="0", mem_limit=128))
    assert (got.cpu_allowance_limit, got.cpu_num, got.mem_limit) == (50, "0", 128)
    # The same units as the cgroup backends: 1000 µs per share on a 100 000 µs period, MiB.
    assert _kernel(name, "cpu", "cpu.cfs_quota_us") == "50000"
    assert _kernel(name, "cpu", "cpu.cfs_period_us") == "100000"
    assert _kernel(name, "cpuset", "cpuset.cpus") == "0"
    assert _kernel(name, "memory", "memory.limit_in_bytes") == str(128 * units.BYTES_PER_MIB)

    got = lxc_backend.write_limits(name, LimitChange(cpu_allowance_limit=units.UNLIMITED, mem_limit=units.UNLIMITED))
    assert got.cpu_allowance_limit == units.UNLIMITED and got.mem_limit == units.UNLIMITED

    lxc_backend.remove(name)
    assert name not in lxc_backend.list_containers()
    assert not (Path(lxc_backend.lxc_path) / name).exists()
    lxc_backend.remove(name)  # idempotent
    with pytest.raises(ContainerNotFound):
        lxc_backend.read_limits(name)


@pytest.mark.parametrize(
    "change, bounds, words",
    [
        pytest.param(LimitChange(mem_limit=32), None, "64 MiB", id="memory-below-64-MiB"),
        pytest.param(LimitChange(cpu_allowance_limit=300), Bounds(cpu=(25, 200), mem=(64, 512)), "outside",
                     id="cpu-above-max"),
        pytest.param(LimitChange(cpu_num="0,99"), None, "lacks", id="core-the-host-lacks"),
        pytest.param(LimitChange(cpu_allowance_limit=0), None, "> 0", id="zero-cpu"),
    ],
)
def test_a_limit_outside_the_rules_is_refused_and_changes_nothing(lxc_backend, lxc_containers, change, bounds, words):
    name = lxc_containers.create()
    lxc_backend.write_limits(name, LimitChange(cpu_allowance_limit=80, mem_limit=256))
    before = lxc_backend.read_limits(name)
    with pytest.raises(LimitRefused, match=words):
        lxc_backend.write_limits(name, change, bounds)
    assert lxc_backend.read_limits(name) == before


def test_a_memory_limit_the_kernel_refuses_is_reported_and_changes_nothing(lxc_backend, lxc_containers):
    name = lxc_containers.create()
    lxc_backend.write_limits(name, LimitChange(mem_limit=256))
    # 100 MiB of shared memory cannot be reclaimed (no swap): v1 answers EBUSY below it,
    # which the bindings only report as False.
    filled = lxc_containers.run(name, "dd if=/dev/zero of=/dev/shm/fill bs=1M count=100 2>/dev/null && echo ok")
    assert filled.communicate(timeout=30)[0].strip() == "ok"
    with pytest.raises(LimitRefused, match="memory.limit_in_bytes"):
        lxc_backend.write_limits(name, LimitChange(mem_limit=64, cpu_allowance_limit=30))
    after = lxc_backend.read_limits(name)
    assert after.mem_limit == 256 and after.cpu_allowance_limit == units.UNLIMITED  # memory goes first


def test_usage_counters_follow_a_loop_run_inside_with_lxc_attach(lxc_backend, lxc_containers):
    name = lxc_containers.create()
    lxc_backend.write_limits(name, LimitChange(cpu_allowance_limit=40))
    lxc_containers.busy_loop(name)
    first = wait_for(lambda: (c := lxc_backend.read_counters(name)).cpu_ns > 0 and c, 10, what="cpu time")
    wait_for(lambda: lxc_backend.read_counters(name).t - first.t >= 2.0, 5, interval_s=0.1, what="2 s")
    last = lxc_backend.read_counters(name)
    shares = units.cpu_ns_to_shares(last.cpu_ns - first.cpu_ns, last.t - first.t)
    # The quota caps the loop at 40 shares (0.4 core).
    assert 20 <= shares <= 45, shares
    assert 0 < last.mem_bytes < 64 * units.BYTES_PER_MIB
    assert lxc_backend.read_counters_many([name, "sclxc-not-there"]).keys() == {name}
    memory_alone_matches_the_counters(lxc_backend, name)


def test_only_running_containers_with_plain_names_are_listed(lxc_backend, lxc_containers):
    name = lxc_containers.create()
    assert name in lxc_backend.list_containers()
    with pytest.raises(ValueError):
        lxc_backend.read_limits("../etc")
    with pytest.raises(ValueError):
        lxc_backend.attach_argv("-n", ["sh"])  # never an option to lxc-attach
    with pytest.raises(NotImplementedError, match="lxc-attach"):
        lxc_backend.attach(name, 1)


# --------------------------------------------------------------------------- cgroup v2 items (fake bindings)


class _FakeLxc:
    """The part of the `lxc` module the backend uses, over a dict of cgroup v2 items."""

    default_config_path = "/var/lib/lxc-fake"

    def __init__(self) -> None:
        self.items: dict[str, dict[str, str]] = {}
        self.refuse: set[str] = set()

    def add(self, name: str, **items: str) -> None:
        self.items[name] = {
            "cpu.max": "max 100000",
            "memory.max": "max",
            "cpuset.cpus": "",
            "cpuset.cpus.effective": "0-1",
            "cpu.stat": "usage_usec 1500\nuser_usec 1000\nsystem_usec 500",
            "memory.current": str(10 * units.BYTES_PER_MIB),
            "memory.stat": f"anon {4 * units.BYTES_PER_MIB}\nfile {6 * units.BYTES_PER_MIB}",
            **items,
        }

    def list_containers(self, active=True, defined=True, config_path=None):
        return tuple(self.items)

    def Container(self, name, config_path=None):  # noqa: N802 - the bindings' name
        fake = self

        class _C:
            defined = running = name in fake.items

            def get_cgroup_item(self, item):
                return fake.items[name][item]

            def set_cgroup_item(self, item, value):
                if item in fake.refuse:
                    return False
                fake.items[name][item] = value
                return True

        return _C()


@pytest.fixture
def fake_v2():
    lxc = _FakeLxc()
    lxc.add("web")
    return lxc, LxcBackend(lxc_module=lxc, cgroup_v1=False)


def test_on_cgroup_v2_the_same_units_go_to_cpu_max_and_memory_max(fake_v2):
    lxc, backend = fake_v2
    fresh = backend.read_limits("web")
    # "max" is unlimited; an empty cpuset.cpus means the parent's (cpuset.cpus.effective).
    assert (fresh.cpu_allowance_limit, fresh.cpu_num, fresh.mem_limit) == (-1, "0,1", -1)
    got = backend.write_limits("web", LimitChange(cpu_allowance_limit=75, cpu_num="1", mem_limit=128))
    assert lxc.items["web"]["cpu.max"] == "75000 100000"  # 75 shares × 1000 µs on 100 000 µs
    assert lxc.items["web"]["memory.max"] == str(128 * units.BYTES_PER_MIB)
    assert lxc.items["web"]["cpuset.cpus"] == "1"
    assert (got.cpu_allowance_limit, got.cpu_num, got.mem_limit) == (75, "1", 128)
    backend.write_limits("web", LimitChange(cpu_allowance_limit=-1, mem_limit=-1))
    assert lxc.items["web"]["cpu.max"] == "max 100000" and lxc.items["web"]["memory.max"] == "max"


def test_on_cgroup_v2_usage_comes_from_cpu_stat_and_memory_current_without_file_cache(fake_v2):
    _, backend = fake_v2
    c = backend.read_counters("web")
    assert c.cpu_ns == 1500 * 1000  # usage_usec → ns
    assert c.mem_bytes == 4 * units.BYTES_PER_MIB  # 10 MiB current − 6 MiB file


def test_on_cgroup_v2_memory_below_use_is_refused_before_anything_is_written(fake_v2):
    lxc, backend = fake_v2
    lxc.items["web"]["memory.current"] = str(300 * units.BYTES_PER_MIB)
    with pytest.raises(LimitRefused, match="below its use"):
        backend.write_limits("web", LimitChange(mem_limit=128, cpu_allowance_limit=50))
    assert lxc.items["web"]["memory.max"] == "max" and lxc.items["web"]["cpu.max"] == "max 100000"


def test_a_write_the_bindings_refuse_names_the_item_and_value(fake_v2):
    lxc, backend = fake_v2
    lxc.refuse.add("cpuset.cpus")
    with pytest.raises(LimitRefused, match="cpuset.cpus = 0"):
        backend.write_limits("web", LimitChange(cpu_num="0"))


def test_an_unknown_container_is_not_found(fake_v2):
    _, backend = fake_v2
    with pytest.raises(ContainerNotFound):
        backend.read_limits("gone")
    assert backend.list_containers() == ["web"]
