"""StateDB: the single source of truth, one named detached actor.

Holds every document (structures, limits, rules, services, users). Each acknowledged
change goes through `DocumentStore.commit` (journal, fsync) before the method
returns, so a SIGKILL of this actor loses nothing acknowledged: Ray restarts it and
`__init__` reloads the Parquet checkpoint and replays the journal.

Usage windows, events, the request log and heartbeats are volatile: they are
rebuilt within a window after a restart, and `instance` changes, so the Guardian
asks for every document again.

Group commit (`store/documents.py`). The actor runs up to `MAX_CONCURRENCY` calls at
once, in threads; each method body runs under the store's lock (`DocumentStore.run`,
put around every method but `checkpoint` by `_one_at_a_time`), so every method is still
a transaction and a check-then-commit is atomic. Its changes are applied in memory and
queued; the call returns only once the fsync that covers them is done, and concurrent
calls share that fsync. No answer, read or write, leaves before every change it saw is
durable, so nobody acts on a change a crash could still take back. A batch the disk
refuses fails each call of it (StorageFull 507 / StorageFailed 503) and is undone in
memory. Calls stay synchronous, so tests and benches call a `StateDB` in process as
before. This class is only the actor's shell: the state, its
validation and CRUD live in `store/state.py`, the per-consumer views in
`store/views.py`, the multi-document operations in `store/operations.py` and the
Refeeder's sums in `store/sums.py`, all plain Python that tests drive without Ray.
"""
from __future__ import annotations

import functools
from typing import Any, Callable, Iterable, Optional, TypeVar

from pydantic import JsonValue

from . import metrics
from .collector import freeze_loaded, relax_collector
from .columns import HostWindow
from .model import Document, check_name
from .store import operations as ops
from .store import views
from .store.state import HeldPart, State, validate
from .store.views import (
    Bound, Drift, EventEntry, GroupGuardianView, GroupScalerView, GuardianChanges, HealthView, HostEnsured, HostMark,
    HostFields, RebalancerView, RequestEntry, ScalerView, Status, TimeseriesSnapshot, Usage, WindowQuery,
)

MAX_CONCURRENCY = 128
"""Calls the actor runs at once (threads): what can share one fsync. More wait in Ray's queue."""
ACTOR_OPTIONS = {"max_concurrency": MAX_CONCURRENCY, "enable_task_events": False}
"""Ray options of the StateDB actor beyond the control plane's common ones (cluster/placement.py).

`enable_task_events=False`: its calls are not reported to the GCS as task events, which
saves about 70 µs of the actor's CPU per call (of ~380 µs for an empty call, measured
here); what it turns off is the StateDB's calls in the dashboard's task list, `ray list
tasks` and the timeline (the actor itself is still listed, with its state and restarts).
"""

_C = TypeVar("_C", bound=type)


def _one_at_a_time(cls: _C) -> _C:
    """Every public method but `checkpoint` runs under the store's lock and returns once durable
    (`DocumentStore.run`); `checkpoint` takes the committer's turn instead (it must not hold the lock)."""
    def wrap(fn: Callable[..., Any]) -> Callable[..., Any]:
        @functools.wraps(fn)
        def method(self: "StateDB", *args: Any, **kwargs: Any) -> Any:
            return self.store.run(lambda: fn(self, *args, **kwargs))
        return method
    for name, fn in list(vars(cls).items()):
        if callable(fn) and not name.startswith("_") and name != "checkpoint":
            setattr(cls, name, wrap(fn))
    return cls


@_one_at_a_time
class StateDB:
    def __init__(self, state_dir: str, fsync: bool = True, checkpoint_every_s: float = 60.0):
        relax_collector()
        self.state = State.open(state_dir, fsync=fsync, checkpoint_every_s=checkpoint_every_s)
        freeze_loaded()  # the documents loaded: the collector need not walk them again
        # The same objects as the state's, for tests and benches that reach in.
        self.store = self.state.docs
        self.usages, self.usage_t, self.heartbeats = self.state.usages, self.state.usage_t, self.state.heartbeats
        self.instance = self.state.instance
        """Changes each time this actor starts: a Guardian holding older documents asks for all."""

    # ------------------------------------------------------------------ status

    def ping(self) -> Status:
        metrics.statedb(self.store.journal.size_bytes(), self.store.checkpoint_age_s())
        return views.status(self.state)

    def checkpoint(self) -> int:
        self.store.checkpoint()
        return self.store.seq

    def seq(self) -> int:
        return self.store.seq

    # ------------------------------------------------------------------ generic reads and writes (validated)

    def get(self, collection: str, name: str) -> Document:
        return self.state.get(collection, name)

    def exists(self, collection: str, name: str) -> bool:
        return self.store.get(collection, name) is not None

    def put(self, collection: str, doc: Document, create: bool = False) -> Document:
        """Insert or replace one document (validated). `create` refuses to replace."""
        return self.state.put(collection, doc, create)

    def delete(self, collection: str, name: str) -> None:
        self.state.delete(collection, name)

    def patch(self, collection: str, name: str, changes: dict[str, JsonValue],
              expect: Optional[dict[str, JsonValue]] = None) -> Document:
        """Set dotted fields of one document at once, after checking `expect`; validated, all or nothing."""
        return self.state.patch(collection, name, changes, expect)

    def transact(self, puts: Iterable[tuple[str, Document]] = (), deletes: Iterable[tuple[str, str]] = ()) -> int:
        """Several documents written and deleted in one journal record."""
        return self.state.transact(puts, deletes)

    # ------------------------------------------------------------------ Guardian

    def guardian_changes(self, names: list[str], since: int, need: list[str], instance: str) -> GuardianChanges:
        """What one Guardian window needs that the Guardian does not hold yet (`views.guardian_changes`)."""
        return views.guardian_changes(self.state, names, since, need, instance)

    def guardian_report(self, usages: dict[str, Usage], bounds: dict[str, dict[str, Bound]],
                        events: list[EventEntry], window_end: float) -> None:
        """Usage of a window (volatile), new upper/lower (durable), events (volatile)."""
        ops.guardian_report(self.state, usages, bounds, events, window_end)
        metrics.statedb(self.store.journal.size_bytes(), self.store.checkpoint_age_s())

    def guardian_changes_many(self, queries: list[WindowQuery], instance: str) -> GuardianChanges:
        """`guardian_changes` of several hosts' windows in one call (`views.guardian_changes_many`)."""
        return views.guardian_changes_many(self.state, queries, instance)

    def guardian_report_windows(self, windows: list[HostWindow], bounds: dict[str, dict[str, Bound]],
                                events: list[EventEntry]) -> None:
        """`guardian_report` of several hosts' windows, each kept as it came (`store.usage`)."""
        ops.guardian_report_windows(self.state, windows, bounds, events)
        metrics.statedb(self.store.journal.size_bytes(), self.store.checkpoint_age_s())

    def recent_usage(self, name: str) -> dict[str, float]:
        return dict(self.usages.get(name, {}))

    def group_guardian_view(self, host: str, subtype: str = "application") -> GroupGuardianView:
        """Applications (or users) anchored at `host`, with their sums and limits (reference §3.8)."""
        return views.group_guardian_view(self.state, host, subtype)

    # ------------------------------------------------------------------ Scaler, ReBalancer

    def scaler_view(self, names: list[str]) -> ScalerView:
        """Containers, their hosts and limits, and the latest usage, in one call."""
        return views.scaler_view(self.state, names)

    def group_scaler_view(self, names: list[str]) -> GroupScalerView:
        """Applications and users with their containers, hosts, limits and sums, in one call."""
        return views.group_scaler_view(self.state, names)

    def rebalancer_view(self, host: str) -> RebalancerView:
        """The ReBalancer's round for one node's window (`views.rebalancer_view`)."""
        return views.rebalancer_view(self.state, host)

    def record_scaling(self, currents: dict[str, dict[str, float]], hosts: dict[str, dict[str, HostFields]],
                       log_entries: list[RequestEntry], maxes: Optional[dict[str, dict[str, float]]] = None) -> int:
        """New `current` (and `max`) and host accounting in one record; absolute values, so retries are safe."""
        return ops.record_scaling(self.state, currents, hosts, log_entries, maxes)

    def record_group_scaling(self, currents: dict[str, dict[str, float]], maxes: dict[str, dict[str, float]],
                             hosts: dict[str, dict[str, HostFields]], log_entries: list[RequestEntry]) -> int:
        """`record_scaling` with new `max` values (containers, applications, users), in one record."""
        return ops.record_scaling(self.state, currents, hosts, log_entries, maxes)

    def decide_tx(self, tx: str, since: float) -> str:
        """What became of a request applied across Scaler shards (`ops.decide_tx`)."""
        return ops.decide_tx(self.state, tx, since)

    def hold_part(self, txid: str, owner: str, applied_at: float, part: object) -> None:
        """Remember a part its owner holds until it ends it (`part_ended`), for the owner started again."""
        check_name(owner)
        self.state.held_parts[txid] = {"owner": owner, "applied_at": applied_at, "part": part}

    def part_ended(self, txid: str) -> None:
        self.state.held_parts.pop(txid, None)

    def held_parts(self, owner: str) -> list[tuple[str, HeldPart]]:
        """The parts `owner` held when it stopped (txid and what ends each)."""
        return [(t, h) for t, h in self.state.held_parts.items() if h["owner"] == owner]

    def host_marks(self) -> dict[str, HostMark]:
        """Each host's reachability and agent, without its document (`views.host_marks`)."""
        return views.host_marks(self.state)

    def container_hosts(self, names: list[str]) -> dict[str, str]:
        """The host of each of these containers (others left out): the Scaler's lane per host."""
        return views.container_hosts(self.state, names)

    # ------------------------------------------------------------------ snapshoters

    def drift(self, observed: dict[str, Usage], since_seq: int) -> list[Drift]:
        """Containers whose real limits differ from their recorded `current` (not written after `since_seq`)."""
        return views.drift(self.state, observed, since_seq)

    def containers_seen(self, listed: dict[str, list[str]], grace_s: float) -> dict[str, float]:
        """Marks the containers of these hosts their nodes no longer list; returns every missing one."""
        return ops.containers_seen(self.state, listed, grace_s)

    def timeseries_snapshot(self, host: Optional[str], names: list[str],
                            services: Optional[list[str]] = None) -> TimeseriesSnapshot:
        """One consistent snapshot for the DatabaseSnapshoter (reference §7.2)."""
        return views.timeseries_snapshot(self.state, host, names, services)

    def timeseries_groups(self, hosts: list[str], services: Optional[list[str]] = None) -> TimeseriesSnapshot:
        """Applications and users anchored at any of `hosts`, and `services`' configs (DatabaseSnapshoter)."""
        return views.timeseries_groups(self.state, hosts, services)

    # ------------------------------------------------------------------ logs, heartbeats, health

    def heartbeat(self, service: str) -> None:
        self.state.beat(service)

    def log_requests(self, entries: list[RequestEntry]) -> None:
        self.state.requests.extend(entries)

    def recent_events(self, name: Optional[str] = None, limit: int = 100) -> list[EventEntry]:
        return views.recent_events(self.state, name, limit)

    def recent_requests(self, name: Optional[str] = None, limit: int = 100) -> list[RequestEntry]:
        return views.recent_requests(self.state, name, limit)

    def health_view(self) -> HealthView:
        """What `policy.health.check` looks at, in one call; the API adds the live nodes."""
        return views.health_view(self.state)

    # ------------------------------------------------------------------ Orchestrator (multi-document, all or nothing)

    def create_with_limits(self, doc: Document, limits: Optional[Document]) -> Document:
        """A new structure and its limits document; Conflict if the name is taken."""
        return ops.create_with_limits(self.state, doc, limits)

    def delete_structure(self, name: str, subtype: str) -> None:
        """Delete an application (out of its user's clusters) or a host without containers, and its limits."""
        ops.delete_structure(self.state, name, subtype)

    def link_container_to_app(self, container: str, app: str) -> Document:
        """Append a container to an application (reference §6); Conflict if it is in one already."""
        return ops.link_container_to_app(self.state, container, app)

    def unlink_container_from_app(self, container: str, app: str) -> Document:
        return ops.unlink_container_from_app(self.state, container, app)

    def link_app_to_user(self, user: str, app: str) -> Document:
        """Give an application to a user (reference §6); Conflict if it belongs to one already."""
        return ops.link_app_to_user(self.state, user, app)

    def unlink_app_from_user(self, user: str, app: str) -> Document:
        return ops.unlink_app_from_user(self.state, user, app)

    def delete_user(self, name: str) -> None:
        """Delete a user and clear `user` of its applications."""
        ops.delete_user(self.state, name)

    # ------------------------------------------------------------------ Membership (sc_actors/membership.py)

    def ensure_host(self, doc: Document, node_id: str = "") -> HostEnsured:
        """The host structure of a node whose ContainerScaler answers, reachable; created when missing."""
        return ops.ensure_host(self.state, doc, node_id)

    def set_host_reachable(self, name: str, reachable: bool, reason: str = "") -> bool:
        """Mark a host, and so its containers, reachable or not; True if that changed."""
        return ops.set_host_reachable(self.state, name, reachable, reason)

    # NOTE: last in the class, so `list[...]` in the annotations above is the builtin, not this method.
    def list(self, collection: str, subtype: Optional[str] = None) -> list[Document]:
        return self.state.list(collection, subtype)


__all__ = ["StateDB", "validate", "check_name"]
