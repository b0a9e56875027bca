"""A node of simulated containers, for the scale benchmark only.

Limits live in memory and go through the same checks as the cgroup backends;
usage is a seeded random walk with bursts, throttled by the CPU limit as the
kernel would (a container never uses more CPU than its quota). It lets one
machine simulate 10 000 containers over a few Ray nodes and measure the control
plane, not the kernel. Never chosen by "auto".
"""
from __future__ import annotations

import random
import time
import zlib
from dataclasses import dataclass, field
from typing import Iterable

from ..model import Bounds, ContainerLimits, LimitChange, check_name
from .base import ContainerNotFound, UsageCounters, check_change, check_cpu_num


@dataclass
class _Sim:
    limits: ContainerLimits
    rng: random.Random
    demand: float = 20.0
    """Wanted CPU, shares."""
    burst_until: float = 0.0
    cpu_ns: float = 0.0
    mem_mib: float = 100.0
    t: float = field(default_factory=time.monotonic)
    periods: float = 0.0
    """CFS periods (100 ms) elapsed under a quota, those in which the demand exceeded it,
    and the CPU time the quota held back (ns)."""
    throttled: float = 0.0
    throttled_ns: float = 0.0


def _counters(sim: _Sim, now: float) -> UsageCounters:
    return UsageCounters(cpu_ns=int(sim.cpu_ns), mem_bytes=int(sim.mem_mib * 1_048_576), t=now,
                         periods=int(sim.periods), throttled_periods=int(sim.throttled),
                         throttled_ns=int(sim.throttled_ns))


class SyntheticBackend:
    kind = "synthetic"

    def __init__(self, seed: str = "sim", cores: int = 64, mem_mib: int = 262_144,
                 burst_probability_per_s: float = 0.01):
        self.seed = seed
        self.cores = cores
        self.mem_mib = mem_mib
        self.burst_p = burst_probability_per_s
        self._sims: dict[str, _Sim] = {}

    # ------------------------------------------------------------------ inventory

    def list_containers(self) -> list[str]:
        return list(self._sims)

    def create(self, name: str, cpu_num: str | None = None) -> None:
        check_name(name)
        if name not in self._sims:
            rng = random.Random(zlib.crc32(f"{self.seed}/{name}".encode()))
            self._sims[name] = _Sim(ContainerLimits(cpu_num=cpu_num or "0"), rng, demand=rng.uniform(5, 60))

    def attach(self, name: str, pid: int) -> None:
        self._get(name)

    def remove(self, name: str) -> None:
        self._sims.pop(name, None)

    # ------------------------------------------------------------------ limits

    def read_limits(self, name: str) -> ContainerLimits:
        return self._get(name).limits.model_copy()

    def write_limits(self, name: str, change: LimitChange, bounds: Bounds | None = None) -> ContainerLimits:
        sim = self._get(name)
        check_change(change, bounds, range(self.cores))
        update = change.model_dump(exclude_none=True)
        if "cpu_num" in update:
            update["cpu_num"] = check_cpu_num(update["cpu_num"], range(self.cores))
        self._advance(sim, time.monotonic())  # usage so far ran under the old limit
        sim.limits = sim.limits.model_copy(update=update)
        return sim.limits.model_copy()

    # ------------------------------------------------------------------ usage

    def read_counters(self, name: str) -> UsageCounters:
        sim = self._get(name)
        now = time.monotonic()
        self._advance(sim, now)
        return _counters(sim, now)

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        now = time.monotonic()
        out = {}
        for n in names:
            sim = self._sims.get(n)
            if sim is None:
                continue
            self._advance(sim, now)
            out[n] = _counters(sim, now)
        return out

    def _advance(self, sim: _Sim, now: float) -> None:
        dt = now - sim.t
        if dt <= 0:
            return
        rng = sim.rng
        # Random walk of the demand, with occasional bursts of 1–1.8 cores.
        sim.demand = min(max(sim.demand + rng.gauss(0, 8) * dt ** 0.5, 2.0), 180.0)
        if now >= sim.burst_until and rng.random() < self.burst_p * dt:
            sim.burst_until = now + rng.uniform(5, 30)
        want = max(sim.demand, rng.uniform(100, 180)) if now < sim.burst_until else sim.demand
        limit = sim.limits.effective_cpu_limit
        used = want if limit in (-1, 0) else min(want, limit)
        if limit not in (-1, 0):
            sim.periods += dt / 0.1
            sim.throttled += dt / 0.1 if want > limit else 0.0
            sim.throttled_ns += max(want - limit, 0.0) / 100.0 * dt * 1e9
        sim.cpu_ns += used / 100.0 * dt * 1e9
        sim.mem_mib = min(max(sim.mem_mib + rng.gauss(0, 4) * dt ** 0.5, 32.0), 2048.0)
        sim.t = now

    # ------------------------------------------------------------------ host

    def host_cores(self) -> int:
        return self.cores

    def host_mem_mib(self) -> int:
        return self.mem_mib

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        return {"0": {str(i): [i] for i in range(self.cores)}}

    def _get(self, name: str) -> _Sim:
        try:
            return self._sims[name]
        except KeyError:
            raise ContainerNotFound(f"container {name!r} not found on this node") from None
