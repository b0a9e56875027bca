"""The synthetic backend (scale benchmark): vectorised state, the same checks as the cgroup
backends, the quota capping a burst, sane statistics; the counter frames it reads. No Ray.

Time is a hand-driven clock (`Clock`): every case advances it by exact steps, no sleeps.
"""
from __future__ import annotations

import math

import numpy as np
import pytest

from sc_actors.backends.base import ContainerNotFound, LimitRefused, UsageCounters
from sc_actors.backends.frames import CounterFrame
from sc_actors.backends.synthetic import (
    DEMAND_RANGE,
    MEM_FLOOR_MIB,
    SimulatedContainer,
    SimulatedHost,
    WRITE_ADVANCE_S,
    SyntheticBackend,
    simulated_backend,
)
from sc_actors.model import Bounds, LimitChange

from tests.backends import contract


class Clock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t


def run(b: SyntheticBackend, seconds: float, step_s: float = 0.2) -> None:
    """Advance the host's clock by `seconds` in steps of `step_s` (a node samples every 0.2 s)."""
    clock = b.clock
    assert isinstance(clock, Clock)
    for _ in range(int(round(seconds / step_s))):
        clock.t += step_s
        b._advance(clock.t)


def host(n: int = 100, cores: int = 64, burst: float = 0.01, **kwargs: float) -> SyntheticBackend:
    b = SyntheticBackend("test-host", cores=cores, mem_mib=cores * 4096, burst_probability_per_s=burst,
                         clock=Clock(), **kwargs)
    for i in range(n):
        b.create(f"c{i}", cpu_num="0-3")
    return b


def test_unknown_container_raises_container_not_found():
    contract.unknown_container_raises_container_not_found(host(3))


def test_writes_outside_the_bounds_or_the_hosts_cores_are_refused_and_change_nothing():
    b = host(2, cores=8)
    b.write_limits("c0", LimitChange(cpu_allowance_limit=150, cpu_num="0,1", mem_limit=512))
    before = b.read_limits("c0")
    bounds = Bounds(cpu=(50, 200), mem=(128, 1024))
    for change in (LimitChange(cpu_allowance_limit=250), LimitChange(cpu_allowance_limit=0),
                   LimitChange(mem_limit=32), LimitChange(mem_limit=2048), LimitChange(cpu_num="7,8"),
                   LimitChange(cpu_num="x"), LimitChange(cpu_allowance_limit=100, cpu_num="9")):
        with pytest.raises(LimitRefused):
            b.write_limits("c0", change, bounds)
        assert b.read_limits("c0") == before
        assert b._state["limit"][0] == 150


def test_a_write_returns_the_limits_read_back_with_the_cpuset_canonical():
    b = host(1, cores=8)
    got = b.write_limits("c0", LimitChange(cpu_allowance_limit=120, cpu_num="0-2", mem_limit=300))
    assert (got.cpu_allowance_limit, got.cpu_num, got.mem_limit) == (120, "0,1,2", 300)
    assert b.read_limits("c0") == got
    assert b._state["limit"][0] == 120  # min(120, 3 cores × 100)


def test_a_burst_is_throttled_at_the_quota_and_the_excess_counted():
    b = host(1, burst=0.0)
    b.write_limits("c0", LimitChange(cpu_allowance_limit=30, cpu_num="0-3"))
    b._state["level"][0] = 150.0
    b._state["burst_until"][0] = b._t + 100  # bursting: wants 100–180 shares
    f0 = b.read_frame()
    run(b, 10.0)
    f1 = b.read_frame()
    elapsed = f1.t[0] - f0.t[0]
    used = (f1.cpu_ns[0] - f0.cpu_ns[0]) / 1e9 / elapsed * 100
    held = (f1.throttled_ns[0] - f0.throttled_ns[0]) / 1e9 / elapsed * 100
    assert used == pytest.approx(30.0, rel=1e-6)  # never above the quota
    assert held > 60.0  # wanted at least 100: 70 held back at least, on average
    assert (f1.throttled_periods[0] - f0.throttled_periods[0]) == pytest.approx(f1.periods[0] - f0.periods[0])


def test_an_unlimited_container_uses_its_demand_and_is_never_throttled():
    b = SyntheticBackend("u", cores=8, burst_probability_per_s=0.0, clock=Clock())
    b.create("c0")
    b.write_limits("c0", LimitChange(cpu_allowance_limit=-1, cpu_num="0-7"))  # 8 cores: nothing caps 180
    assert b._state["limit"][0] == 800
    f0 = b.read_frame()
    run(b, 5.0)
    f1 = b.read_frame()
    assert f1.throttled_ns[0] == f0.throttled_ns[0] and f1.throttled_periods[0] == f0.throttled_periods[0]


def test_statistics_demand_jitters_around_its_level_and_memory_walks_as_documented():
    b = host(400, burst=0.0, demand_noise=0.05, phase_s=0.0)
    b.write_limits("c0", LimitChange(cpu_allowance_limit=-1))
    m0 = b._state["mem_mib"].copy()
    run(b, 1.0, step_s=0.01)
    m1 = b._state["mem_mib"]
    assert m1.min() >= MEM_FLOOR_MIB
    assert 3.0 < np.std(m1 - m0) < 5.0  # 4 MiB per √s over 1 s
    run(b, 60.0, step_s=0.5)  # the jitter's stationary spread, whatever the step
    d, level = b._state["demand"], b._state["level"]
    assert d.min() >= DEMAND_RANGE[0] and d.max() <= DEMAND_RANGE[1]
    assert np.array_equal(level, b._state["base"])  # no phases: the level holds
    rel = d / level - 1.0
    assert 0.04 < np.std(rel) < 0.06 and abs(np.mean(rel)) < 0.01


def test_phases_end_at_the_documented_rate_and_draw_a_level_near_the_containers_own():
    b = host(500, burst=0.0, demand_noise=0.0, phase_s=10.0)
    run(b, 10.0, step_s=0.5)
    changed = b._state["level"] != b._state["base"]
    # a phase ends with probability 1 − e^(−10/10) = 63 % within 10 s: 316 of 500 expected
    assert 260 < np.count_nonzero(changed) < 370
    ratio = b._state["level"][changed] / b._state["base"][changed]
    assert 0.5 < float(np.exp(np.median(np.log(ratio)))) < 1.5  # around the container's own level
    assert np.array_equal(b._state["demand"], np.clip(b._state["level"], *DEMAND_RANGE))  # no jitter


def test_bursts_start_at_the_documented_rate():
    b = host(500, burst=0.05)  # 5 % per second
    run(b, 2.0, step_s=0.2)
    bursting = np.count_nonzero(b._state["burst_until"] > b._t)
    # 500 × 0.05 × 2 s = 50 expected; a 5-σ band around it
    assert 15 < bursting < 85


def test_what_a_window_sees_of_a_burst_does_not_depend_on_how_often_the_host_is_advanced():
    spreads = []
    for step_s in (0.2, 1.0, 0.5):
        b = host(400, burst=0.0, demand_noise=0.0, phase_s=0.0)
        b._state["burst_from"][:], b._state["burst_until"][:] = 0.0, 1e9  # every container bursting
        before = b.read_frame().cpu_ns
        run(b, 1.0, step_s=step_s)
        used = (b.read_frame().cpu_ns - before) / 1e9 * 100  # shares over the 1-s window
        assert 130 < used.mean() < 150  # wants 100–180
        spreads.append(np.std(used))
    # Redrawn every 0.2 s: a 1-s window averages 5 draws, σ = 80 / √12 / √5 ≈ 10.3 shares.
    assert all(8.5 < sd < 12.5 for sd in spreads), spreads


def test_the_same_seed_gives_the_same_walk():
    a, b = host(10), host(10)
    run(a, 0.6)
    run(b, 0.6)
    assert np.array_equal(a._state["demand"], b._state["demand"])
    assert np.array_equal(a._state["cpu_ns"], b._state["cpu_ns"])


def test_per_container_reads_match_the_frame_and_skip_unknown_names():
    b = host(5)
    run(b, 1.0)
    many = b.read_counters_many(["c3", "nope", "c1"])
    assert list(many) == ["c3", "c1"]
    assert all(isinstance(c, UsageCounters) for c in many.values())
    assert many["c3"].cpu_ns > 0 and many["c3"].mem_bytes >= MEM_FLOOR_MIB * 1_048_576
    one = b.read_counters("c3")
    assert one.cpu_ns >= many["c3"].cpu_ns and one.t >= many["c3"].t


def test_a_memory_sample_walks_memory_alone_as_the_full_walk_does():
    b = host(400, burst=0.0)
    clock = b.clock
    assert isinstance(clock, Clock)
    cpu0, m0 = b._state["cpu_ns"].copy(), b._state["mem_mib"].copy()
    for _ in range(100):  # 1 s of memory-only samples every 0.01 s
        clock.t += 0.01
        mem = b.read_memory_frame(("c3", "nope", "c1"))
    assert np.array_equal(b._state["cpu_ns"], cpu0)  # the CPU's walk did not move
    m1 = b._state["mem_mib"]
    assert 3.0 < np.std(m1 - m0) < 5.0  # 4 MiB per √s over 1 s, as the full walk
    assert mem[0] == m1[3] * 1_048_576 and math.isnan(mem[1]) and mem[2] == m1[1] * 1_048_576
    frame = b.read_frame()  # the CPU catches up over the whole second; memory is where it was
    assert (frame.cpu_ns > cpu0).all() and np.array_equal(frame.mem_bytes, m1 * 1_048_576)
    assert b.read_memory_many(["c1", "nope"]) == {"c1": int(m1[1] * 1_048_576)}
    contract.memory_alone_matches_the_counters(b, "c1")


def test_create_and_remove_keep_the_arrays_and_the_names_aligned():
    b = host(4)
    b._state["demand"][:] = [10, 11, 12, 13]
    b.remove("c1")
    b.remove("nope")  # nothing
    assert b.list_containers() == ["c0", "c2", "c3"]
    assert list(b._state["demand"]) == [10, 12, 13]  # the clock did not move: no walk
    b.create("c9", demand=40.0, mem_use=500.0)
    assert b.list_containers()[-1] == "c9" and b._state["demand"][-1] == 40.0 and b._state["mem_mib"][-1] == 500.0
    b.create("c9", demand=1.0)  # already there: nothing
    assert len(b) == 4
    with pytest.raises(ContainerNotFound):
        b.read_limits("c1")
    assert b.read_counters_many(["c3"])["c3"].cpu_ns >= 0


def test_a_simulated_host_starts_with_its_containers_limits():
    h = SimulatedHost("h1", cores=32, mem_mib=32 * 4096, containers=(
        SimulatedContainer("h1-c0", cpu=120, cpu_num="0,1", mem=1024, demand=100, mem_use=600),
        SimulatedContainer("h1-c1", cpu=50, cpu_num="2", mem=512, demand=40, mem_use=300),
    ))
    b = simulated_backend(h, clock=Clock())
    assert (b.host_cores(), b.host_mem_mib()) == (32, 32 * 4096)
    assert b.list_containers() == ["h1-c0", "h1-c1"]
    lim = b.read_limits("h1-c0")
    assert (lim.cpu_allowance_limit, lim.cpu_num, lim.mem_limit) == (120, "0,1", 1024)
    assert list(b._state["limit"]) == [120, 50] and list(b._state["demand"]) == [100, 40]


def test_advancing_a_host_of_150_containers_is_a_few_array_operations():
    """The state is arrays: one advance touches each container once, whatever their number
    (a count of Python-level work, not a timing: the per-container list is not iterated)."""
    b = host(150)
    draws: list[int] = []

    class Counting:
        def __init__(self, rng: np.random.Generator) -> None:
            self.rng = rng

        def __getattr__(self, name: str):
            def draw(*args, **kwargs):
                out = getattr(self.rng, name)(*args, **kwargs)
                draws.append(np.size(out))
                return out
            return draw

    b._rng = Counting(b._rng)  # type: ignore[assignment]
    b._state["burst_until"][:] = b._t + 100  # all bursting: the burst draw happens too
    run(b, 0.2)
    # phase ends, (a new level if one ended), jitter, burst starts, burst want, memory: one array each
    assert len(draws) in (5, 6) and set(draws) == {150}


# --------------------------------------------------------------------------- frames


def test_a_frame_of_per_container_counters_puts_nan_where_one_is_missing():
    c = {"a": UsageCounters(cpu_ns=5, mem_bytes=7, t=1.0, periods=2, throttled_periods=1, throttled_ns=3)}
    f = CounterFrame.of(c, ["b", "a"])
    assert f.names == ("b", "a")
    assert math.isnan(f.cpu_ns[0]) and f.cpu_ns[1] == 5 and f.throttled_ns[1] == 3
    assert f.counters("a") == c["a"] and f.counters("b") is None and f.counters("z") is None


def test_take_reorders_and_or_else_fills_what_is_missing():
    c = {n: UsageCounters(cpu_ns=i, mem_bytes=i, t=float(i)) for i, n in enumerate("abc", start=1)}
    f = CounterFrame.of(c)
    assert f.take(("a", "b", "c")) is f
    g = f.take(("c", "x", "a"))
    assert g.names == ("c", "x", "a") and g.cpu_ns[0] == 3 and math.isnan(g.cpu_ns[1]) and g.cpu_ns[2] == 1
    fill = CounterFrame.of({"x": UsageCounters(cpu_ns=9, mem_bytes=9, t=9.0)}, ("c", "x", "a"))
    h = g.or_else(fill)
    assert list(h.cpu_ns) == [3, 9, 1]
    with pytest.raises(ValueError):
        g.or_else(f)


def test_a_simulated_hosts_noise_phases_and_burst_rate_reach_its_backend():
    h = SimulatedHost("calm", cores=8, mem_mib=8 * 4096, demand_noise=0.0, phase_s=0.0, burst_probability_per_s=0.0,
                      containers=(SimulatedContainer("calm-c0", cpu=100, cpu_num="0", mem=512, demand=42, mem_use=100),))
    b = simulated_backend(h, clock=Clock())
    assert (b.demand_noise, b.phase_s, b.burst_p) == (0.0, 0.0, 0.0)
    run(b, 30.0)
    assert b._state["demand"][0] == 42.0 and b._state["burst_until"][0] == 0.0  # no jitter, no phase, no burst


def test_writes_of_one_batch_advance_the_host_once():
    b = host(3)
    t0 = b._t
    b.clock.t += WRITE_ADVANCE_S / 2
    b.write_limits("c0", LimitChange(cpu_allowance_limit=50, cpu_num="0-3"))
    assert b._t == t0  # the sliver since the last advance counts under the new limit
    b.clock.t += WRITE_ADVANCE_S
    b.write_limits("c1", LimitChange(cpu_allowance_limit=50, cpu_num="0-3"))
    assert b._t == b.clock.t  # longer ago: the usage so far ran under the old limits
    b.read_frame()
    assert b._t == b.clock.t
