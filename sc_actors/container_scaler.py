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
from typing import Mapping, Optional, Union, cast

from typing_extensions import TypedDict

from .backends import make_backend
from .backends.base import ContainerBackend, UsageCounters
from .errors import Unavailable
from .handles import Handles
from .model import Applied, Bounds, ContainerLimits, ContainerUsage, HostInfo, JsonObject, LimitChange, UsageBatch
from .settings import GUARDIAN_NAME, ContainerScalerSettings
from .units import bytes_to_mib, cpu_ns_to_shares

log = logging.getLogger(__name__)


PUSH_TIMEOUT_S = 30.0
"""How long a push waits for the Guardian before the node gives up on that window."""

ChangeFields = Mapping[str, Union[float, str, None]]
"""A `LimitChange` as its fields (the benchmarks and tests call `apply` with them)."""
BoundsFields = Mapping[str, tuple[float, float]]
"""`Bounds` as its fields."""


class HostInfoFields(TypedDict):
    """`ContainerScaler.host_info`: a `HostInfo`'s fields (the Membership validates them again)."""

    name: str
    cores: int
    mem_mib: int
    topology: dict[str, dict[str, list[int]]]
    node_id: str
    backend: str


class NodeStatus(TypedDict):
    """`ContainerScaler.ping`: the node's host, backend and its pushes so far."""

    host: str
    backend: str
    windows_pushed: int
    lagged_windows: int


class ContainerScaler:
    def __init__(self, host: str, settings: Optional[JsonObject] = None):
        self.host = host
        self.settings = ContainerScalerSettings.model_validate(settings or {})
        self.backend: ContainerBackend
        if self.settings.backend == "synthetic":
            from .backends.synthetic import SyntheticBackend

            cores = self.settings.synthetic_cores
            self.backend = SyntheticBackend(seed=self.settings.parent, cores=cores, mem_mib=cores * 4096)
        else:
            self.backend = make_backend(self.settings.backend, self.settings.cgroup_root, self.settings.parent,
                                        self.settings.cpu_burst_percent)
        self._handles = Handles()
        self._stop = asyncio.Event()
        self._last_push_ok = 0.0
        self.windows_pushed = 0
        self.lagged_windows = 0
        """Windows replaced by a newer one while the Guardian was still busy (never evaluated)."""
        self._next_batch: UsageBatch | None = None
        self._pusher: asyncio.Task[None] | None = None
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ queries

    async def ping(self) -> NodeStatus:
        return {"host": self.host, "backend": self.backend.kind, "windows_pushed": self.windows_pushed,
                "lagged_windows": self.lagged_windows}

    async def host_info(self) -> HostInfoFields:
        import ray

        return cast(HostInfoFields, HostInfo(
            name=self.host,
            cores=self.backend.host_cores(),
            mem_mib=self.backend.host_mem_mib(),
            topology={str(k): {str(c): v for c, v in cores.items()} for k, cores in self.backend.cpu_topology().items()},
            node_id=ray.get_runtime_context().get_node_id(),
            backend=self.backend.kind,
        ).model_dump())

    async def list_containers(self) -> list[str]:
        return self.backend.list_containers()

    async def read_limits(self, name: str) -> ContainerLimits:
        return self.backend.read_limits(name)

    async def read_all(self) -> dict[str, ContainerLimits]:
        """The limits of every container of the node, as its cgroup files hold them."""
        out = {}
        for name in self.backend.list_containers():
            try:
                out[name] = self.backend.read_limits(name)
            except KeyError:
                continue  # removed meanwhile
        return out

    # ------------------------------------------------------------------ writes

    async def apply(self, name: str, change: Union[LimitChange, ChangeFields],
                    bounds: Union[Bounds, BoundsFields, None] = None) -> Applied:
        """Write limits and read them back; raises (LimitRefused, ContainerNotFound) instead of
        clamping, so a refused write never returns (`apply_many` returns it as not `ok`)."""
        limits = self.backend.write_limits(
            name, LimitChange.model_validate(change), Bounds.model_validate(bounds) if bounds else None
        )
        return Applied(name=name, ok=True, limits=limits)

    async def apply_many(
        self, items: list[tuple[str, Union[LimitChange, ChangeFields], Union[Bounds, BoundsFields, None]]]
    ) -> list[Applied]:
        """`apply` for several containers in order; what became of each, in order.

        A refused write does not stop the others: the Scaler decides what to put back.
        """
        results = []
        for name, change, bounds in items:
            try:
                results.append(await self.apply(name, change, bounds))
            except Exception as e:
                results.append(Applied(name=name, ok=False, error=str(e) or type(e).__name__))
        return results

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
        prev: dict[str, UsageCounters] = {}
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

    async def _one_window(
        self, prev: dict[str, UsageCounters], t_start: float
    ) -> tuple[dict[str, UsageCounters], UsageBatch | None]:
        s = self.settings
        names = self.backend.list_containers()
        if not names:
            # NOTE: a node without containers wakes once a window, not once a sample
            # (issue 16, idle cost): there is nothing to read, and a container that
            # appears is picked up at the next window's start, as it is when sampling.
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=s.window_s)
            except asyncio.TimeoutError:
                pass
            return {}, None
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
        try:
            # Sampling goes on meanwhile (see _loop); the bound only gets the node past a hung Guardian.
            window_s = await asyncio.wait_for(self._handles.guardian.on_usage.remote(batch), timeout=PUSH_TIMEOUT_S)
            self.windows_pushed += 1
            # The node's window follows the Guardian's WINDOW_TIMELAPSE.
            if isinstance(window_s, (int, float)) and window_s > 0 and window_s != self.settings.window_s:
                self.settings = self.settings.model_copy(update={"window_s": float(window_s)})
        except Unavailable:
            self._handles.forget(GUARDIAN_NAME)  # not deployed yet, or gone: looked up again next window
        except asyncio.TimeoutError:
            log.warning("guardian did not take %s's window in %g s", self.host, PUSH_TIMEOUT_S)
        except Exception:
            log.exception("push to guardian failed")
            self._handles.forget(GUARDIAN_NAME)
