"""Documents in memory, made durable by the journal and Parquet checkpoints.

`commit(ops)` writes the ops to the journal (fsync) and only then applies them,
so whatever a caller saw acknowledged survives a crash, and a change the journal
refused (`StorageFull`, `StorageFailed`) is neither applied nor written later.
`commit_many` is the group commit: several changes, one write and one fsync, each
its own record and seq. `open()` loads the last checkpoint and replays the journal
after it; damage stops it (`JournalCorrupt`, `CheckpointCorrupt`, see statedir.py
for the repair). Ops are absolute (`put`, `delete`), never deltas, so replaying a
record twice changes nothing.
"""
from __future__ import annotations

import copy
import logging
import time
from pathlib import Path
from typing import Iterable

from ..errors import StorageFailed
from ..model import Document
from .checkpoint import Docs, read_checkpoint, tmp_path, write_checkpoint
from .journal import Journal, Op, Ops
from .statedir import CHECKPOINT_FILE, JOURNAL_FILE, check_follows_checkpoint, migrate_jsonl

log = logging.getLogger(__name__)

COLLECTIONS = ("structures", "limits", "rules", "services", "users")
CHECKPOINT_RETRY_S = 5.0
"""After a checkpoint failed (disk full), seconds before the next try."""


def put(collection: str, name: str, doc: Document) -> Op:
    return {"op": "put", "c": collection, "name": name, "doc": doc}


def delete(collection: str, name: str) -> Op:
    return {"op": "delete", "c": collection, "name": name}


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
        self.last_write_seq: dict[tuple[str, str], int] = {}
        """The seq of the last write of each (collection, name) since this store was opened."""
        self.collection_seq: dict[str, int] = {}
        """The seq of the last write to each collection since this store was opened."""
        self.last_checkpoint_t = time.monotonic()
        self._checkpoint_retry_t = 0.0
        self.replayed = 0

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
        """Journal then apply `ops` atomically; returns the record's seq.

        Raises StorageFull/StorageFailed when the journal cannot be written: then
        nothing is applied and nothing of it is left on disk.
        """
        return self.commit_many([ops])[0]

    def commit_many(self, batches: list[Ops]) -> list[int]:
        """Group commit: each batch its own record, all written with one fsync, then applied.

        Returns each batch's seq (the current seq for an empty batch). All are durable
        when this returns, or (on StorageFull/StorageFailed) none is applied.
        """
        for ops in batches:
            _check_ops(ops)
        seqs, records = [], []
        seq = self.seq
        for ops in batches:
            if ops:
                seq += 1
                records.append((seq, ops))
            seqs.append(seq)
        if not records:
            return seqs
        self.journal.append_many(records)
        for s, ops in records:
            self._apply(s, ops)
        self.seq = seq
        self._maybe_checkpoint()
        return seqs

    def _apply(self, seq: int, ops: Ops) -> None:
        for op in ops:
            c, name = op["c"], op["name"]
            if op["op"] == "put":
                self.docs[c][name] = op["doc"]
            elif op["op"] == "delete":
                self.docs[c].pop(name, None)
            else:
                raise ValueError(f"unknown journal op {op['op']!r}")
            self.last_write_seq[(c, name)] = seq
            self.collection_seq[c] = seq

    def _maybe_checkpoint(self) -> None:
        now = time.monotonic()
        if now < self._checkpoint_retry_t:
            return
        if (
            self.journal.records_since_reset >= self.checkpoint_every_records
            or now - self.last_checkpoint_t >= self.checkpoint_every_s
        ):
            # NOTE: the change that got here is durable and applied; a failed checkpoint
            # must not make its caller believe otherwise. The journal still has it all.
            try:
                self.checkpoint()
            except StorageFailed as e:
                log.warning("checkpoint postponed %.0f s: %s", CHECKPOINT_RETRY_S, e)
                self._checkpoint_retry_t = now + CHECKPOINT_RETRY_S

    def checkpoint(self) -> None:
        write_checkpoint(self.checkpoint_path, self.docs, self.seq)
        self.journal.reset()
        self.last_checkpoint_t = time.monotonic()

    def checkpoint_age_s(self) -> float:
        return time.monotonic() - self.last_checkpoint_t

    def close(self) -> None:
        self.journal.close()


def _check_ops(ops: Ops) -> None:
    """Refuse, before anything is written, ops that replay could not apply."""
    for op in ops:
        if not isinstance(op, dict) or op.get("op") not in ("put", "delete"):
            raise ValueError(f"unknown journal op {op!r}")
        if op.get("c") not in COLLECTIONS or not isinstance(op.get("name"), str):
            raise ValueError(f"journal op on unknown collection or name: {op.get('c')!r}/{op.get('name')!r}")
        if op["op"] == "put" and not isinstance(op.get("doc"), dict):
            raise ValueError(f"put {op['c']}/{op['name']} without a document")
