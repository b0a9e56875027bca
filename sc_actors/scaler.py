"""Scaler: applies requests as they arrive, against the hosts' free resources.

Requests are pushed by the Guardian (`submit`); the Scaler dedups them (§4.2),
orders them (§4.5), plans each with the pure `plan_container_request` against a
working copy of its host (free shares, per-core map, memory), applies it through
the container's node's ContainerScaler, and records the new `current` and the host
accounting in the StateDB in one call. The requests of one host's batch are planned
one after the other and written in one call to its node; if the node refuses any,
the whole batch is put back and applied one request at a time. A write the node
refuses is rolled back to the previous limits and leaves the accounting untouched. An application's or user's
request is split over its containers (reference §4.8, `policy.applications`) and
applied all or nothing: one refused part puts back the parts already written.
Every put-back (a batch, a group's parts, a swap, one request) goes through
`_put_back`: the limits the accounting holds, written in one call per node.

All host accounting goes through this actor (subscriptions too), under one lock
per host, so the Orchestrator never races the Scaler over a host's free resources
(the original disabled its Scaler and slept to avoid that, reference §11.3). What a
subscription takes and a desubscription gives back is decided by the pure
`policy.subscription`; this actor looks the documents up, writes and records.

Requests are applied in one lane per host: a node that does not answer delays only
its own host's requests, never the others' (the original let one dead NodeRescaler
block the whole cluster, §11.2). A host the Membership marked unreachable has its
requests dropped at once, with the reason in the request log. A node that does not
answer (a timeout, a dead actor) is `Unavailable` (503), never a bad request.

Shards by host (issue 16, `policy.shards`): with N shards, Scaler shard `i` (`scaler`,
`scaler-1`, …) is the one writer of the accounting of the hosts `shard_of(host, N) == i`.
A container request, a subscription, a drift repair or a release reaching a shard that
does not own its host is forwarded to the owner (a request the owner does not take within
FORWARD_TIMEOUT_S is dropped, with the reason in the decision log; a call answers 503).
Requests that span hosts (applications, users, swaps) are planned by shard 0, the
coordinator, against the StateDB's view, and applied host by host through the owners'
`apply_part`: the owner takes the host's lock, checks the accounting is still what was
planned against (`policy.shards.part_still_fits`), writes the node, records, answers, and
holds the lock until the coordinator's `release_part`, which keeps the part or puts it
back exactly. A part refused (or not answered within FORWARD_TIMEOUT_S: it is put back
if it is applied later) puts back every part applied before it, so the request is
applied on every host or on none. The coordinator's record of its decision is the commit
point: an owner whose part it neither kept nor put back within PART_HOLD_S (it died, or
hangs) asks the StateDB (`decide_tx`): recorded, the part is kept; not, it is put back and
the coordinator's late record is refused. Only a StateDB restarted meanwhile cannot tell
(its transactions are volatile): the part is then kept, in the owner's log.
"""
from __future__ import annotations

import asyncio
import collections
import contextlib
import logging
import time
import uuid
from typing import Any, AsyncIterator, Awaitable, Iterable, Optional, Sequence, TypeVar, Union, cast

from pydantic import ValidationError
from typing_extensions import NotRequired, TypedDict

from . import metrics
from .collector import relax_collector
from .errors import Conflict, Invalid, NotFound, ScError, Unavailable
from .handles import Handles, unwrap
from .model import (
    Application,
    Applied,
    Bounds,
    Container,
    Document,
    Host,
    LimitChange,
    Limits,
    Request,
    ResourceName,
    User,
    Written,
    check_name,
)
from .policy.applications import Placement, plan_application_request, plan_user_request
from .policy.cores import CoreOrder, core_distribution, core_order
from .policy.health import HEARTBEAT_S
from .policy.planning import Plan, plan_container_request
from .policy.requests import filter_requests, sort_requests
from .policy.shards import ContainerWrite, HostPart, part_still_fits, shard_of
from .policy.subscription import bounds_of, mem_margin_of, physical_of, quota_and_memory_of, release, subscribe
from .profiles import subscription_limits
from .settings import ScalerSettings, scaler_name
from .shards import ShardCount
from .store.entries import lifecycle_entry
from .store.state import HeldPart
from .store.views import GroupScalerView, HostFields, RequestEntry, ScalerView

log = logging.getLogger(__name__)

APPLY_TIMEOUT_S = 5.0
YIELD_EVERY = 50
"""Requests planned between two yields to the event loop."""
FORWARD_TIMEOUT_S = 10.0
"""How long a request forwarded to the Scaler shard owning its host may wait to be taken,
seconds: the default REQUEST_TIMEOUT, after which the owner would drop it as expired anyway."""
PART_HOLD_S = 10.0
"""How long an owner holds a host's lock for a part the coordinator neither kept nor put
back, seconds; then the part is kept (it is written and recorded) and the lock released."""
PART_LOCK_S = 5.0
"""How long a part waits for its host's lock before it is refused, seconds: under
FORWARD_TIMEOUT_S, so the owner answers before the coordinator gives up on it."""

T = TypeVar("T")
Currents = dict[str, dict[ResourceName, float]]
"""Structure → resource → its new value (`current` or `max`) in this batch."""
Write = tuple[str, LimitChange, Optional[Bounds]]
"""One container's write on its node: name, the limits, the bounds checked (None: unchecked)."""


class DecisionEntry(RequestEntry, total=False):
    """A decision-log entry of the Scaler: `RequestEntry` and what a group or swap adds."""

    split: dict[str, int]
    usages: dict[str, Optional[float]]
    bases: dict[str, float]
    app_split: dict[str, int]
    parent: str
    donor_new_max: float


class BatchView(ScalerView):
    """`scaler_view` of a batch, with `group_scaler_view`'s applications and users merged in."""

    users: NotRequired[dict[str, Document]]


class ScalerStatus(TypedDict):
    """`Scaler.ping`: requests waiting, outcomes so far, the last apply times, batch writes,
    this shard and the number of shards it routes with."""

    pending: int
    outcomes: dict[str, int]
    apply_s: list[float]
    batches: dict[str, int]
    shard: int
    shards: int


class _Held:
    """A part applied by this owner and not yet released: what puts it back, its lock, its timer."""

    def __init__(self, part: HostPart, host: Host, containers: list[Container], timer: asyncio.Task[None],
                 applied_at: float) -> None:
        self.part = part
        self.host = host
        """The host's accounting before the part."""
        self.containers = containers
        """The part's containers before it."""
        self.timer = timer
        self.applied_at = applied_at
        """When it was recorded (`time.time`): a StateDB started after it cannot tell its fate."""


class _Parts:
    """The parts of one request that spans hosts, applied and held by their owners."""

    def __init__(self, shards: int) -> None:
        self.shards = shards
        self.tx = uuid.uuid4().hex
        """The request's transaction: its parts' txids are `<tx>/<host>`, its decision record carries it."""
        self.held: list[tuple[str, str, str]] = []
        """(owner, txid, host) of each part applied, in order."""
        self.containers: set[str] = set()
        """Containers whose accounting the owners recorded."""


def request_key(r: Request) -> tuple[str, str]:
    return (r.structure, f"{r.action}_{r.field}_{r.pair_structure or 'system'}")


def distribution_of(host: Host) -> list[str]:
    topology = getattr(host, "topology", None)
    if topology:
        return core_distribution(topology, "Group_PP_LL")
    return sorted(host.resources["cpu"].core_usage_mapping or {}, key=int)


def _unreachable(host: Host) -> str:
    return str((host.model_extra or {}).get("unreachable_reason") or "its node is gone")


def _limits_of(doc: Optional[Document]) -> Optional[Limits]:
    return Limits.model_validate(doc) if doc else None


class Scaler:
    def __init__(self, shard: int = 0) -> None:
        relax_collector()
        self.shard = shard
        self.name = scaler_name(shard)
        self._held: dict[str, _Held] = {}
        """Parts of requests that span hosts, applied here and held until released (txid → part)."""
        self._given_up: collections.deque[str] = collections.deque(maxlen=1000)
        """Parts put back before they were applied here (the coordinator gave up waiting)."""
        self.pending: list[Request] = []
        self._wake = asyncio.Event()
        # NOTE: one lock per host's accounting, taken in name order. Requests are
        # applied in one lane per host, so a node that does not answer delays only
        # its own host (the original let one dead NodeRescaler stop all, §11.2).
        self._host_locks: collections.defaultdict[str, asyncio.Lock] = collections.defaultdict(asyncio.Lock)
        self._lanes: dict[str, asyncio.Task[None]] = {}
        """One lane per serving node (the host whose ContainerScaler answers), "" for requests
        that span hosts (applications, users, swaps) or name no known container."""
        self._forwards: set[asyncio.Task[None]] = set()
        self._backlog: dict[str, list[tuple[Request, str]]] = {}
        """Per lane, the requests waiting, each with the host `_dispatch` found for it ("" for none)."""
        self._handles = Handles()
        self._agents: dict[str, str] = {}
        """Host → the host whose ContainerScaler serves it, where the host documents read say another."""
        self._shards = ShardCount(lambda: self._handles.statedb)
        self.outcomes: collections.Counter[str] = collections.Counter()
        self._to_count: list[DecisionEntry] = []
        self._labeled_structures: set[str] = set()
        self.batches: collections.Counter[str] = collections.Counter()
        """Batches of one host written in one call ("written"), or put back after a refusal ("put_back")."""
        self._distributions: dict[str, tuple[Any, CoreOrder]] = {}
        self._parsed_hosts: dict[str, tuple[Document, Host]] = {}
        """Per host, its document as this Scaler last read or recorded it, and that document
        parsed: a view holding the same document reuses the Host (comparing a core map of
        128 cores costs a sixth of parsing it; a plan never changes a Host in place)."""
        self.apply_s: collections.deque[float] = collections.deque(maxlen=1000)
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ handles

    def _db(self) -> Any:
        return self._handles.statedb

    async def _on_node(self, host: str, call: Awaitable[T]) -> T:
        """Await a call to the node of `host`; a silent or dead node is `Unavailable`.

        What the node itself raised (a refused write, a container it does not have)
        comes out as that error, unwrapped from Ray's.
        """
        try:
            return await asyncio.wait_for(call, timeout=APPLY_TIMEOUT_S)
        except asyncio.TimeoutError:
            raise Unavailable(
                f"the ContainerScaler of host {host!r} did not answer within {APPLY_TIMEOUT_S:g} s"
            ) from None
        except Exception as e:
            if _is_ray_error(e):
                # The call itself was lost: a dead actor (its handle is dropped, so one placed
                # again under that name is found), a node that left, a failed object store.
                if isinstance(unwrap(e), Unavailable):
                    self._handles.forget_node(host)
                raise Unavailable(f"the ContainerScaler of host {host!r} did not answer: {_reason(e)}") from None
            raise unwrap(e) from None  # what the node raised, as Ray handed it over

    async def ping(self) -> ScalerStatus:
        return {"pending": len(self.pending), "outcomes": dict(self.outcomes), "apply_s": list(self.apply_s)[-100:],
                "batches": dict(self.batches), "shard": self.shard, "shards": self._shards.cached()}

    async def read_shards(self) -> int:
        """Read the shard count now; `cluster.deploy` calls it on every Scaler shard after it
        wrote a new count, so that none still routes with the old one (each host's accounting
        has one writer) when the deployment returns."""
        return await self._shards.read_now()

    # ------------------------------------------------------------------ requests

    async def submit(self, requests: Sequence[Union[Request, RequestEntry]]) -> int:
        """Queue requests; the newest per (structure, action) wins (§4.2)."""
        self.pending.extend(Request.model_validate(r) for r in requests)
        self._wake.set()
        return len(self.pending)

    async def _loop(self) -> None:
        # NOTE: never let one bad batch stop the Scaler.
        beat_at = 0.0
        recovered = False
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not recovered:
                try:
                    await self._recover_parts()
                    recovered = True
                except Exception as e:
                    log.warning("the parts this shard held are not taken back yet: %s", _reason(e))
            self._count_requests()  # those of calls outside the lanes (parts, reapply)
            if time.monotonic() - beat_at >= HEARTBEAT_S:
                # An idle Scaler beats too, so an old heartbeat means a stuck or dead one.
                beat_at = time.monotonic()
                try:
                    await self._db().heartbeat.remote(self.name)
                except Exception as e:
                    log.warning("scaler heartbeat not recorded: %s", _reason(e))
            if not self.pending:
                continue
            batch, self.pending = self.pending, []
            try:
                await self._dispatch(batch)
            except Exception:
                log.exception("scaler batch failed")

    def _serve_hosts(self, docs: Iterable[Document]) -> None:
        """Remember which node serves each of these hosts (`Handles.serve_hosts`), for the handles
        and for the lanes (`_node_of`)."""
        docs = list(docs)
        self._handles.serve_hosts(docs)
        self._remember_agents(docs)

    def _remember_agents(self, docs: Iterable[Document]) -> None:
        for d in docs:
            agent, name = d.get("agent"), str(d.get("name", ""))
            if isinstance(agent, str) and agent and agent != name:
                self._agents[name] = agent
            else:
                self._agents.pop(name, None)

    def _node_of(self, host: str) -> str:
        """The host whose ContainerScaler serves `host`: its own unless a host document read said
        another (a simulated host's agent); a host not read yet has a lane of its own meanwhile."""
        return self._agents.get(host, host)

    async def _dispatch(self, batch: list[Request]) -> None:
        """Hand each container request to the lane of the node serving its host; application
        and user requests (and unknown names) share one lane of their own.

        With shards, a container request of a host another shard owns goes to that
        shard, and a request that spans hosts to shard 0, which plans them."""
        containers = sorted({r.structure for r in batch if r.structure_type == "container"})
        host_of: dict[str, str] = await self._db().container_hosts.remote(containers) if containers else {}
        shards = await self._shards.read()
        elsewhere: dict[int, list[Request]] = {}
        for r in batch:
            # A swap may span two hosts: it goes to the shared lane, which locks both.
            key = host_of.get(r.structure, "") if r.structure_type == "container" and not r.pair_structure else ""
            owner = shard_of(key, shards) if key else 0
            if owner != self.shard and (key or shards > 1):
                elsewhere.setdefault(owner, []).append(r)
                continue
            node = self._node_of(key) if key else ""
            self._backlog.setdefault(node, []).append((r, key))
            lane = self._lanes.get(node)
            if lane is None or lane.done():
                self._lanes[node] = asyncio.get_event_loop().create_task(self._lane(node))
        for owner, requests in elsewhere.items():
            task = asyncio.get_event_loop().create_task(self._forward(owner, requests, host_of))
            self._forwards.add(task)
            task.add_done_callback(self._forwards.discard)

    async def _forward(self, owner: int, requests: list[Request], host_of: dict[str, str]) -> None:
        """Hand requests to the Scaler shard that owns their host (shard 0: those that span
        hosts); those it does not take within FORWARD_TIMEOUT_S are dropped, in the log."""
        name = scaler_name(owner)
        try:
            await self._on_shard(name, "submit", requests)
            self.outcomes["forwarded"] += len(requests)
            return
        except Exception as e:  # `_on_shard` forgot the handle of a shard that did not answer
            reason = str(e).removeprefix(f"scaler shard {name} ")
            if isinstance(e, Unavailable):
                # Deployed again with fewer shards? Then these requests have another owner now.
                shards = self._shards.cached()
                self._shards.invalidate()
                if await self._shards.read() != shards:
                    await self._dispatch(requests)
                    return
        entries = []
        for r in requests:
            host = host_of.get(r.structure)
            what = f"owner of host {host!r}" if host else "coordinator of requests that span hosts"
            entries.append(self._entry(r, "dropped", f"scaler shard {name} ({what}) {reason}"))
        log.warning("%d requests dropped: scaler shard %s %s", len(requests), name, reason)
        try:
            await self._db().log_requests.remote(entries)
        except Exception as e:
            log.warning("dropped requests not logged: %s", _reason(e))

    async def _lane(self, key: str) -> None:
        """Apply the requests queued for one lane, a batch at a time, until none are left."""
        while self._backlog.get(key):
            queued = self._backlog.pop(key)
            try:
                if key:
                    await self._process_node(queued)
                else:
                    await self._process([r for r, _ in queued])
            except Exception:
                log.exception("scaler batch of lane %r failed", key)
            finally:
                self._count_requests()

    @contextlib.asynccontextmanager
    async def _hosts_locked(self, hosts: Iterable[str]) -> AsyncIterator[None]:
        """Hold the accounting locks of these hosts (in name order: lanes never deadlock)."""
        async with contextlib.AsyncExitStack() as stack:
            for h in sorted(set(hosts)):
                await stack.enter_async_context(self._host_locks[h])
            yield

    async def _view(self, batch: list[Request]) -> BatchView:
        db = self._db()
        names = sorted({r.structure for r in batch} | {r.pair_structure for r in batch if r.pair_structure})
        view: BatchView = await db.scaler_view.remote(names)
        groups = sorted({r.structure for r in batch if r.structure_type != "container"}
                        | {r.pair_structure for r in batch if r.structure_type != "container" and r.pair_structure})
        if groups:
            # Applications and users: their sums, containers, hosts, limits, usages.
            extra: GroupScalerView = await db.group_scaler_view.remote(groups)
            view["structures"].update(extra["structures"])
            view["hosts"].update(extra["hosts"])
            view["limits"].update(extra["limits"])
            view["usages"].update(extra["usages"])
            view["users"] = extra["users"]
        self._serve_hosts(view["hosts"].values())  # a simulated host's node is its agent's
        return view

    async def _process_node(self, queued: list[tuple[Request, str]]) -> None:
        """A node lane's batch: container requests of hosts that one ContainerScaler serves,
        each with the host `_dispatch` found for it.

        Their hosts' locks are taken first and the view is read once, under them. A batch
        this cannot take as it stands goes through `_process`, which reads again: an inactive
        Scaler or aligned polling (they wait outside the locks), a container on a host not
        locked (subscribed again elsewhere since), a host another shard owns now.
        """
        db = self._db()
        batch = [r for r, _ in queued]
        locked = {h for _, h in queued}
        async with self._hosts_locked(locked):
            view = await self._view(batch)
            settings = ScalerSettings.from_config(view["config"])
            shards = await self._shards.read()
            if (settings.active and not settings.aligned_polling and locked.issuperset(view["hosts"])
                    and all(shard_of(h, shards) == self.shard for h in view["hosts"])):
                now = time.time()
                kept, purged = filter_requests(batch, now, settings.request_timeout_s)
                entries = [self._entry(r, "expired" if now - r.timestamp > settings.request_timeout_s
                                       else "superseded", "") for r in purged]
                if kept:
                    # Superseded and expired requests go to the decision log first, in the same record.
                    await self._apply_all(sort_requests(kept), view, entries)
                elif entries:
                    await db.log_requests.remote(entries)
                return
        await self._process(batch)

    async def _process(self, batch: list[Request]) -> None:
        db = self._db()
        view = await self._view(batch)
        settings = ScalerSettings.from_config(view["config"])
        now = time.time()
        kept, purged = filter_requests(batch, now, settings.request_timeout_s)
        entries = [self._entry(r, "expired" if now - r.timestamp > settings.request_timeout_s else "superseded", "")
                   for r in purged]
        if entries:  # superseded and expired requests are in the decision log too
            await db.log_requests.remote(entries)
        if not settings.active:
            # Inactive Scaler: requests wait (until they expire), as in the original.
            self.pending = kept + self.pending
            return
        if settings.aligned_polling:
            # The original's clock-aligned polling tick, for side-by-side benchmarks.
            p = settings.polling_frequency_s
            await asyncio.sleep(p - (time.time() % p))
        shards = await self._shards.read()
        if any(shard_of(h, shards) != self.shard for h in view["hosts"]):
            # Hosts of other shards: planned here, applied through their owners, one request at a time.
            if entries:
                await db.log_requests.remote(entries)
            await self._apply_across(sort_requests(kept), shards)
            return
        async with self._hosts_locked(view["hosts"]):
            # Read again under the locks: another lane or a subscription may just have
            # changed these hosts' accounting.
            view = await self._view(kept)
            entries += await self._apply_all(sort_requests(kept), view)

    async def _apply_all(self, requests: list[Request], view: BatchView,
                         logged_first: Sequence[DecisionEntry] = ()) -> list[DecisionEntry]:
        """Apply these requests against the view's accounting and record what changed in one
        StateDB call (`logged_first`: decision-log entries of the batch that go before)."""
        db = self._db()
        hosts = self._hosts_of(view)
        read = dict(hosts)
        currents: Currents = {}
        maxes: Currents = {}
        entries: Optional[list[DecisionEntry]] = None
        if len(requests) > 1 and all(r.structure_type == "container" and not r.pair_structure for r in requests):
            entries = await self._apply_batched(requests, view, hosts, currents)
        if entries is None:
            entries = []
            for i, req in enumerate(requests):
                if i % YIELD_EVERY == YIELD_EVERY - 1:
                    await asyncio.sleep(0)  # let submit and ping through during a long batch
                if req.pair_structure:
                    entries += await self._apply_swap(req, view, hosts, currents, maxes)
                elif req.structure_type in ("application", "user"):
                    entries += await self._apply_group(req, view, hosts, currents, maxes)
                else:
                    entries.append(await self._apply_one(req, view, hosts, currents))
        # NOTE: a plan never changes a Host in place (it returns a new one), so the hosts
        # whose accounting changed are those no longer the object parsed from the view.
        host_updates: dict[str, dict[str, HostFields]] = {
            n: {r: _resource_fields(h, r) for r in ("cpu", "mem")}
            for n, h in hosts.items()
            if h is not read.get(n)
        }
        if logged_first:
            entries = [*logged_first, *entries]
        if maxes:
            await db.record_group_scaling.remote(currents, maxes, host_updates, entries)
        elif currents or host_updates or entries:
            await db.record_scaling.remote(currents, host_updates, entries)
        for n, fields in host_updates.items():
            self._recorded(n, view["hosts"].get(n), fields, hosts[n])
        return entries

    def _hosts_of(self, view: BatchView) -> dict[str, Host]:
        """The view's hosts parsed, each reused where its document is the one last parsed or recorded."""
        out: dict[str, Host] = {}
        for n, doc in view["hosts"].items():
            cached = self._parsed_hosts.get(n)
            if cached is None or cached[0] != doc:
                cached = self._parsed_hosts[n] = (doc, Host.model_validate(doc))
            out[n] = cached[1]
        return out

    def _recorded(self, name: str, doc: Optional[Document], fields: dict[str, HostFields], host: Host) -> None:
        """Remember `host` as the parse of the document the StateDB holds now: `doc` with these
        resources' fields updated, as `record_scaling` updates them."""
        if doc is None:
            return
        resources = dict(doc.get("resources") or {})
        for r, f in fields.items():
            resources[r] = {**(resources.get(r) or {}), **f}
        self._parsed_hosts[name] = ({**doc, "resources": resources}, host)

    @staticmethod
    def _container(doc: Document, currents: Currents) -> Container:
        """The container of a stored document, with `current` as this batch has left it."""
        container = Container.model_validate(doc)
        for res, value in currents.get(container.name, {}).items():
            container.resources[res].current = value
        return container

    def _plan(
        self, req: Request, view: BatchView, hosts: dict[str, Host], currents: Currents,
    ) -> Union[tuple[Container, Plan], tuple[str, str]]:
        """(container, plan) of one container request against the accounting as it is
        now (this batch's changes included), or (outcome, reason) saying why not."""
        doc = view["structures"].get(req.structure)
        if doc is None or doc.get("subtype") != "container":
            return "refused", "not a subscribed container"
        container = self._container(doc, currents)
        host = hosts.get(container.host)
        if host is None:
            return "refused", f"host {container.host!r} unknown"
        if not host.reachable:
            # The Membership marked it: its Ray node died or its ContainerScaler is silent.
            reason = f"host {container.host!r} unreachable: {_unreachable(host)}"
            log.warning("request %s of %s dropped: %s", req.action, req.structure, reason)
            return "dropped", reason
        plan = plan_container_request(
            req,
            container,
            host,
            quota_and_memory_of(container),  # the base of the change: planning needs no cpuset
            view["usages"].get(container.name, {}).get("mem"),
            # Only a memory request has a floor of usage + margin: a CPU one reads no limits.
            mem_margin_of(container, _limits_of(view["limits"].get(container.name))) if req.resource == "mem" else 0.0,
            self._distribution(host) if req.resource == "cpu" else [],
        )
        if plan.outcome == "refused":
            return "refused", plan.reason
        return container, plan

    async def _apply_one(
        self, req: Request, view: BatchView, hosts: dict[str, Host], currents: Currents,
    ) -> DecisionEntry:
        """Plan, write and account one container request."""
        t0 = time.perf_counter()
        planned = self._plan(req, view, hosts, currents)
        if isinstance(planned[0], str):
            return self._entry(req, planned[0], planned[1])
        container, plan = planned
        try:
            if plan.change is not None:  # nothing to write: accounted as planned, as in a batch
                await self._write(container, plan.change)
        except Exception as e:
            if not isinstance(e, Unavailable):  # a silent node would not answer the put-back either
                await self._put_back([(container, hosts[container.host])])
            return self._entry(req, "failed", _reason(e))
        # Accounting follows only a write that succeeded.
        hosts[container.host] = plan.host
        currents.setdefault(container.name, {})[req.resource] = plan.new_current
        self.apply_s.append(time.perf_counter() - t0)
        metrics.scaler_apply(self.apply_s[-1])
        return self._entry(req, plan.outcome, plan.reason, plan.amount, plan.new_current)

    async def _apply_batched(
        self, requests: list[Request], view: BatchView, hosts: dict[str, Host], currents: Currents,
    ) -> Optional[list[DecisionEntry]]:
        """Container requests of the hosts of one node: planned one after the other, written
        in one call to the node, accounted host by host.

        A host whose writes the node all took is accounted. If the node refuses a write of a
        host, that host's writes are put back and its requests applied one at a time (which
        finds the culprit; a host with one request fails it, as `_apply_one` does); the other
        hosts' writes stand. None (nothing written) when the requests' hosts have different
        nodes, for the caller to apply them one at a time. `hosts` and `currents` change only
        for hosts whose writes were all taken.
        """
        t0 = time.perf_counter()
        work_hosts = dict(hosts)
        work_currents = {n: dict(v) for n, v in currents.items()}
        rows: list[tuple[Request, str, Union[tuple[Container, Plan], tuple[str, str]]]] = []
        """Each request with its container's host ("" for none) and its plan or why none."""
        for i, req in enumerate(requests):
            if i % YIELD_EVERY == YIELD_EVERY - 1:
                await asyncio.sleep(0)  # let submit and ping through during a long batch
            p = self._plan(req, view, work_hosts, work_currents)
            if isinstance(p[0], str):
                rows.append((req, str(view["structures"].get(req.structure, {}).get("host") or ""), p))
                continue
            container, plan = cast(tuple[Container, Plan], p)
            work_hosts[container.host] = plan.host
            work_currents.setdefault(container.name, {})[req.resource] = plan.new_current
            rows.append((req, container.host, p))
        planned = [(req, host, cast(tuple[Container, Plan], p)) for req, host, p in rows if not isinstance(p[0], str)]
        if len({self._node_of(host) for _, host, _ in planned}) > 1:
            return None  # not one node's batch: one request at a time
        refused: dict[str, str] = {}
        """Host → what its node refused first."""
        items: list[Write] = [(c.name, plan.change, bounds_of(c)) for _, _, (c, plan) in planned
                              if plan.change is not None]
        if items:
            node_host = planned[0][1]
            try:
                results = await self._write_many(node_host, items)
            except Unavailable as e:
                return ([self._entry(req, *cast(tuple[str, str], p)) for req, _, p in rows if isinstance(p[0], str)]
                        + [self._entry(req, "failed", _reason(e)) for req, _, _ in planned])
            host_of = {c.name: c.host for _, _, (c, _) in planned}
            for r in results:
                if not r.ok:
                    refused.setdefault(host_of.get(r.name, ""), f"{r.name}: {r.error}")
        if refused:
            await self._put_back([(self._container(view["structures"][c.name], currents), hosts[host])
                                  for _, host, (c, _) in planned if host in refused])
        entries = [self._entry(req, *cast(tuple[str, str], p)) for req, host, p in rows
                   if isinstance(p[0], str) and host not in refused]
        good = [(req, host, cp) for req, host, cp in planned if host not in refused]
        for host in {host for _, host, _ in rows if host in work_hosts and host not in refused}:
            self.batches["written"] += 1
            hosts[host] = work_hosts[host]
        per_request = (time.perf_counter() - t0) / max(len(planned), 1)
        for req, _, (c, plan) in good:
            currents.setdefault(c.name, {})[req.resource] = plan.new_current
            self.apply_s.append(per_request)
            metrics.scaler_apply(per_request)
            entries.append(self._entry(req, plan.outcome, plan.reason, plan.amount, plan.new_current))
        for host, what in sorted(refused.items()):
            mine = [req for req, h, _ in rows if h == host]
            if len(mine) == 1:
                # One request: its write was refused and put back, as `_apply_one` does.
                entries.append(self._entry(mine[0], "failed", what.removeprefix(f"{mine[0].structure}: ")))
                continue
            self.batches["put_back"] += 1
            log.warning("a batch of %d requests on %s was put back: %s", len(mine), host, what)
            for req in mine:
                entries.append(await self._apply_one(req, view, hosts, currents))
        return entries

    async def _apply_group(
        self,
        req: Request,
        view: BatchView,
        hosts: dict[str, Host],
        currents: Currents,
        maxes: Currents,
        parts: Optional[_Parts] = None,
    ) -> list[DecisionEntry]:
        """An application's or user's request: split over its containers, every part written or none (§4.5, §4.8).

        The pure planner bounds, splits and plans every part against its host before
        anything is written; then the parts are written one by one, and if a node
        refuses one, every part already written is put back and nothing is recorded.
        """
        t0 = time.perf_counter()
        doc: Optional[Document]
        if req.structure_type == "user":
            doc = view.get("users", {}).get(req.structure)
        else:
            doc = view["structures"].get(req.structure)
            doc = doc if doc is not None and doc.get("subtype") == "application" else None
        if doc is None:
            return [self._entry(req, "refused", f"no {req.structure_type} {req.structure!r}")]
        try:
            placement = self._placement(view, hosts, currents)
            if req.structure_type == "user":
                apps = {n: Application.model_validate(d) for n, d in view["structures"].items()
                        if d.get("subtype") == "application"}
                plan = plan_user_request(req, User.model_validate(doc), apps, placement)
            else:
                plan = plan_application_request(req, Application.model_validate(doc), placement)
        except Exception as e:  # e.g. Σ current of the containers above the application's max
            return [self._entry(req, "refused", _reason(e))]
        decision: DecisionEntry = {"split": plan.split, "usages": plan.usages, "bases": plan.bases}
        if plan.app_split:
            decision["app_split"] = plan.app_split
        if plan.outcome == "refused":
            return [self._entry(req, "refused", plan.reason, extra=decision)]
        if parts is None:
            written = await self._write_all([(placement.containers[part.request.structure], part.plan.change)
                                             for part in plan.parts], hosts)
        else:
            written = await self._commit_parts(
                [(placement.containers[part.request.structure], part.plan, req.resource) for part in plan.parts],
                hosts, {**hosts, **plan.hosts}, parts)
        if written:
            return [self._entry(req, "failed", f"{written}; no part applied", extra=decision)]
        hosts.update(plan.hosts)
        out = [self._entry(req, plan.outcome, plan.reason, plan.granted, None, extra=decision)]
        for part in plan.parts:
            name = part.request.structure
            currents.setdefault(name, {})[req.resource] = part.plan.new_current
            if part.plan.new_max is not None:
                maxes.setdefault(name, {})[req.resource] = part.plan.new_max
            out.append(self._entry(part.request, part.plan.outcome, part.plan.reason, part.plan.amount,
                                   part.plan.new_current, extra={"parent": req.structure}))
        for name, value in plan.new_max.items():
            maxes.setdefault(name, {})[req.resource] = value
        self.apply_s.append(time.perf_counter() - t0)
        metrics.scaler_apply(self.apply_s[-1], req.structure_type)
        return out

    async def _apply_swap(self, req: Request, view: BatchView, hosts: dict[str, Host],
                          currents: Currents, maxes: Currents, tx: Optional[_Parts] = None) -> list[DecisionEntry]:
        """A ReBalancer swap (§4.7): `amount` from `pair_structure` (donor) to `structure`, whole or not at all.

        Containers: the donor's part is planned first and must be granted in full, then
        the receiver's against the host as the donor's part leaves it; both are written
        (donor first, so the freed cores serve the receiver) or neither. Applications:
        the `max` of both changes in the StateDB, the donor never under its containers' Σ current.
        """
        donor = req.pair_structure or ""
        give = req.model_copy(update={"structure": donor, "amount": -req.amount, "pair_structure": req.structure,
                                      "action": req.action.replace("Up", "Down")})
        if req.structure_type != "container":
            return [self._swap_max(req, give, view, maxes)]
        work_hosts = dict(hosts)
        work_currents = {n: dict(v) for n, v in currents.items()}
        parts: list[tuple[Request, Container, Plan]] = []
        for part in (give, req):
            planned = self._plan(part, view, work_hosts, work_currents)
            if isinstance(planned[0], str):
                return [self._entry(req, "refused" if planned[0] != "dropped" else "dropped",
                                    f"{part.structure}: {planned[1]}; no part applied")]
            container, plan = planned
            if plan.outcome != "applied" or round(plan.amount) != part.amount:
                return [self._entry(req, "refused", f"{part.structure} can take {plan.amount:g} of {part.amount:g}"
                                    f" ({plan.reason or 'bounds'}); no part applied")]
            work_hosts[container.host] = plan.host
            work_currents.setdefault(container.name, {})[req.resource] = plan.new_current
            parts.append((part, container, plan))
        if tx is None:
            written = await self._write_all([(container, plan.change) for _, container, plan in parts], hosts)
        else:
            written = await self._commit_parts([(container, plan, req.resource) for _, container, plan in parts],
                                               hosts, work_hosts, tx)
        if written:
            return [self._entry(req, "failed", f"{written}; no part applied")]
        hosts.update(work_hosts)
        currents.update(work_currents)
        (gpart, _, gplan), (_, _, rplan) = parts
        return [self._entry(req, "applied", "", rplan.amount, rplan.new_current),
                self._entry(gpart, "applied", "", gplan.amount, gplan.new_current,
                            extra={"swap_with": req.structure})]

    def _swap_max(self, req: Request, give: Request, view: BatchView, maxes: Currents) -> DecisionEntry:
        """The `max` of two applications (or users): the donor's goes down by `amount`, the receiver's up."""
        store = {**view["structures"], **view.get("users", {})}
        donor_doc, receiver_doc = store.get(give.structure), store.get(req.structure)
        if donor_doc is None or receiver_doc is None:
            return self._entry(req, "refused", "donor or receiver unknown; no part applied")
        res = req.resource
        d, r = (dict(x.get("resources", {}).get(res) or {}) for x in (donor_doc, receiver_doc))
        d_max = maxes.get(give.structure, {}).get(res, d.get("max"))
        r_max = maxes.get(req.structure, {}).get(res, r.get("max"))
        if d_max is None or r_max is None:
            return self._entry(req, "refused", f"no {res} max to swap; no part applied")
        floor = max(float(d.get("min") or 0), float(d.get("current") or 0))
        if d_max - req.amount < floor:
            return self._entry(req, "refused", f"{give.structure} max {d_max:g} − {req.amount} is under its min or "
                               f"Σ current ({floor:g}); no part applied")
        maxes.setdefault(give.structure, {})[res] = d_max - req.amount
        maxes.setdefault(req.structure, {})[res] = r_max + req.amount
        return self._entry(req, "applied", "", req.amount, None,
                           extra={"new_max": r_max + req.amount, "donor_new_max": d_max - req.amount})

    def _placement(self, view: BatchView, hosts: dict[str, Host], currents: Currents) -> Placement:
        """The containers of the view as the accounting holds them now (this batch's changes included)."""
        containers = {name: self._container(d, currents) for name, d in view["structures"].items()
                      if d.get("subtype") == "container"}
        return Placement(
            containers=containers,
            hosts=dict(hosts),
            physical={n: physical_of(c, hosts[c.host]) for n, c in containers.items() if c.host in hosts},
            usages=view["usages"],
            mem_margins={n: mem_margin_of(c, _limits_of(view["limits"].get(n))) for n, c in containers.items()},
            distributions={h: self._distribution(host) for h, host in hosts.items()},
        )

    def _distribution(self, host: Host) -> CoreOrder:
        """The host's cores in the order they are handed out (§4.6), ordered again only when
        its topology or its number of cores changes (`policy.cores.CoreOrder`, which
        `scale_cpu` trusts only for a map of exactly its cores)."""
        topology = getattr(host, "topology", None)
        core_map = host.resources["cpu"].core_usage_mapping or {}
        key = topology or len(core_map)
        cached = self._distributions.get(host.name)
        if cached is None or cached[0] != key:
            cached = self._distributions[host.name] = (key, core_order(core_map, distribution_of(host)))
        return cached[1]

    # ------------------------------------------------------------------ requests that span shards

    async def _apply_across(self, requests: list[Request], shards: int) -> None:
        """Requests that span hosts of several shards (shard 0): each planned here against a
        fresh view, applied through the owners' `apply_part`, all or nothing."""
        db = self._db()
        for req in requests:
            view = await self._view([req])
            hosts = {n: Host.model_validate(d) for n, d in view["hosts"].items()}
            currents: Currents = {}
            maxes: Currents = {}
            parts = _Parts(shards)
            if req.pair_structure:
                entries = await self._apply_swap(req, view, hosts, currents, maxes, parts)
            elif req.structure_type in ("application", "user"):
                entries = await self._apply_group(req, view, hosts, currents, maxes, parts)
            else:
                # A container subscribed since it was dispatched: its owner applies it.
                if (await db.container_hosts.remote([req.structure])).get(req.structure):
                    await self._dispatch([req])
                    continue
                entries = [self._entry(req, "refused", "not a subscribed container")]
            # The owners recorded their containers; the groups' `max` and the decision log are recorded here.
            # That record is the commit point: an owner that waited too long for `release_part` asks the
            # StateDB (`decide_tx`), and once it has put its part back the record is refused.
            group_maxes = {n: v for n, v in maxes.items() if n not in parts.containers}
            if parts.held:
                for e in entries:
                    e["tx"] = parts.tx
            try:
                await db.record_scaling.remote({}, {}, entries, group_maxes or None)
            except Exception as e:
                log.warning("%s of %s not recorded, its parts put back: %s", req.action, req.structure, _reason(e))
                await self._release_parts(parts, put_back=True)
                continue
            await self._release_parts(parts, put_back=False)

    def _host_parts(self, items: list[tuple[Container, Plan, str]], before: dict[str, Host],
                    after: dict[str, Host]) -> list[HostPart]:
        """The planned writes of a request, one part per host (in name order, as locks are taken)."""
        by_host: dict[str, list[ContainerWrite]] = {}
        for c, plan, res in items:
            by_host.setdefault(c.host, []).append(ContainerWrite(
                name=c.name, resource=res, before=c.resources[cast(ResourceName, res)].current, change=plan.change,
                bounds=bounds_of(c), new_current=plan.new_current, new_max=plan.new_max))
        return [HostPart(host=h, before=before[h], after=after.get(h, before[h]), writes=tuple(ws))
                for h, ws in sorted(by_host.items())]

    async def _on_shard(self, name: str, method: str, *args: object) -> object:
        """Call `method` of the Scaler shard `name` (this one directly); its own errors come
        out as they were raised, a shard that does not answer as `Unavailable`."""
        if name == self.name:
            return await getattr(self, method)(*args)
        for looked_up_again in (False, True):
            try:
                return await asyncio.wait_for(getattr(self._handles.get(name), method).remote(*args),
                                              timeout=FORWARD_TIMEOUT_S)
            except asyncio.TimeoutError:
                raise Unavailable(f"scaler shard {name} did not answer within {FORWARD_TIMEOUT_S:g} s") from None
            except ScError:
                raise
            except Exception as e:
                if not _is_ray_error(e):
                    raise unwrap(e) from None
                self._handles.forget(name)
                if not looked_up_again and _died_for_good(e):
                    # Killed for good (restarts are unlimited): a shard of a control plane deployed
                    # again is a new actor under that name. Its accounting check refuses a part
                    # the dead one had already applied.
                    continue
                raise Unavailable(f"scaler shard {name} did not answer: {_reason(e)}") from None
        raise AssertionError("unreachable")

    async def _owner(self, host: str) -> str:
        return scaler_name(shard_of(host, await self._shards.read()))

    async def _call_owner(self, host: str, method: str, *args: object) -> object:
        """Call `method` of the shard that owns `host` (this one directly). An owner that is
        not running makes the count be read again: after a deployment with fewer shards,
        the host has another owner now."""
        owner = await self._owner(host)
        try:
            return await self._on_shard(owner, method, *args)
        except Unavailable:
            self._shards.invalidate()
            again = await self._owner(host)
            if again == owner:
                raise
            return await self._on_shard(again, method, *args)

    async def _commit_parts(self, items: list[tuple[Container, Plan, str]], before: dict[str, Host],
                            after: dict[str, Host], parts: _Parts) -> str:
        """Apply a planned request host by host through the owners: "" when every part is
        applied (and held, see `release_part`), else what refused one, after every part
        applied before it was put back."""
        for part in self._host_parts(items, before, after):
            owner = scaler_name(shard_of(part.host, parts.shards))
            txid = f"{parts.tx}/{part.host}"
            try:
                refused = cast(str, await self._on_shard(owner, "apply_part", txid, part))
            except Exception as e:
                refused = _reason(e)
                # No answer: the part may still be applied there; it is put back when it is.
                parts.held.append((owner, txid, part.host))
            if refused:
                done = sorted({h for _, t, h in parts.held if t != txid})
                await self._release_parts(parts, put_back=True)
                return (f"host {part.host} (scaler shard {owner}): {refused}"
                        + (f"; put back on {', '.join(done)}" if done else ""))
            parts.held.append((owner, txid, part.host))
            parts.containers.update(w.name for w in part.writes)
        return ""

    async def _release_parts(self, parts: _Parts, put_back: bool) -> None:
        """Keep (or put back) every held part, the last applied first; each owner releases its host."""
        held, parts.held = parts.held, []
        for owner, txid, host in reversed(held):
            try:
                if not await self._on_shard(owner, "release_part", txid, put_back):
                    log.warning("the part on %s was no longer held by %s (kept): it could not be %s", host, owner,
                                "put back" if put_back else "released")
            except Exception as e:
                log.warning("the part on %s could not be %s by %s: %s", host, "put back" if put_back else "kept",
                            owner, _reason(e))

    async def apply_part(self, txid: str, part: HostPart) -> str:
        """Apply one host's part of a request the coordinator planned: "" when written and
        recorded, else why not (nothing changed).

        Takes the host's lock and holds it until `release_part(txid)` (or PART_HOLD_S): the
        accounting must still be what the part was planned against (`part_still_fits`), the
        node must take every write (else they are put back), then the containers' `current`
        and `max` and the host's accounting are recorded in one StateDB call.
        """
        lock = self._host_locks[part.host]
        try:
            await asyncio.wait_for(lock.acquire(), timeout=PART_LOCK_S)
        except asyncio.TimeoutError:
            return f"the host's accounting stayed locked for {PART_LOCK_S:g} s"
        try:
            db = self._db()
            names = [w.name for w in part.writes]
            view: ScalerView = await db.scaler_view.remote(names)
            self._serve_hosts(view["hosts"].values())  # a simulated host's node is its agent's
            host_doc = view["hosts"].get(part.host)
            host = Host.model_validate(host_doc) if host_doc else None
            docs = {n: d for n, d in view["structures"].items() if d.get("host") == part.host}
            refused = part_still_fits(part, host, {
                w.name: docs[w.name].get("resources", {}).get(w.resource, {}).get("current")
                for w in part.writes if w.name in docs})
            if refused or host is None:
                lock.release()
                return refused
            before = [Container.model_validate(docs[n]) for n in names]
            items: list[Write] = [(w.name, w.change, w.bounds) for w in part.writes if w.change is not None]
            if items:
                try:
                    results = await self._write_many(part.host, items)
                except Exception as e:
                    lock.release()
                    return f"the node did not take the writes: {_reason(e)}"
                bad = [r for r in results if not r.ok]
                if bad:
                    await self._put_back([(c, host) for c in before])
                    lock.release()
                    return f"{bad[0].name}: {bad[0].error}"
            currents: Currents = {w.name: {cast(ResourceName, w.resource): w.new_current} for w in part.writes}
            maxes: Currents = {w.name: {cast(ResourceName, w.resource): w.new_max}
                               for w in part.writes if w.new_max is not None}
            try:
                await db.record_scaling.remote(currents, _host_fields(part.host, part.after), [], maxes or None)
            except Exception as e:
                await self._put_back([(c, host) for c in before])
                lock.release()
                return f"not recorded: {_reason(e)}"
            applied_at = time.time()
        except BaseException:
            if lock.locked() and txid not in self._held:
                lock.release()
            raise
        timer = asyncio.get_running_loop().create_task(self._hold_expires(txid))
        self._held[txid] = _Held(part, host, before, timer, applied_at)
        try:
            # Should this shard die holding it, the shard started again takes it back from there.
            await db.hold_part.remote(txid, self.name, applied_at, (part, host, before))
        except Exception as e:
            log.warning("the part on %s is held, but not in the StateDB: %s", part.host, _reason(e))
        if txid in self._given_up:  # the coordinator put it back while it was being applied
            await self.release_part(txid, put_back=True)
            return "put back: the coordinator gave up waiting for it"
        return ""

    async def _hold_expires(self, txid: str, wait_s: Optional[float] = None) -> None:
        """The coordinator neither kept nor put back the part within PART_HOLD_S (it died, or
        hangs): the StateDB says whether the request was recorded (keep it) or not (put it
        back, and the coordinator's late record is refused), so it is applied on every host or
        on none. Asked again every second while the StateDB does not answer."""
        await asyncio.sleep(PART_HOLD_S if wait_s is None else wait_s)
        held = self._held.get(txid)
        if held is None:
            return
        tx = txid.partition("/")[0]
        while True:
            try:
                outcome = cast(str, await asyncio.wait_for(self._db().decide_tx.remote(tx, held.applied_at),
                                                           timeout=FORWARD_TIMEOUT_S))
                break
            except Exception as e:
                log.warning("what became of transaction %s is not known yet: %s", tx, _reason(e))
                await asyncio.sleep(1.0)
        if self._held.pop(txid, None) is None:
            return  # the coordinator released it meanwhile
        put_back = outcome == "aborted"
        log.warning("the coordinator neither kept nor put back its part on %s within %g s: %s (%s)",
                    held.part.host, PART_HOLD_S, "put back" if put_back else "kept", outcome)
        await self._end_part(held, put_back, txid)

    async def release_part(self, txid: str, put_back: bool) -> bool:
        """End a part `apply_part` holds: keep it, or put it back (the node's limits and the
        recorded accounting as they were before it); the host's lock is released. False when
        the part was no longer held (ended after PART_HOLD_S, or this shard restarted)."""
        held = self._held.pop(txid, None)
        if held is None:
            if put_back:
                self._given_up.append(txid)  # if it is still being applied, it is put back then
            return False
        held.timer.cancel()
        await self._end_part(held, put_back, txid)
        return True

    async def _recover_parts(self) -> None:
        """Take back the parts this shard held when it stopped (the StateDB kept them): each
        ends as `_hold_expires` ends it, at its time. Raises while the StateDB does not answer."""
        held: list[tuple[str, HeldPart]] = await self._db().held_parts.remote(self.name)
        for txid, h in held:
            if txid in self._held:
                continue
            part, host, containers = cast(tuple[HostPart, Host, list[Container]], h["part"])
            await self._host_locks[part.host].acquire()
            wait_s = max(0.0, PART_HOLD_S - (time.time() - h["applied_at"]))
            timer = asyncio.get_running_loop().create_task(self._hold_expires(txid, wait_s))
            self._held[txid] = _Held(part, host, containers, timer, h["applied_at"])
            log.warning("the part on %s held before this shard stopped is held again (%.1f s left)", part.host,
                        wait_s)

    async def _end_part(self, held: _Held, put_back: bool, txid: str) -> None:
        """Keep a held part, or put it back; its host's lock is released."""
        try:
            if put_back:
                await self._put_back_part(held)
        finally:
            self._host_locks[held.part.host].release()
        try:
            await self._db().part_ended.remote(txid)
        except Exception as e:
            log.warning("the end of the part on %s is not in the StateDB: %s", held.part.host, _reason(e))

    async def _put_back_part(self, held: _Held) -> None:
        """Put a held part back: the node's limits and the recorded accounting as before it."""
        await self._put_back([(c, held.host) for c in held.containers])
        res = {w.name: cast(ResourceName, w.resource) for w in held.part.writes}
        currents: Currents = {c.name: {res[c.name]: c.resources[res[c.name]].current or 0.0}
                              for c in held.containers}
        maxes: Currents = {c.name: {res[c.name]: c.resources[res[c.name]].max or 0.0}
                           for c in held.containers
                           if any(w.name == c.name and w.new_max is not None for w in held.part.writes)}
        await self._db().record_scaling.remote(currents, _host_fields(held.part.host, held.host), [], maxes or None)

    # ------------------------------------------------------------------ writes on the nodes

    async def _write(self, container: Container, change: LimitChange) -> Applied:
        """Write one container's limits on its node; raises what refused it."""
        node = self._handles.node(container.host)
        applied: Applied = await self._on_node(
            container.host, node.apply.remote(container.name, change, bounds_of(container)))
        return applied

    async def _write_all(self, writes: list[tuple[Container, Optional[LimitChange]]], hosts: dict[str, Host]) -> str:
        """Write these containers one by one, all or nothing: "" when all were written, else
        what refused one, after every write up to it was put back (`hosts`: the accounting before)."""
        written: list[Container] = []
        try:
            for container, change in writes:
                if change is None:
                    continue
                written.append(container)
                await self._write(container, change)
        except Exception as e:
            # All or nothing: the failed part and every one before it go back.
            await self._put_back([(c, hosts[c.host]) for c in reversed(written)])
            return f"{written[-1].name}: {_reason(e)}"
        return ""

    async def _write_many(self, host: str, items: list[Write]) -> list[Written]:
        """Write several containers' limits on one node in one call; what became of each, in order.

        The changes and bounds travel as their fields (`ChangeFields`, `BoundsFields`): a
        pydantic object costs Ray about ten times as much to pickle and unpickle."""
        fields = [(name, change.model_dump(exclude_none=True),
                   None if bounds is None else {"cpu": bounds.cpu, "mem": bounds.mem})
                  for name, change, bounds in items]
        results: list[Written] = await self._on_node(host, self._handles.node(host).apply_many.remote(fields))
        return results

    async def _put_back(self, containers: list[tuple[Container, Host]]) -> None:
        """Write back the limits the accounting holds for these containers (each with its
        host as the accounting holds it), undoing any partial write: one call per node.

        A put-back that fails is logged: the StructuresSnapshoter finds the drift and
        has the recorded limits written again (`reapply`).
        """
        by_node: dict[str, tuple[str, list[Write]]] = {}
        for c, host in containers:
            before = physical_of(c, host)
            _, items = by_node.setdefault(self._node_of(c.host), (c.host, []))
            items.append((c.name, LimitChange.model_validate(before.model_dump()), None))
        for host_name, items in by_node.values():
            try:
                results = await self._write_many(host_name, items)
            except Exception as e:
                log.warning("putting back %s on %s failed: %s", [n for n, _, _ in items], host_name, _reason(e))
                continue
            for r in results:
                if not r.ok:
                    log.warning("putting back %s on %s failed: %s", r.name, host_name, r.error)

    def _entry(self, r: Request, outcome: str, reason: str, amount: Optional[float] = None,
               new_current: Optional[float] = None, extra: Optional[DecisionEntry] = None) -> DecisionEntry:
        self.outcomes[outcome] += 1
        d = cast(DecisionEntry, r.model_dump(exclude_none=True))
        d["outcome"] = outcome
        d["reason"] = reason
        d["applied_at"] = time.time()
        if extra:
            d.update(extra)
        if amount is not None:
            d["amount_applied"] = amount
        if new_current is not None:
            d["new_current"] = new_current
        self._to_count.append(d)
        return d

    def _count_requests(self) -> None:
        """The decision-log entries made since the last call, into the requests metric."""
        if self._to_count:
            entries, self._to_count = self._to_count, []
            metrics.requests(entries, self._labeled)

    def _labeled(self, structure: str) -> bool:
        """Whether the requests metric keeps this structure's name: the first
        PER_CONTAINER_GAUGES_MAX structures seen; the others are counted without it."""
        if structure in self._labeled_structures:
            return True
        if len(self._labeled_structures) < metrics.PER_CONTAINER_GAUGES_MAX:
            self._labeled_structures.add(structure)
            return True
        return False

    async def reapply(self, names: list[str]) -> list[str]:
        """Write the recorded limits of these containers back to their nodes (drift repair);
        those of hosts another shard owns by that shard."""
        db = self._db()
        done: list[str] = []
        host_of: dict[str, str] = await db.container_hosts.remote(names)
        by_host: dict[str, list[str]] = {}
        mine: list[str] = []
        for name, h in host_of.items():
            (mine if await self._owner(h) == self.name else by_host.setdefault(h, [])).append(name)
        for h, theirs in by_host.items():
            try:
                done += cast(list[str], await self._call_owner(h, "reapply", theirs))
            except Exception as e:
                log.warning("the limits of %s not restored: %s", theirs, _reason(e))
        names = mine
        host_of = {n: host_of[n] for n in names}
        async with self._hosts_locked(host_of.values()):
            view: ScalerView = await db.scaler_view.remote(names)
            self._serve_hosts(view["hosts"].values())
            for name in names:
                doc = view["structures"].get(name)
                if doc is None or doc.get("subtype") != "container":
                    continue
                c = Container.model_validate(doc)
                host = view["hosts"].get(c.host)
                if host is None:
                    continue
                want = physical_of(c, Host.model_validate(host))
                try:
                    await self._write(c, LimitChange.model_validate(want.model_dump()))
                    done.append(name)
                except Exception as e:
                    log.warning("could not restore the limits of %s: %s", name, _reason(e))
        return done

    # ------------------------------------------------------------------ subscriptions

    async def subscribe_container(self, container: Document, limits: Optional[Document] = None) -> Document:
        """Place a container on its host: cores, memory, limits on the node, documents.

        Checks before anything changes: the name, no structure of that name, the
        host exists and is reachable, its node lists the container, the host has the
        free CPU and memory (`policy.subscription.subscribe`). Then writes the limits
        on the node, then the documents and the host accounting in one StateDB record.
        A node that does not answer is `Unavailable`; one that refuses the limits, `Invalid`.
        """
        try:
            check_name(container.get("name", ""))
            c = Container.model_validate(container)
        except Exception as e:
            raise Invalid(str(e)) from None
        db = self._db()
        config = (await db.get.remote("services", "scaler")).get("config")
        profile = ScalerSettings.from_config(config).profile
        try:
            lim = Limits.model_validate({"name": c.name,
                                         "resources": subscription_limits(profile, (limits or {}).get("resources"))})
        except Exception as e:
            raise Invalid(str(e)) from None
        if await self._owner(c.host) != self.name:  # the accounting of `c.host` has another writer
            return cast(Document, await self._call_owner(c.host, "subscribe_container", container, limits))
        async with self._hosts_locked([c.host]):
            if await db.exists.remote("structures", c.name):
                raise Conflict(f"structure {c.name!r} already subscribed")
            try:
                host = Host.model_validate(await db.get.remote("structures", c.host))
            except KeyError:
                raise NotFound(f"host {c.host!r} not found") from None
            except ValidationError:
                raise Invalid(f"{c.host!r} is not a host") from None
            if not host.reachable:
                raise Unavailable(f"host {c.host!r} is unreachable: {_unreachable(host)}")
            self._handles.serve(host.name, host.agent)
            self._remember_agents([{"name": host.name, "agent": host.agent}])
            if c.name not in await self._listed(c.host):
                raise NotFound(f"container {c.name!r} not found on host {c.host!r}")
            plan = subscribe(c, host, distribution_of(host))
            if not plan.fits or plan.container is None or plan.host is None:
                raise Invalid(plan.reason)
            placed = plan.container
            try:
                await self._write(placed, plan.change or LimitChange())
            except ScError:
                raise  # the node did not answer (Unavailable), or refused as our own error
            except Exception as e:
                raise Invalid(f"node refused the limits: {_reason(e)}") from None
            await db.transact.remote(
                puts=[("structures", placed.model_dump(mode="json", exclude_none=True)),
                      ("limits", lim.model_dump(mode="json", exclude_none=True)),
                      ("structures", plan.host.model_dump(mode="json", exclude_none=True))]
            )
            return placed.model_dump(mode="json", exclude_none=True)

    async def _listed(self, host: str) -> list[str]:
        """The containers the node of `host` lists; `Unavailable` when it cannot say."""
        try:
            listed: list[str] = await self._on_node(host, self._handles.node(host).list_containers.remote(host))
        except ScError:
            raise
        except Exception as e:  # the node's backend failed to list: it cannot answer
            raise Unavailable(f"the ContainerScaler of host {host!r} could not list its containers: "
                              f"{_reason(e)}") from None
        return listed

    async def release_missing(self, name: str, since: float) -> bool:
        """Desubscribe a container whose cgroup has been gone since `since`, if its node still
        does not list it: its cores and memory go back to its host. True if released.

        NOTE: released, not kept: a container gone for the whole grace period was removed
        (or its LXC container stopped); subscribing it again places it afresh.
        """
        db = self._db()
        host: Optional[str] = (await db.container_hosts.remote([name])).get(name)
        if host is None:
            return False
        if await self._owner(host) != self.name:
            return bool(await self._call_owner(host, "release_missing", name, since))
        if name in await self._listed(host):
            return False
        res = (await db.get.remote("structures", name)).get("resources", {})
        await self.desubscribe_container(name)
        now = time.time()
        entry = lifecycle_entry(
            name, host, "released", now,
            f"cgroup gone since {time.strftime('%H:%M:%S', time.localtime(since))}: desubscribed, "
            f"{res.get('cpu', {}).get('current', 0):g} cpu shares and {res.get('mem', {}).get('current', 0):g} "
            f"MiB given back to host {host}")
        await db.log_requests.remote([entry])
        self.outcomes["released"] += 1
        return True

    async def desubscribe_container(self, name: str) -> None:
        """Give the container's cores and memory back to its host and forget it."""
        db = self._db()
        host_of: dict[str, str] = await db.container_hosts.remote([name])
        if name in host_of:
            if await self._owner(host_of[name]) != self.name:
                await self._call_owner(host_of[name], "desubscribe_container", name)
                return
        async with self._hosts_locked(host_of.values()):
            try:
                c = Container.model_validate(await db.get.remote("structures", name))
            except KeyError:
                raise NotFound(f"container {name!r} not found") from None
            except ValidationError:
                raise Invalid(f"{name!r} is not a container") from None
            puts: list[tuple[str, Document]] = []
            try:
                host = Host.model_validate(await db.get.remote("structures", c.host))
            except KeyError:
                log.warning("host %s of %s is gone; nothing to give back", c.host, name)
            else:
                puts.append(("structures", release(c, host).host.model_dump(mode="json", exclude_none=True)))
            for app in await db.list.remote("structures", "application"):
                if name in app.get("containers", []):
                    app["containers"] = [x for x in app["containers"] if x != name]
                    puts.append(("structures", app))
            deletes = [("structures", name)]
            if await db.exists.remote("limits", name):
                deletes.append(("limits", name))
            await db.transact.remote(puts=puts, deletes=deletes)


def _resource_fields(host: Host, resource: str) -> HostFields:
    """One resource's accounting of a host as `record_scaling` takes it: `model_dump(exclude_none=True)`
    without the copy (a core map of 128 cores; Ray copies it as it sends the call)."""
    return cast(HostFields, {k: v for k, v in host.resources[resource] if v is not None})


def _host_fields(name: str, host: Host) -> dict[str, dict[str, HostFields]]:
    """The accounting of one host as `record_scaling` takes it."""
    return {name: {r: host.resources[r].model_dump(exclude_none=True) for r in ("cpu", "mem")}}


def _died_for_good(e: BaseException) -> bool:
    """The actor of the call is dead and will not restart (killed with no_restart)."""
    import ray.exceptions

    return isinstance(e, ray.exceptions.ActorDiedError)


def _is_ray_error(e: BaseException) -> bool:
    """A Ray error of the call itself (a lost object, a node that left), not an actor's own error."""
    try:
        import ray.exceptions
    except ImportError:  # pragma: no cover - ray is a dependency
        return False
    return isinstance(e, ray.exceptions.RayError) and not isinstance(e, ray.exceptions.RayTaskError)


def _reason(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    return str(cause if cause is not None else e) or type(e).__name__
