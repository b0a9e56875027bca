"""StateDB: the single source of truth, one named detached actor.

Holds every document (structures, limits, rules, services, users). Each acknowledged
change goes through `DocumentStore.commit` (journal, fsync) before the method
returns, so a SIGKILL of this actor loses nothing acknowledged: Ray restarts it and
`__init__` reloads the Parquet checkpoint and replays the journal.

Usage windows, events, the request log and heartbeats are volatile: they are
rebuilt within a window after a restart.

All methods are synchronous and the actor runs one call at a time, so every
method is a transaction.
"""
from __future__ import annotations

import collections
import copy
import logging
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable

from pydantic import TypeAdapter, ValidationError

from . import metrics
from .defaults import default_rules, default_services, upgrade_rules
from .errors import Conflict, Invalid, NotFound
from .model import Limits, Rule, Service, Structure, User, check_name
from .policy.jsonlogic import check_rule
from .refeeder import Refeeder
from .store.documents import COLLECTIONS, DocumentStore, delete, put, shallow_resources

log = logging.getLogger(__name__)

_STRUCTURE = TypeAdapter(Structure)
_VALIDATORS: dict[str, Any] = {
    "structures": _STRUCTURE.validate_python,
    "limits": Limits.model_validate,
    "rules": Rule.model_validate,
    "services": Service.model_validate,
    "users": User.model_validate,
}

EVENT_LOG_SIZE = 20_000
REQUEST_LOG_SIZE = 20_000


def validate(collection: str, doc: dict[str, Any]) -> dict[str, Any]:
    """The document as stored: validated by its model, unknown keys kept."""
    if collection not in _VALIDATORS:
        raise Invalid(f"unknown collection {collection!r}")
    try:
        model = _VALIDATORS[collection](doc)
    except ValidationError as e:
        raise Invalid(_validation_message(e)) from None
    if collection == "rules":
        try:
            check_rule(model.rule)
        except ValueError as e:
            raise Invalid(f"rule {model.name}: {e}") from None
    return model.model_dump(mode="json", exclude_none=True)


def _validation_message(e: ValidationError) -> str:
    parts = []
    for err in e.errors()[:5]:
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"{where}: {err['msg']}" if where else err["msg"])
    return "; ".join(parts)


def set_path(doc: dict[str, Any], path: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate dicts."""
    keys = path.split(".")
    cur = doc
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = cur[k] = {}
        cur = nxt
    cur[keys[-1]] = value


def get_path(doc: dict[str, Any], path: str) -> Any:
    cur: Any = doc
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise KeyError(path)
        cur = cur[k]
    return cur


class StateDB:
    def __init__(self, state_dir: str, fsync: bool = True, checkpoint_every_s: float = 60.0):
        self.store = DocumentStore(Path(state_dir), fsync=fsync, checkpoint_every_s=checkpoint_every_s).open()
        if self.store.empty:
            self.store.commit(
                [put("rules", r.name, validate("rules", r.model_dump())) for r in default_rules()]
                + [put("services", s.name, validate("services", s.model_dump())) for s in default_services()]
            )
        upgrade = upgrade_rules({d["name"]: d for d in self.store.values("rules")})
        if upgrade:
            self.store.commit([put("rules", r.name, validate("rules", r.model_dump())) for r in upgrade])
        # A StateDB made before a service existed (the ReBalancer) gains its document.
        missing = [s for s in default_services() if self.store.get("services", s.name) is None]
        if missing:
            self.store.commit([put("services", s.name, validate("services", s.model_dump())) for s in missing])
        self.usages: dict[str, dict[str, float]] = {}
        self.usage_t: dict[str, float] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.heartbeats: dict[str, float] = {}
        self.started = time.time()
        self.instance = uuid.uuid4().hex
        """Changes each time this actor starts: a Guardian holding older documents asks for all."""

    # ------------------------------------------------------------------ status

    def ping(self) -> dict[str, Any]:
        metrics.statedb(self.store.journal.size_bytes(), self.store.checkpoint_age_s())
        return {
            "seq": self.store.seq,
            "replayed": self.store.replayed,
            "journal_bytes": self.store.journal.size_bytes(),
            "checkpoint_age_s": self.store.checkpoint_age_s(),
            "started": self.started,
            "pid": os.getpid(),
        }

    def checkpoint(self) -> int:
        self.store.checkpoint()
        return self.store.seq

    # ------------------------------------------------------------------ generic reads

    def get(self, collection: str, name: str) -> dict[str, Any]:
        self._check_collection(collection)
        doc = self.store.get(collection, name)
        if doc is None:
            raise NotFound(f"{_singular(collection)} {name!r} not found")
        return self._with_usage(collection, doc)

    def exists(self, collection: str, name: str) -> bool:
        return self.store.get(collection, name) is not None

    def list(self, collection: str, subtype: str | None = None) -> list[dict[str, Any]]:
        self._check_collection(collection)
        out = []
        for doc in self.store.values(collection):
            if subtype is None or doc.get("subtype") == subtype:
                out.append(self._with_usage(collection, doc))
        return out

    def _with_usage(self, collection: str, doc: dict[str, Any]) -> dict[str, Any]:
        # Only top-level and resource fields are set below; the copy goes no deeper.
        doc = shallow_resources(doc)
        if collection == "structures":
            for res, value in self.usages.get(doc["name"], {}).items():
                r = doc.get("resources", {}).get(res)
                if isinstance(r, dict):
                    r["usage"] = value
        if collection == "services" and doc["name"] == "refeeder":
            # The Refeeder runs inside this actor, on every read of an application or user
            # and every window's group view: alive whenever the StateDB answers.
            self.heartbeats["refeeder"] = time.time()
        if collection == "services" and doc["name"] in self.heartbeats:
            hb = self.heartbeats[doc["name"]]
            doc["heartbeat"] = hb
            doc["heartbeat_human"] = time.strftime("%D %H:%M:%S", time.localtime(hb))
        if (collection == "structures" and doc.get("subtype") == "application") or collection == "users":
            doc = self._refeeder().enrich(doc, collection)
        return doc

    # ------------------------------------------------------------------ generic writes

    def put(self, collection: str, doc: dict[str, Any], create: bool = False) -> dict[str, Any]:
        """Insert or replace one document (validated). `create` refuses to replace."""
        stored = validate(collection, doc)
        name = stored["name"]
        if create and self.store.get(collection, name) is not None:
            raise Conflict(f"{_singular(collection)} {name!r} already exists")
        if collection == "structures":
            self._check_unique_structure_name(name, stored.get("subtype"))
        self.store.commit([put(collection, name, stored)])
        return stored

    def delete(self, collection: str, name: str) -> None:
        self.get(collection, name)
        self.store.commit([delete(collection, name)])

    def patch(
        self,
        collection: str,
        name: str,
        changes: dict[str, Any],
        expect: dict[str, Any] | None = None,
    ) -> dict[str, Any]:
        """Set dotted fields of one document at once, after checking `expect`.

        The whole document is validated after the change; an invalid result
        raises and changes nothing.
        """
        self._check_collection(collection)
        doc = self.store.copy(collection, name)
        if doc is None:
            raise NotFound(f"{_singular(collection)} {name!r} not found")
        for path, want in (expect or {}).items():
            try:
                have = get_path(doc, path)
            except KeyError:
                raise Invalid(f"{_singular(collection)} {name!r} has no {path}") from None
            if have != want:
                raise Conflict(f"{path} of {name!r} is {have!r}, expected {want!r}")
        for path, value in changes.items():
            set_path(doc, path, value)
        stored = validate(collection, doc)
        if stored != self.store.get(collection, name):
            self.store.commit([put(collection, name, stored)])
        return stored

    def transact(
        self,
        puts: Iterable[tuple[str, dict[str, Any]]] = (),
        deletes: Iterable[tuple[str, str]] = (),
    ) -> int:
        """Several documents written and deleted in one journal record."""
        ops = []
        for collection, doc in puts:
            stored = validate(collection, doc)
            ops.append(put(collection, stored["name"], stored))
        for collection, name in deletes:
            self._check_collection(collection)
            ops.append(delete(collection, name))
        return self.store.commit(ops)

    def _check_collection(self, collection: str) -> None:
        if collection not in COLLECTIONS:
            raise Invalid(f"unknown collection {collection!r}")

    def _check_unique_structure_name(self, name: str, subtype: str | None) -> None:
        existing = self.store.get("structures", name)
        if existing is not None and existing.get("subtype") != subtype:
            raise Conflict(f"{name!r} is already a {existing.get('subtype')}")

    # ------------------------------------------------------------------ Guardian

    def guardian_changes(self, names: list[str], since: int, need: list[str], instance: str) -> dict[str, Any]:
        """What one Guardian window needs that the Guardian does not hold yet, in one call.

        The container structures of `names` (one node's window) and their limits
        written after `since` (this StateDB's seq the Guardian last saw for that
        node), plus those in `need`; the names that are no container any more; the
        rules and the Guardian's config when written after `since`. When `instance`
        is not this StateDB's (it restarted, or the Guardian is new), everything.
        """
        full = instance != self.instance or since < 0
        lws = self.store.last_write_seq
        wanted = set(need)
        structures, limits, gone = {}, {}, []
        for n in names:
            d = self.store.get("structures", n)
            if d is None or d.get("subtype") != "container":
                gone.append(n)
            elif full or n in wanted or lws.get(("structures", n), -1) > since or lws.get(("limits", n), -1) > since:
                structures[n] = d
                limits[n] = self.store.get("limits", n)
        return {
            "instance": self.instance,
            "seq": self.store.seq,
            "structures": structures,
            "limits": limits,
            "gone": gone,
            "rules": list(self.store.values("rules"))
            if full or self.store.collection_seq.get("rules", -1) > since else None,
            "config": (self.store.get("services", "guardian") or {}).get("config", {})
            if full or lws.get(("services", "guardian"), -1) > since else None,
        }

    def guardian_report(
        self,
        usages: dict[str, dict[str, float]],
        bounds: dict[str, dict[str, tuple[float, float]]],
        events: list[dict[str, Any]],
        window_end: float,
    ) -> None:
        """Usage of a window (volatile), new upper/lower (durable), events (volatile).

        NOTE: only `upper` and `lower` are written, never the whole limits
        document, so an Orchestrator edit of `boundary` racing with the
        Guardian is never lost (reference §11.3).
        """
        for name, u in usages.items():
            self.usages[name] = u
            self.usage_t[name] = window_end
        ops = []
        for name, per_res in bounds.items():
            doc = self.store.copy_resources("limits", name)
            if doc is None:
                continue
            changed = False
            for res, (upper, lower) in per_res.items():
                r = doc.setdefault("resources", {}).setdefault(res, {})
                if r.get("upper") != upper or r.get("lower") != lower:
                    r["upper"], r["lower"] = upper, lower
                    changed = True
            if changed:
                ops.append(put("limits", name, doc))
        self.store.commit(ops)
        self.events.extend(events)
        self.heartbeats["guardian"] = time.time()
        metrics.statedb(self.store.journal.size_bytes(), self.store.checkpoint_age_s())

    def recent_usage(self, name: str) -> dict[str, float]:
        return dict(self.usages.get(name, {}))

    # ------------------------------------------------------------------ Scaler

    def scaler_view(self, names: list[str]) -> dict[str, Any]:
        """Containers, their hosts and limits, and the latest usage, in one call."""
        structures = {n: d for n in names if (d := self.store.get("structures", n)) is not None}
        hosts = {
            h: d
            for h in {s.get("host") for s in structures.values() if s.get("subtype") == "container"}
            if h and (d := self.store.get("structures", h)) is not None
        }
        return {
            "structures": structures,
            "hosts": hosts,
            "limits": {n: self.store.get("limits", n) for n in structures},
            "usages": {n: dict(self.usages.get(n, {})) for n in structures},
            "config": (self.store.get("services", "scaler") or {}).get("config", {}),
        }

    def record_scaling(
        self,
        currents: dict[str, dict[str, float]],
        hosts: dict[str, dict[str, Any]],
        log_entries: list[dict[str, Any]],
        maxes: dict[str, dict[str, float]] | None = None,
    ) -> int:
        """New `current` (and `max`) of structures or users and the new host accounting, in one record.

        Values are absolute (not deltas), so a retried call changes nothing more.
        """
        maxes = maxes or {}
        ops = []
        for name in sorted(set(currents) | set(maxes)):
            collection = "structures" if self.store.get("structures", name) is not None else "users"
            doc = self.store.copy_resources(collection, name)
            if doc is None:
                continue
            for res, value in currents.get(name, {}).items():
                doc["resources"][res]["current"] = value
            for res, value in maxes.get(name, {}).items():
                doc["resources"][res]["max"] = value
            ops.append(put(collection, name, doc))
        for name, resources in hosts.items():
            doc = self.store.copy_resources("structures", name)
            if doc is None:
                continue
            for res, fields in resources.items():
                doc["resources"][res].update(fields)
            ops.append(put("structures", name, doc))
        seq = self.store.commit(ops)
        self.requests.extend(log_entries)
        self.heartbeats["scaler"] = time.time()
        return seq

    # ------------------------------------------------------------------ StructureSnapshoter

    def seq(self) -> int:
        return self.store.seq

    def drift(self, observed: dict[str, dict[str, float]], since_seq: int) -> list[dict[str, Any]]:
        """Containers whose real limits differ from their recorded `current`.

        A container written after `since_seq` (the Scaler applied something
        while the nodes were read) is left out: what was read may be older.
        """
        out = []
        for name, per_res in observed.items():
            doc = self.store.get("structures", name)
            if doc is None or doc.get("subtype") != "container":
                continue
            if self.store.last_write_seq.get(("structures", name), -1) > since_seq:
                continue
            for res, real in per_res.items():
                r = doc["resources"].get(res)
                if r is not None and r.get("current") != real:
                    out.append({"structure": name, "host": doc.get("host"), "resource": res,
                                "recorded": r.get("current"), "real": real})
        self.heartbeats["structures_snapshoter"] = time.time()
        return out

    # ------------------------------------------------------------------ logs, heartbeats

    def heartbeat(self, service: str) -> None:
        self.heartbeats[service] = time.time()

    def log_requests(self, entries: list[dict[str, Any]]) -> None:
        self.requests.extend(entries)

    def recent_events(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        out = [e for e in self.events if name is None or e.get("structure") == name]
        return out[-limit:]

    def recent_requests(self, name: str | None = None, limit: int = 100) -> list[dict[str, Any]]:
        out = [r for r in self.requests if name is None or r.get("structure") == name]
        return out[-limit:]

    # ------------------------------------------------------------------ health (GET /health)

    def health_view(self) -> dict[str, Any]:
        """What `policy.health.check` looks at, in one call; the API adds the live nodes.

        Applications and users carry the Refeeder's sums; services their heartbeats;
        `journal` the records written since the last checkpoint and the ages of both.
        """
        now = time.time()
        journal = self.store.journal
        try:
            written_age_s = max(now - os.stat(journal.path).st_mtime, 0.0)
        except OSError:
            written_age_s = 0.0
        snapshoter = (self.store.get("services", "structures_snapshoter") or {}).get("config", {})
        return {
            "now": now,
            "started": self.started,
            "structures": [self._with_usage("structures", d) for d in self.store.values("structures")],
            "users": [self._with_usage("users", d) for d in self.store.values("users")],
            "rules": list(self.store.values("rules")),
            "services": [self._with_usage("services", d) for d in self.store.values("services")],
            "snapshoter_config": snapshoter,
            "journal": {
                "records": journal.records_since_reset,
                "size_bytes": journal.size_bytes(),
                "checkpoint_age_s": self.store.checkpoint_age_s(),
                "written_age_s": written_age_s,
                "checkpoint_every_s": self.store.checkpoint_every_s,
                "state_dir": str(self.store.dir),
            },
        }

    def containers_seen(self, listed: dict[str, list[str]], grace_s: float) -> dict[str, float]:
        """Which subscribed containers the nodes of these hosts list (the StructuresSnapshoter's read).

        A container of one of these hosts that its node does not list gets
        `missing_since`, and its last usage is dropped (it measures nothing any more);
        one listed again loses it. Both go to the decision log. Returns every missing
        container of these hosts, with the time it went missing.
        """
        now = time.time()
        present = {h: set(names) for h, names in listed.items()}
        ops, entries, missing = [], [], {}
        for doc in self.store.values("structures"):
            host = doc.get("host")
            if doc.get("subtype") != "container" or host not in present:
                continue
            name, since = doc["name"], doc.get("missing_since")
            if name not in present[host]:
                if since is None:
                    since = now
                    ops.append(put("structures", name, validate("structures", {**doc, "missing_since": now})))
                    self.usages.pop(name, None)
                    self.usage_t.pop(name, None)
                    entries.append(_lifecycle_entry(
                        name, host, "missing", now,
                        f"its cgroup is gone from host {host}; its cores and memory go back to the host "
                        f"after {grace_s:g} s unless it comes back"))
                missing[name] = since
            elif since is not None:
                ops.append(put("structures", name, validate("structures", {k: v for k, v in doc.items()
                                                                           if k != "missing_since"})))
                entries.append(_lifecycle_entry(name, host, "back", now,
                                                f"its cgroup is back on host {host} after {now - since:.0f} s"))
        self.store.commit(ops)
        self.requests.extend(entries)
        return missing

    # ------------------------------------------------------------------ Orchestrator
    # Changes of the HTTP API (serve/) that touch several documents: each checks
    # first and then writes everything in one journal record, so a refused request
    # changes nothing and a concurrent writer never sees half of it.

    def _structure_of(self, name: str, subtype: str) -> dict[str, Any]:
        doc = self.store.copy("structures", name)
        if doc is None:
            raise NotFound(f"{subtype} {name!r} not found")
        if doc.get("subtype") != subtype:
            raise Invalid(f"{name!r} is a {doc.get('subtype')}, not a {subtype}")
        return doc

    def create_with_limits(self, doc: dict[str, Any], limits: dict[str, Any] | None) -> dict[str, Any]:
        """A new structure and its limits document; Conflict if the name is taken."""
        stored = validate("structures", doc)
        name = stored["name"]
        if self.store.get("structures", name) is not None:
            raise Conflict(f"structure {name!r} already exists")
        ops = [put("structures", name, stored)]
        if limits is not None:
            ops.append(put("limits", name, validate("limits", {**limits, "name": name})))
        self.store.commit(ops)
        return stored

    def delete_structure(self, name: str, subtype: str) -> None:
        """Delete an application or a host (and its limits).

        An application is also taken out of its user's clusters. A host that still
        has subscribed containers is refused (Conflict): its accounting would be lost.
        """
        doc = self._structure_of(name, subtype)
        ops = []
        if subtype == "host":
            on_it = sorted(d["name"] for d in self.store.values("structures")
                           if d.get("subtype") == "container" and d.get("host") == name)
            if on_it:
                raise Conflict(f"host {name!r} still has containers {on_it}: desubscribe them first")
        if subtype == "application":
            for user in self.store.values("users"):
                if name in user.get("clusters", []):
                    u = copy.deepcopy(user)
                    u["clusters"] = [c for c in u["clusters"] if c != name]
                    ops.append(put("users", u["name"], validate("users", u)))
        ops.append(delete("structures", doc["name"]))
        if self.store.get("limits", name) is not None:
            ops.append(delete("limits", name))
        self.store.commit(ops)

    def link_container_to_app(self, container: str, app: str) -> dict[str, Any]:
        """Append a container to an application (reference §6), with `alloc_ratio`s.

        Conflict if the container already belongs to any application.
        """
        c = self._structure_of(container, "container")
        a = self._structure_of(app, "application")
        for other in self.store.values("structures"):
            if other.get("subtype") == "application" and container in other.get("containers", []):
                raise Conflict(f"container {container!r} is already in application {other['name']!r}")
        for res, r in c.get("resources", {}).items():
            ar = a.get("resources", {}).get(res)
            if isinstance(r, dict) and isinstance(ar, dict) and r.get("max") is not None and ar.get("max"):
                r["alloc_ratio"] = r["max"] / ar["max"]
        a["containers"] = [*a.get("containers", []), container]
        stored_a = validate("structures", a)
        self.store.commit([put("structures", container, validate("structures", c)),
                           put("structures", app, stored_a)])
        return stored_a

    def unlink_container_from_app(self, container: str, app: str) -> dict[str, Any]:
        a = self._structure_of(app, "application")
        if container not in a.get("containers", []):
            raise NotFound(f"container {container!r} is not in application {app!r}")
        a["containers"] = [x for x in a["containers"] if x != container]
        stored = validate("structures", a)
        self.store.commit([put("structures", app, stored)])
        return stored

    def link_app_to_user(self, user: str, app: str) -> dict[str, Any]:
        """Give an application to a user: `app.user` and `user.clusters` (reference §6).

        Conflict if the application already belongs to a user.
        """
        u = self.store.copy("users", user)
        if u is None:
            raise NotFound(f"user {user!r} not found")
        a = self._structure_of(app, "application")
        for other in self.store.values("users"):
            if app in other.get("clusters", []):
                raise Conflict(f"application {app!r} already belongs to user {other['name']!r}")
        if a.get("user") not in (None, user):
            raise Conflict(f"application {app!r} already belongs to user {a['user']!r}")
        for res, r in a.get("resources", {}).items():
            ur = u.get("resources", {}).get(res)
            if isinstance(r, dict) and isinstance(ur, dict) and r.get("max") is not None and ur.get("max"):
                r["alloc_ratio"] = r["max"] / ur["max"]
        a["user"] = user
        u["clusters"] = [*u.get("clusters", []), app]
        stored_u = validate("users", u)
        self.store.commit([put("structures", app, validate("structures", a)), put("users", user, stored_u)])
        return stored_u

    def unlink_app_from_user(self, user: str, app: str) -> dict[str, Any]:
        u = self.store.copy("users", user)
        if u is None:
            raise NotFound(f"user {user!r} not found")
        if app not in u.get("clusters", []):
            raise NotFound(f"application {app!r} does not belong to user {user!r}")
        u["clusters"] = [c for c in u["clusters"] if c != app]
        stored = validate("users", u)
        ops = [put("users", user, stored)]
        a = self.store.copy("structures", app)
        if a is not None and a.get("user") == user:
            a.pop("user")
            ops.append(put("structures", app, validate("structures", a)))
        self.store.commit(ops)
        return stored

    def delete_user(self, name: str) -> None:
        """Delete a user and clear `user` of its applications."""
        u = self.store.get("users", name)
        if u is None:
            raise NotFound(f"user {name!r} not found")
        ops = []
        for app in self.store.values("structures"):
            if app.get("subtype") == "application" and app.get("user") == name:
                a = copy.deepcopy(app)
                a.pop("user")
                ops.append(put("structures", a["name"], validate("structures", a)))
        ops.append(delete("users", name))
        self.store.commit(ops)

    # ------------------------------------------------------------------ Applications and time series
    # Applications and users carry the Refeeder's sums (`usage`, `current`) whenever
    # they are read; the Guardian and the Scaler get them, with everything else a
    # group request needs, in one call; the DatabaseSnapshoter gets one consistent
    # snapshot per window.

    def _refeeder(self) -> Refeeder:
        refeeder: Refeeder | None = getattr(self, "_refeed", None)
        if refeeder is None:
            refeeder = self._refeed = Refeeder(self.store.get, self.usages, self.usage_t)
        refeeder.configure((self.store.get("services", "refeeder") or {}).get("config"),
                           (self.store.get("services", "guardian") or {}).get("config"))
        return refeeder

    def _groups(self, collection: str) -> Iterable[dict[str, Any]]:
        for d in self.store.values(collection):
            if collection == "users" or d.get("subtype") == "application":
                yield d

    def group_guardian_view(self, host: str, subtype: str = "application") -> dict[str, Any]:
        """Applications (or users) anchored at `host`, with their sums and limits (reference §3.8).

        The Guardian evaluates each once per window of its anchor's node.
        """
        collection = "users" if subtype == "user" else "structures"
        refeeder = self._refeeder()
        docs = [refeeder.enrich(d, collection) for d in self._groups(collection)
                if refeeder.anchor(d, collection) == host]
        self.heartbeats["refeeder"] = time.time()
        return {
            "structures": docs,
            "limits": {d["name"]: self.store.get("limits", d["name"]) for d in docs},
            "usages": {d["name"]: {res: r["usage"] for res, r in d.get("resources", {}).items()
                                   if isinstance(r, dict) and r.get("usage") is not None} for d in docs},
        }

    def rebalancer_view(self, host: str) -> dict[str, Any]:
        """The ReBalancer's round for one node's window: its config and rules, and the
        applications anchored at `host` (with the users anchored there) as `group_scaler_view` gives them."""
        refeeder = self._refeeder()
        apps = [d["name"] for d in self._groups("structures") if refeeder.anchor(d, "structures") == host]
        users = [u["name"] for u in self._groups("users") if refeeder.anchor(u, "users") == host]
        view = self.group_scaler_view(apps + users)
        view["applications"], view["user_names"] = apps, users
        view["config"] = (self.store.get("services", "rebalancer") or {}).get("config", {})
        view["rules"] = {d["name"]: d for d in self.store.values("rules")}
        return view

    def group_scaler_view(self, names: list[str]) -> dict[str, Any]:
        """Applications and users with what their requests need, in one call.

        Their containers (and a user's applications), those containers' hosts, limits
        and last usage; applications and users carry their sums.
        """
        refeeder = self._refeeder()
        apps: dict[str, dict[str, Any]] = {}
        users: dict[str, dict[str, Any]] = {}
        for n in names:
            d = self.store.get("structures", n)
            if d is not None and d.get("subtype") == "application":
                apps[n] = refeeder.enrich(d, "structures")
            u = self.store.get("users", n)
            if u is not None:
                users[n] = refeeder.enrich(u, "users")
                for a in u.get("clusters", []):
                    d = self.store.get("structures", a)
                    if a not in apps and d is not None and d.get("subtype") == "application":
                        apps[a] = refeeder.enrich(d, "structures")
        containers = {
            c: d for a in apps.values() for c in a.get("containers", [])
            if (d := self.store.get("structures", c)) is not None and d.get("subtype") == "container"
        }
        hosts = {
            h: d for h in {c.get("host") for c in containers.values()}
            if h and (d := self.store.get("structures", h)) is not None
        }
        return {
            "structures": {**apps, **containers},
            "users": users,
            "hosts": hosts,
            "limits": {n: self.store.get("limits", n) for n in containers},
            "usages": {n: dict(self.usages.get(n, {})) for n in containers},
        }

    def record_group_scaling(
        self,
        currents: dict[str, dict[str, float]],
        maxes: dict[str, dict[str, float]],
        hosts: dict[str, dict[str, Any]],
        log_entries: list[dict[str, Any]],
    ) -> int:
        """`record_scaling` with new `max` values (containers, applications, users), in one record."""
        return self.record_scaling(currents, hosts, log_entries, maxes)

    def timeseries_snapshot(self, host: str | None, names: list[str], services: list[str] | None = None) -> dict[str, Any]:
        """One consistent snapshot for the DatabaseSnapshoter (reference §7.2).

        The containers `names` (one node's window), the applications and users
        anchored at `host`, and the configs of `services`: each with the values
        the StateDB holds now (`usage` of the last window, `current`, `max`, `min`,
        `upper`, `lower`, `boundary`).
        """
        structures = []
        for n in names:
            d = self.store.get("structures", n)
            if d is not None and d.get("subtype") == "container":
                structures.append(self._series_entry(d, self.usages.get(n, {})))
        users = []
        if host is not None:
            refeeder = self._refeeder()
            for d in self._groups("structures"):
                if refeeder.anchor(d, "structures") == host:
                    structures.append(self._series_entry(refeeder.enrich(d, "structures"), {}))
            for u in self._groups("users"):
                if refeeder.anchor(u, "users") == host:
                    users.append({"name": u["name"], "resources": refeeder.enrich(u, "users").get("resources", {})})
        return {
            "structures": structures,
            "users": users,
            "services": {s: (self.store.get("services", s) or {}).get("config", {}) for s in services or ()},
        }

    def _series_entry(self, doc: dict[str, Any], usage: dict[str, float]) -> dict[str, Any]:
        resources = {}
        for res, r in doc.get("resources", {}).items():
            if isinstance(r, dict):
                resources[res] = {f: r.get(f) for f in ("current", "max", "min", "usage")}
                if res in usage:
                    resources[res]["usage"] = usage[res]
        limits = (self.store.get("limits", doc["name"]) or {}).get("resources", {})
        return {"name": doc["name"], "subtype": doc.get("subtype", "container"), "resources": resources,
                "limits": {res: {f: lr.get(f) for f in ("upper", "lower", "boundary")} for res, lr in limits.items()}}

    # ------------------------------------------------------------------ Membership
    # Written by the Membership actor (cluster/membership.py) as Ray nodes come and go.
    # A host's `reachable` flag (with `unreachable_reason` and `unreachable_since`)
    # covers its containers: the Scaler drops their requests while it is False.

    def ensure_host(self, doc: dict[str, Any], node_id: str = "") -> dict[str, Any]:
        """The host structure of a node whose ContainerScaler answers, reachable.

        Created from `doc` when missing. An existing one (subscribed through the API,
        or from an earlier life of the node) keeps its accounting; it is only marked
        reachable, and a capacity different from the node's is reported in
        `mismatch`. Returns {"created": bool, "mismatch": str | None}.
        """
        name = doc["name"]
        existing = self.store.copy("structures", name)
        if existing is None:
            stored = validate("structures", {**doc, "reachable": True, "node_id": node_id})
            self.store.commit([put("structures", name, stored)])
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
            self.store.commit([put("structures", name, validate("structures", updated))])
        return {"created": False, "mismatch": "; ".join(mismatch) or None}

    def set_host_reachable(self, name: str, reachable: bool, reason: str = "") -> bool:
        """Mark a host, and so its containers, reachable or not; True if that changed.

        An unknown name is left alone (False): only hosts a Ray node carried are marked.
        """
        doc = self.store.copy("structures", name)
        if doc is None or doc.get("subtype") != "host" or doc.get("reachable", True) == reachable:
            return False
        doc["reachable"] = reachable
        if reachable:
            doc.pop("unreachable_reason", None)
            doc.pop("unreachable_since", None)
        else:
            doc["unreachable_reason"] = reason
            doc["unreachable_since"] = time.time()
        self.store.commit([put("structures", name, validate("structures", doc))])
        return True

    def container_hosts(self, names: list[str]) -> dict[str, str]:
        """The host of each of these containers (others left out): the Scaler's lane per host."""
        out = {}
        for n in names:
            doc = self.store.get("structures", n)
            if doc is not None and doc.get("subtype") == "container" and doc.get("host"):
                out[n] = doc["host"]
        return out


def _lifecycle_entry(name: str, host: str, outcome: str, now: float, reason: str) -> dict[str, Any]:
    """A decision-log entry about a container itself (gone, back, released), not a request."""
    return {"structure": name, "structure_type": "container", "host": host, "action": "Container" + outcome.title(),
            "outcome": outcome, "reason": reason, "timestamp": now, "applied_at": now}


def _singular(collection: str) -> str:
    return {"structures": "structure", "limits": "limits", "rules": "rule", "services": "service", "users": "user"}.get(
        collection, collection
    )


__all__ = ["StateDB", "validate", "check_name"]
