"""The StateDB's writes that touch several documents, and the volatile reports, on a `State` (no Ray).

Each checks first and then writes everything in one journal record, so a refused call
changes nothing and a concurrent reader never sees half of it. They come from:

- the Guardian (`guardian_report`) and the Scaler (`record_scaling`): absolute values,
  never deltas, so a retried call changes nothing more;
- the StructuresSnapshoter (`containers_seen`);
- the HTTP API (serve/): structures with their limits, links between containers,
  applications and users (reference §6), deletions that clear what points at the
  deleted document;
- the Membership actor (cluster/membership.py) as Ray nodes come and go: a host's
  `reachable` flag (with `unreachable_reason` and `unreachable_since`) covers its
  containers, the Scaler drops their requests while it is False.
"""
from __future__ import annotations

import copy
from collections.abc import Sequence
from typing import Any, Optional

from ..columns import HostWindow
from ..errors import Conflict, NotFound
from ..model import Document
from .documents import delete, patch, put
from .entries import EventEntry, RequestEntry, lifecycle_entry
from .journal import FieldPath, Ops
from .state import State, validate
from .views import Bound, HostEnsured, HostFields, Usage

_NONE = object()
"""A field a document does not have (differs from every value, None too)."""

# --------------------------------------------------------------------------- Guardian, Scaler, snapshoter


def guardian_report(state: State, usages: dict[str, Usage], bounds: dict[str, dict[str, Bound]],
                    events: list[EventEntry], window_end: float) -> None:
    """Usage of a window (volatile), new upper/lower (durable), events (volatile).

    NOTE: only `upper` and `lower` are written, never the whole limits
    document, so an Orchestrator edit of `boundary` racing with the
    Guardian is never lost (reference §11.3).
    """
    for name, u in usages.items():
        state.usages.put(name, u, window_end)
    _report_bounds(state, bounds, events)


def guardian_report_windows(state: State, windows: Sequence[HostWindow], bounds: dict[str, dict[str, Bound]],
                            events: list[EventEntry]) -> None:
    """`guardian_report` of several hosts' windows: each window is kept as it came."""
    for w in windows:
        state.usages.put_window(w)
    _report_bounds(state, bounds, events)


def _report_bounds(state: State, bounds: dict[str, dict[str, Bound]], events: list[EventEntry]) -> None:
    """The upper/lower that moved, each limits document patched in those two fields only."""
    ops: Ops = []
    for name, per_res in bounds.items():
        doc = state.docs.get("limits", name)
        if doc is None:
            continue
        resources = doc.get("resources")
        sets: list[tuple[FieldPath, Any]] = []
        for res, (upper, lower) in per_res.items():
            r = resources.get(res) if isinstance(resources, dict) else None
            if not isinstance(r, dict) or r.get("upper") != upper or r.get("lower") != lower:
                sets += [(["resources", res, "upper"], upper), (["resources", res, "lower"], lower)]
        if sets:
            ops.append(patch("limits", name, sets))
    seq = state.commit(ops)
    for op in ops:
        state.bounds_seq[op["name"]] = seq
    state.events.extend(events)


def record_scaling(state: State, currents: dict[str, dict[str, float]], hosts: dict[str, dict[str, HostFields]],
                   log_entries: list[RequestEntry], maxes: Optional[dict[str, dict[str, float]]] = None) -> int:
    """New `current` (and `max`) of structures or users and the new host accounting, in one record.

    Values are absolute (not deltas), so a retried call changes nothing more. Each
    document is patched in the fields whose value changed, and one where none did is
    not written.
    """
    maxes = maxes or {}
    txs = {e["tx"] for e in log_entries if e.get("tx")}
    for tx in txs:
        if state.transactions.get(tx) == "aborted":
            raise Conflict(f"transaction {tx} was given up by an owner of its hosts: its parts are put back")
    ops: Ops = []
    for name in sorted(set(currents) | set(maxes)):
        collection = "structures" if state.docs.get("structures", name) is not None else "users"
        doc = state.docs.get(collection, name)
        if doc is None:
            continue
        sets: list[tuple[FieldPath, Any]] = []
        for field, values in (("current", currents.get(name, {})), ("max", maxes.get(name, {}))):
            for res, number in values.items():
                if doc["resources"][res].get(field, _NONE) != number:
                    sets.append((["resources", res, field], number))
        if sets:
            ops.append(patch(collection, name, sets))
    for name, resources in hosts.items():
        doc = state.docs.get("structures", name)
        if doc is None:
            continue
        sets = []
        for res, fields in resources.items():
            stored = doc["resources"][res]
            for field, value in fields.items():
                old = stored.get(field, _NONE)
                # NOTE: a host's core map is set whole when it changed. Per core it is hardly
                # smaller (a scaled container spans many cores), and comparing 128 cores in
                # Python costs more than the JSON it saves.
                if old != value:
                    sets.append((["resources", res, field], value))
        if sets:
            ops.append(patch("structures", name, sets))
    seq = state.commit(ops)
    state.requests.extend(log_entries)
    for tx in txs:
        _settle_tx(state, tx, "committed")
    return seq


TRANSACTIONS_KEPT = 10_000
"""Decided transactions remembered (the oldest forgotten first)."""


def decide_tx(state: State, tx: str, since: float) -> str:
    """What became of a request applied across Scaler shards, asked by an owner whose part the
    coordinator neither kept nor put back in time: "committed" (its decision is recorded: keep
    the part), else "aborted" from now on (put it back; the coordinator's record is refused),
    or "unknown" when this StateDB started after `since` (the part's time: keep it)."""
    decided = state.transactions.get(tx)
    if decided is not None:
        return decided
    if state.started > since:
        return "unknown"
    _settle_tx(state, tx, "aborted")
    return "aborted"


def _settle_tx(state: State, tx: str, outcome: str) -> None:
    state.transactions[tx] = outcome
    state.transactions.move_to_end(tx)
    while len(state.transactions) > TRANSACTIONS_KEPT:
        state.transactions.popitem(last=False)


def containers_seen(state: State, listed: dict[str, list[str]], grace_s: float) -> dict[str, float]:
    """Which subscribed containers the nodes of these hosts list (the StructuresSnapshoter's read).

    A container of one of these hosts that its node does not list gets
    `missing_since`, and its last usage is dropped (it measures nothing any more);
    one listed again loses it. Both go to the decision log. Returns every missing
    container of these hosts, with the time it went missing.
    """
    now = state.clock()
    present = {h: set(names) for h, names in listed.items()}
    ops: Ops = []
    entries: list[RequestEntry] = []
    missing: dict[str, float] = {}
    for doc in state.docs.values("structures"):
        host = doc.get("host")
        if doc.get("subtype") != "container" or host not in present:
            continue
        name, since = doc["name"], doc.get("missing_since")
        if name not in present[host]:
            if since is None:
                since = now
                ops.append(put("structures", name, validate("structures", {**doc, "missing_since": now})))
                state.usages.pop(name)
                entries.append(lifecycle_entry(
                    name, host, "missing", now,
                    f"its cgroup is gone from host {host}; its cores and memory go back to the host "
                    f"after {grace_s:g} s unless it comes back"))
            missing[name] = since
        elif since is not None:
            ops.append(put("structures", name, validate("structures", {k: v for k, v in doc.items()
                                                                       if k != "missing_since"})))
            entries.append(lifecycle_entry(name, host, "back", now,
                                           f"its cgroup is back on host {host} after {now - since:.0f} s"))
    state.commit(ops)
    state.requests.extend(entries)
    return missing


# --------------------------------------------------------------------------- Orchestrator (HTTP API)


def create_with_limits(state: State, doc: Document, limits: Optional[Document]) -> Document:
    """A new structure and its limits document; Conflict if the name is taken."""
    stored = validate("structures", doc)
    name = stored["name"]
    if state.docs.get("structures", name) is not None:
        raise Conflict(f"structure {name!r} already exists")
    ops = [put("structures", name, stored)]
    if limits is not None:
        ops.append(put("limits", name, validate("limits", {**limits, "name": name})))
    state.commit(ops)
    return stored


def delete_structure(state: State, name: str, subtype: str) -> None:
    """Delete an application or a host (and its limits).

    An application is also taken out of its user's clusters. A host that still
    has subscribed containers is refused (Conflict): its accounting would be lost.
    """
    doc = state.structure_of(name, subtype)
    ops: Ops = []
    if subtype == "host":
        on_it = sorted(d["name"] for d in state.docs.values("structures")
                       if d.get("subtype") == "container" and d.get("host") == name)
        if on_it:
            raise Conflict(f"host {name!r} still has containers {on_it}: desubscribe them first")
    if subtype == "application":
        for user in state.docs.values("users"):
            if name in user.get("clusters", []):
                u = copy.deepcopy(user)
                u["clusters"] = [c for c in u["clusters"] if c != name]
                ops.append(put("users", u["name"], validate("users", u)))
    ops.append(delete("structures", doc["name"]))
    if state.docs.get("limits", name) is not None:
        ops.append(delete("limits", name))
    state.commit(ops)


def _alloc_ratios(child: Document, parent: Document) -> None:
    """Each resource's `alloc_ratio` of `child`: its `max` over the parent's (reference §6)."""
    for res, r in child.get("resources", {}).items():
        pr = parent.get("resources", {}).get(res)
        if isinstance(r, dict) and isinstance(pr, dict) and r.get("max") is not None and pr.get("max"):
            r["alloc_ratio"] = r["max"] / pr["max"]


def link_container_to_app(state: State, container: str, app: str) -> Document:
    """Append a container to an application (reference §6), with `alloc_ratio`s.

    Conflict if the container already belongs to any application.
    """
    c = state.structure_of(container, "container")
    a = state.structure_of(app, "application")
    for other in state.docs.values("structures"):
        if other.get("subtype") == "application" and container in other.get("containers", []):
            raise Conflict(f"container {container!r} is already in application {other['name']!r}")
    _alloc_ratios(c, a)
    a["containers"] = [*a.get("containers", []), container]
    stored_a = validate("structures", a)
    state.commit([put("structures", container, validate("structures", c)), put("structures", app, stored_a)])
    return stored_a


def unlink_container_from_app(state: State, container: str, app: str) -> Document:
    a = state.structure_of(app, "application")
    if container not in a.get("containers", []):
        raise NotFound(f"container {container!r} is not in application {app!r}")
    a["containers"] = [x for x in a["containers"] if x != container]
    stored = validate("structures", a)
    state.commit([put("structures", app, stored)])
    return stored


def _user(state: State, name: str) -> Document:
    u = state.docs.copy("users", name)
    if u is None:
        raise NotFound(f"user {name!r} not found")
    return u


def link_app_to_user(state: State, user: str, app: str) -> Document:
    """Give an application to a user: `app.user` and `user.clusters` (reference §6).

    Conflict if the application already belongs to a user.
    """
    u = _user(state, user)
    a = state.structure_of(app, "application")
    for other in state.docs.values("users"):
        if app in other.get("clusters", []):
            raise Conflict(f"application {app!r} already belongs to user {other['name']!r}")
    if a.get("user") not in (None, user):
        raise Conflict(f"application {app!r} already belongs to user {a['user']!r}")
    _alloc_ratios(a, u)
    a["user"] = user
    u["clusters"] = [*u.get("clusters", []), app]
    stored_u = validate("users", u)
    state.commit([put("structures", app, validate("structures", a)), put("users", user, stored_u)])
    return stored_u


def unlink_app_from_user(state: State, user: str, app: str) -> Document:
    u = _user(state, user)
    if app not in u.get("clusters", []):
        raise NotFound(f"application {app!r} does not belong to user {user!r}")
    u["clusters"] = [c for c in u["clusters"] if c != app]
    stored = validate("users", u)
    ops = [put("users", user, stored)]
    a = state.docs.copy("structures", app)
    if a is not None and a.get("user") == user:
        a.pop("user")
        ops.append(put("structures", app, validate("structures", a)))
    state.commit(ops)
    return stored


def delete_user(state: State, name: str) -> None:
    """Delete a user and clear `user` of its applications."""
    if state.docs.get("users", name) is None:
        raise NotFound(f"user {name!r} not found")
    ops: Ops = []
    for app in state.docs.values("structures"):
        if app.get("subtype") == "application" and app.get("user") == name:
            a = copy.deepcopy(app)
            a.pop("user")
            ops.append(put("structures", a["name"], validate("structures", a)))
    ops.append(delete("users", name))
    state.commit(ops)


# --------------------------------------------------------------------------- Membership


def ensure_host(state: State, doc: Document, node_id: str = "") -> HostEnsured:
    """The host structure of a node whose ContainerScaler answers, reachable.

    Created from `doc` when missing. An existing one (subscribed through the API,
    or from an earlier life of the node) keeps its accounting; it is only marked
    reachable, and a capacity different from the node's is reported in `mismatch`.
    """
    name = doc["name"]
    existing = state.docs.copy("structures", name)
    if existing is None:
        stored = validate("structures", {**doc, "reachable": True, "node_id": node_id})
        state.commit([put("structures", name, stored)])
        return {"created": True, "mismatch": None}
    if existing.get("subtype") != "host":
        raise Conflict(f"{name!r} is a {existing.get('subtype')}, not a host")
    mismatch = []
    for res, unit in (("cpu", "shares"), ("mem", "MiB")):
        have = existing.get("resources", {}).get(res, {}).get("max")
        node = doc["resources"][res]["max"]
        if have != node:
            mismatch.append(f"{res} max is {have:g} {unit} in the StateDB, {node:g} on the node")
    updated = {k: v for k, v in existing.items() if k not in ("unreachable_reason", "unreachable_since")}
    updated.update(reachable=True, node_id=node_id)
    if updated != existing:
        state.commit([put("structures", name, validate("structures", updated))])
    return {"created": False, "mismatch": "; ".join(mismatch) or None}


def set_host_reachable(state: State, name: str, reachable: bool, reason: str = "") -> bool:
    """Mark a host, and so its containers, reachable or not; True if that changed.

    An unknown name is left alone (False): only hosts a Ray node carried are marked.
    """
    doc = state.docs.copy("structures", name)
    if doc is None or doc.get("subtype") != "host" or doc.get("reachable", True) == reachable:
        return False
    doc["reachable"] = reachable
    if reachable:
        doc.pop("unreachable_reason", None)
        doc.pop("unreachable_since", None)
    else:
        doc["unreachable_reason"] = reason
        doc["unreachable_since"] = state.clock()
    state.commit([put("structures", name, validate("structures", doc))])
    return True
