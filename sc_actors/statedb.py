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
from pathlib import Path
from typing import Any, Iterable

from pydantic import TypeAdapter, ValidationError

from .defaults import default_rules, default_services
from .errors import Conflict, Invalid, NotFound
from .model import Limits, Rule, Service, Structure, User, check_name
from .policy.jsonlogic import check_rule
from .store.documents import COLLECTIONS, DocumentStore, delete, put

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
        self.usages: dict[str, dict[str, float]] = {}
        self.usage_t: dict[str, float] = {}
        self.events: collections.deque[dict[str, Any]] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self.requests: collections.deque[dict[str, Any]] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.heartbeats: dict[str, float] = {}
        self.started = time.time()

    # ------------------------------------------------------------------ status

    def ping(self) -> dict[str, Any]:
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
        doc = copy.deepcopy(doc)
        if collection == "structures":
            for res, value in self.usages.get(doc["name"], {}).items():
                r = doc.get("resources", {}).get(res)
                if isinstance(r, dict):
                    r["usage"] = value
        if collection == "services" and doc["name"] in self.heartbeats:
            hb = self.heartbeats[doc["name"]]
            doc["heartbeat"] = hb
            doc["heartbeat_human"] = time.strftime("%D %H:%M:%S", time.localtime(hb))
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

    def guardian_view(self, names: list[str] | None = None, subtype: str = "container") -> dict[str, Any]:
        """What one Guardian window needs, in one call: structures, limits, rules, config."""
        if names is None:
            structures = [d for d in self.store.values("structures") if d.get("subtype") == subtype]
        else:
            structures = [
                d for n in names if (d := self.store.get("structures", n)) is not None and d.get("subtype") == subtype
            ]
        return {
            "structures": structures,
            "limits": {d["name"]: self.store.get("limits", d["name"]) for d in structures},
            "rules": list(self.store.values("rules")),
            "config": (self.store.get("services", "guardian") or {}).get("config", {}),
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
            doc = self.store.copy("limits", name)
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
    ) -> int:
        """New `current` of containers and the new host accounting, in one record.

        Values are absolute (not deltas), so a retried call changes nothing more.
        """
        ops = []
        for name, per_res in currents.items():
            doc = self.store.copy("structures", name)
            if doc is None:
                continue
            for res, value in per_res.items():
                doc["resources"][res]["current"] = value
            ops.append(put("structures", name, doc))
        for name, resources in hosts.items():
            doc = self.store.copy("structures", name)
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


def _singular(collection: str) -> str:
    return {"structures": "structure", "limits": "limits", "rules": "rule", "services": "service", "users": "user"}.get(
        collection, collection
    )


__all__ = ["StateDB", "validate", "check_name"]
