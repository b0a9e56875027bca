"""Write-ahead journal: one JSON line per acknowledged change, fsynced before the ack.

A record is `{"seq": n, "ops": [...]}`; its ops are applied together or not at all.
A torn last line (the process died mid-write) is ignored on replay: it was never
acknowledged.
"""
from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Iterator


class Journal:
    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._f = open(self.path, "ab")
        self.records_since_reset = 0

    def append(self, seq: int, ops: list[dict[str, Any]]) -> None:
        line = json.dumps({"seq": seq, "ops": ops}, separators=(",", ":")).encode() + b"\n"
        self._f.write(line)
        self._f.flush()
        if self.fsync:
            os.fsync(self._f.fileno())
        self.records_since_reset += 1

    def records(self, after_seq: int = -1) -> Iterator[tuple[int, list[dict[str, Any]]]]:
        """Replay records with seq > after_seq, stopping at a torn last line."""
        if not self.path.exists():
            return
        with open(self.path, "rb") as f:
            for raw in f:
                try:
                    rec = json.loads(raw)
                except ValueError:
                    break  # torn tail: never acknowledged
                if rec["seq"] > after_seq:
                    yield rec["seq"], rec["ops"]

    def reset(self) -> None:
        """Empty the journal once a checkpoint holds everything in it."""
        self._f.close()
        tmp = self.path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, self.path)
        _fsync_dir(self.path.parent)
        self._f = open(self.path, "ab")
        self.records_since_reset = 0

    def size_bytes(self) -> int:
        return self.path.stat().st_size if self.path.exists() else 0

    def close(self) -> None:
        self._f.close()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
