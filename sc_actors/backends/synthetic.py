"""A host of simulated containers, for the scale benchmark only.

Limits live in memory and go through the same checks as the cgroup backends;
usage is a seeded random walk with bursts, throttled by the CPU limit as the
kernel would (a container never uses more CPU than its quota). It lets one
machine simulate 10 000 containers on ~100 hosts and measure the control plane,
not the kernel. Never chosen by "auto".

Vectorised: the state of every container of the host is one array per variable
(demand, burst end, counters, memory, CPU limit), and advancing the host to now is
a few array operations whatever its size, so a node agent simulating many hosts
costs in proportion to their containers. One clock per host: a write advances the
whole host to now (the usage so far ran under the old limit), then changes the limit.
The memory walk has its own clock, so a sample of memory alone advances only that.

The statistics, per container (`demand_noise`, `phase_s`, `burst_probability_per_s`):
- its demand holds a level through a phase, then jumps to a new one: phases end at random
  (exponential, mean `phase_s`, 60 s by default: a job's stage, a batch of invocations), and a
  new level is the container's own base level × e^N(0, 0.5), within [2, 180] shares;
- within a phase it jitters around the level: relative noise of σ `demand_noise` (3 %), correlated
  over about JITTER_TAU_S (an Ornstein–Uhlenbeck process, so its size does not depend on how often
  the host is advanced);
- a burst starts with probability `burst_probability_per_s` per second and lasts 5–30 s, during
  which the container wants 100–180 shares (redrawn every 0.2 s, `BURST_STEP_S`, whatever the
  step of an advance: a window sees the same burst whether the host was advanced 5 times or once);
- what it uses is the demand capped by its quota, the excess counts as throttled (CFS periods of
  100 ms and held-back time); memory walks with σ = 4 MiB/√s within [32, `mem_cap`] MiB.
This replaced a free walk of the demand (σ 8 shares/√s): it made a container's demand move by a
quarter of its level every second, and the adaptive profile fit it every ~3 s (0.37 decisions per
container per second), 3–5× what `sc bench efficiency` sees on real phased loads.
"""
from __future__ import annotations

import math
import time
import zlib
from dataclasses import dataclass
from typing import Callable, Iterable

import numpy as np

from ..model import Bounds, ContainerLimits, LimitChange, check_name
from ..units import BYTES_PER_MIB, NS_PER_S, SHARES_PER_CORE
from .base import ContainerNotFound, UsageCounters, check_change, check_cpu_num
from .frames import CounterFrame

PERIOD_S = 0.1
"""The CFS period the simulated quota is enforced over, seconds."""
DEMAND_RANGE = (2.0, 180.0)
DEMAND_NOISE = 0.03
"""σ of the demand's jitter around its phase's level, relative."""
PHASE_S = 60.0
"""Mean length of a demand phase, seconds (0: one phase for ever)."""
LEVEL_SPREAD = 0.5
"""σ of log(level / base) of a new phase."""
JITTER_TAU_S = 5.0
"""How long the jitter stays correlated, seconds."""
WRITE_ADVANCE_S = 0.01
"""A write advances the host first only if it last advanced longer ago than this, seconds:
a batch of writes to one host then costs one advance, not one per container."""
BURST_WANT = (100.0, 180.0)
BURST_S = (5.0, 30.0)
BURST_STEP_S = 0.2
"""A burst's want is redrawn this often, seconds, whatever the step of an advance."""
MEM_FLOOR_MIB = 32.0
MEM_CAP_MIB = 2048.0
MEM_STEP = 4.0
"""σ of the memory's walk, MiB per √s."""

_STATE = ("demand", "base", "level", "jitter", "burst_from", "burst_until", "cpu_ns", "mem_mib", "mem_cap", "periods", "throttled", "throttled_ns",
          "limit")


@dataclass(frozen=True)
class SimulatedContainer:
    """One container of a simulated host, with the limits it starts with."""

    name: str
    cpu: float
    """CPU limit (current), shares."""
    cpu_num: str
    """Its cores, as a cpuset list."""
    mem: float
    """Memory limit (current), MiB."""
    demand: float
    """CPU it wants at first, shares."""
    mem_use: float
    """Memory it uses at first, MiB."""
    mem_cap: float = MEM_CAP_MIB
    """The most memory its walk reaches, MiB."""


@dataclass(frozen=True)
class SimulatedHost:
    """A host a synthetic node agent simulates: its size and its containers."""

    name: str
    cores: int
    mem_mib: int
    containers: tuple[SimulatedContainer, ...] = ()
    demand_noise: float = DEMAND_NOISE
    """σ of its containers' jitter around their level, relative."""
    phase_s: float = PHASE_S
    """Mean length of its containers' demand phases, seconds (0: no phases)."""
    burst_probability_per_s: float = 0.01
    """How likely a container starts a burst in a second."""


class SyntheticBackend:
    kind = "synthetic"

    def __init__(self, seed: str = "sim", cores: int = 64, mem_mib: int = 262_144,
                 burst_probability_per_s: float = 0.01, clock: Callable[[], float] = time.monotonic,
                 demand_noise: float = DEMAND_NOISE, phase_s: float = PHASE_S):
        self.seed = seed
        self.demand_noise = demand_noise
        self.phase_s = phase_s
        self.clock = clock
        """Where the simulation reads the time (tests pass their own)."""
        self.cores = cores
        self.mem_mib = mem_mib
        self.burst_p = burst_probability_per_s
        self._rng = np.random.default_rng(zlib.crc32(seed.encode()))
        self._names: list[str] = []
        self._index: dict[str, int] = {}
        self._limits: list[ContainerLimits] = []
        self._state: dict[str, np.ndarray] = {k: np.zeros(0) for k in _STATE}
        self._t = clock()
        self._t_mem = self._t
        """The memory walk's own clock: a memory-only sample (`read_memory_frame`) advances just that."""

    # ------------------------------------------------------------------ inventory

    def list_containers(self) -> list[str]:
        return list(self._names)

    def __len__(self) -> int:
        return len(self._names)

    def create(self, name: str, cpu_num: str | None = None, demand: float | None = None,
               mem_use: float = 100.0, mem_cap: float = MEM_CAP_MIB) -> None:
        """A container with no limit (or `cpu_num`'s cores), wanting `demand` shares
        (drawn in 5–60 when None) and using `mem_use` MiB."""
        check_name(name)
        if name in self._index:
            return
        self._advance(self.clock())  # the others' usage so far, before the arrays grow
        if demand is None:
            demand = float(self._rng.uniform(5, 60))
        row = {"demand": demand, "base": demand, "level": demand, "jitter": 0.0, "burst_from": 0.0, "burst_until": 0.0, "cpu_ns": 0.0, "mem_mib": mem_use,
               "mem_cap": mem_cap,
               "periods": 0.0, "throttled": 0.0, "throttled_ns": 0.0, "limit": math.inf}
        limits = ContainerLimits(cpu_num=cpu_num or "0")
        self._index[name] = len(self._names)
        self._names.append(name)
        self._limits.append(limits)
        for k in _STATE:
            self._state[k] = np.append(self._state[k], row[k])
        self._state["limit"][-1] = _cpu_cap(limits)

    def attach(self, name: str, pid: int) -> None:
        self._i(name)

    def remove(self, name: str) -> None:
        i = self._index.get(name)
        if i is None:
            return
        self._advance(self.clock())
        del self._names[i]
        del self._limits[i]
        for k in _STATE:
            self._state[k] = np.delete(self._state[k], i)
        self._index = {n: j for j, n in enumerate(self._names)}

    # ------------------------------------------------------------------ limits

    def read_limits(self, name: str) -> ContainerLimits:
        return self._limits[self._i(name)].model_copy()

    def write_limits(self, name: str, change: LimitChange, bounds: Bounds | None = None) -> ContainerLimits:
        i = self._i(name)
        check_change(change, bounds, range(self.cores))
        update = change.model_dump(exclude_none=True)
        if "cpu_num" in update:
            update["cpu_num"] = check_cpu_num(update["cpu_num"], range(self.cores))
        # Usage so far ran under the old limit; a write within WRITE_ADVANCE_S of the host's last
        # advance (the next write of the same batch) credits that sliver to the new one.
        self._advance(self.clock(), WRITE_ADVANCE_S)
        limits = self._limits[i] = self._limits[i].model_copy(update=update)
        self._state["limit"][i] = _cpu_cap(limits)
        return limits.model_copy()

    # ------------------------------------------------------------------ usage

    def read_frame(self) -> CounterFrame:
        """Every container's counters now, in `list_containers` order."""
        now = self.clock()
        self._advance(now)
        s = self._state
        return CounterFrame(tuple(self._names), np.full(len(self._names), now), s["cpu_ns"].copy(),
                            s["mem_mib"] * BYTES_PER_MIB, s["periods"].copy(), s["throttled"].copy(),
                            s["throttled_ns"].copy())

    def read_memory_frame(self, names: tuple[str, ...]) -> np.ndarray:
        """The memory use of `names` now, bytes (NaN for one not here): the walk of memory
        alone advanced, as a mid-window sample needs (`container_scaler._Sampling`)."""
        self._advance_memory(self.clock())
        index = [self._index.get(n, -1) for n in names]
        return np.append(self._state["mem_mib"] * BYTES_PER_MIB, np.nan)[index]  # -1 picks the NaN

    def read_memory_many(self, names: Iterable[str]) -> dict[str, int]:
        names = tuple(names)
        mem = self.read_memory_frame(names)
        return {n: int(m) for n, m in zip(names, mem) if not math.isnan(m)}

    def read_counters(self, name: str) -> UsageCounters:
        self._i(name)
        c = self.read_frame().counters(name)
        assert c is not None  # the name is there: _i said so
        return c

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        frame = self.read_frame()
        out = {}
        for n in names:
            i = self._index.get(n)
            c = None if i is None else frame.counters_at(i)
            if c is not None:
                out[n] = c
        return out

    def _advance(self, now: float, at_least: float = 0.0) -> None:
        """Every container's usage from the host's last advance to `now` (not before
        `at_least` seconds have passed)."""
        dt = now - self._t
        n = len(self._names)
        if dt <= at_least:
            return
        self._t = now
        self._advance_memory(now)
        if n == 0:
            return
        s, rng = self._state, self._rng
        # Phases of a level, jitter around it, and occasional bursts of 1–1.8 cores.
        if self.phase_s > 0:
            ends = rng.random(n) < -math.expm1(-dt / self.phase_s)
            if ends.any():
                drawn = s["base"] * np.exp(rng.normal(0.0, LEVEL_SPREAD, n))
                s["level"] = np.where(ends, np.clip(drawn, *DEMAND_RANGE), s["level"])
        if self.demand_noise > 0:
            keep = math.exp(-dt / JITTER_TAU_S)
            s["jitter"] = s["jitter"] * keep + rng.normal(0.0, self.demand_noise * math.sqrt(1 - keep * keep), n)
        s["demand"] = np.clip(s["level"] * (1.0 + s["jitter"]), *DEMAND_RANGE)
        # A burst starts at a uniform moment of the interval; its want is redrawn every BURST_STEP_S,
        # so what a window sees of it does not depend on how often the host is advanced.
        start = now - dt
        starts = (start >= s["burst_until"]) & (rng.random(n) < self.burst_p * dt)
        if starts.any():
            begin = start + dt * rng.random(n)
            s["burst_from"] = np.where(starts, begin, s["burst_from"])
            s["burst_until"] = np.where(starts, begin + rng.uniform(*BURST_S, n), s["burst_until"])
        limit = s["limit"]
        capped = np.isfinite(limit)
        if (s["burst_until"] > start).any():
            k = max(1, round(dt / BURST_STEP_S))
            step = dt / k
            t = start + step * np.arange(1, k + 1)[:, None]  # (k, 1): the end of each step
            bursting = (t > s["burst_from"]) & (t <= s["burst_until"])
            want = np.where(bursting, np.maximum(s["demand"], rng.uniform(*BURST_WANT, (k, n))), s["demand"])
        else:
            k, step, want = 1, dt, s["demand"][None, :]
        over = np.where(capped, want - limit, 0.0)
        s["periods"] += np.where(capped, dt / PERIOD_S, 0.0)
        s["throttled"] += (over > 0).sum(axis=0) * (step / PERIOD_S)
        s["throttled_ns"] += np.maximum(over, 0.0).sum(axis=0) / SHARES_PER_CORE * step * NS_PER_S
        s["cpu_ns"] += np.minimum(want, limit).sum(axis=0) / SHARES_PER_CORE * step * NS_PER_S

    def _advance_memory(self, now: float) -> None:
        """The memory walk from its last advance to `now` (its steps are independent of the CPU's)."""
        dt = now - self._t_mem
        if dt <= 0:
            return
        self._t_mem = now
        n = len(self._names)
        if n:
            s = self._state
            s["mem_mib"] = np.clip(s["mem_mib"] + self._rng.normal(0.0, MEM_STEP * math.sqrt(dt), n), MEM_FLOOR_MIB,
                                   s["mem_cap"])

    # ------------------------------------------------------------------ host

    def host_cores(self) -> int:
        return self.cores

    def host_mem_mib(self) -> int:
        return self.mem_mib

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        return {"0": {str(i): [i] for i in range(self.cores)}}

    def _i(self, name: str) -> int:
        try:
            return self._index[name]
        except KeyError:
            raise ContainerNotFound(f"container {name!r} not found on this node") from None


def _cpu_cap(limits: ContainerLimits) -> float:
    """The CPU a container may use, shares (inf when unlimited, as -1 or 0 were before)."""
    cap = limits.effective_cpu_limit
    return math.inf if cap in (-1, 0) else float(cap)


def simulated_backend(host: SimulatedHost, clock: Callable[[], float] = time.monotonic) -> SyntheticBackend:
    """A backend for one simulated host, its containers created with their first limits."""
    b = SyntheticBackend(seed=host.name, cores=host.cores, mem_mib=host.mem_mib,
                         burst_probability_per_s=host.burst_probability_per_s, clock=clock,
                         demand_noise=host.demand_noise, phase_s=host.phase_s)
    for c in host.containers:
        b.create(c.name, demand=c.demand, mem_use=c.mem_use, mem_cap=c.mem_cap)
        b.write_limits(c.name, LimitChange(cpu_allowance_limit=c.cpu, cpu_num=c.cpu_num, mem_limit=c.mem))
    return b
