"""The journal's bytes on disk: torn tails are cut, damage is loud, repair says what is lost.

The first tests replay the issue's seen bugs through the `Journal` API alone, so they can
run against the old journal too: `SC_JOURNAL_IMPL=/path/to/old/journal.py` makes
`journal_cls` (conftest.py) load that file's `Journal`; on it they fail, on ours they pass.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import random
import shutil
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from sc_actors.store import journal as journal_mod
from sc_actors.store.checkpoint import CheckpointCorrupt, read_checkpoint, write_checkpoint
from sc_actors.store.documents import DocumentStore, put
from sc_actors.store.journal import HEADER, Journal, JournalCorrupt, frame
from sc_actors.store.statedir import check_state_dir, repair_state_dir


def _ops(i: int, pad: int = 0) -> list[dict]:
    return [put("rules", f"r{i}", {"name": f"r{i}", "amount": i, "pad": "x" * pad})]


def _read_all(cls, path: Path) -> list[tuple[int, list]]:
    j = cls(path)
    try:
        return list(j.records())
    finally:
        j.close()


def _starts(path: Path) -> list[int]:
    """The offset of each record of a journal in our format."""
    data, out, off = path.read_bytes(), [], 0
    while off < len(data):
        out.append(off)
        off += HEADER.size + HEADER.unpack_from(data, off)[1]
    return out


def _write(cls, path: Path, n: int, pad: int = 0) -> list[int]:
    """n records; returns the file size after each one (the offsets of the next)."""
    j = cls(path)
    ends = []
    for i in range(n):
        j.append(i, _ops(i, pad))
        ends.append(path.stat().st_size)
    j.close()
    return ends


# ---------------------------------------------------------------------------- the seen bugs


def test_seen_1_changes_acknowledged_after_a_torn_tail_survive_the_next_restart(journal_cls, tmp_path):
    path = tmp_path / "journal"
    ends = _write(journal_cls, path, 5, pad=300)
    with open(path, "r+b") as f:
        f.truncate(ends[-1] - 200)  # what a power cut leaves of the last record
    j = journal_cls(path)
    last = max(seq for seq, _ in j.records())
    assert last == 3
    j.append(4, _ops(40))  # acknowledged after the restart
    j.append(5, _ops(50))
    j.close()
    assert [seq for seq, _ in _read_all(journal_cls, path)] == [0, 1, 2, 3, 4, 5]
    assert _read_all(journal_cls, path)[-1][1] == _ops(50)


def test_seen_2_garbage_in_the_middle_refuses_to_open_naming_offset_and_last_good_seq(journal_cls, tmp_path):
    path = tmp_path / "journal"
    ends = _write(journal_cls, path, 30)
    start, end = ends[4], ends[5]  # record 5 of 30 (seq 5)
    data = bytearray(path.read_bytes())
    data[(start + end) // 2 - 8:(start + end) // 2 + 8] = b"\xde\xad\xbe\xef" * 4
    path.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as e:
        _read_all(journal_cls, path)
    assert e.value.offset == start and e.value.last_good_seq == 4
    assert str(path) in str(e.value) and f"offset {start}" in str(e.value) and "seq 4" in str(e.value)


# ---------------------------------------------------------------------------- torn tails


def test_a_torn_tail_at_every_byte_of_the_last_record_is_cut_and_new_records_follow(tmp_path, caplog):
    whole = tmp_path / "whole"
    ends = _write(Journal, whole, 4, pad=40)
    last_start = ends[-2]
    assert ends[-1] - last_start > HEADER.size + 40
    path = tmp_path / "journal"
    for cut in range(last_start, ends[-1]):
        shutil.copyfile(whole, path)
        with open(path, "r+b") as f:
            f.truncate(cut)
        caplog.clear()
        with caplog.at_level(logging.WARNING, logger="sc_actors.store.journal"):
            j = Journal(path)
        torn = cut - last_start
        if torn:
            assert j.cut_bytes == torn
            assert f"cut {torn} bytes" in caplog.text and "after seq 2" in caplog.text, cut
        else:
            assert j.cut_bytes == 0 and not caplog.text  # ends on a record boundary: nothing torn
        assert path.stat().st_size == last_start
        assert [s for s, _ in j.records()] == [0, 1, 2]
        j.append(3, _ops(33))
        j.close()
        assert _read_all(Journal, path) == [(0, _ops(0, 40)), (1, _ops(1, 40)), (2, _ops(2, 40)), (3, _ops(33))]


def test_a_tail_of_zero_bytes_after_the_last_record_is_cut(tmp_path):
    path = tmp_path / "journal"
    ends = _write(Journal, path, 3)
    with open(path, "ab") as f:
        f.write(b"\0" * 4096)  # a power cut on a file system that extended the file first
    j = Journal(path)
    assert j.cut_bytes == 4096 and j.size_bytes() == ends[-1] and j.last_seq == 2


def test_zeros_longer_than_any_unfinished_write_are_damage(tmp_path):
    path = tmp_path / "journal"
    ends = _write(Journal, path, 3)
    with open(path, "ab") as f:
        f.truncate(ends[-1] + journal_mod.MAX_ZERO_TAIL_BYTES + 1)  # a sparse run of zeros
    with pytest.raises(JournalCorrupt) as e:
        Journal(path)
    assert e.value.offset == ends[-1] and e.value.last_good_seq == 2


def test_a_torn_tail_in_the_store_is_cut_and_later_changes_survive(tmp_path):
    s = DocumentStore(tmp_path).open()
    for i in range(3):
        s.commit(_ops(i, pad=300))
    s.close()
    j = tmp_path / "journal.wal"
    with open(j, "r+b") as f:
        f.truncate(j.stat().st_size - 200)
    s = DocumentStore(tmp_path).open()
    assert s.seq == 1 and s.get("rules", "r2") is None
    s.commit([put("rules", "r1", {"name": "r1", "amount": 99})])
    s.close()
    r = DocumentStore(tmp_path).open()
    assert r.seq == 2 and r.get("rules", "r1")["amount"] == 99


# ---------------------------------------------------------------------------- damage is loud


def test_every_single_bit_flip_is_refused_at_the_record_that_holds_it(tmp_path):
    whole = tmp_path / "whole"
    ends = _write(Journal, whole, 12, pad=20)
    starts = [0] + ends[:-1]
    good = whole.read_bytes()
    rng = random.Random(13)
    path = tmp_path / "journal"
    for _ in range(400):
        pos, bit = rng.randrange(len(good)), rng.randrange(8)
        data = bytearray(good)
        data[pos] ^= 1 << bit
        path.write_bytes(bytes(data))
        rec = max(i for i, s in enumerate(starts) if s <= pos)
        with pytest.raises(JournalCorrupt) as e:
            Journal(path)
        assert e.value.offset == starts[rec], (pos, bit)
        assert e.value.last_good_seq == (rec - 1 if rec else None)
        assert path.read_bytes() == bytes(data)  # refused, not "repaired" behind anyone's back


def test_garbage_at_random_offsets_is_refused(tmp_path):
    whole = tmp_path / "whole"
    _write(Journal, whole, 12)
    good = whole.read_bytes()
    rng = random.Random(7)
    path = tmp_path / "journal"
    for _ in range(200):
        n = rng.randrange(1, 40)
        pos = rng.randrange(len(good) - n)
        data = bytearray(good)
        data[pos:pos + n] = bytes(rng.randrange(1, 256) for _ in range(n))
        if bytes(data) == good:
            continue
        path.write_bytes(bytes(data))
        with pytest.raises(JournalCorrupt):
            Journal(path)
        with pytest.raises(JournalCorrupt):
            check_state_dir_of(path)


def check_state_dir_of(path: Path) -> None:
    d = path.parent / "sd"
    d.mkdir(exist_ok=True)
    shutil.copyfile(path, d / "journal.wal")
    check_state_dir(d)


def test_a_journal_that_begins_after_the_checkpoint_refuses_to_start(tmp_path):
    s = DocumentStore(tmp_path).open()
    for i in range(3):
        s.commit(_ops(i))
    s.checkpoint()  # holds seq 2; the journal is empty now
    s.close()
    (tmp_path / "journal.wal").write_bytes(frame(5, _ops(5)))  # seqs 3, 4 missing
    with pytest.raises(JournalCorrupt, match=r"seqs 3\.\.4 are missing"):
        DocumentStore(tmp_path).open()


def test_a_checkpoint_whose_rows_changed_is_refused(tmp_path):
    path = tmp_path / "checkpoint.parquet"
    write_checkpoint(path, {"rules": {"r0": {"name": "r0", "amount": 1}}}, 0)
    table = pq.read_table(path)
    forged = table.set_column(2, "doc", [[json.dumps({"name": "r0", "amount": 9})]])
    pq.write_table(forged.replace_schema_metadata(table.schema.metadata), path)
    with pytest.raises(CheckpointCorrupt, match="CRC mismatch"):
        read_checkpoint(path)
    path.write_bytes(b"PAR1" + b"\x07" * 100)
    with pytest.raises(CheckpointCorrupt, match=str(path)):
        read_checkpoint(path)


# ---------------------------------------------------------------------------- repair


def test_repair_keeps_the_records_before_the_damage_moves_the_file_aside_and_lists_the_loss(tmp_path):
    s = DocumentStore(tmp_path).open()
    for i in range(30):
        s.commit(_ops(i))
    s.close()
    j = tmp_path / "journal.wal"
    starts = _starts(j)
    data = bytearray(j.read_bytes())
    data[starts[5] + 30:starts[5] + 46] = b"\xff" * 16  # inside record 5 of 30
    j.write_bytes(bytes(data))
    with pytest.raises(JournalCorrupt) as e:
        DocumentStore(tmp_path).open()
    damage_offset = e.value.offset
    assert str(pickle.loads(pickle.dumps(e.value))) == str(e.value)  # as Ray carries it out of the actor

    report = repair_state_dir(tmp_path, now=0)
    assert report.damage == str(e.value)
    assert damage_offset == starts[5] and e.value.last_good_seq == 4
    assert report.kept_records == 5 and report.last_good_seq == 4
    assert report.moved_to == tmp_path / "journal.wal.damaged-19700101T000000Z"
    assert report.moved_to.read_bytes() == bytes(data)  # the damaged file, whole
    assert report.lost_bytes == len(data) - damage_offset
    lost = [r.seq for r in report.lost]
    assert lost == list(range(report.last_good_seq + 2, 30))  # the damaged record itself is unreadable
    text = "\n".join(report.lines())
    assert f"lost seq {report.last_good_seq + 1}: unreadable" in text and "lost seq 29 at offset" in text
    assert "put rules/r29" in text

    r = DocumentStore(tmp_path).open()  # starts again, with what was before the damage
    assert r.seq == report.last_good_seq and sorted(r.docs["rules"]) == sorted(f"r{i}" for i in range(r.seq + 1))
    r.commit(_ops(100))
    r.close()
    assert DocumentStore(tmp_path).open().seq == report.last_good_seq + 1


def test_repair_after_a_checkpoint_names_the_missing_seqs(tmp_path):
    s = DocumentStore(tmp_path).open()
    for i in range(3):
        s.commit(_ops(i))
    s.checkpoint()  # holds seq 2
    s.close()
    (tmp_path / "journal.wal").write_bytes(frame(5, _ops(5)) + frame(6, _ops(6)))  # seqs 3, 4 missing
    report = repair_state_dir(tmp_path)
    assert report.kept_records == 0 and report.last_good_seq == 2
    assert [r.seq for r in report.lost] == [5, 6]
    assert "  lost seq 3..4: unreadable or missing (the damage)" in report.lines()
    r = DocumentStore(tmp_path).open()
    assert r.seq == 2 and sorted(r.docs["rules"]) == ["r0", "r1", "r2"]


def test_repair_of_a_healthy_state_dir_changes_nothing(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit(_ops(0))
    s.close()
    before = {p.name: p.read_bytes() for p in tmp_path.iterdir()}
    report = repair_state_dir(tmp_path)
    assert report.damage is None and "no damage" in report.lines()[0]
    assert {p.name: p.read_bytes() for p in tmp_path.iterdir()} == before


# ---------------------------------------------------------------------------- the old journal


def test_an_old_json_lines_journal_is_migrated_once(tmp_path):
    lines = [json.dumps({"seq": i, "ops": _ops(i)}) for i in range(4)]
    (tmp_path / "journal.jsonl").write_text("\n".join(lines) + "\n" + lines[0][:7])  # and a torn tail
    s = DocumentStore(tmp_path).open()
    assert s.seq == 3 and sorted(s.docs["rules"]) == ["r0", "r1", "r2", "r3"]
    assert not (tmp_path / "journal.jsonl").exists()
    s.commit(_ops(4))
    s.close()
    assert DocumentStore(tmp_path).open().seq == 4


def test_an_old_journal_damaged_in_the_middle_refuses_and_repairs(tmp_path):
    lines = [json.dumps({"seq": i, "ops": _ops(i)}) for i in range(6)]
    lines[2] = lines[2][:20] + "#garbage#" + lines[2][29:]
    (tmp_path / "journal.jsonl").write_text("\n".join(lines) + "\n")
    with pytest.raises(JournalCorrupt, match="last good record is seq 1"):
        DocumentStore(tmp_path).open()
    report = repair_state_dir(tmp_path)
    assert report.kept_records == 2 and [r.seq for r in report.lost] == [None, 3, 4, 5]
    assert DocumentStore(tmp_path).open().seq == 1


# ---------------------------------------------------------------------------- writes


def test_a_failed_fsync_leaves_nothing_behind_and_is_a_503_naming_the_state_dir(tmp_path, monkeypatch):
    s = DocumentStore(tmp_path).open()
    s.commit(_ops(0))
    size = (tmp_path / "journal.wal").stat().st_size

    def eio(fd: int) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_mod.os, "fdatasync", eio)
    from sc_actors.errors import StorageFailed, StorageFull

    with pytest.raises(StorageFailed) as e:
        s.commit(_ops(1))  # written whole, then the fsync failed: it must not come back
    assert not isinstance(e.value, StorageFull) and e.value.status == 503
    assert "EIO" in e.value.message and str(tmp_path) in e.value.message
    assert (tmp_path / "journal.wal").stat().st_size == size and s.get("rules", "r1") is None and s.seq == 0
    monkeypatch.undo()
    assert s.commit(_ops(2)) == 1
    s.close()
    r = DocumentStore(tmp_path).open()
    assert r.get("rules", "r1") is None and r.get("rules", "r2")["amount"] == 2 and r.seq == 1


def test_a_failed_write_that_cannot_be_cut_back_at_once_is_cut_before_the_next_one(tmp_path, monkeypatch):
    path = tmp_path / "journal"
    j = Journal(path)
    j.append(0, _ops(0))
    good = path.stat().st_size

    def eio(*_: object) -> None:
        raise OSError(5, "Input/output error")

    monkeypatch.setattr(journal_mod.os, "fdatasync", eio)
    monkeypatch.setattr(journal_mod.os, "ftruncate", eio)
    from sc_actors.errors import StorageFailed

    with pytest.raises(StorageFailed):
        j.append(1, _ops(1, pad=500))  # written whole, not synced, and not cut back
    assert path.stat().st_size > good
    monkeypatch.undo()
    j.append(1, _ops(11))  # the refused bytes go first, then the new record
    j.close()
    assert _read_all(Journal, path) == [(0, _ops(0)), (1, _ops(11))]


def test_ops_replay_could_not_apply_are_refused_before_anything_is_written(tmp_path):
    s = DocumentStore(tmp_path).open()
    for bad in ([{"op": "patch", "c": "rules", "name": "x"}], [put("nosuch", "x", {})],
                [put("rules", "x", {"v": object()})]):
        with pytest.raises((ValueError, TypeError)):
            s.commit(bad)
    assert s.seq == -1 and s.journal.size_bytes() == 0 and s.empty


def test_group_commit_gives_each_change_its_own_seq_one_fsync_and_survives_a_restart(tmp_path, monkeypatch):
    s = DocumentStore(tmp_path).open()
    syncs = []
    real = journal_mod.os.fdatasync

    def counted(fd: int) -> None:
        real(fd)
        syncs.append(s.durable_seq)  # the changes are applied first; durable only after this returns

    monkeypatch.setattr(journal_mod.os, "fdatasync", counted)
    seqs = s.commit_many([_ops(0), [], _ops(1), _ops(2)])
    assert seqs == [0, 0, 1, 2]  # an empty batch gets the seq before it, as `commit` does
    assert syncs == [-1]  # one fsync for the three changes, none durable before it
    assert s.durable_seq == 2
    monkeypatch.undo()
    s.close()
    r = DocumentStore(tmp_path).open()
    assert r.seq == 2 and r.replayed == 3 and r.get("rules", "r2")["amount"] == 2
