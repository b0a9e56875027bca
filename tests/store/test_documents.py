"""The journal and Parquet checkpoints lose no acknowledged change."""
from __future__ import annotations

from sc_actors.store.checkpoint import read_checkpoint
from sc_actors.store.documents import DocumentStore, delete, put
from sc_actors.store.journal import frame


def test_a_reopened_store_has_every_committed_change(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit([put("structures", "c0", {"name": "c0", "v": 1})])
    s.commit([put("structures", "c1", {"name": "c1"}), put("limits", "c1", {"name": "c1"})])
    s.commit([delete("structures", "c0")])
    s.close()
    r = DocumentStore(tmp_path).open()
    assert set(r.docs["structures"]) == {"c1"}
    assert r.get("limits", "c1") == {"name": "c1"}
    assert r.seq == 2 and r.replayed == 3


def test_a_checkpoint_then_more_changes_replays_only_the_journal_tail(tmp_path):
    s = DocumentStore(tmp_path).open()
    for i in range(5):
        s.commit([put("rules", f"r{i}", {"name": f"r{i}", "i": i})])
    s.checkpoint()
    assert s.journal.size_bytes() == 0
    s.commit([put("rules", "r0", {"name": "r0", "i": 100})])
    s.close()
    docs, seq = read_checkpoint(tmp_path / "checkpoint.parquet")
    assert seq == 4 and docs["rules"]["r0"]["i"] == 0
    r = DocumentStore(tmp_path).open()
    assert r.replayed == 1
    assert r.get("rules", "r0")["i"] == 100 and len(r.docs["rules"]) == 5


def test_a_torn_last_journal_record_is_ignored(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit([put("services", "guardian", {"name": "guardian"})])
    s.close()
    with open(tmp_path / "journal.wal", "ab") as f:
        f.write(frame(1, [put("services", "scaler", {"name": "scaler"})])[:30])  # died mid-write
    r = DocumentStore(tmp_path).open()
    assert list(r.docs["services"]) == ["guardian"] and r.seq == 0


def test_records_already_in_the_checkpoint_are_not_replayed_twice(tmp_path):
    # A crash between the checkpoint's rename and the journal reset leaves both.
    s = DocumentStore(tmp_path).open()
    s.commit([put("structures", "c0", {"name": "c0", "n": 1})])
    from sc_actors.store.checkpoint import write_checkpoint

    write_checkpoint(s.checkpoint_path, s.docs, s.seq)  # journal not reset
    s.close()
    r = DocumentStore(tmp_path).open()
    assert r.replayed == 0 and r.get("structures", "c0") == {"name": "c0", "n": 1}


def test_periodic_checkpoint_triggers_after_enough_records(tmp_path):
    s = DocumentStore(tmp_path, checkpoint_every_records=3).open()
    for i in range(3):
        s.commit([put("rules", f"r{i}", {"name": f"r{i}"})])
    assert (tmp_path / "checkpoint.parquet").exists()
    assert s.journal.records_since_reset == 0
