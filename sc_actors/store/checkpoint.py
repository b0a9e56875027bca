"""Parquet checkpoints of every document: one row per document, written atomically.

Schema: `collection` (string), `name` (string), `doc` (string, the document as JSON);
the journal sequence number it includes is in the file's metadata (`sc.seq`).
Readers never see a half-written file: it is written beside and renamed over.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq

from .journal import _fsync_dir

SCHEMA = pa.schema(
    [("collection", pa.string()), ("name", pa.string()), ("doc", pa.string())]
)

Docs = dict[str, dict[str, dict[str, Any]]]


def write_checkpoint(path: Path, docs: Docs, seq: int) -> None:
    path = Path(path)
    rows = [(c, n, json.dumps(d, separators=(",", ":"))) for c, by in docs.items() for n, d in by.items()]
    table = pa.table(
        {
            "collection": [r[0] for r in rows],
            "name": [r[1] for r in rows],
            "doc": [r[2] for r in rows],
        },
        schema=SCHEMA.with_metadata({"sc.seq": str(seq)}),
    )
    tmp = path.with_name(path.name + ".tmp")
    pq.write_table(table, tmp)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def read_checkpoint(path: Path) -> tuple[Docs, int]:
    """The documents and the journal seq they include; ({}, -1) when absent."""
    path = Path(path)
    if not path.exists():
        return {}, -1
    table = pq.read_table(path)
    seq = int((table.schema.metadata or {}).get(b"sc.seq", b"-1"))
    docs: Docs = {}
    for c, n, d in zip(*(table.column(k).to_pylist() for k in ("collection", "name", "doc"))):
        docs.setdefault(c, {})[n] = json.loads(d)
    return docs, seq
