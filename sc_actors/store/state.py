"""The StateDB's state without Ray: the documents, their validation and CRUD, and the volatile rest.

Documents (structures, limits, rules, services, users) are durable: every write goes
through `DocumentStore.commit` (journal, fsync) before it returns; inside the actor's
`DocumentStore.run` the change is applied at once and the call returns after the group
commit's fsync that covers it (documents.py). Each write validates
the whole document by its collection's model (`model.py`), keeping unknown keys.
Usages of the last windows, the event and request logs and the heartbeats are volatile:
a restarted StateDB rebuilds them within a window. `instance` changes at every start, so
a Guardian holding older documents knows to ask for all of them.

The views (`views.py`) and the multi-document operations (`operations.py`) are
functions of one `State`; `sc_actors/statedb.py` is the actor around it.
"""
from __future__ import annotations

import collections
import time
import uuid
from pathlib import Path
from typing import Any, Callable, Iterable

from pydantic import BaseModel, JsonValue, TypeAdapter, ValidationError
from typing_extensions import TypedDict

from ..defaults import default_rules, default_services, upgrade_rules
from ..errors import Conflict, Invalid, NotFound
from ..model import Document, JsonObject, Limits, Rule, Service, Structure, User
from ..policy.jsonlogic import check_rule
from ..settings import GuardianSettings, RefeederSettings
from .documents import COLLECTIONS, DocumentStore, delete, put, shallow_resources
from .entries import EVENT_LOG_SIZE, REQUEST_LOG_SIZE, EventEntry, RequestEntry
from .journal import Ops
from .sums import Refeeder
from .usage import UsageTable

_STRUCTURE: TypeAdapter[Structure] = TypeAdapter(Structure)
_VALIDATORS: dict[str, Callable[[Document], BaseModel]] = {
    "structures": _STRUCTURE.validate_python,
    "limits": Limits.model_validate,
    "rules": Rule.model_validate,
    "services": Service.model_validate,
    "users": User.model_validate,
}
_SINGULAR = {"structures": "structure", "limits": "limits", "rules": "rule", "services": "service", "users": "user"}


def validate(collection: str, doc: Document) -> Document:
    """The document as stored: validated by its model, unknown keys kept."""
    if collection not in _VALIDATORS:
        raise Invalid(f"unknown collection {collection!r}")
    try:
        model = _VALIDATORS[collection](doc)
    except ValidationError as e:
        raise Invalid(_validation_message(e)) from None
    if isinstance(model, Rule):
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


def set_path(doc: Document, path: str, value: Any) -> None:
    """Set `a.b.c` in a nested dict, creating intermediate dicts."""
    keys = path.split(".")
    cur = doc
    for k in keys[:-1]:
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            nxt = cur[k] = {}
        cur = nxt
    cur[keys[-1]] = value


def get_path(doc: Document, path: str) -> Any:
    """The value at `a.b.c` of a nested dict; KeyError when a key is missing."""
    cur: Any = doc
    for k in path.split("."):
        if not isinstance(cur, dict) or k not in cur:
            raise KeyError(path)
        cur = cur[k]
    return cur


def singular(collection: str) -> str:
    """`structures` → `structure`, for messages."""
    return _SINGULAR.get(collection, collection)


def check_collection(collection: str) -> None:
    if collection not in COLLECTIONS:
        raise Invalid(f"unknown collection {collection!r}")


def seed_defaults(docs: DocumentStore) -> None:
    """The default rules and services in a new store; rules upgraded and missing services added in an old one."""
    if docs.empty:
        docs.commit([put("rules", r.name, validate("rules", r.model_dump())) for r in default_rules()]
                    + [put("services", s.name, validate("services", s.model_dump())) for s in default_services()])
    upgrade = upgrade_rules({d["name"]: d for d in docs.values("rules")})
    if upgrade:
        docs.commit([put("rules", r.name, validate("rules", r.model_dump())) for r in upgrade])
    # A StateDB made before a service existed (the ReBalancer) gains its document.
    missing = [s for s in default_services() if docs.get("services", s.name) is None]
    if missing:
        docs.commit([put("services", s.name, validate("services", s.model_dump())) for s in missing])


class HeldPart(TypedDict):
    """A part of a request across Scaler shards that its owner holds (`State.held_parts`)."""

    owner: str
    applied_at: float
    part: object
    """What the owner needs to end it (`scaler._Held`'s fields), kept as it came."""


class State:
    """The documents of one StateDB and its volatile state; every method runs alone (one actor call)."""

    def __init__(self, docs: DocumentStore, clock: Callable[[], float] = time.time) -> None:
        self.docs = docs
        self.clock = clock
        self.usages = UsageTable()
        """Each container's usage of its last window (pushed through the Guardian), as host windows."""
        self.usage_t = self.usages.times
        """The end of that window."""
        self.events: collections.deque[EventEntry] = collections.deque(maxlen=EVENT_LOG_SIZE)
        self.requests: collections.deque[RequestEntry] = collections.deque(maxlen=REQUEST_LOG_SIZE)
        self.heartbeats: dict[str, float] = {}
        self.transactions: collections.OrderedDict[str, str] = collections.OrderedDict()
        """Requests applied across Scaler shards (their `tx`): "committed" once the coordinator
        recorded its decision, "aborted" once an owner gave up waiting for it (`ops.decide_tx`).
        Volatile: a restarted StateDB answers "unknown" for what came before it."""
        self.held_parts: dict[str, HeldPart] = {}
        """Parts of those requests an owner applied and holds (txid → what puts it back): a
        Scaler shard started again takes back the parts it held (`Scaler._recover_parts`)."""
        self.bounds_seq: dict[str, int] = {}
        """The seq of each limits document's upper/lower write by a Guardian's report: while it
        is the document's last write, the Guardian that computed them need not be told."""
        self.started = clock()
        self.instance = uuid.uuid4().hex
        """Changes each time a State is made: a Guardian holding older documents asks for all."""
        self._sums = Refeeder(docs.get, self.usages, self.usage_t, clock)

    @classmethod
    def open(cls, state_dir: str | Path, fsync: bool = True, checkpoint_every_s: float = 60.0,
             clock: Callable[[], float] = time.time) -> "State":
        """The last checkpoint and the journal after it, with the defaults seeded."""
        docs = DocumentStore(Path(state_dir), fsync=fsync, checkpoint_every_s=checkpoint_every_s).open()
        seed_defaults(docs)
        return cls(docs, clock)

    def config(self, service: str) -> JsonObject:
        """A service's `config` (the original's keys); {} when it has none."""
        config: JsonObject = (self.docs.get("services", service) or {}).get("config", {})
        return config

    def refeeder(self) -> Refeeder:
        """The Refeeder's sums, configured as the services' documents say now."""
        window_s = GuardianSettings.model_validate(self.config("guardian") or {}).window_s
        self._sums.configure(RefeederSettings.model_validate(self.config("refeeder") or {}), window_s)
        return self._sums

    def beat(self, service: str) -> None:
        self.heartbeats[service] = self.clock()

    def commit(self, ops: Ops) -> int:
        return self.docs.commit(ops)

    # ------------------------------------------------------------------ reads

    def get(self, collection: str, name: str) -> Document:
        """A document as the API shows it (with usage, heartbeats, sums); NotFound when missing."""
        check_collection(collection)
        doc = self.docs.get(collection, name)
        if doc is None:
            raise NotFound(f"{singular(collection)} {name!r} not found")
        return self.with_usage(collection, doc)

    def list(self, collection: str, subtype: str | None = None) -> list[Document]:
        check_collection(collection)
        return [self.with_usage(collection, d) for d in self.docs.values(collection)
                if subtype is None or d.get("subtype") == subtype]

    def with_usage(self, collection: str, doc: Document) -> Document:
        """A copy of a stored document with what is volatile: last usage, heartbeat, the Refeeder's sums."""
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
            self.beat("refeeder")
        if collection == "services" and doc["name"] in self.heartbeats:
            hb = self.heartbeats[doc["name"]]
            doc["heartbeat"] = hb
            doc["heartbeat_human"] = time.strftime("%D %H:%M:%S", time.localtime(hb))
        if (collection == "structures" and doc.get("subtype") == "application") or collection == "users":
            doc = self.refeeder().enrich(doc, collection)
        return doc

    def structure_of(self, name: str, subtype: str) -> Document:
        """A copy of the structure `name`, which must be a `subtype` (NotFound, Invalid)."""
        doc = self.docs.copy("structures", name)
        if doc is None:
            raise NotFound(f"{subtype} {name!r} not found")
        if doc.get("subtype") != subtype:
            raise Invalid(f"{name!r} is a {doc.get('subtype')}, not a {subtype}")
        return doc

    # ------------------------------------------------------------------ writes

    def put(self, collection: str, doc: Document, create: bool = False) -> Document:
        """Insert or replace one document (validated). `create` refuses to replace."""
        stored = validate(collection, doc)
        name = stored["name"]
        if create and self.docs.get(collection, name) is not None:
            raise Conflict(f"{singular(collection)} {name!r} already exists")
        if collection == "structures":
            existing = self.docs.get("structures", name)
            if existing is not None and existing.get("subtype") != stored.get("subtype"):
                raise Conflict(f"{name!r} is already a {existing.get('subtype')}")
        self.commit([put(collection, name, stored)])
        return stored

    def delete(self, collection: str, name: str) -> None:
        self.get(collection, name)
        self.commit([delete(collection, name)])

    def patch(self, collection: str, name: str, changes: dict[str, JsonValue],
              expect: dict[str, JsonValue] | None = None) -> Document:
        """Set dotted fields (`resources.cpu.max`) of one document to JSON values at once, after checking `expect`.

        The whole document is validated after the change; an invalid result
        raises and changes nothing.
        """
        check_collection(collection)
        doc = self.docs.copy(collection, name)
        if doc is None:
            raise NotFound(f"{singular(collection)} {name!r} not found")
        for path, want in (expect or {}).items():
            try:
                have = get_path(doc, path)
            except KeyError:
                raise Invalid(f"{singular(collection)} {name!r} has no {path}") from None
            if have != want:
                raise Conflict(f"{path} of {name!r} is {have!r}, expected {want!r}")
        for path, value in changes.items():
            set_path(doc, path, value)
        stored = validate(collection, doc)
        if stored != self.docs.get(collection, name):
            self.commit([put(collection, name, stored)])
        return stored

    def transact(self, puts: Iterable[tuple[str, Document]] = (), deletes: Iterable[tuple[str, str]] = ()) -> int:
        """Several documents written and deleted in one journal record."""
        ops: Ops = []
        for collection, doc in puts:
            stored = validate(collection, doc)
            ops.append(put(collection, stored["name"], stored))
        for collection, name in deletes:
            check_collection(collection)
            ops.append(delete(collection, name))
        return self.commit(ops)
