"""ContainerScaler: one per Ray node, the only code that touches cgroups on it.

It writes limits the Scaler planned (refusing any write outside [min, max] or
below 64 MiB), reads them back for the StructuresSnapshoter, and samples usage:
CPU from the cumulative counter at each window edge (exact average), memory every
`sample_period_s`. At the end of each window it pushes one `HostWindow` (columns)
per host it serves to that host's Guardian, all of one Guardian's in one
`on_windows` call: push, not poll (ARCHITECTURE "Principles").

A node agent serves its own host and, on a synthetic node (the scale benchmark),
the simulated hosts `simulate_hosts` gave it: each with its own backend, containers
and window, reached by the Scaler through the host document's `agent`
(`Handles.node`). Every per-container call finds its container's host by name.
"""
from __future__ import annotations

import asyncio
import logging
import time
from dataclasses import dataclass, field
from itertools import compress
from typing import TYPE_CHECKING, Mapping, Optional, Union, cast

from typing_extensions import TypedDict

from .backends import make_backend
from .backends.base import ContainerBackend
from .collector import relax_collector
from .errors import Conflict, Invalid, Unavailable
from .handles import ActorHandle, Handles
from .model import Applied, Bounds, ContainerLimits, HostInfo, JsonObject, LimitChange, Written
from .settings import GUARDIAN_NAME, ContainerScalerSettings
from .units import BYTES_PER_MIB, NS_PER_S, SHARES_PER_CORE

if TYPE_CHECKING:
    import numpy as np

    from .backends.frames import CounterFrame
    from .backends.synthetic import SimulatedHost
    from .columns import HostWindow

# NOTE: numpy (and the column modules built on it) are imported by the functions that use
# them, first when a window has containers: a node without containers never loads them
# (issue 16, idle cost: about 5 MB of the ContainerScaler's memory).

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
    """`ContainerScaler.ping`: the node's host, backend, the hosts it serves and its pushes so far
    (counted in host windows)."""

    host: str
    backend: str
    hosts: int
    windows_pushed: int
    lagged_windows: int


# --------------------------------------------------------------------------- windows as columns


def host_window(host: str, window_start: float, window_end: float, start: CounterFrame, end: CounterFrame,
                mem_sum: np.ndarray, mem_n: np.ndarray) -> HostWindow:
    """The window of one host from its counters at both edges and its memory samples.

    `start` and `end` hold the same names in the same order (NaN where a read lacked
    a container); `mem_sum`/`mem_n` the sum and count of its memory samples (bytes),
    `end` included. A container missing at either edge is left out. CPU is the exact
    average over [start.t, end.t] in shares; throttled, the share of CFS periods that
    ran out of quota (0..1); held back, the runnable time the quota held back, in shares.
    """
    import numpy as np

    from .columns import HostWindow

    ok = ~(np.isnan(start.cpu_ns) | np.isnan(end.cpu_ns))
    with np.errstate(divide="ignore", invalid="ignore"):
        elapsed = end.t - start.t
        per_s = np.where(elapsed > 0, SHARES_PER_CORE / NS_PER_S / elapsed, 0.0)
        cpu = np.maximum((end.cpu_ns - start.cpu_ns) * per_s, 0.0)
        held = np.maximum((end.throttled_ns - start.throttled_ns) * per_s, 0.0)
        periods = end.periods - start.periods
        throttled = np.where(periods > 0, np.clip((end.throttled_periods - start.throttled_periods) / periods,
                                                  0.0, 1.0), 0.0)
        mem = np.where(mem_n > 0, mem_sum / mem_n, 0.0) / BYTES_PER_MIB
    if not ok.all():
        names: tuple[str, ...] = tuple(compress(end.names, ok))
        cpu, mem, throttled, held = cpu[ok], mem[ok], throttled[ok], held[ok]
    else:
        names = end.names
    return HostWindow.of(host, window_start, window_end, names, np.round(cpu, 3), np.round(mem, 3),
                         np.round(throttled, 3), np.round(held, 3))


def read_frame(backend: ContainerBackend, names: tuple[str, ...]) -> CounterFrame:
    """The counters of `names` on `backend`, in that order (NaN for one gone meanwhile):
    one array read where the backend has one (synthetic), else its per-container reads."""
    from .backends.frames import CounterFrame

    read = getattr(backend, "read_frame", None)
    if read is not None:
        frame: CounterFrame = read()
        return frame.take(names)
    return CounterFrame.of(backend.read_counters_many(names), names)


def read_memory(backend: ContainerBackend, names: tuple[str, ...]) -> np.ndarray:
    """The memory use of `names` on `backend`, bytes, in that order (NaN for one gone meanwhile):
    one array read where the backend has one (synthetic), else its per-container reads."""
    import numpy as np

    read = getattr(backend, "read_memory_frame", None)
    if read is not None:
        return cast("np.ndarray", read(names))
    got = backend.read_memory_many(names)
    return np.array([got.get(n, np.nan) for n in names], dtype=float)


@dataclass
class _Sampling:
    """One host's window being sampled: its containers, counters at the start, memory so far."""

    backend: ContainerBackend
    names: tuple[str, ...]
    start: CounterFrame
    mem_sum: np.ndarray
    mem_n: np.ndarray

    @classmethod
    def begin(cls, backend: ContainerBackend, names: tuple[str, ...], prev: CounterFrame | None) -> "_Sampling":
        import numpy as np

        first = read_frame(backend, names)
        # The window starts where the last one ended (no CPU lost between windows).
        start = first if prev is None else prev.take(names).or_else(first)
        s = cls(backend, names, start, np.zeros(len(names)), np.zeros(len(names)))
        s.add(first)
        return s

    def add(self, frame: CounterFrame) -> None:
        self._add_memory(frame.mem_bytes)

    def _add_memory(self, mem_bytes: np.ndarray) -> None:
        import numpy as np

        have = ~np.isnan(mem_bytes)
        self.mem_sum += np.where(have, mem_bytes, 0.0)
        self.mem_n += have

    def sample_memory(self) -> None:
        """A sample within the window: memory only (the CPU's counters count on their own)."""
        self._add_memory(read_memory(self.backend, self.names))

    def sample(self) -> CounterFrame:
        """The window's last sample: every counter."""
        frame = read_frame(self.backend, self.names)
        self.add(frame)
        return frame


@dataclass
class _Outbox:
    """The windows waiting for one Guardian: at most one push in flight, the newest window of each host waits."""

    guardian: ActorHandle
    waiting: dict[str, HostWindow] = field(default_factory=dict)
    pusher: Optional[asyncio.Task[None]] = None


class ContainerScaler:
    def __init__(self, host: str, settings: Optional[JsonObject] = None):
        relax_collector()
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
        self._hosts: dict[str, ContainerBackend] = {host: self.backend}
        """Every host this agent serves, its own first, with its backend."""
        self._host_of: dict[str, str] = {}
        """The host of each container of a simulated host (the own host's are not listed)."""
        self._handles = Handles()
        self._stop = asyncio.Event()
        self.windows_pushed = 0
        """Host windows the Guardian took."""
        self.lagged_windows = 0
        """Host windows replaced by a newer one while the Guardian was still busy (never evaluated)."""
        self._outboxes: dict[int, _Outbox] = {}
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ hosts

    def _backend_of(self, host: Optional[str]) -> ContainerBackend:
        """The backend of a host this agent serves (None: its own); `Unavailable` for another."""
        if host is None:
            return self.backend
        b = self._hosts.get(host)
        if b is None:
            raise Unavailable(f"host {host!r} is not served by the ContainerScaler of {self.host!r}")
        return b

    def _backend_for(self, name: str) -> ContainerBackend:
        """The backend of the host that has container `name`."""
        host = self._host_of.get(name)
        return self.backend if host is None else self._hosts[host]

    def _guardian_for(self, host: str) -> ActorHandle:
        """The Guardian shard that evaluates `host`'s windows (`policy.shards.shard_of` of the
        count the StateDB holds, kept a few seconds: `sc_actors.shards.ShardCount`)."""
        from .shards import ShardCount

        shards: Optional[ShardCount] = getattr(self, "_shards", None)
        if shards is None:
            shards = self._shards = ShardCount(lambda: self._handles.statedb)
        return shards.guardian_for(host)

    async def simulate_hosts(self, hosts: list[SimulatedHost]) -> list[HostInfoFields]:
        """Serve these simulated hosts from now on (synthetic nodes, scale benchmark only);
        the host fields of each, to write its host document with `agent` = this host.

        Checked first, then done: a name already served (host or container) is a Conflict.
        """
        from .backends.synthetic import SyntheticBackend, simulated_backend

        if not isinstance(self.backend, SyntheticBackend):
            raise Invalid(f"host {self.host!r} is not a synthetic node: it cannot simulate hosts")
        seen_hosts: set[str] = set()
        seen_names: set[str] = set()
        for h in hosts:
            if h.name in self._hosts or h.name in seen_hosts:
                raise Conflict(f"host {h.name!r} is already served here")
            seen_hosts.add(h.name)
            for c in h.containers:
                if c.name in seen_names or c.name in self._host_of:
                    raise Conflict(f"container {c.name!r} is already served here")
                seen_names.add(c.name)
        out = []
        for h in hosts:
            self._hosts[h.name] = simulated_backend(h)
            self._host_of.update((c.name, h.name) for c in h.containers)
            out.append(self._host_info(h.name))
        return out

    # ------------------------------------------------------------------ queries

    async def ping(self) -> NodeStatus:
        return {"host": self.host, "backend": self.backend.kind, "hosts": len(self._hosts),
                "windows_pushed": self.windows_pushed, "lagged_windows": self.lagged_windows}

    async def host_info(self, host: Optional[str] = None) -> HostInfoFields:
        """The size of this node's host, or of a simulated host it serves."""
        self._backend_of(host)
        return self._host_info(host or self.host)

    def _host_info(self, host: str) -> HostInfoFields:
        import ray

        backend = self._hosts[host]
        return cast(HostInfoFields, HostInfo(
            name=host,
            cores=backend.host_cores(),
            mem_mib=backend.host_mem_mib(),
            topology={str(k): {str(c): v for c, v in cores.items()} for k, cores in backend.cpu_topology().items()},
            node_id=ray.get_runtime_context().get_node_id(),
            backend=backend.kind,
        ).model_dump())

    async def list_containers(self, host: Optional[str] = None) -> list[str]:
        """The containers of this node's host, or of a host it serves."""
        return self._backend_of(host).list_containers()

    async def read_limits(self, name: str) -> ContainerLimits:
        return self._backend_for(name).read_limits(name)

    async def read_all(self, host: Optional[str] = None) -> dict[str, ContainerLimits]:
        """The limits of every container of the node's host (or of a host it serves), as its
        cgroup files (its simulation) hold them."""
        backend = self._backend_of(host)
        out = {}
        for name in backend.list_containers():
            try:
                out[name] = backend.read_limits(name)
            except KeyError:
                continue  # removed meanwhile
        return out

    # ------------------------------------------------------------------ writes

    async def apply(self, name: str, change: Union[LimitChange, ChangeFields],
                    bounds: Union[Bounds, BoundsFields, None] = None) -> Applied:
        """Write limits and read them back; raises (LimitRefused, ContainerNotFound) instead of
        clamping, so a refused write never returns (`apply_many` returns it as not `ok`)."""
        return self._write(name, change, bounds)

    def _write(self, name: str, change: Union[LimitChange, ChangeFields],
               bounds: Union[Bounds, BoundsFields, None]) -> Applied:
        limits = self._backend_for(name).write_limits(
            name, LimitChange.model_validate(change), Bounds.model_validate(bounds) if bounds else None
        )
        return Applied(name=name, ok=True, limits=limits)

    async def apply_many(
        self, items: list[tuple[str, Union[LimitChange, ChangeFields], Union[Bounds, BoundsFields, None]]]
    ) -> list[Written]:
        """`apply` for several containers in order; what became of each, in order (without
        the limits read back: `apply` gives those).

        A refused write does not stop the others: the Scaler decides what to put back. The
        containers may be of several hosts this agent serves (each is found by its name).
        """
        results = []
        for name, change, bounds in items:
            try:
                self._write(name, change, bounds)
                results.append(Written(name, True))
            except Exception as e:
                results.append(Written(name, False, str(e) or type(e).__name__))
        return results

    async def create_container(self, name: str, cpu_num: str | None = None, host: Optional[str] = None) -> None:
        """A plain-cgroup container (demo, tests), on this node's host or a simulated one it
        serves; LXC containers exist on their own."""
        backend = self._backend_of(host)
        backend.create(name, cpu_num=cpu_num)
        if backend is not self.backend and host is not None:
            self._host_of[name] = host

    async def attach(self, name: str, pid: int) -> None:
        self._backend_for(name).attach(name, pid)

    async def remove_container(self, name: str) -> None:
        self._backend_for(name).remove(name)
        self._host_of.pop(name, None)

    # ------------------------------------------------------------------ usage windows

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    async def _loop(self) -> None:
        # NOTE: one failed window must never stop sampling.
        prev: dict[str, CounterFrame] = {}
        while not self._stop.is_set():
            t_start = time.time()
            try:
                prev, windows = await self._one_window(prev, t_start)
                if windows:
                    self._post(windows)
            except Exception:
                log.exception("usage window failed on %s", self.host)
                await asyncio.sleep(self.settings.window_s)

    async def _one_window(
        self, prev: dict[str, CounterFrame], t_start: float
    ) -> tuple[dict[str, CounterFrame], list[HostWindow]]:
        """Sample every served host with containers for one window; its last counters and windows."""
        s = self.settings
        listed = [(h, b, tuple(b.list_containers())) for h, b in self._hosts.items()]
        listed = [(h, b, names) for h, b, names in listed if names]
        if not listed:
            # NOTE: a node without containers wakes once a window, not once a sample
            # (issue 16, idle cost): there is nothing to read, and a container that
            # appears is picked up at the next window's start, as it is when sampling.
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=s.window_s)
            except asyncio.TimeoutError:
                pass
            return {}, []
        sampling = {h: _Sampling.begin(b, names, prev.get(h)) for h, b, names in listed}
        deadline = time.monotonic() + s.window_s
        while True:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                break
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=min(s.sample_period_s, remaining))
                return {}, []
            except asyncio.TimeoutError:
                pass
            if deadline - time.monotonic() <= 0.001:
                break
            for sm in sampling.values():
                sm.sample_memory()
        end = {h: sm.sample() for h, sm in sampling.items()}
        t_end = time.time()
        windows = [host_window(h, t_start, t_end, sm.start, end[h], sm.mem_sum, sm.mem_n)
                   for h, sm in sampling.items()]
        return end, [w for w in windows if len(w)]

    def _post(self, windows: list[HostWindow]) -> None:
        """Queue each window for its host's Guardian and start a push where none is in flight.

        Windows follow each other back to back; the push of one runs while the next is
        sampled. At most one push per Guardian is in flight: a host's window finished
        while its Guardian is still busy waits, and a newer one of that host replaces
        it (counted in `lagged_windows`; the Guardian never piles up windows).
        """
        for w in windows:
            try:
                guardian = self._guardian_for(w.host)
            except Unavailable:
                continue  # not deployed yet: looked up again next window
            box = self._outboxes.get(id(guardian))
            if box is None:
                box = self._outboxes[id(guardian)] = _Outbox(guardian)
            if w.host in box.waiting:
                self.lagged_windows += 1
            box.waiting[w.host] = w
        for key, box in list(self._outboxes.items()):
            if box.pusher is None or box.pusher.done():
                if box.waiting:
                    box.pusher = asyncio.get_running_loop().create_task(self._push_latest(box))
                else:
                    del self._outboxes[key]  # a Guardian handle no host uses any more

    async def _push_latest(self, box: _Outbox) -> None:
        while box.waiting:
            windows, box.waiting = list(box.waiting.values()), {}
            await self._push(box.guardian, windows)

    async def _push(self, guardian: ActorHandle, windows: list[HostWindow]) -> None:
        try:
            # Sampling goes on meanwhile (see _loop); the bound only gets the node past a hung Guardian.
            window_s = await asyncio.wait_for(guardian.on_windows.remote(windows), timeout=PUSH_TIMEOUT_S)
            self.windows_pushed += len(windows)
            # The node's window follows the Guardian's WINDOW_TIMELAPSE.
            if isinstance(window_s, (int, float)) and window_s > 0 and window_s != self.settings.window_s:
                self.settings = self.settings.model_copy(update={"window_s": float(window_s)})
        except Unavailable:
            self._handles.forget(GUARDIAN_NAME)  # not deployed yet, or gone: looked up again next window
        except asyncio.TimeoutError:
            log.warning("guardian did not take %d windows of %s in %g s", len(windows), self.host, PUSH_TIMEOUT_S)
        except Exception:
            log.exception("push to guardian failed")
            self._handles.forget(GUARDIAN_NAME)
