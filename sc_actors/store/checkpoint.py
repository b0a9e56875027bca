"""Parquet checkpoints of every document: one row per document, written atomically.

Schema: `collection` (string), `name` (string), `doc` (string, the document as JSON);
the journal sequence number it includes is in the file's metadata (`sc.seq`).
Readers never see a half-written file: it is written to `<name>.tmp`, fsynced, renamed
over, and the directory fsynced; a crash at any point leaves the previous checkpoint
whole (a stale `.tmp` is removed at the next open). `sc.crc32` in the metadata is the
CRC-32 of every row, so a damaged checkpoint is refused (`CheckpointCorrupt`), never read
as other documents.
"""
from __future__ import annotations

import json
import os
import zlib
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from ..model import Document
from .journal import fsync_dir, storage_error

SCHEMA = pa.schema(
    [("collection", pa.string()), ("name", pa.string()), ("doc", pa.string())]
)

Docs = dict[str, dict[str, Document]]
"""collection → name → stored document."""


class CheckpointCorrupt(Exception):
    """The checkpoint cannot be read back as it was written; the StateDB does not start."""

    def __init__(self, path: Path, reason: str):
        self.path = Path(path)
        self.reason = reason
        super().__init__(f"checkpoint {self.path} is damaged ({reason}); the StateDB will not start on it")

    def __reduce__(self) -> Any:
        return (CheckpointCorrupt, (self.path, self.reason))


def _rows_crc(collections: list[str], names: list[str], docs: list[str]) -> int:
    crc = 0
    for row in zip(collections, names, docs):
        for field in row:
            crc = zlib.crc32(field.encode() + b"\0", crc)
    return crc


def write_checkpoint(path: Path, docs: Docs, seq: int) -> None:
    path = Path(path)
    rows = [(c, n, json.dumps(d, separators=(",", ":"))) for c, by in docs.items() for n, d in by.items()]
    columns = {k: [r[i] for r in rows] for i, k in enumerate(("collection", "name", "doc"))}
    crc = _rows_crc(columns["collection"], columns["name"], columns["doc"])
    table = pa.table(columns, schema=SCHEMA.with_metadata({"sc.seq": str(seq), "sc.crc32": str(crc)}))
    tmp = tmp_path(path)
    try:
        pq.write_table(table, tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fsync_dir(path.parent)
    except OSError as e:
        # The previous checkpoint (and the journal after it) is still whole.
        tmp.unlink(missing_ok=True)
        raise storage_error(e, path, "write a checkpoint") from None


def tmp_path(path: Path) -> Path:
    return Path(path).with_name(Path(path).name + ".tmp")


def read_checkpoint(path: Path) -> tuple[Docs, int]:
    """The documents and the journal seq they include; ({}, -1) when absent."""
    path = Path(path)
    if not path.exists():
        return {}, -1
    try:
        table = pq.read_table(path)
        meta = table.schema.metadata or {}
        seq = int(meta.get(b"sc.seq", b"-1"))
        columns = [table.column(k).to_pylist() for k in ("collection", "name", "doc")]
        if b"sc.crc32" in meta and int(meta[b"sc.crc32"]) != _rows_crc(*columns):
            raise CheckpointCorrupt(path, "CRC mismatch of its rows")
        docs: Docs = {}
        for c, n, d in zip(*columns):
            docs.setdefault(c, {})[n] = json.loads(d)
    except CheckpointCorrupt:
        raise
    except (pa.ArrowException, OSError, ValueError, KeyError, TypeError) as e:
        raise CheckpointCorrupt(path, f"{type(e).__name__}: {e}") from None
    return docs, seq
