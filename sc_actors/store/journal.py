"""Write-ahead journal: length-framed records, each with a CRC, fsynced before the ack.

Why framed records and not SQLite (issue 13). Both keep acknowledged changes across a
crash; the difference is what each says about damage. SQLite checks no checksum on its
pages by default, so a bit flip inside a row's bytes is read back as a valid, different
document: silent. It also decides for itself what to do with a damaged database, and its
answer to "which change was lost" is not ours to word. The journal below is the etcd WAL
idea in ~300 lines: every record carries its own CRC, so any flipped byte is found, and
we know the exact offset and the last good seq to name when the StateDB refuses to start.
The Parquet checkpoints (the design card's format) stay as they are; the journal only
holds the changes since the last one.

One record (all integers little-endian)::

    magic   u32   0x314A4353 ("SCJ1")
    length  u32   bytes of payload
    seq     i64   the change's sequence number; the next record's is seq + 1
    crc     u32   CRC-32 of the payload
    hcrc    u32   CRC-32 of the 20 bytes above, so a damaged length is never trusted
    payload       `{"ops": [...]}` as JSON (`Op`: put, patch or delete)

A record's ops are applied together or not at all. What is found at open:

- **A torn tail**: the file ends inside the last record (its header, or the payload its
  valid header announces), or only zero bytes follow the last good record (what a power
  cut leaves on some file systems). That record was never acknowledged: the file is cut
  back to the last complete record, with a warning naming what was cut. (A run of zeros
  longer than `MAX_ZERO_TAIL_BYTES` is no unfinished write: it counts as damage.)
- **Anything else** that is not a valid record, before or at the end: a record that is
  complete but fails its CRC, a bad header, a seq that does not follow. It held
  acknowledged changes, so `JournalCorrupt` names the file, the offset and the last good
  seq, and nothing starts until `repair.repair_state_dir` has moved the file aside.

Writes never go through a user-space buffer: each batch of records is one `pwrite` at the
end of the last good record, then one `fdatasync`. If either fails (ENOSPC, EIO) the file
is truncated back to that offset, so no refused record can be flushed or replayed later,
and `StorageFull` (507) or `StorageFailed` (503) says why and where.
"""
from __future__ import annotations

import dataclasses
import errno
import json
import logging
import os
import struct
import zlib
from pathlib import Path
from typing import Any, Iterable, Iterator, Literal

from typing_extensions import NotRequired, TypedDict

from ..errors import StorageFailed, StorageFull
from ..model import Document

log = logging.getLogger(__name__)

MAGIC = 0x314A4353
HEADER = struct.Struct("<IIqII")
"""magic, payload length, seq, payload CRC-32, header CRC-32 (of the first 20 bytes)."""
MAX_PAYLOAD_BYTES = 1 << 30
"""A valid header never announces more; a larger length means the header is damaged."""
_READ_CHUNK = 1 << 20
MAX_ZERO_TAIL_BYTES = 16 << 20
"""A longer run of zeros at the end is no write cut short by a power cut, but damage."""



FieldPath = list[str]
"""Keys from a document's top down to one field: `["resources", "cpu", "current"]`."""


class Op(TypedDict):
    """One change of a record: `put` a whole document, `patch` some fields of one, or `delete` one.

    A `patch` sets absolute values (never a delta), so replaying it twice changes nothing;
    it names only what changed, so a scaling of one container among a host's 128 cores
    journals the few cores that moved, not the host's document.
    """

    op: Literal["put", "patch", "delete"]
    c: str
    """The collection."""
    name: str
    doc: NotRequired[Document]
    """The whole document, for a `put`."""
    set: NotRequired[list[tuple[FieldPath, Any]]]
    """For a `patch`: (path, value) of each field set; dicts missing on the way are made."""
    unset: NotRequired[list[FieldPath]]
    """For a `patch`: the path of each field removed (after `set`)."""


Ops = list[Op]


class JournalCorrupt(Exception):
    """The journal holds damage before its tail: acknowledged changes may be unreadable."""

    def __init__(self, path: Path, offset: int, last_good_seq: int | None, reason: str, size: int):
        self.path = Path(path)
        self.offset = offset
        self.last_good_seq = last_good_seq
        self.reason = reason
        self.size = size
        last = "none (the damage is in the first record)" if last_good_seq is None else f"seq {last_good_seq}"
        super().__init__(
            f"journal {self.path} is damaged at offset {offset} of {size} bytes ({reason}); "
            f"the last good record is {last}. The StateDB will not start on it: "
            "`sc up --repair` keeps the records before the damage, moves the damaged file "
            "aside and lists what is lost."
        )

    def __reduce__(self) -> Any:  # crosses Ray's process boundary intact
        return (JournalCorrupt, (self.path, self.offset, self.last_good_seq, self.reason, self.size))


@dataclasses.dataclass(frozen=True)
class Scan:
    """What a read of the whole journal found (`scan`); nothing is changed by it."""

    path: Path
    size: int
    """Bytes in the file."""
    good_end: int
    """Offset just after the last good record: where the next record goes."""
    first_seq: int | None
    last_seq: int | None
    records: int
    torn_bytes: int
    """Bytes after `good_end` that are a torn tail (cut at open); 0 when none."""
    damage: JournalCorrupt | None
    """Damage before the tail; when set, `torn_bytes` is 0 and `good_end` is its offset."""


def frame(seq: int, ops: Ops) -> bytes:
    """One record's bytes. Raises TypeError/ValueError for ops that are not JSON."""
    # NOTE: NaN and Infinity are written as JSON's common extension, as the checkpoints do:
    # refusing what validation let through is not the journal's call.
    payload = json.dumps({"ops": ops}, separators=(",", ":")).encode()
    if len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"journal record of {len(payload)} bytes is larger than {MAX_PAYLOAD_BYTES}")
    head = struct.pack("<IIqI", MAGIC, len(payload), seq, zlib.crc32(payload))
    return head + struct.pack("<I", zlib.crc32(head)) + payload


def _frames(path: Path) -> Iterator[tuple[int, int, bytes] | tuple[str, int, str]]:
    """(seq, offset, payload) per good record, then one ("end", offset, kind) where kind is
    "clean", "torn" or a damage reason."""
    size = path.stat().st_size
    expect: int | None = None
    with open(path, "rb") as f:
        off = 0
        while True:
            if off == size:
                yield ("end", off, "clean")
                return
            head = f.read(HEADER.size)
            if len(head) < HEADER.size:
                yield ("end", off, "torn")  # the file ends inside a header
                return
            magic, length, seq, crc, hcrc = HEADER.unpack(head)
            if magic != MAGIC or zlib.crc32(head[:20]) != hcrc or length > MAX_PAYLOAD_BYTES:
                zero_tail = size - off <= MAX_ZERO_TAIL_BYTES and _zeros_from(f, off, head)
                yield ("end", off, "torn" if zero_tail else "bad record header")
                return
            if off + HEADER.size + length > size:
                yield ("end", off, "torn")
                return
            payload = f.read(length)
            if zlib.crc32(payload) != crc:
                yield ("end", off, f"CRC mismatch in the payload of seq {seq}")
                return
            if expect is not None and seq != expect:
                yield ("end", off, f"seq {seq} where seq {expect} should follow")
                return
            yield (seq, off, payload)
            expect = seq + 1
            off += HEADER.size + length


def _zeros_from(f: Any, off: int, already: bytes) -> bool:
    """Whether every byte from `off` to the end of the file is zero (`already` read)."""
    if already.strip(b"\0"):
        return False
    while chunk := f.read(_READ_CHUNK):
        if chunk.strip(b"\0"):
            return False
    return True


def scan(path: Path) -> Scan:
    """Read the whole journal and say what is good, torn and damaged; changes nothing."""
    path = Path(path)
    if not path.exists():
        return Scan(path, 0, 0, None, None, 0, 0, None)
    first = last = None
    n = 0
    for item in _frames(path):
        if item[0] == "end":
            _, off, kind = item
            size = path.stat().st_size
            if kind == "clean":
                return Scan(path, size, off, first, last, n, 0, None)
            if kind == "torn":
                return Scan(path, size, off, first, last, n, size - off, None)
            return Scan(path, size, off, first, last, n, 0, JournalCorrupt(path, off, last, str(kind), size))
        seq = item[0]
        assert isinstance(seq, int)
        first = seq if first is None else first
        last = seq
        n += 1
    raise AssertionError("unreachable: _frames always ends with an end item")


def read_records(path: Path, after_seq: int = -1, upto: int | None = None) -> Iterator[tuple[int, Ops]]:
    """(seq, ops) of each good record with seq > after_seq, before offset `upto` (all when None).

    Raises JournalCorrupt at damage (past `upto` nothing is read).
    """
    path = Path(path)
    if not path.exists():
        return
    last = None
    for item in _frames(path):
        if item[0] == "end":
            _, off, kind = item
            if kind in ("clean", "torn") or (upto is not None and off >= upto):
                return
            raise JournalCorrupt(path, off, last, str(kind), path.stat().st_size)
        seq, off, payload = item
        assert isinstance(seq, int) and isinstance(payload, bytes)
        if upto is not None and off >= upto:
            return
        last = seq
        if seq > after_seq:
            try:
                ops = json.loads(payload)["ops"]
            except (ValueError, KeyError, TypeError) as e:
                raise JournalCorrupt(path, off, seq - 1, f"seq {seq} passes its CRC but is no record: {e}",
                                     path.stat().st_size) from None
            yield seq, ops


class Journal:
    """The append side; opening it cuts a torn tail and refuses a damaged file."""

    def __init__(self, path: Path, fsync: bool = True):
        self.path = Path(path)
        self.fsync = fsync
        self.path.parent.mkdir(parents=True, exist_ok=True)
        found = scan(self.path)
        if found.damage is not None:
            raise found.damage
        created = not self.path.exists()
        self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        if created and fsync:
            fsync_dir(self.path.parent)  # else a power cut could take the file, acknowledged records and all
        if found.torn_bytes:
            log.warning(
                "journal %s: cut %d bytes of a torn last record at offset %d (after %s); "
                "it was never acknowledged", self.path, found.torn_bytes, found.good_end,
                "no record" if found.last_seq is None else f"seq {found.last_seq}")
            os.ftruncate(self._fd, found.good_end)
            os.fsync(self._fd)
        self._end = found.good_end
        self.first_seq = found.first_seq
        self.last_seq = found.last_seq
        self.cut_bytes = found.torn_bytes
        """Bytes of a torn tail cut at open (0 when the file ended cleanly)."""
        self.records_since_reset = found.records
        self._dirty = False
        """A failed write could not be undone yet: retry the truncate before writing again."""

    def append(self, seq: int, ops: Ops) -> None:
        self.append_many([(seq, ops)])

    def append_many(self, records: Iterable[tuple[int, Ops]]) -> None:
        """Write records in one `pwrite` and one fsync; all durable on return, or none written.

        Seqs must follow the last record's one by one. On ENOSPC/EDQUOT raises
        StorageFull, on any other OSError StorageFailed, after truncating the file
        back to where the batch began.
        """
        self.append_framed([(seq, frame(seq, ops)) for seq, ops in records])

    def append_framed(self, records: list[tuple[int, bytes]]) -> None:
        """`append_many` of records already framed (`frame`), so a committer has no JSON left to fail on."""
        if not records:
            return
        expect = None if self.last_seq is None else self.last_seq + 1
        for seq, _ in records:
            if expect is not None and seq != expect:
                raise ValueError(f"journal seq {seq} does not follow {expect - 1}")
            expect = seq + 1
        buf = b"".join(data for _, data in records)
        if self._dirty:
            self._undo()
        try:
            view = memoryview(buf)
            done = 0
            while done < len(buf):
                done += os.pwrite(self._fd, view[done:], self._end + done)
            if self.fsync:
                os.fdatasync(self._fd)
        except OSError as e:
            self._dirty = True
            try:
                self._undo()
            except StorageFailed:
                pass
            raise storage_error(e, self.path, "write the journal") from None
        self._end += len(buf)
        if self.first_seq is None:
            self.first_seq = records[0][0]
        self.last_seq = records[-1][0]
        self.records_since_reset += len(records)

    def _undo(self) -> None:
        """Truncate back to the last good record (and make that durable)."""
        try:
            os.ftruncate(self._fd, self._end)
            if self.fsync:
                os.fsync(self._fd)
        except OSError as e:
            log.error("journal %s: could not cut a failed write back to offset %d: %s", self.path, self._end, e)
            raise storage_error(e, self.path, "undo a failed journal write") from None
        self._dirty = False

    def records(self, after_seq: int = -1) -> Iterator[tuple[int, Ops]]:
        """Replay the good records with seq > after_seq."""
        return read_records(self.path, after_seq, upto=self._end)

    def reset(self) -> None:
        """Empty the journal once a durable checkpoint holds everything in it.

        NOTE: a crash before the truncate is durable leaves the old records, all at or
        below the checkpoint's seq, which replay skips.
        """
        try:
            os.ftruncate(self._fd, 0)
            os.fsync(self._fd)
        except OSError as e:
            self._dirty = True
            raise storage_error(e, self.path, "empty the journal after a checkpoint") from None
        self._end = 0
        self.first_seq = self.last_seq = None
        self.records_since_reset = 0
        self._dirty = False

    def size_bytes(self) -> int:
        return self._end

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1


def storage_error(e: OSError, path: Path, doing: str) -> StorageFailed:
    """The API's error for a failed write: 507 when the disk is full, else 503."""
    name = errno.errorcode.get(e.errno or 0, "error")
    where = Path(path).parent
    if e.errno in (errno.ENOSPC, errno.EDQUOT):
        return StorageFull(f"the StateDB could not {doing}: no space left on the device of its state dir "
                           f"{where} ({name}); the change was not applied. Free space there and retry.")
    return StorageFailed(f"the StateDB could not {doing}: {e.strerror or e} ({name}) in its state dir "
                         f"{where}; the change was not applied.")


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


_fsync_dir = fsync_dir  # the name timeseries.py imports
