"""Typed read-models of the StateDB: what each consumer gets in one call, and the log entries.

Each view is one function of the `State` (no Ray), returning a TypedDict whose keys are
exactly what the StateDB has always sent, so the consumers (Guardian, Scaler, ReBalancer,
snapshoters, Membership, `GET /health`) read the same dicts as before, now with types.
Stored documents inside a view are `model.Document`; a service's `config` is
`model.JsonObject` (the original's upper-case keys, read through its settings' `from_config`).
"""
from __future__ import annotations

import os
from typing import Iterable, Mapping, Optional

from typing_extensions import TypedDict

from ..model import Document, JsonObject
from .entries import EventEntry, RequestEntry
from .state import State

Usage = dict[str, float]
"""One structure's usage of its last window, per resource (cpu in shares, mem in MiB)."""

Bound = tuple[float, float]
"""(upper, lower) of one resource, as the Guardian reports them."""


# --------------------------------------------------------------------------- status


class Status(TypedDict):
    """`StateDB.ping`: the journal's state and this actor's life."""

    seq: int
    changes: int
    """Changes committed since this actor started (a journal record, one `seq`, holds one or more)."""
    replayed: int
    journal_bytes: int
    checkpoint_age_s: float
    started: float
    pid: int


# --------------------------------------------------------------------------- Guardian


class GuardianChanges(TypedDict):
    """`StateDB.guardian_changes`: what one Guardian window needs that the Guardian does not hold.

    `rules` and `config` are None when not written since the Guardian's `since`.
    """

    instance: str
    seq: int
    structures: dict[str, Document]
    limits: dict[str, Optional[Document]]
    gone: list[str]
    rules: Optional[list[Document]]
    config: Optional[JsonObject]
    """The guardian service's config."""


class GroupGuardianView(TypedDict):
    """`StateDB.group_guardian_view`: applications (or users) anchored at a host, with their sums."""

    structures: list[Document]
    limits: dict[str, Optional[Document]]
    usages: dict[str, Usage]


# --------------------------------------------------------------------------- Scaler, ReBalancer


class ScalerView(TypedDict):
    """`StateDB.scaler_view`: containers, their hosts, limits and latest usage, the Scaler's config."""

    structures: dict[str, Document]
    hosts: dict[str, Document]
    limits: dict[str, Optional[Document]]
    usages: dict[str, Usage]
    config: JsonObject
    """The scaler service's config."""


class GroupScalerView(TypedDict):
    """`StateDB.group_scaler_view`: applications (with sums) and their containers, users, hosts."""

    structures: dict[str, Document]
    users: dict[str, Document]
    hosts: dict[str, Document]
    limits: dict[str, Optional[Document]]
    usages: dict[str, Usage]


class RebalancerView(GroupScalerView):
    """`StateDB.rebalancer_view`: the group scaler view of what is anchored at a host, plus the
    ReBalancer's config and the rules by name."""

    applications: list[str]
    user_names: list[str]
    config: JsonObject
    """The rebalancer service's config."""
    rules: dict[str, Document]


HostFields = dict[str, float | dict[str, dict[str, float]]]
"""New accounting fields of one host resource (`max`, `free`, `core_usage_mapping`...)."""


# --------------------------------------------------------------------------- snapshoters


SeriesFields = dict[str, Optional[float]]
"""Field → value of one resource in a time-series snapshot (None when the document has none)."""


class SeriesEntry(TypedDict):
    """One container or application in `TimeseriesSnapshot.structures`."""

    name: str
    subtype: str
    resources: dict[str, SeriesFields]
    limits: dict[str, SeriesFields]


class UserSeries(TypedDict):
    """One user in `TimeseriesSnapshot.users`: the series fields of its resources, with the Refeeder's sums."""

    name: str
    resources: dict[str, SeriesFields]


class TimeseriesSnapshot(TypedDict):
    """`StateDB.timeseries_snapshot`: one consistent snapshot for the DatabaseSnapshoter (§7.2)."""

    structures: list[SeriesEntry]
    users: list[UserSeries]
    services: dict[str, JsonObject]
    """Service name → its config."""


class Drift(TypedDict):
    """One entry of `StateDB.drift`: a container whose real limit differs from its `current`."""

    structure: str
    host: Optional[str]
    resource: str
    recorded: Optional[float]
    real: float


# --------------------------------------------------------------------------- health, membership


class JournalHealth(TypedDict):
    """The journal's part of `HealthView` (the fields of `policy.health.JournalState`)."""

    records: int
    size_bytes: int
    checkpoint_age_s: float
    written_age_s: float
    checkpoint_every_s: float
    state_dir: str


class HealthView(TypedDict):
    """`StateDB.health_view`: what `policy.health.check` looks at; the API adds the live nodes."""

    now: float
    started: float
    structures: list[Document]
    users: list[Document]
    rules: list[Document]
    services: list[Document]
    snapshoter_config: JsonObject
    """The structures_snapshoter's config."""
    journal: JournalHealth
    heartbeats: dict[str, float]
    """Every heartbeat by name, the shards' too (`guardian-1`, `scaler-1`, …, which have no document)."""


class HostMark(TypedDict):
    """What Membership and the StructuresSnapshoter read of each host each round (`host_marks`)."""

    reachable: bool
    agent: Optional[str]
    """The host whose ContainerScaler serves it, where that is another one (a simulated host)."""


class HostEnsured(TypedDict):
    """`StateDB.ensure_host`: whether the host structure was created, and a capacity mismatch."""

    created: bool
    mismatch: Optional[str]


# --------------------------------------------------------------------------- the views
# Applications and users carry the Refeeder's sums (`usage`, `current`) whenever they
# are read; the Guardian and the Scaler get them, with everything else a group
# request needs, in one call; the DatabaseSnapshoter gets one consistent snapshot per window.


def status(state: State) -> Status:
    docs = state.docs
    return {"seq": docs.seq, "changes": docs.changes, "replayed": docs.replayed, "journal_bytes": docs.journal.size_bytes(),
            "checkpoint_age_s": docs.checkpoint_age_s(), "started": state.started, "pid": os.getpid()}


def guardian_changes(state: State, names: list[str], since: int, need: list[str], instance: str) -> GuardianChanges:
    """What one Guardian window needs that the Guardian does not hold yet, in one call.

    The container structures of `names` (one node's window) and their limits
    written after `since` (this StateDB's seq the Guardian last saw for that
    node), plus those in `need`; the names that are no container any more; the
    rules and the Guardian's config when written after `since`. When `instance`
    is not this StateDB's (it restarted, or the Guardian is new), everything. A
    limits document whose last write is a Guardian's upper/lower (`State.bounds_seq`)
    does not count as changed: the Guardian shard of its host computed them (each
    host has one), and the limit chain computes them again from `current`.
    """
    docs = state.docs
    full = instance != state.instance or since < 0
    lws = docs.last_write_seq
    bounds_seq = state.bounds_seq
    wanted = set(need)
    structures: dict[str, Document] = {}
    limits: dict[str, Optional[Document]] = {}
    gone: list[str] = []
    for n in names:
        d = docs.get("structures", n)
        if d is None or d.get("subtype") != "container":
            gone.append(n)
        elif (full or n in wanted or lws.get(("structures", n), -1) > since
              or (lim := lws.get(("limits", n), -1)) > since and bounds_seq.get(n) != lim):
            structures[n] = d
            limits[n] = docs.get("limits", n)
    return {
        "instance": state.instance,
        "seq": docs.seq,
        "structures": structures,
        "limits": limits,
        "gone": gone,
        "rules": list(docs.values("rules")) if full or docs.collection_seq.get("rules", -1) > since else None,
        "config": state.config("guardian") if full or lws.get(("services", "guardian"), -1) > since else None,
    }


WindowQuery = tuple[str, list[str], int, list[str]]
"""(host, names, since, need) of one host's window: `guardian_changes`'s arguments."""


def guardian_changes_many(state: State, queries: list[WindowQuery], instance: str) -> GuardianChanges:
    """`guardian_changes` of several hosts' windows (one node's push) in one answer.

    The documents of every host's window merged; the rules and the config when
    written after the oldest `since` of them.
    """
    out: Optional[GuardianChanges] = None
    for host, names, since, need in queries:
        one = guardian_changes(state, names, since, need, instance)
        if out is None:
            out = one
            continue
        out["structures"].update(one["structures"])
        out["limits"].update(one["limits"])
        out["gone"] += one["gone"]
        if out["rules"] is None:
            out["rules"] = one["rules"]
        if out["config"] is None:
            out["config"] = one["config"]
    return out if out is not None else guardian_changes(state, [], 1 << 62, [], instance)


def _groups(state: State, collection: str) -> Iterable[Document]:
    """The applications (of `structures`) or the users."""
    for d in state.docs.values(collection):
        if collection == "users" or d.get("subtype") == "application":
            yield d


def group_guardian_view(state: State, host: str, subtype: str = "application") -> GroupGuardianView:
    """Applications (or users) anchored at `host`, with their sums and limits (reference §3.8).

    The Guardian evaluates each once per window of its anchor's node.
    """
    collection = "users" if subtype == "user" else "structures"
    refeeder = state.refeeder()
    docs = [refeeder.enrich(d, collection) for d in _groups(state, collection)
            if refeeder.anchor(d, collection) == host]
    state.beat("refeeder")
    return {
        "structures": docs,
        "limits": {d["name"]: state.docs.get("limits", d["name"]) for d in docs},
        "usages": {d["name"]: {res: r["usage"] for res, r in d.get("resources", {}).items()
                               if isinstance(r, dict) and r.get("usage") is not None} for d in docs},
    }


def _hosts(state: State, containers: Iterable[Document]) -> dict[str, Document]:
    """The host structures of these containers."""
    return {h: d for h in {c.get("host") for c in containers}
            if h and (d := state.docs.get("structures", h)) is not None}


def scaler_view(state: State, names: list[str]) -> ScalerView:
    """Containers, their hosts and limits, and the latest usage, in one call."""
    structures = {n: d for n in names if (d := state.docs.get("structures", n)) is not None}
    return {
        "structures": structures,
        "hosts": _hosts(state, (s for s in structures.values() if s.get("subtype") == "container")),
        "limits": {n: state.docs.get("limits", n) for n in structures},
        "usages": {n: dict(state.usages.get(n, {})) for n in structures},
        "config": state.config("scaler"),
    }


def group_scaler_view(state: State, names: list[str]) -> GroupScalerView:
    """Applications and users with what their requests need, in one call.

    Their containers (and a user's applications), those containers' hosts, limits
    and last usage; applications and users carry their sums.
    """
    docs, refeeder = state.docs, state.refeeder()
    apps: dict[str, Document] = {}
    users: dict[str, Document] = {}
    for n in names:
        d = docs.get("structures", n)
        if d is not None and d.get("subtype") == "application":
            apps[n] = refeeder.enrich(d, "structures")
        u = docs.get("users", n)
        if u is not None:
            users[n] = refeeder.enrich(u, "users")
            for a in u.get("clusters", []):
                d = docs.get("structures", a)
                if a not in apps and d is not None and d.get("subtype") == "application":
                    apps[a] = refeeder.enrich(d, "structures")
    containers = {
        c: d for a in apps.values() for c in a.get("containers", [])
        if (d := docs.get("structures", c)) is not None and d.get("subtype") == "container"
    }
    return {
        "structures": {**apps, **containers},
        "users": users,
        "hosts": _hosts(state, containers.values()),
        "limits": {n: docs.get("limits", n) for n in containers},
        "usages": {n: dict(state.usages.get(n, {})) for n in containers},
    }


def rebalancer_view(state: State, host: str) -> RebalancerView:
    """The ReBalancer's round for one node's window: its config and rules, and the
    applications anchored at `host` (with the users anchored there) as `group_scaler_view` gives them."""
    refeeder = state.refeeder()
    apps = [d["name"] for d in _groups(state, "structures") if refeeder.anchor(d, "structures") == host]
    users = [u["name"] for u in _groups(state, "users") if refeeder.anchor(u, "users") == host]
    view = group_scaler_view(state, apps + users)
    return {**view, "applications": apps, "user_names": users, "config": state.config("rebalancer"),
            "rules": {d["name"]: d for d in state.docs.values("rules")}}


def timeseries_snapshot(state: State, host: Optional[str], names: list[str],
                        services: Optional[list[str]] = None) -> TimeseriesSnapshot:
    """One consistent snapshot for the DatabaseSnapshoter (reference §7.2).

    The containers `names` (one node's window), the applications and users
    anchored at `host`, and the configs of `services`: each with the values
    the StateDB holds now (`usage` of the last window, `current`, `max`, `min`,
    `upper`, `lower`, `boundary`).
    """
    structures: list[SeriesEntry] = []
    for n in names:
        d = state.docs.get("structures", n)
        if d is not None and d.get("subtype") == "container":
            structures.append(_series_entry(state, d, state.usages.get(n, {})))
    users: list[UserSeries] = []
    if host is not None:
        refeeder = state.refeeder()
        for d in _groups(state, "structures"):
            if refeeder.anchor(d, "structures") == host:
                structures.append(_series_entry(state, refeeder.enrich(d, "structures"), {}))
        for u in _groups(state, "users"):
            if refeeder.anchor(u, "users") == host:
                resources = refeeder.enrich(u, "users").get("resources", {})
                users.append({"name": u["name"], "resources": _fields(resources, _STRUCTURE_FIELDS)})
    return {"structures": structures, "users": users, "services": {s: state.config(s) for s in services or ()}}


def timeseries_groups(state: State, hosts: list[str], services: Optional[list[str]] = None) -> TimeseriesSnapshot:
    """`timeseries_snapshot` without containers, for several hosts at once: the applications
    and users anchored at any of `hosts`, and the configs of `services`.

    The DatabaseSnapshoter's containers come from the Guardian's frames; only these come
    from here. No hosts: only the configs, without looking at any document.
    """
    structures: list[SeriesEntry] = []
    users: list[UserSeries] = []
    if hosts:
        at = set(hosts)
        refeeder = state.refeeder()
        for d in _groups(state, "structures"):
            if refeeder.anchor(d, "structures") in at:
                structures.append(_series_entry(state, refeeder.enrich(d, "structures"), {}))
        for u in _groups(state, "users"):
            if refeeder.anchor(u, "users") in at:
                resources = refeeder.enrich(u, "users").get("resources", {})
                users.append({"name": u["name"], "resources": _fields(resources, _STRUCTURE_FIELDS)})
    return {"structures": structures, "users": users, "services": {s: state.config(s) for s in services or ()}}


_STRUCTURE_FIELDS = ("current", "max", "min", "usage")
_LIMIT_FIELDS = ("upper", "lower", "boundary")


def _fields(resources: Document, fields: tuple[str, ...]) -> dict[str, SeriesFields]:
    """These fields of each resource (None where missing): what the time series keep."""
    return {res: {f: r.get(f) for f in fields} for res, r in resources.items() if isinstance(r, dict)}


def _series_entry(state: State, doc: Document, usage: Mapping[str, float]) -> SeriesEntry:
    resources = _fields(doc.get("resources", {}), _STRUCTURE_FIELDS)
    for res, value in usage.items():
        if res in resources:
            resources[res]["usage"] = value
    limits = (state.docs.get("limits", doc["name"]) or {}).get("resources", {})
    return {"name": doc["name"], "subtype": doc.get("subtype", "container"), "resources": resources,
            "limits": _fields(limits, _LIMIT_FIELDS)}


def drift(state: State, observed: dict[str, Usage], since_seq: int) -> list[Drift]:
    """Containers whose real limits differ from their recorded `current`.

    A container written after `since_seq` (the Scaler applied something
    while the nodes were read) is left out: what was read may be older.
    """
    out: list[Drift] = []
    for name, per_res in observed.items():
        doc = state.docs.get("structures", name)
        if doc is None or doc.get("subtype") != "container":
            continue
        if state.docs.last_write_seq.get(("structures", name), -1) > since_seq:
            continue
        for res, real in per_res.items():
            r = doc["resources"].get(res)
            if r is not None and r.get("current") != real:
                out.append({"structure": name, "host": doc.get("host"), "resource": res,
                            "recorded": r.get("current"), "real": real})
    state.beat("structures_snapshoter")
    return out


def host_marks(state: State) -> dict[str, HostMark]:
    """Each host structure's reachability and agent: not its document (a 128-core host's core
    map is most of it), read every second by Membership."""
    out: dict[str, HostMark] = {}
    for d in state.docs.values("structures"):
        if d.get("subtype") == "host":
            agent = d.get("agent")
            out[d["name"]] = {"reachable": bool(d.get("reachable", True)),
                              "agent": agent if isinstance(agent, str) and agent else None}
    return out


def container_hosts(state: State, names: list[str]) -> dict[str, str]:
    """The host of each of these containers (others left out): the Scaler's lane per host."""
    out = {}
    for n in names:
        doc = state.docs.get("structures", n)
        if doc is not None and doc.get("subtype") == "container" and doc.get("host"):
            out[n] = str(doc["host"])
    return out


def recent_events(state: State, name: Optional[str] = None, limit: int = 100) -> list[EventEntry]:
    return [e for e in state.events if name is None or e.get("structure") == name][-limit:]


def recent_requests(state: State, name: Optional[str] = None, limit: int = 100) -> list[RequestEntry]:
    return [r for r in state.requests if name is None or r.get("structure") == name][-limit:]


def health_view(state: State) -> HealthView:
    """What `policy.health.check` looks at, in one call; the API adds the live nodes.

    Applications and users carry the Refeeder's sums; services their heartbeats;
    `journal` the records written since the last checkpoint and the ages of both.
    """
    now = state.clock()
    docs = state.docs
    journal = docs.journal
    try:
        written_age_s = max(now - os.stat(journal.path).st_mtime, 0.0)
    except OSError:
        written_age_s = 0.0
    return {
        "now": now,
        "started": state.started,
        "structures": [state.with_usage("structures", d) for d in docs.values("structures")],
        "users": [state.with_usage("users", d) for d in docs.values("users")],
        "rules": list(docs.values("rules")),
        "services": [state.with_usage("services", d) for d in docs.values("services")],
        "snapshoter_config": state.config("structures_snapshoter"),
        "journal": {
            "records": journal.records_since_reset,
            "size_bytes": journal.size_bytes(),
            "checkpoint_age_s": docs.checkpoint_age_s(),
            "written_age_s": written_age_s,
            "checkpoint_every_s": docs.checkpoint_every_s,
            "state_dir": str(docs.dir),
        },
        "heartbeats": dict(state.heartbeats),
    }


__all__ = [
    "Bound", "Drift", "EventEntry", "GroupGuardianView", "GroupScalerView", "GuardianChanges", "HealthView",
    "HostEnsured", "HostFields", "JournalHealth", "RebalancerView", "RequestEntry", "ScalerView",
    "SeriesEntry", "SeriesFields", "Status", "TimeseriesSnapshot", "Usage", "UserSeries",
    "container_hosts", "drift", "group_guardian_view", "group_scaler_view", "guardian_changes", "health_view",
    "rebalancer_view", "recent_events", "recent_requests", "scaler_view", "status", "timeseries_groups",
    "timeseries_snapshot",
]
