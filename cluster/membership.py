"""Cluster membership: which Ray nodes are controlled hosts, and whether each is reachable.

A Ray node is a controlled host when it carries the label `sc_host=<name>` and not
`sc_exclude=1` (a head-only node, for instance). The Membership actor reads
`ray.nodes()` every `period_s` and, with no restart of the control plane:

- a host with an alive node and no ready ContainerScaler gets one (pinned by the
  label, see placement.py) and a host structure (CPU = cores × 100 with its core map,
  memory MiB), or is matched to the structure of that name subscribed through the
  API; the time from the node's first sighting to that moment is `join_to_ready_s`;
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

A host structure that no node of the cluster carries, alive or dead (one of an
earlier cluster that used the same state dir), is marked unreachable from the first
tick, the one `sc up` waits for, with that reason. Everything the actor knows is
rebuilt from `ray.nodes()` and the StateDB after a restart.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from dataclasses import dataclass, field
from typing import Any

import ray

from sc_actors.model import Host, HostInfo
from sc_actors.settings import HOST_LABEL, NAMESPACE, STATEDB_NAME

log = logging.getLogger(__name__)

MEMBERSHIP_NAME = "membership"
"""Name of the Membership actor (in settings.NAMESPACE)."""

EXCLUDE_LABEL = "sc_exclude"
"""A node labelled `sc_exclude=1` (or `true`) is never controlled, even with `sc_host`."""


# --------------------------------------------------------------------------- nodes (pure)


def is_controlled(node: dict[str, Any]) -> bool:
    """Whether a `ray.nodes()` entry is a controlled host (alive or not)."""
    labels = node.get("Labels") or {}
    return bool(labels.get(HOST_LABEL)) and str(labels.get(EXCLUDE_LABEL, "")).lower() not in ("1", "true", "yes")


def controlled_nodes(nodes: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
    """Alive Ray nodes that are controlled hosts; `nodes` defaults to `ray.nodes()`."""
    return [n for n in (ray.nodes() if nodes is None else nodes) if n.get("Alive") and is_controlled(n)]


@dataclass
class HostNodes:
    """The Ray nodes that carry one host's label: alive ones, and the dead ones the GCS remembers."""

    alive: list[dict[str, Any]] = field(default_factory=list)
    dead: list[dict[str, Any]] = field(default_factory=list)


def hosts_of(nodes: list[dict[str, Any]]) -> dict[str, HostNodes]:
    """Controlled hosts of the cluster by name, with their alive and dead nodes."""
    out: dict[str, HostNodes] = {}
    for n in nodes:
        if not is_controlled(n):
            continue
        h = out.setdefault(n["Labels"][HOST_LABEL], HostNodes())
        (h.alive if n.get("Alive") else h.dead).append(n)
    return out


def node_settings(node: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    """ContainerScaler settings of a node: `defaults`, then its labels `sc_cgroup_parent`, `sc_backend`."""
    labels = node.get("Labels") or {}
    s = dict(defaults)
    if "sc_cgroup_parent" in labels:
        s["parent"] = labels["sc_cgroup_parent"]
    if "sc_backend" in labels:
        s["backend"] = labels["sc_backend"]
    return s


def host_document(info: HostInfo) -> dict[str, Any]:
    """A host structure for a node: CPU shares = cores × 100 with its core map, memory MiB."""
    host = Host(
        name=info.name,
        host=info.name,
        resources={
            "cpu": {"max": info.cores * 100, "free": info.cores * 100},
            "mem": {"max": info.mem_mib, "free": info.mem_mib},
        },
        topology=info.topology,
    )
    return host.model_dump(mode="json", exclude_none=True)


# --------------------------------------------------------------------------- actor


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


@dataclass
class _HostState:
    name: str
    node_id: str = ""
    """The alive node the ContainerScaler answered from ("" while there is none)."""
    known_ids: set[str] = field(default_factory=set)
    """The alive nodes of this host at the last tick."""
    seen_at: float = 0.0
    """Wall time a node of this host was last seen joining."""
    ready_at: float | None = None
    join_to_ready_s: float | None = None
    placements: int = 0
    placing: asyncio.Task | None = None
    failures: int = 0
    """Placements in a row that failed; the next waits 2**failures s (at most 30)."""
    retry_at: float = 0.0
    handle: Any = None
    ping: asyncio.Future | None = None
    last_answer: float = 0.0
    """time.monotonic() of the ContainerScaler's last answer."""
    ping_error: str = ""
    reason: str = ""
    """Why the host is unreachable (as written to the StateDB), "" when reachable."""


class Membership:
    """Keeps one ContainerScaler and one host structure per controlled Ray node."""

    def __init__(self, defaults: dict[str, Any] | None = None, settings: dict[str, Any] | None = None) -> None:
        self.defaults = dict(defaults or {})
        self.settings = MembershipSettings(**(settings or {}))
        self.hosts: dict[str, _HostState] = {}
        self.alive_ids: dict[str, set[str]] = {}
        self.ticks = 0
        self.tick_s = 0.0
        self._statedb: Any = None
        self._tick_lock = asyncio.Lock()
        self._stop = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ queries

    async def ping(self) -> dict[str, Any]:
        return {"ticks": self.ticks, "tick_s": self.tick_s, "hosts": sorted(self.hosts), "pid": os.getpid()}

    async def status(self) -> dict[str, dict[str, Any]]:
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

    async def configure(self, defaults: dict[str, Any]) -> None:
        """Node defaults for ContainerScalers placed from now on (`sc up` again)."""
        self.defaults = dict(defaults)

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
        # NOTE: the watcher must never die of one bad tick.
        while not self._stop.is_set():
            try:
                await self.tick()
            except Exception:
                log.exception("membership tick failed")
            try:
                await asyncio.wait_for(self._stop.wait(), timeout=self.settings.period_s)
            except asyncio.TimeoutError:
                pass

    async def tick(self) -> dict[str, bool]:
        """Read the nodes, place what is missing, ping the ready, mark reachability."""
        async with self._tick_lock:
            t0 = time.perf_counter()
            # ray.nodes() is a blocking GCS call: off the event loop.
            groups = hosts_of(await asyncio.to_thread(ray.nodes))
            for host, nodes in groups.items():
                self._follow(self.hosts.setdefault(host, _HostState(host)), nodes)
            self._ping_ready()
            marked = await self._mark(groups)
            self.ticks += 1
            self.tick_s = time.perf_counter() - t0
            return marked

    def _follow(self, st: _HostState, nodes: HostNodes) -> None:
        """Start a placement for a host whose node is new, back, or lost its ContainerScaler."""
        ids = {n["NodeID"] for n in nodes.alive}
        self.alive_ids[st.name] = ids
        if not ids:
            st.known_ids = set()
            if st.ready_at is not None:
                log.warning("host %s: its Ray node %s is gone", st.name, st.node_id[:8])
            st.ready_at, st.node_id = None, ""
            if st.placing is not None and not st.placing.done():
                st.placing.cancel()  # it would wait for a node that is not there
            return
        if st.node_id and st.node_id not in ids:
            # The node the ContainerScaler answered from died and another carries the label.
            st.ready_at, st.node_id = None, ""
        if ids - st.known_ids:
            st.seen_at = time.time()  # a node joined (or rejoined): the join → ready clock starts
            if len(ids) > 1:
                log.warning("host %s: %d alive Ray nodes carry label %s=%s; one ContainerScaler serves it",
                            st.name, len(ids), HOST_LABEL, st.name)
        st.known_ids = ids
        if st.ready_at is None and (st.placing is None or st.placing.done()) and time.monotonic() >= st.retry_at:
            node = nodes.alive[-1]
            st.placing = asyncio.ensure_future(self._place(st, node))

    async def _place(self, st: _HostState, node: dict[str, Any]) -> None:
        from . import placement  # placement builds this class: import at use

        try:
            handle = await asyncio.to_thread(
                placement.container_scaler_actor, st.name, node_settings(node, self.defaults)
            )
            raw = await asyncio.wait_for(handle.host_info.remote(), timeout=self.settings.place_timeout_s)
            info = HostInfo.model_validate(raw)
            if info.node_id not in self.alive_ids.get(st.name, set()):
                # The GCS still counts an older node of this host alive and the actor is
                # there; it moves once that node is declared dead. Try again next tick.
                log.info("host %s: ContainerScaler answered from node %s, not an alive one yet",
                         st.name, info.node_id[:8])
                return
            res = await self._db().ensure_host.remote(host_document(info), info.node_id)
            if res.get("mismatch"):
                log.warning("host %s: %s", st.name, res["mismatch"])
            st.handle = handle
            st.node_id = info.node_id
            st.ready_at = time.time()
            st.join_to_ready_s = round(st.ready_at - st.seen_at, 3) if st.seen_at else None
            st.last_answer = time.monotonic()
            st.ping, st.ping_error = None, ""
            st.placements += 1
            st.failures = 0
            if st.reason:
                log.warning("host %s is reachable again (ContainerScaler on node %s)", st.name, info.node_id[:8])
            st.reason = ""
            log.info("host %s ready on node %s, %s s after the node joined%s", st.name, info.node_id[:8],
                     st.join_to_ready_s, " (new host structure)" if res.get("created") else "")
        except asyncio.TimeoutError:
            log.warning("host %s: ContainerScaler did not answer within %.0f s; retrying",
                        st.name, self.settings.place_timeout_s)
        except Exception:
            # E.g. its backend cannot start on that node (no LXC there): retry, more slowly.
            st.failures += 1
            st.retry_at = time.monotonic() + min(2.0**st.failures, 30.0)
            log.exception("placing the ContainerScaler of host %s failed (%d in a row)", st.name, st.failures)

    def _ping_ready(self) -> None:
        """At most one ping in flight per ready host; its answer time is the liveness signal."""
        for st in self.hosts.values():
            if st.ready_at is None or st.handle is None:
                continue
            if st.ping is not None and not st.ping.done():
                continue
            if st.ping is not None:
                e = st.ping.exception()
                if e is None:
                    st.ping_error = ""
                elif isinstance(e, ray.exceptions.ActorDiedError):
                    # Killed for good (e.g. by hand): place a new one while the node is alive.
                    log.warning("host %s: its ContainerScaler died (%s); placing a new one", st.name, e)
                    st.ready_at, st.handle, st.ping = None, None, None
                    continue
                else:
                    st.ping_error = f"{type(e).__name__}: {e}"
            st.ping = asyncio.ensure_future(st.handle.ping.remote())
            st.ping.add_done_callback(lambda f, st=st: _answered(st, f))

    async def _mark(self, groups: dict[str, HostNodes]) -> dict[str, bool]:
        """Write each known host's reachability where the StateDB disagrees; the changes made."""
        now = time.monotonic()
        want: dict[str, tuple[bool, str]] = {}
        for host, nodes in groups.items():
            st = self.hosts[host]
            if not nodes.alive:
                last = (nodes.dead[-1]["NodeID"][:8]) if nodes.dead else "?"
                want[host] = (False, f"its Ray node {last} is dead (no alive node has label {HOST_LABEL}={host})")
            elif st.ready_at is not None and now - st.last_answer > self.settings.silence_s:
                detail = f": {st.ping_error}" if st.ping_error else ""
                want[host] = (False, f"its ContainerScaler on node {st.node_id[:8]} has not answered for "
                                     f"{now - st.last_answer:.1f} s{detail}")
            elif st.ready_at is not None:
                want[host] = (True, "")
            # Alive but not placed yet: left as it is until the ContainerScaler answers.
        db = self._db()
        docs = {d["name"]: d for d in await db.list.remote("structures", "host")}
        # Hosts of the StateDB that no node of this cluster carries, alive or dead: those of
        # an earlier cluster with the same state dir (ray.nodes() forgets them with it).
        for host in docs.keys() - groups.keys():
            want[host] = (False, f"no Ray node of this cluster has label {HOST_LABEL}={host}")
        changed: dict[str, bool] = {}
        for host, (reachable, reason) in want.items():
            st = self.hosts.setdefault(host, _HostState(host))
            if reachable:
                st.reason = ""
            elif not st.reason:
                st.reason = reason  # keep the first reason: it says what happened
            doc = docs.get(host)
            if doc is None or doc.get("reachable", True) == reachable:
                continue
            if await db.set_host_reachable.remote(host, reachable, st.reason):
                changed[host] = reachable
                if reachable:
                    log.warning("host %s marked reachable", host)
                else:
                    log.warning("host %s marked unreachable: %s; requests for its containers are dropped",
                                host, st.reason)
        return changed

    def _db(self) -> Any:
        if self._statedb is None:
            self._statedb = ray.get_actor(STATEDB_NAME, namespace=NAMESPACE)
        return self._statedb


def _answered(st: _HostState, fut: asyncio.Future) -> None:
    if not fut.cancelled() and fut.exception() is None:
        st.last_answer = time.monotonic()
