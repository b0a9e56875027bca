"""The node agent's windows as columns: built from counter frames, pushed per Guardian. No Ray.

`host_window` is checked with numbers worked by hand; the push (`_post`) with a
stand-in Guardian whose `on_windows` the test releases, to see what waits, what is
replaced and what is counted.
"""
from __future__ import annotations

import asyncio
import math

import numpy as np
import pytest

from sc_actors.backends.base import UsageCounters
from sc_actors.backends.frames import CounterFrame
from sc_actors.backends.synthetic import SyntheticBackend
from sc_actors.columns import HostWindow
from sc_actors.container_scaler import ContainerScaler, _Sampling, host_window, read_frame
from sc_actors.model import LimitChange

MIB = 1_048_576


def frame(t: float, **counters: tuple[float, ...]) -> CounterFrame:
    """name=(cpu_ns, mem_bytes, periods, throttled_periods, throttled_ns)"""
    return CounterFrame.of({n: UsageCounters(cpu_ns=int(c[0]), mem_bytes=int(c[1]), t=t, periods=int(c[2]),
                                             throttled_periods=int(c[3]), throttled_ns=int(c[4]))
                            for n, c in counters.items()})


def test_a_window_from_two_frames_worked_by_hand():
    start = frame(10.0, a=(0, 100 * MIB, 0, 0, 0), b=(5e9, 200 * MIB, 100, 0, 0))
    # a: 0.5 s of CPU in 2 s = 25 shares; b: 1.2 s of CPU = 60 shares, 20 periods of which
    # 5 throttled (0.25), 0.4 s held back = 20 shares.
    end = frame(12.0, a=(0.5e9, 300 * MIB, 0, 0, 0), b=(6.2e9, 200 * MIB, 120, 5, 0.4e9))
    mem_sum = np.array([400.0 * MIB, 400.0 * MIB])  # two samples each: a 100 + 300, b 200 + 200
    w = host_window("h", 100.0, 102.0, start, end, mem_sum, np.array([2.0, 2.0]))
    assert isinstance(w, HostWindow) and (w.host, w.window_start, w.window_end) == ("h", 100.0, 102.0)
    assert w.names == ("a", "b")
    assert list(w.cpu) == [25.0, 60.0]
    assert list(w.mem) == [200.0, 200.0]
    assert list(w.cpu_throttled) == [0.0, 0.25]
    assert list(w.cpu_held_back) == [0.0, 20.0]


def test_a_container_missing_at_an_edge_is_left_out_and_nothing_is_negative():
    start = frame(0.0, a=(2e9, MIB, 0, 0, 0), b=(0, MIB, 0, 0, 0)).take(("a", "b", "c"))
    end = frame(1.0, a=(1e9, MIB, 0, 0, 0), c=(1e9, MIB, 0, 0, 0)).take(("a", "b", "c"))
    w = host_window("h", 0, 1, start, end, np.array([MIB, MIB, MIB]), np.array([1.0, 1.0, 1.0]))
    assert w.names == ("a",)  # b gone at the end, c not there at the start
    assert list(w.cpu) == [0.0]  # a counter that went back (a restarted cgroup) is 0, not negative


def test_sampling_resumes_from_the_last_windows_counters_and_averages_memory():
    clock = [100.0]
    b = SyntheticBackend("w", cores=8, burst_probability_per_s=0.0, clock=lambda: clock[0])
    for n in ("a", "b"):
        b.create(n, demand=50.0, mem_use=500.0)
        b.write_limits(n, LimitChange(cpu_allowance_limit=20, cpu_num="0"))
    names = ("a", "b")
    first = _Sampling.begin(b, names, None)
    for _ in range(5):
        clock[0] += 0.2
        first.sample_memory()
    end1 = read_frame(b, names)
    # The next window starts from end1 (its own first read comes later): no CPU is lost between windows.
    clock[0] += 0.5
    second = _Sampling.begin(b, names, end1)
    assert second.start is not None and list(second.start.cpu_ns) == list(end1.cpu_ns)
    clock[0] += 1.0
    end2 = second.sample()
    w = host_window("h", 0, 1, second.start, end2, second.mem_sum, second.mem_n)
    assert list(w.cpu) == [20.0, 20.0]  # capped at the quota for the whole 1.5 s
    assert list(w.cpu_throttled) == [1.0, 1.0]
    assert all(0 < h < 160 for h in w.cpu_held_back)  # wanted more (it walks from 50), never more than 180
    assert second.mem_n.tolist() == [2.0, 2.0] and all(400 < m < 600 for m in w.mem)


def test_samples_within_a_window_read_memory_alone():
    """A window's CPU counters come from its two ends: the samples between read only memory
    (on cgroups, two files instead of four per container)."""
    reads: list[str] = []

    class PerContainer:
        def read_counters_many(self, names):
            reads.append("counters")
            return {n: UsageCounters(cpu_ns=7, mem_bytes=MIB, t=1.0) for n in names}

        def read_memory_many(self, names):
            reads.append("memory")
            return {"b": 3 * MIB}  # "a" gone meanwhile: not averaged in

    s = _Sampling.begin(PerContainer(), ("a", "b"), None)  # type: ignore[arg-type]
    for _ in range(3):
        s.sample_memory()
    s.sample()
    assert reads == ["counters", "memory", "memory", "memory", "counters"]
    assert s.mem_n.tolist() == [2.0, 5.0] and s.mem_sum.tolist() == [2 * MIB, 11 * MIB]


def test_a_frame_of_a_per_container_backend_is_aligned_to_the_names():
    class PerContainer:
        def read_counters_many(self, names):
            return {"b": UsageCounters(cpu_ns=7, mem_bytes=MIB, t=1.0)}

    f = read_frame(PerContainer(), ("a", "b"))  # type: ignore[arg-type]
    assert f.names == ("a", "b") and math.isnan(f.cpu_ns[0]) and f.cpu_ns[1] == 7


# --------------------------------------------------------------------------- pushing


class Guardian:
    """A stand-in Guardian: each `on_windows` call waits until the test releases it."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.release = asyncio.Event()
        self.on_windows = self

    def remote(self, windows: list[HostWindow]):
        self.calls.append([w.host for w in windows])

        async def answer() -> float:
            await self.release.wait()
            return 1.0

        return answer()


def agent(guardians: dict[str, Guardian]) -> ContainerScaler:
    """A ContainerScaler without its loop or Ray: just its push, each host to its Guardian."""
    cs = ContainerScaler.__new__(ContainerScaler)
    cs.host = "agent"
    cs.windows_pushed = cs.lagged_windows = 0
    cs._outboxes = {}
    cs._guardian_for = lambda host: guardians[host]  # type: ignore[method-assign]
    from sc_actors.settings import ContainerScalerSettings

    cs.settings = ContainerScalerSettings(window_s=1.0)
    return cs


def win(host: str, end: float) -> HostWindow:
    return HostWindow.of(host, end - 1, end, ["c"], [1.0], [1.0])


def test_one_call_per_guardian_each_with_its_hosts_windows():
    async def go() -> None:
        g1, g2 = Guardian(), Guardian()
        cs = agent({"h1": g1, "h2": g1, "h3": g2})
        cs._post([win("h1", 1), win("h2", 1), win("h3", 1)])
        await asyncio.sleep(0)  # let the pushes start
        assert g1.calls == [["h1", "h2"]] and g2.calls == [["h3"]]
        g1.release.set()
        g2.release.set()
        await asyncio.gather(*(b.pusher for b in cs._outboxes.values() if b.pusher))
        assert cs.windows_pushed == 3 and cs.lagged_windows == 0

    asyncio.run(go())


def test_a_busy_guardian_gets_the_newest_window_of_each_host_and_the_replaced_ones_are_counted():
    async def go() -> None:
        g = Guardian()
        cs = agent({"h1": g, "h2": g, "h3": g})
        cs._post([win("h1", 1), win("h2", 1)])
        await asyncio.sleep(0)
        cs._post([win("h1", 2), win("h2", 2)])  # the first push is still in flight: these wait
        cs._post([win("h1", 3), win("h3", 3)])  # h1's second window is replaced
        assert cs.lagged_windows == 1
        g.release.set()
        await asyncio.gather(*(b.pusher for b in cs._outboxes.values() if b.pusher))
        assert g.calls == [["h1", "h2"], ["h1", "h2", "h3"]]
        assert cs.windows_pushed == 5

    asyncio.run(go())
