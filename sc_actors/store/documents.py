"""Documents in memory, made durable by the journal and Parquet checkpoints.

`commit(ops)` writes the ops to the journal (fsync) and only then applies them,
so whatever a caller saw acknowledged survives a crash. `open()` loads the last
checkpoint and replays the journal after it. Ops are absolute (`put`, `delete`),
never deltas, so replaying a record twice changes nothing.
"""
from __future__ import annotations

import copy
import time
from pathlib import Path
from typing import Any, Iterable

from .checkpoint import Docs, read_checkpoint, write_checkpoint
from .journal import Journal

COLLECTIONS = ("structures", "limits", "rules", "services", "users")


def put(collection: str, name: str, doc: dict[str, Any]) -> dict[str, Any]:
    return {"op": "put", "c": collection, "name": name, "doc": doc}


def delete(collection: str, name: str) -> dict[str, Any]:
    return {"op": "delete", "c": collection, "name": name}


def shallow_resources(doc: dict[str, Any]) -> dict[str, Any]:
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
        self.checkpoint_path = self.dir / "checkpoint.parquet"
        self.journal = Journal(self.dir / "journal.jsonl", fsync=fsync)
        self.checkpoint_every_records = checkpoint_every_records
        self.checkpoint_every_s = checkpoint_every_s
        self.docs: Docs = {c: {} for c in COLLECTIONS}
        self.seq = -1
        self.last_write_seq: dict[tuple[str, str], int] = {}
        """The seq of the last write of each (collection, name) since this store was opened."""
        self.collection_seq: dict[str, int] = {}
        """The seq of the last write to each collection since this store was opened."""
        self.last_checkpoint_t = time.monotonic()
        self.replayed = 0

    # ------------------------------------------------------------------ life cycle

    def open(self) -> "DocumentStore":
        docs, self.seq = read_checkpoint(self.checkpoint_path)
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

    def get(self, collection: str, name: str) -> dict[str, Any] | None:
        return self.docs[collection].get(name)

    def values(self, collection: str) -> Iterable[dict[str, Any]]:
        return self.docs[collection].values()

    def copy(self, collection: str, name: str) -> dict[str, Any] | None:
        doc = self.docs[collection].get(name)
        return copy.deepcopy(doc) if doc is not None else None

    def copy_resources(self, collection: str, name: str) -> dict[str, Any] | None:
        """A copy down to each resource's fields, for writers that only set those fields.

        Deeper values (a host's core map) are shared with the stored document: replace
        them, never mutate them. Much cheaper than `copy` for a host of thousands of cores.
        """
        doc = self.docs[collection].get(name)
        return None if doc is None else shallow_resources(doc)

    # ------------------------------------------------------------------ writes

    def commit(self, ops: list[dict[str, Any]]) -> int:
        """Journal then apply `ops` atomically; returns the record's seq."""
        if not ops:
            return self.seq
        seq = self.seq + 1
        self.journal.append(seq, ops)
        self._apply(seq, ops)
        self.seq = seq
        self._maybe_checkpoint()
        return seq

    def _apply(self, seq: int, ops: list[dict[str, Any]]) -> None:
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
        if (
            self.journal.records_since_reset >= self.checkpoint_every_records
            or time.monotonic() - self.last_checkpoint_t >= self.checkpoint_every_s
        ):
            self.checkpoint()

    def checkpoint(self) -> None:
        write_checkpoint(self.checkpoint_path, self.docs, self.seq)
        self.journal.reset()
        self.last_checkpoint_t = time.monotonic()

    def checkpoint_age_s(self) -> float:
        return time.monotonic() - self.last_checkpoint_t

    def close(self) -> None:
        self.journal.close()
