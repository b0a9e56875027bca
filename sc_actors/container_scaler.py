"""ContainerScaler: one per Ray node, the only code that touches cgroups on it.

It writes limits the Scaler planned (refusing any write outside [min, max] or
below 64 MiB), reads them back for the StructuresSnapshoter, and samples usage:
CPU from the cumulative counter at each window edge (exact average), memory every
`sample_period_s`. At the end of each window it pushes one `UsageBatch` with every
container of the node to the Guardian: push, not poll (ARCHITECTURE "Principles").
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Any

from .backends import make_backend
from .model import Bounds, ContainerUsage, HostInfo, LimitChange, UsageBatch
from .settings import GUARDIAN_NAME, NAMESPACE, ContainerScalerSettings
from .units import bytes_to_mib, cpu_ns_to_shares

log = logging.getLogger(__name__)


PUSH_TIMEOUT_S = 30.0
"""How long a push waits for the Guardian before the node gives up on that window."""


class ContainerScaler:
    def __init__(self, host: str, settings: dict[str, Any] | None = None):
        self.host = host
        self.settings = ContainerScalerSettings.model_validate(settings or {})
        if self.settings.backend == "synthetic":
            from .backends.synthetic import SyntheticBackend

            cores = self.settings.synthetic_cores
            self.backend = SyntheticBackend(seed=self.settings.parent, cores=cores, mem_mib=cores * 4096)
        else:
            self.backend = make_backend(self.settings.backend, self.settings.cgroup_root, self.settings.parent,
                                        self.settings.cpu_burst_percent)
        self._guardian = None
        self._stop = asyncio.Event()
        self._last_push_ok = 0.0
        self.windows_pushed = 0
        self.lagged_windows = 0
        """Windows replaced by a newer one while the Guardian was still busy (never evaluated)."""
        self._next_batch: UsageBatch | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ queries

    async def ping(self) -> dict[str, Any]:
        return {"host": self.host, "backend": self.backend.kind, "windows_pushed": self.windows_pushed,
                "lagged_windows": self.lagged_windows}

    async def host_info(self) -> dict[str, Any]:
        import ray

        return HostInfo(
            name=self.host,
            cores=self.backend.host_cores(),
            mem_mib=self.backend.host_mem_mib(),
            topology={str(k): {str(c): v for c, v in cores.items()} for k, cores in self.backend.cpu_topology().items()},
            node_id=ray.get_runtime_context().get_node_id(),
            backend=self.backend.kind,
        ).model_dump()

    async def list_containers(self) -> list[str]:
        return self.backend.list_containers()

    async def read_limits(self, name: str) -> dict[str, Any]:
        return self.backend.read_limits(name).model_dump()

    async def read_all(self) -> dict[str, dict[str, Any]]:
        out = {}
        for name in self.backend.list_containers():
            try:
                out[name] = self.backend.read_limits(name).model_dump()
            except KeyError:
                continue  # removed meanwhile
        return out

    # ------------------------------------------------------------------ writes

    async def apply(self, name: str, change: dict[str, Any], bounds: dict[str, Any] | None = None) -> dict[str, Any]:
        """Write limits; raises (LimitRefused, ContainerNotFound) instead of clamping."""
        limits = self.backend.write_limits(
            name, LimitChange.model_validate(change), Bounds.model_validate(bounds) if bounds else None
        )
        return limits.model_dump()

    async def apply_many(self, items: list[tuple[str, dict[str, Any], dict[str, Any] | None]]) -> list[str]:
        """`apply` for several containers in order; one error text per item, "" when written.

        A refused write does not stop the others: the Scaler decides what to put back.
        """
        errors = []
        for name, change, bounds in items:
            try:
                await self.apply(name, change, bounds)
                errors.append("")
            except Exception as e:
                errors.append(f"{name}: {e}" or type(e).__name__)
        return errors

    async def create_container(self, name: str, cpu_num: str | None = None) -> None:
        """A plain-cgroup container (demo, tests); LXC containers exist on their own."""
        self.backend.create(name, cpu_num=cpu_num)

    async def attach(self, name: str, pid: int) -> None:
        self.backend.attach(name, pid)

    async def remove_container(self, name: str) -> None:
        self.backend.remove(name)

    # ------------------------------------------------------------------ usage windows

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    async def _loop(self) -> None:
        # NOTE: one failed window must never stop sampling.
        prev = {}
        while not self._stop.is_set():
            t_start = time.time()
            try:
                prev, batch = await self._one_window(prev, t_start)
                if batch is not None and batch.usages:
                    # Windows follow each other back to back; the push of one runs
                    # while the next is sampled. At most one push is in flight: a
                    # window finished while the Guardian is still busy waits, and a
                    # newer one replaces it (the Guardian never piles up windows).
                    if self._next_batch is not None:
                        self.lagged_windows += 1
                    self._next_batch = batch
                    if self._pusher is None or self._pusher.done():
                        self._pusher = asyncio.get_running_loop().create_task(self._push_latest())
            except Exception:
                log.exception("usage window failed on %s", self.host)
                await asyncio.sleep(self.settings.window_s)

    async def _one_window(self, prev: dict[str, Any], t_start: float) -> tuple[dict[str, Any], UsageBatch | None]:
        s = self.settings
        names = self.backend.list_containers()
        first = self.backend.read_counters_many(names)
        start = {n: prev[n] if n in prev else c for n, c in first.items()}
        mem_sum = {n: float(c.mem_bytes) for n, c in first.items()}
        mem_n = {n: 1 for n in first}
        deadline = time.monotonic() + s.window_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=min(s.sample_period_s, remaining))
                return {}, None
            except asyncio.TimeoutError:
                pass
            if deadline - time.monotonic() <= 0.001:
                break
            for n, c in self.backend.read_counters_many(names).items():
                mem_sum[n] = mem_sum.get(n, 0.0) + c.mem_bytes
                mem_n[n] = mem_n.get(n, 0) + 1
        end = self.backend.read_counters_many(names)
        usages = {}
        for n, c in end.items():
            if n not in start:
                continue
            mem_sum[n] = mem_sum.get(n, 0.0) + c.mem_bytes
            mem_n[n] = mem_n.get(n, 0) + 1
            elapsed = c.t - start[n].t
            periods = c.periods - start[n].periods
            usages[n] = ContainerUsage(
                cpu=round(max(cpu_ns_to_shares(c.cpu_ns - start[n].cpu_ns, elapsed), 0.0), 3),
                mem=round(bytes_to_mib(mem_sum[n] / mem_n[n]), 3),
                cpu_throttled=round(min(max((c.throttled_periods - start[n].throttled_periods) / periods, 0.0), 1.0), 3)
                if periods > 0 else 0.0,
                cpu_held_back=round(max(cpu_ns_to_shares(c.throttled_ns - start[n].throttled_ns, elapsed), 0.0), 3),
            )
        return end, UsageBatch(host=self.host, window_start=t_start, window_end=time.time(), usages=usages)

    async def _push_latest(self) -> None:
        while self._next_batch is not None:
            batch, self._next_batch = self._next_batch, None
            await self._push(batch)

    async def _push(self, batch: UsageBatch) -> None:
        import ray

        try:
            if self._guardian is None:
                self._guardian = ray.get_actor(GUARDIAN_NAME, namespace=NAMESPACE)
            # Sampling goes on meanwhile (see _loop); the bound only gets the node past a hung Guardian.
            window_s = await asyncio.wait_for(
                self._guardian.on_usage.remote(batch.model_dump()), timeout=PUSH_TIMEOUT_S
            )
            self.windows_pushed += 1
            # The node's window follows the Guardian's WINDOW_TIMELAPSE.
            if isinstance(window_s, (int, float)) and window_s > 0 and window_s != self.settings.window_s:
                self.settings = self.settings.model_copy(update={"window_s": float(window_s)})
        except ValueError:
            self._guardian = None  # not deployed yet
        except asyncio.TimeoutError:
            log.warning("guardian did not take %s's window in %g s", self.host, PUSH_TIMEOUT_S)
        except Exception:
            log.exception("push to guardian failed")
            self._guardian = None
