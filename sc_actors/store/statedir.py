"""What a StateDB state dir holds, the check before a start, and the repair after damage.

    checkpoint.parquet   every document as of seq S (checkpoint.py)
    journal.wal          the changes after S, framed records with a CRC each (journal.py)
    journal.jsonl        the journal of older versions: migrated to journal.wal at open

`check_state_dir` reads both files and raises what would stop the StateDB from starting
(`JournalCorrupt`, `CheckpointCorrupt`) without changing anything. `repair_state_dir`
(`sc up --repair`) keeps the journal's records before its damage, moves the damaged file
aside (`journal.wal.damaged-<utc time>`) and reports what is lost, naming each lost
record it can still decode. It never touches a damaged checkpoint: without it the journal
after it means nothing, so that one is for an operator to restore.
"""
from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
import zlib
from pathlib import Path
from typing import Any, Iterator

from .checkpoint import read_checkpoint
from .journal import HEADER, MAGIC, MAX_PAYLOAD_BYTES, JournalCorrupt, Ops, frame, fsync_dir, read_records, scan

log = logging.getLogger(__name__)

JOURNAL_FILE = "journal.wal"
OLD_JOURNAL_FILE = "journal.jsonl"
CHECKPOINT_FILE = "checkpoint.parquet"


@dataclasses.dataclass(frozen=True)
class LostRecord:
    seq: int | None
    offset: int
    summary: str
    """Its ops, e.g. `put limits/c1, delete structures/c2`; `unreadable` when none decode."""


@dataclasses.dataclass(frozen=True)
class RepairReport:
    state_dir: Path
    damage: str | None
    """What was wrong (the message the StateDB refused to start with); None when nothing."""
    kept_records: int = 0
    last_good_seq: int | None = None
    lost_bytes: int = 0
    moved_to: Path | None = None
    lost: tuple[LostRecord, ...] = ()

    def lines(self) -> list[str]:
        if self.damage is None:
            return [f"state dir {self.state_dir}: no damage found, nothing changed"]
        last = "none" if self.last_good_seq is None else f"seq {self.last_good_seq}"
        out = [
            f"damage: {self.damage}",
            f"kept {self.kept_records} record(s) before it, up to {last}",
            f"moved the damaged file to {self.moved_to}",
            f"lost {self.lost_bytes} bytes; {len(self.lost)} record(s) after the damage could still be read:",
        ]
        first_read = next((r.seq for r in self.lost if r.seq is not None), None)
        after = -1 if self.last_good_seq is None else self.last_good_seq
        if first_read is None or first_read > after + 1:
            hi = None if first_read is None else first_read - 1
            seqs = (f"{after + 1}" if hi == after + 1 else f"{after + 1} and later" if hi is None
                    else f"{after + 1}..{hi}")
            out.append(f"  lost seq {seqs}: unreadable or missing (the damage)")
        out += [f"  lost seq {r.seq} at offset {r.offset}: {r.summary}" for r in self.lost[:50]]
        if len(self.lost) > 50:
            out.append(f"  … and {len(self.lost) - 50} more (all in {self.moved_to})")
        out.append("redo the lost changes that still matter; they are not applied")
        return out


def check_state_dir(state_dir: Path) -> None:
    """Raise what would stop the StateDB from starting on `state_dir`; change nothing."""
    d = Path(state_dir)
    _, ckpt_seq = read_checkpoint(d / CHECKPOINT_FILE)
    journal = d / JOURNAL_FILE
    if not journal.exists() and (d / OLD_JOURNAL_FILE).exists():
        _, damage = read_jsonl(d / OLD_JOURNAL_FILE)
        if damage is not None:
            raise damage
        return
    found = scan(journal)
    if found.damage is not None:
        raise found.damage
    check_follows_checkpoint(journal, found.first_seq, ckpt_seq, found.size)


def check_follows_checkpoint(journal: Path, first_seq: int | None, ckpt_seq: int, size: int) -> None:
    """A journal must begin at or before the record after the checkpoint, or some are missing."""
    if first_seq is not None and first_seq > ckpt_seq + 1:
        raise JournalCorrupt(journal, 0, None, f"it begins at seq {first_seq} but the checkpoint holds up to "
                                               f"seq {ckpt_seq}: seqs {ckpt_seq + 1}..{first_seq - 1} are missing",
                             size)


def repair_state_dir(state_dir: Path, now: float | None = None) -> RepairReport:
    """Keep the journal before its damage, move the damaged file aside, report the loss.

    Changes nothing when no damage is found. A damaged checkpoint raises CheckpointCorrupt.
    """
    d = Path(state_dir)
    _, ckpt_seq = read_checkpoint(d / CHECKPOINT_FILE)
    stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime(time.time() if now is None else now))
    journal = d / JOURNAL_FILE
    if not journal.exists() and (d / OLD_JOURNAL_FILE).exists():
        old = d / OLD_JOURNAL_FILE
        records, damage = read_jsonl(old)
        if damage is None:
            return RepairReport(d, None)
        kept = [(s, ops) for s, ops in records if s > ckpt_seq]
        lost = tuple(_jsonl_after(old, damage.offset))
        return _replace_journal(d, old, kept, damage, stamp, lost, len(records), ckpt_seq)
    found = scan(journal)
    damage = found.damage
    if damage is None:
        try:
            check_follows_checkpoint(journal, found.first_seq, ckpt_seq, found.size)
        except JournalCorrupt as e:
            damage = e
    if damage is None:
        return RepairReport(d, None)
    kept = [(s, ops) for s, ops in read_records(journal, upto=damage.offset)]
    lost = tuple(_frames_after(journal, damage.offset))
    return _replace_journal(d, journal, kept, damage, stamp, lost, len(kept), ckpt_seq)


def _write_records(path: Path, records: list[tuple[int, Ops]]) -> Path:
    """Write framed `records` to a new file at `path`, fsynced; returns `path`."""
    with open(path, "wb") as f:
        for seq, ops in records:
            f.write(frame(seq, ops))
        f.flush()
        os.fsync(f.fileno())
    return path


def _replace_journal(d: Path, damaged: Path, kept: list[tuple[int, Ops]], damage: JournalCorrupt,
                     stamp: str, lost: tuple[LostRecord, ...], kept_count: int, ckpt_seq: int) -> RepairReport:
    # The good records go to a new file first; the damaged one is only moved once that
    # one is durable, so a crash during the repair loses nothing either.
    size = damaged.stat().st_size
    aside = damaged.with_name(f"{damaged.name}.damaged-{stamp}")
    tmp = _write_records(d / (JOURNAL_FILE + ".repair"), kept)
    os.replace(damaged, aside)
    os.replace(tmp, d / JOURNAL_FILE)
    fsync_dir(d)
    # With no journal record kept, the state is the checkpoint's (seq -1: none).
    last = kept[-1][0] if kept else max(ckpt_seq, -1 if damage.last_good_seq is None else damage.last_good_seq)
    last_good = None if last < 0 else last
    log.warning("repaired %s: kept %d record(s) up to %s, moved the damaged file to %s, lost %d bytes",
                d, kept_count, last_good, aside, size - damage.offset)
    return RepairReport(d, str(damage), kept_count, last_good, size - damage.offset, aside, lost)


def _summary(ops: Any) -> str:
    try:
        return ", ".join(f"{op['op']} {op['c']}/{op['name']}" for op in ops) or "no ops"
    except (TypeError, KeyError):
        return "unreadable ops"


def _frames_after(path: Path, offset: int) -> Iterator[LostRecord]:
    """Every record that still passes its CRCs somewhere after `offset` (best effort)."""
    data = path.read_bytes()
    magic = MAGIC.to_bytes(4, "little")
    pos = data.find(magic, offset)
    while pos >= 0 and pos + HEADER.size <= len(data):
        _, length, seq, crc, hcrc = HEADER.unpack_from(data, pos)
        end = pos + HEADER.size + length
        if (zlib.crc32(data[pos:pos + 20]) == hcrc and length <= MAX_PAYLOAD_BYTES and end <= len(data)
                and zlib.crc32(data[pos + HEADER.size:end]) == crc):
            try:
                summary = _summary(json.loads(data[pos + HEADER.size:end])["ops"])
            except (ValueError, KeyError, TypeError):
                summary = "unreadable"
            yield LostRecord(seq, pos, summary)
            pos = data.find(magic, end)
        else:
            pos = data.find(magic, pos + 1)


# ---------------------------------------------------------------------------- the old JSON-lines journal


def read_jsonl(path: Path) -> tuple[list[tuple[int, Ops]], JournalCorrupt | None]:
    """Records of an old `journal.jsonl`, and the damage that ends them (None: a clean end).

    A last line without its newline is a torn tail, as the old journal meant it; any other
    line that is no record, or a seq that does not follow, is damage.
    """
    data = Path(path).read_bytes()
    records: list[tuple[int, Ops]] = []
    off = 0
    while off < len(data):
        nl = data.find(b"\n", off)
        line = data[off:] if nl < 0 else data[off:nl]
        try:
            rec = json.loads(line)
            seq, ops = int(rec["seq"]), rec["ops"]
            ok = isinstance(ops, list) and (not records or seq == records[-1][0] + 1)
        except (ValueError, KeyError, TypeError):
            ok = False
        if not ok:
            if nl < 0:
                break  # torn: never acknowledged
            last = records[-1][0] if records else None
            return records, JournalCorrupt(Path(path), off, last, "a line that is no record, or a seq that "
                                                                   "does not follow", len(data))
        records.append((seq, ops))  # a whole last record without its newline: the old replay took it too
        if nl < 0:
            break
        off = nl + 1
    return records, None


def _jsonl_after(path: Path, offset: int) -> Iterator[LostRecord]:
    data = Path(path).read_bytes()
    off = offset
    for line in data[offset:].split(b"\n"):
        try:
            rec = json.loads(line)
            yield LostRecord(int(rec["seq"]), off, _summary(rec["ops"]))
        except (ValueError, KeyError, TypeError):
            if line.strip():
                yield LostRecord(None, off, "unreadable")
        off += len(line) + 1


def migrate_jsonl(state_dir: Path) -> None:
    """Rewrite an old `journal.jsonl` as `journal.wal` (once); raise JournalCorrupt if damaged."""
    d = Path(state_dir)
    old, new = d / OLD_JOURNAL_FILE, d / JOURNAL_FILE
    if not old.exists():
        return
    if new.exists():
        # A crash after the rename below: the new file is whole.
        old.unlink()
        fsync_dir(d)
        return
    records, damage = read_jsonl(old)
    if damage is not None:
        raise damage
    tmp = _write_records(d / (JOURNAL_FILE + ".migrate"), records)
    os.replace(tmp, new)
    fsync_dir(d)
    old.unlink()
    fsync_dir(d)
    log.warning("migrated %d record(s) of %s to %s", len(records), old, new)
