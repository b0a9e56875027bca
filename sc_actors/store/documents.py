"""Documents in memory, made durable by the journal and Parquet checkpoints.

Group commit. A change is applied in memory first (`apply`, under `lock`, which makes
each caller's check-then-commit atomic) and joins the pending batch; `wait(ticket)`
returns once the journal record of that change is fsynced. One committer at a time
(whoever waits first when none is at work) takes the whole pending batch, writes it
with one `pwrite` and one fsync *outside* the lock, so new changes keep being applied
and queued for the next batch meanwhile. The journal's order is the order of
application: seqs are given under the lock and the journal refuses a seq that does not
follow. `commit(ops)` is apply then wait: durable on return, as a lone caller needs.

A batch the disk refuses (`StorageFull`, `StorageFailed`) is truncated away by the
journal; then every change applied after the last durable one, that batch and what
was applied on top of it meanwhile, is undone in memory (in reverse, from the undo
kept with each pending record) and each of their waiters gets the error: the memory
is the disk again, and nothing refused is written later. Nothing acknowledged is
touched: it was durable before.

`run(fn)` is how the StateDB actor calls: `fn` runs under the lock, then the call
waits for the last change it saw or made, so no answer leaves before what it is based
on is durable (no reader acts on a change a crash could still take back). Checkpoints
are written by the committer, with the lock held and nothing pending, so none
interleaves with a half-written batch. `open()` loads the last checkpoint and replays
the journal after it; damage stops it (`JournalCorrupt`, `CheckpointCorrupt`, see
statedir.py for the repair). Ops are absolute (`put`, `patch`, `delete`), never deltas,
so replaying a record twice changes nothing.

Patches. A writer that changes a few fields of a large document (the Scaler's `current`
of a container, a host's free shares and the cores that moved, the Guardian's
upper/lower) commits a `patch` op naming only those fields. It is applied by the same
function (`patched`) at commit and at replay, so the document a replay rebuilds is the
one that was acknowledged; the journal holds the fields, not the whole document.
"""
from __future__ import annotations

import copy
import logging
import threading
import time
from pathlib import Path
from typing import Any, Callable, Iterable, MutableMapping, Optional, TypeVar, cast

from ..errors import StorageFailed
from ..model import Document
from .checkpoint import Docs, read_checkpoint, tmp_path, write_checkpoint
from .journal import FieldPath, Journal, Op, Ops, frame
from .statedir import CHECKPOINT_FILE, JOURNAL_FILE, check_follows_checkpoint, migrate_jsonl

log = logging.getLogger(__name__)

COLLECTIONS = ("structures", "limits", "rules", "services", "users")
CHECKPOINT_RETRY_S = 5.0
"""After a checkpoint failed (disk full), seconds before the next try."""
RUN_RETRIES = 3
"""`run`: times a call that wrote nothing is run again when a change it saw was refused."""

T = TypeVar("T")
K = TypeVar("K")
V = TypeVar("V")
_ABSENT = object()


class Ticket:
    """One applied record on its way to the disk; `done` once durable or refused (`error`)."""

    __slots__ = ("seq", "data", "undo", "done", "error")

    def __init__(self, seq: int, data: bytes, undo: list[tuple[str, str, object, object, object]]) -> None:
        self.seq = seq
        self.data = data
        """The journal record, framed when applied (so a document JSON cannot hold fails its caller)."""
        self.undo = undo
        """Per op: collection, name, and the document, last write seq and collection seq before it."""
        self.done = False
        self.error: Optional[StorageFailed] = None

    @property
    def durable(self) -> bool:
        return self.done and self.error is None


def put(collection: str, name: str, doc: Document) -> Op:
    return {"op": "put", "c": collection, "name": name, "doc": doc}


def delete(collection: str, name: str) -> Op:
    return {"op": "delete", "c": collection, "name": name}


def patch(collection: str, name: str, sets: list[tuple[FieldPath, Any]], unsets: Iterable[FieldPath] = ()) -> Op:
    """Set (and remove) fields of an existing document: `[(["resources", "cpu", "current"], 150.0)]`."""
    op: Op = {"op": "patch", "c": collection, "name": name, "set": sets}
    unset = list(unsets)
    if unset:
        op["unset"] = unset
    return op


def patched(doc: Document, sets: Iterable[tuple[FieldPath, Any]], unsets: Iterable[FieldPath] = ()) -> Document:
    """A new document: `doc` with each (path, value) of `sets` set, then each path of `unsets` removed.

    `doc` is not changed: only the dicts on the paths are copied (each once), the rest is
    shared with it. A dict missing on the way (or a value that is no dict) becomes a new
    dict, as `State.patch` does; a path to remove that is not there is left alone.
    """
    out = dict(doc)
    copies: dict[tuple[str, ...], dict[str, Any]] = {(): out}
    """Each dict copied so far, by its path: written in place from then on."""
    for path, value in sets:
        _parent(out, copies, path, True)[path[-1]] = value  # type: ignore[index]
    for path in unsets:
        at = _parent(out, copies, path, False)
        if at is not None:
            at.pop(path[-1], None)
    return out


def _parent(out: Document, copies: dict[tuple[str, ...], dict[str, Any]], path: FieldPath,
            make: bool) -> Optional[dict[str, Any]]:
    """The (copied) dict that holds the last key of `path`; None if missing and not `make`."""
    key = tuple(path[:-1])
    cur = copies.get(key)
    if cur is not None:
        return cur
    cur = out
    for i, k in enumerate(path[:-1]):
        mine = copies.get(key[:i + 1])
        if mine is not None:
            cur = mine
            continue
        nxt = cur.get(k)
        if not isinstance(nxt, dict):
            if not make:
                return None
            nxt = {}
        else:
            nxt = dict(nxt)
        cur[k] = nxt
        copies[key[:i + 1]] = nxt
        cur = nxt
    return cur


def shallow_resources(doc: Document) -> Document:
    """`doc` copied down to each resource's fields (see `DocumentStore.copy_resources`)."""
    resources = doc.get("resources")
    if not isinstance(resources, dict):
        return dict(doc)
    return {**doc, "resources": {k: dict(v) if isinstance(v, dict) else v for k, v in resources.items()}}


class DocumentStore:
    def __init__(
        self,
        state_dir: Path,
        *,
        fsync: bool = True,
        checkpoint_every_records: int = 2000,
        checkpoint_every_s: float = 60.0,
    ):
        self.dir = Path(state_dir)
        self.dir.mkdir(parents=True, exist_ok=True)
        self.checkpoint_path = self.dir / CHECKPOINT_FILE
        migrate_jsonl(self.dir)
        self.journal = Journal(self.dir / JOURNAL_FILE, fsync=fsync)
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_s = checkpoint_every_s
        self.docs: Docs = {c: {} for c in COLLECTIONS}
        self.seq = -1
        self.changes = 0
        """Changes (journal operations) committed since this store was opened; a record holds one or more."""
        self.last_write_seq: dict[tuple[str, str], int] = {}
        """The seq of the last write of each (collection, name) since this store was opened."""
        self.collection_seq: dict[str, int] = {}
        """The seq of the last write to each collection since this store was opened."""
        self.last_checkpoint_t = time.monotonic()
        self._checkpoint_retry_t = 0.0
        self.replayed = 0
        self.durable_seq = -1
        """The seq of the last record fsynced (`seq` is the last applied, perhaps still pending)."""
        self.lock = threading.RLock()
        """Held while the documents are read or changed; never while waiting for the disk."""
        self._cond = threading.Condition(threading.Lock())
        """Guards `_committing` and the tickets' `done`; waiters sleep on it."""
        self._committing = False
        self._pending: list[Ticket] = []
        self._last: Optional[Ticket] = None
        """The last record applied (pending or done)."""
        self._deferred = 0
        """> 0 inside `run`: `commit` applies and leaves the waiting to `run`."""
        self.batches = 0
        """Journal writes (each one fsync) since this store was opened."""

    # ------------------------------------------------------------------ life cycle

    def open(self) -> "DocumentStore":
        tmp = tmp_path(self.checkpoint_path)
        if tmp.exists():
            log.warning("removing %s: a checkpoint that a crash cut short (the previous one is whole)", tmp)
            tmp.unlink()
        docs, self.seq = read_checkpoint(self.checkpoint_path)
        check_follows_checkpoint(self.journal.path, self.journal.first_seq, self.seq, self.journal.size_bytes())
        for c in COLLECTIONS:
            self.docs[c] = docs.get(c, {})
        for seq, ops in self.journal.records(after_seq=self.seq):
            self._apply(seq, ops)
            self.seq = seq
            self.replayed += 1
        self.durable_seq = self.seq
        return self

    @property
    def empty(self) -> bool:
        return not any(self.docs.values())

    # ------------------------------------------------------------------ reads

    def get(self, collection: str, name: str) -> Document | None:
        return self.docs[collection].get(name)

    def values(self, collection: str) -> Iterable[Document]:
        return self.docs[collection].values()

    def copy(self, collection: str, name: str) -> Document | None:
        doc = self.docs[collection].get(name)
        return copy.deepcopy(doc) if doc is not None else None

    def copy_resources(self, collection: str, name: str) -> Document | None:
        """A copy down to each resource's fields, for writers that only set those fields.

        Deeper values (a host's core map) are shared with the stored document: replace
        them, never mutate them. Much cheaper than `copy` for a host of thousands of cores.
        """
        doc = self.docs[collection].get(name)
        return None if doc is None else shallow_resources(doc)

    # ------------------------------------------------------------------ writes

    def commit(self, ops: Ops) -> int:
        """Apply `ops` as one record and (outside `run`) wait until it is durable; returns its seq.

        Raises StorageFull/StorageFailed when the journal cannot be written: then
        nothing of it is applied and nothing of it is left on disk.
        """
        return self.commit_many([ops])[0]

    def commit_many(self, batches: list[Ops]) -> list[int]:
        """Several records applied at once, each its own seq, made durable by one fsync.

        Returns each batch's seq (the current seq for an empty batch). Outside `run`,
        all are durable when this returns, or (on StorageFull/StorageFailed) none is
        applied; inside `run`, `run` waits for them.
        """
        for ops in batches:
            _check_ops(ops)
        with self.lock:
            self._check_patched_exist(batches)
            # Framed first (JSON that cannot be written raises here), so all or none is applied.
            seq, seqs, framed = self.seq, [], []
            for ops in batches:
                if ops:
                    seq += 1
                    framed.append((seq, ops, frame(seq, ops)))
                seqs.append(seq)
            for s, ops, data in framed:
                self._apply_pending(s, ops, data)
                self.changes += len(ops)
            last = self._last if framed else None
            if self._deferred:
                return seqs
        if last is not None:
            self.wait(last)
        return seqs

    def _check_patched_exist(self, batches: list[Ops]) -> None:
        """Refuse (before anything is applied) a patch of a document that will not exist then."""
        exists: dict[tuple[str, str], bool] = {}
        for ops in batches:
            for op in ops:
                key = (op["c"], op["name"])
                if op["op"] == "patch" and not exists.get(key, op["name"] in self.docs[op["c"]]):
                    raise ValueError(f"patch of {op['c']}/{op['name']}, which does not exist")
                exists[key] = op["op"] != "delete"

    def run(self, fn: Callable[[], T]) -> T:
        """`fn()` under the lock, returned once every change it saw or made is durable.

        Its writes (`commit`) are applied at once and made durable by the group commit.
        If a change `fn` saw is refused by the disk, a call that wrote nothing is run
        again on the state as it is now on disk; one that wrote gets the error (its own
        changes were undone with the refused batch).
        """
        for attempt in range(RUN_RETRIES + 1):
            with self.lock:
                before = self._last
                self._deferred += 1
                try:
                    result = fn()
                finally:
                    self._deferred -= 1
                    last = self._last
            if last is None or last.durable:
                return result
            try:
                self.wait(last)
            except StorageFailed:
                if last is not before or attempt == RUN_RETRIES:
                    raise
                continue
            return result
        raise AssertionError("unreachable: the last attempt returns or raises")

    def wait(self, ticket: Ticket) -> None:
        """Return once `ticket`'s record is durable, committing batches while no one else does.

        Raises the storage error if its batch (or one before it) was refused. Never call
        it holding `lock`: the committer needs it.
        """
        while True:
            with self._cond:
                while not ticket.done and self._committing:
                    self._cond.wait()
                if ticket.done:
                    break
                self._committing = True
            try:
                self._commit_round()
            finally:
                with self._cond:
                    self._committing = False
                    self._cond.notify_all()
        if ticket.error is not None:
            raise ticket.error

    def _commit_round(self) -> None:
        """The committer's work: write the pending batch (lock released during the fsync), then settle it."""
        with self.lock:
            batch, self._pending = self._pending, []
        if not batch:
            return
        try:
            self.journal.append_framed([(t.seq, t.data) for t in batch])
        except Exception as e:  # noqa: BLE001 - whatever it is, the batch's callers must hear it
            with self.lock:
                self._refuse(batch, _as_storage_error(e))
            return
        with self.lock:
            self._settle(batch)
            self._maybe_checkpoint()

    def _settle(self, batch: list[Ticket]) -> None:
        self.batches += 1
        self.durable_seq = batch[-1].seq
        with self._cond:
            for t in batch:
                t.undo = []
                t.done = True

    def _refuse(self, batch: list[Ticket], error: StorageFailed) -> None:
        """Undo `batch` and everything applied after it, newest first; their waiters get `error`."""
        undone = batch + self._pending
        self._pending = []
        for t in reversed(undone):
            self.changes -= len(t.undo)  # one undo entry per operation
            for c, name, doc, write_seq, coll_seq in reversed(t.undo):
                _restore(self.docs[c], name, doc)
                _restore(self.last_write_seq, (c, name), write_seq)
                _restore(self.collection_seq, c, coll_seq)
        self.seq = self.durable_seq
        self._last = None  # all that is left in memory is durable
        with self._cond:
            for t in undone:
                t.undo = []
                t.error = error
                t.done = True
        log.warning("the journal refused %d record(s) (seq %d..%d), undone in memory: %s",
                    len(undone), undone[0].seq, undone[-1].seq, error)

    def _apply_pending(self, seq: int, ops: Ops, data: bytes) -> None:
        """Apply record `seq` (framed as `data`) in memory, lock held, and queue it for the next batch."""
        undo = [(op["c"], op["name"], self.docs[op["c"]].get(op["name"], _ABSENT),
                 self.last_write_seq.get((op["c"], op["name"]), _ABSENT),
                 self.collection_seq.get(op["c"], _ABSENT)) for op in ops]
        self._apply(seq, ops)
        self.seq = seq
        self._last = Ticket(seq, data, undo)
        self._pending.append(self._last)

    def _apply(self, seq: int, ops: Ops) -> None:
        for op in ops:
            c, name = op["c"], op["name"]
            if op["op"] == "put":
                self.docs[c][name] = op["doc"]
            elif op["op"] == "patch":
                doc = self.docs[c].get(name)
                if doc is None:
                    raise ValueError(f"journal seq {seq}: patch of {c}/{name}, which does not exist")
                self.docs[c][name] = patched(doc, op["set"], op.get("unset", ()))
            elif op["op"] == "delete":
                self.docs[c].pop(name, None)
            else:
                raise ValueError(f"unknown journal op {op['op']!r}")
            self.last_write_seq[(c, name)] = seq
            self.collection_seq[c] = seq

    def _maybe_checkpoint(self) -> None:
        """The committer's checkpoint when one is due (lock held)."""
        now = time.monotonic()
        if now < self._checkpoint_retry_t:
            return
        if (
            self.journal.records_since_reset >= self.checkpoint_every_records
            or now - self.last_checkpoint_t >= self.checkpoint_every_s
        ):
            # NOTE: the changes that got here are durable and applied; a failed checkpoint
            # must not make their callers believe otherwise. The journal still has it all.
            try:
                self._checkpoint_locked()
            except StorageFailed as e:
                log.warning("checkpoint postponed %.0f s: %s", CHECKPOINT_RETRY_S, e)
                self._checkpoint_retry_t = now + CHECKPOINT_RETRY_S

    def checkpoint(self) -> None:
        """Write every document to a new checkpoint and empty the journal (waits its turn as committer)."""
        with self._cond:
            while self._committing:
                self._cond.wait()
            self._committing = True
        try:
            with self.lock:
                self._checkpoint_locked()
        finally:
            with self._cond:
                self._committing = False
                self._cond.notify_all()

    def _checkpoint_locked(self) -> None:
        """Checkpoint as the committer with the lock held: what is pending is written first, so the
        checkpoint holds only durable changes and no batch is half in the journal it empties."""
        if self._pending:
            batch, self._pending = self._pending, []
            try:
                self.journal.append_framed([(t.seq, t.data) for t in batch])
            except Exception as e:  # noqa: BLE001
                error = _as_storage_error(e)
                self._refuse(batch, error)
                raise error from None
            self._settle(batch)
        write_checkpoint(self.checkpoint_path, self.docs, self.seq)
        self.journal.reset()
        self.last_checkpoint_t = time.monotonic()

    def checkpoint_age_s(self) -> float:
        return time.monotonic() - self.last_checkpoint_t

    def close(self) -> None:
        self.journal.close()


def _restore(d: MutableMapping[K, V], key: K, old: object) -> None:
    """Put back `d[key]` as it was before a refused record (`_ABSENT`: it was not there)."""
    if old is _ABSENT:
        d.pop(key, None)
    else:
        d[key] = cast(V, old)


def _as_storage_error(e: Exception) -> StorageFailed:
    """What the callers of a refused batch get: the journal's own error, or one naming the surprise."""
    if isinstance(e, StorageFailed):
        return e
    log.error("journal write failed unexpectedly", exc_info=e)
    return StorageFailed(f"the StateDB could not write the journal: {type(e).__name__}: {e}; "
                         "the change was not applied.")


def _check_ops(ops: Ops) -> None:
    """Refuse, before anything is written, ops that replay could not apply."""
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("put", "patch", "delete"):
            raise ValueError(f"unknown journal op {op!r}")
        if op.get("c") not in COLLECTIONS or not isinstance(op.get("name"), str):
            raise ValueError(f"journal op on unknown collection or name: {op.get('c')!r}/{op.get('name')!r}")
        if op["op"] == "put" and not isinstance(op.get("doc"), dict):
            raise ValueError(f"put {op['c']}/{op['name']} without a document")
        if op["op"] == "patch" and not _fields_ok(op):
            raise ValueError(f"patch {op['c']}/{op['name']} without a list of (path, value) to set, "
                             "each path a non-empty list of keys")


def _fields_ok(op: Op) -> bool:
    """A patch's `set` is a list of (path, value) and its `unset` a list of paths (non-empty lists of str)."""
    sets, unsets = op.get("set"), op.get("unset", [])
    if type(sets) is not list or type(unsets) is not list:
        return False
    for pair in sets:
        if type(pair) not in (list, tuple) or len(pair) != 2 or not _path_ok(pair[0]):
            return False
    return all(_path_ok(p) for p in unsets)


def _path_ok(path: object) -> bool:
    if type(path) is not list or not path:
        return False
    for k in path:
        if type(k) is not str:
            return False
    return True
