"""The Membership actor: one ContainerScaler and one host structure per controlled Ray node.

Every `period_s` it observes (`ray.nodes()`, the StateDB's host structures, the
answers to its pings), asks the pure plan what to do (`policy/membership.py`, where
the rules are written down) and performs the actions, with no restart of the
control plane:

- a host with an alive node and no ready ContainerScaler gets one (pinned by the
  label, see cluster/placement.py) and a host structure (CPU = cores × 100 with its
  core map, memory MiB), or is matched to the structure of that name subscribed
  through the API; the time from the node's first sighting to that moment is
  `join_to_ready_s`;
- a host whose nodes are all dead, or whose ContainerScaler has not answered a ping
  for `silence_s`, is marked `reachable: False` in the StateDB with the reason; the
  Scaler then drops the requests of its containers with that reason, and every
  other host keeps scaling (the original let one dead NodeRescaler stop them all,
  reference §11.2);
- when a node with that label comes back, the label selector has already put the
  ContainerScaler on it again; once it answers from the new node the host is
  marked reachable and reconciliation resumes.

NOTE: the GCS notices a node that died without saying goodbye (a crash, a cut
cable) only after its health checks fail, about 15 s with Ray's defaults; the ping
makes that a few seconds here. A node that leaves cleanly is seen dead at once.

The actor does not know how a ContainerScaler is started: `cluster/placement.py`
hands it `start_container_scaler` (the actor options live there). Everything it
knows is rebuilt from `ray.nodes()` and the StateDB after a restart.
"""
from __future__ import annotations

import asyncio
import functools
import logging
import os
import time
from dataclasses import dataclass
from typing import Callable, TypedDict

import ray

from .handles import ActorHandle, Handles
from .loops import every
from .model import HostInfo
from .policy import membership as policy
from .policy.membership import Action, HostView, NodeDefaults, Observation
from .settings import HOST_LABEL
from .store.views import HostMark

log = logging.getLogger(__name__)

MEMBERSHIP_NAME = "membership"
"""Name of the Membership actor (in settings.NAMESPACE)."""

StartContainerScaler = Callable[[str, NodeDefaults], ActorHandle]
"""Starts (or finds) the ContainerScaler of a host with these settings: `placement.container_scaler_actor`."""


@dataclass
class MembershipSettings:
    period_s: float = 1.0
    """How often `ray.nodes()` is read and the ContainerScalers pinged, seconds."""
    silence_s: float = 3.0
    """A ready host whose ContainerScaler has not answered a ping for this long is
    marked unreachable, seconds. Covers a node the GCS has not yet seen die."""
    place_timeout_s: float = 60.0
    """How long one placement (ContainerScaler start + its first answer) may take,
    seconds; a placement that times out is tried again at the next tick."""


class MembershipPing(TypedDict):
    ticks: int
    tick_s: float
    hosts: list[str]
    pid: int


class HostStatus(TypedDict):
    """One host as `Membership.status` shows it."""

    node_id: str
    alive: bool
    ready: bool
    ready_at: float | None
    join_to_ready_s: float | None
    placements: int
    placing: bool
    failures: int
    silence_s: float | None
    reachable: bool
    reason: str


@dataclass
class _HostState:
    name: str
    node_id: str = ""
    """The alive node the ContainerScaler answered from ("" while there is none)."""
    known_ids: frozenset[str] = frozenset()
    """The alive nodes of this host at the last tick."""
    seen_at: float = 0.0
    """Wall time a node of this host was last seen joining."""
    ready_at: float | None = None
    join_to_ready_s: float | None = None
    placements: int = 0
    placing: asyncio.Task[None] | None = None
    failures: int = 0
    """Placements in a row that failed; the next waits `retry_delay_s(failures)`."""
    retry_at: float = 0.0
    handle: ActorHandle = None
    ping: asyncio.Future[object] | None = None
    last_answer: float = 0.0
    """time.monotonic() of the ContainerScaler's last answer."""
    ping_error: str = ""
    reason: str = ""
    """Why the host is unreachable (as written to the StateDB), "" when reachable."""

    def view(self, now: float) -> HostView:
        """What the plan needs of this host; reads the answer of the last ping."""
        died = False
        if self.ping is not None and self.ping.done():
            e = None if self.ping.cancelled() else self.ping.exception()
            if e is None:
                self.ping_error = ""
            elif isinstance(e, ray.exceptions.ActorDiedError):
                died = True  # killed for good (e.g. by hand): a new one is placed while the node is alive
            else:
                self.ping_error = f"{type(e).__name__}: {e}"
        ready = self.ready_at is not None and self.handle is not None
        return HostView(
            name=self.name,
            node_id=self.node_id,
            known_ids=self.known_ids,
            ready=ready,
            placing=self.placing is not None and not self.placing.done(),
            retry_due=now >= self.retry_at,
            silence_s=now - self.last_answer if ready else None,
            pinging=self.ping is not None and not self.ping.done(),
            ping_error=self.ping_error,
            scaler_died=died,
            reason=self.reason,
        )


class Membership:
    """Keeps one ContainerScaler and one host structure per controlled Ray node."""

    def __init__(
        self,
        defaults: NodeDefaults | None = None,
        settings: dict[str, float] | None = None,
        start_container_scaler: StartContainerScaler | None = None,
    ) -> None:
        self.defaults: NodeDefaults = (defaults or NodeDefaults()).copy()
        self.settings = MembershipSettings(**(settings or {}))
        self.start_container_scaler = start_container_scaler
        self.hosts: dict[str, _HostState] = {}
        self.alive_ids: dict[str, frozenset[str]] = {}
        self.ticks = 0
        self.tick_s = 0.0
        self._handles = Handles()
        self._tick_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ queries

    async def ping(self) -> MembershipPing:
        return {"ticks": self.ticks, "tick_s": self.tick_s, "hosts": sorted(self.hosts), "pid": os.getpid()}

    async def status(self) -> dict[str, HostStatus]:
        """Per host: its node, whether its ContainerScaler is ready, join → ready time, reachability."""
        now = time.monotonic()
        return {
            h: {
                "node_id": st.node_id,
                "alive": bool(self.alive_ids.get(h)),
                "ready": st.ready_at is not None,
                "ready_at": st.ready_at,
                "join_to_ready_s": st.join_to_ready_s,
                "placements": st.placements,
                "placing": st.placing is not None and not st.placing.done(),
                "failures": st.failures,
                "silence_s": round(now - st.last_answer, 3) if st.ready_at is not None else None,
                "reachable": not st.reason,
                "reason": st.reason,
            }
            for h, st in self.hosts.items()
        }

    async def configure(self, defaults: NodeDefaults) -> None:
        """Node defaults for ContainerScalers placed from now on (`sc up` again)."""
        self.defaults = defaults.copy()

    async def reconcile(self, timeout_s: float = 60.0) -> list[str]:
        """One tick, then wait for the placements it started; the hosts ready now."""
        await self.tick()
        pending = [st.placing for st in self.hosts.values() if st.placing is not None and not st.placing.done()]
        if pending:
            await asyncio.wait(pending, timeout=timeout_s)
        await self.tick()
        return sorted(h for h, st in self.hosts.items() if st.ready_at is not None and self.alive_ids.get(h))

    # ------------------------------------------------------------------ loop

    async def stop(self) -> None:
        self._stop.set()
        await self._task

    async def _loop(self) -> None:
        await every(lambda: self.settings.period_s, self.tick, self._stop, log, "membership tick")

    async def tick(self) -> dict[str, bool]:
        """Observe the nodes, the host structures and the pings; plan; act. The reachability written."""
        async with self._tick_lock:
            t0 = time.perf_counter()
            seen = await self._observe()
            actions = policy.plan(seen, self.defaults, self.settings.silence_s)
            self._remember(seen)
            changed = await self._act(actions)
            self.ticks += 1
            self.tick_s = time.perf_counter() - t0
            return changed

    # ------------------------------------------------------------------ observe

    async def _observe(self) -> Observation:
        # ray.nodes() is a blocking GCS call: off the event loop.
        nodes = [policy.Node.from_ray(row) for row in await asyncio.to_thread(ray.nodes)]
        marks: dict[str, HostMark] = await self._handles.statedb.host_marks.remote()
        documents = {name: m["reachable"] for name, m in marks.items()}
        agents = {name: m["agent"] for name, m in marks.items() if m["agent"]}
        now = time.monotonic()
        return Observation(nodes=nodes, hosts={h: st.view(now) for h, st in self.hosts.items()}, documents=documents,
                           agents=agents)

    def _remember(self, seen: Observation) -> None:
        """The alive nodes of each host as of this tick: what `_place` checks, what the next tick compares with."""
        for host, nodes in policy.hosts_of(seen.nodes).items():
            self.alive_ids[host] = nodes.alive_ids
            self.hosts.setdefault(host, _HostState(host)).known_ids = nodes.alive_ids

    # ------------------------------------------------------------------ act

    async def _act(self, actions: list[Action]) -> dict[str, bool]:
        changed: dict[str, bool] = {}
        for a in actions:
            st = self.hosts.setdefault(a.host, _HostState(a.host))
            if isinstance(a, policy.Forget):
                self._forget(st, a)
            elif isinstance(a, policy.NodeJoined):
                st.seen_at = time.time()  # the join → ready clock starts
                if len(a.alive_ids) > 1:
                    log.warning("host %s: %d alive Ray nodes carry label %s=%s; one ContainerScaler serves it",
                                a.host, len(a.alive_ids), HOST_LABEL, a.host)
            elif isinstance(a, policy.Place):
                st.placing = asyncio.ensure_future(self._place(st, a))
            elif isinstance(a, policy.Ping):
                st.ping = asyncio.ensure_future(st.handle.ping.remote())
                st.ping.add_done_callback(functools.partial(_answered, st))
            elif isinstance(a, policy.Mark):
                if await self._mark(st, a):
                    changed[a.host] = a.reachable
            elif isinstance(a, policy.EnsureHost):
                res = await self._handles.statedb.ensure_host.remote(a.document, a.node_id)
                if res.get("mismatch"):
                    log.warning("host %s: %s", a.host, res["mismatch"])
                self._ready(st, a.node_id, bool(res.get("created")))
        return changed

    def _forget(self, st: _HostState, a: policy.Forget) -> None:
        if a.why == "node-gone":
            if st.ready_at is not None:
                log.warning("host %s: its Ray node %s is gone", st.name, st.node_id[:8])
            if st.placing is not None and not st.placing.done():
                st.placing.cancel()  # it would wait for a node that is not there
        elif a.why == "scaler-died":
            log.warning("host %s: its ContainerScaler died; placing a new one", st.name)
            st.handle = None
        st.ready_at, st.node_id, st.ping = None, "", None

    async def _place(self, st: _HostState, a: policy.Place) -> None:
        if self.start_container_scaler is None:
            raise RuntimeError("the Membership was started without a way to start ContainerScalers")
        try:
            handle = await asyncio.to_thread(self.start_container_scaler, a.host, a.settings)
            raw = await asyncio.wait_for(handle.host_info.remote(), timeout=self.settings.place_timeout_s)
            info = HostInfo.model_validate(raw)
            then = policy.plan_placed(a.host, info, self.alive_ids.get(a.host, frozenset()))
            if not then:
                log.info("host %s: ContainerScaler answered from node %s, not an alive one yet",
                         a.host, info.node_id[:8])
                return
            st.handle = handle
            await self._act(then)
        except asyncio.TimeoutError:
            log.warning("host %s: ContainerScaler did not answer within %.0f s; retrying",
                        a.host, self.settings.place_timeout_s)
        except Exception:
            # E.g. its backend cannot start on that node (no LXC there): retry, more slowly.
            st.failures += 1
            st.retry_at = time.monotonic() + policy.retry_delay_s(st.failures)
            log.exception("placing the ContainerScaler of host %s failed (%d in a row)", a.host, st.failures)

    def _ready(self, st: _HostState, node_id: str, created: bool) -> None:
        st.node_id = node_id
        st.ready_at = time.time()
        st.join_to_ready_s = round(st.ready_at - st.seen_at, 3) if st.seen_at else None
        st.last_answer = time.monotonic()
        st.ping, st.ping_error = None, ""
        st.placements += 1
        st.failures = 0
        if st.reason:
            log.warning("host %s is reachable again (ContainerScaler on node %s)", st.name, node_id[:8])
        st.reason = ""
        log.info("host %s ready on node %s, %s s after the node joined%s", st.name, node_id[:8],
                 st.join_to_ready_s, " (new host structure)" if created else "")

    async def _mark(self, st: _HostState, a: policy.Mark) -> bool:
        """Remember the host's reachability and write it where the StateDB disagrees; whether it wrote."""
        st.reason = a.reason
        if not a.write or not await self._handles.statedb.set_host_reachable.remote(a.host, a.reachable, a.reason):
            return False
        if a.reachable:
            log.warning("host %s marked reachable", a.host)
        else:
            log.warning("host %s marked unreachable: %s; requests for its containers are dropped", a.host, a.reason)
        return True


def _answered(st: _HostState, fut: asyncio.Future[object]) -> None:
    if not fut.cancelled() and fut.exception() is None:
        st.last_answer = time.monotonic()
