"""The journal and Parquet checkpoints lose no acknowledged change."""
from __future__ import annotations

import pytest

from sc_actors.store.checkpoint import read_checkpoint
from sc_actors.store.documents import DocumentStore, delete, patch, patched, put
from sc_actors.store.journal import frame


def test_a_reopened_store_has_every_committed_change(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit([put("structures", "c0", {"name": "c0", "v": 1})])
    s.commit([put("structures", "c1", {"name": "c1"}), put("limits", "c1", {"name": "c1"})])
    s.commit([delete("structures", "c0")])
    assert (s.seq, s.changes) == (2, 4)  # three records of four changes
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


# --------------------------------------------------------------------------- patches


def test_a_patch_sets_and_removes_fields_in_a_copy_making_missing_dicts():
    core = {"free": 0.0, "c1": 100.0}
    doc = {"name": "h0", "resources": {"cpu": {"free": 0.0, "map": {"0": core}}, "mem": {"free": 5.0}}}
    out = patched(doc, [(["resources", "cpu", "free"], 50.0), (["resources", "cpu", "map", "1"], {"free": 100.0}),
                        (["resources", "disk", "free"], 7.0)], [["resources", "mem", "free"], ["no", "such"]])
    assert out == {"name": "h0", "resources": {"cpu": {"free": 50.0, "map": {"0": core, "1": {"free": 100.0}}},
                                               "mem": {}, "disk": {"free": 7.0}}}
    # The original is untouched; what no path went through is shared, not copied.
    assert doc == {"name": "h0", "resources": {"cpu": {"free": 0.0, "map": {"0": core}}, "mem": {"free": 5.0}}}
    assert out["resources"]["cpu"]["map"]["0"] is core


def test_a_reopened_store_replays_patches_to_the_documents_it_acknowledged(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit([put("structures", "h0", {"name": "h0", "resources": {"cpu": {"free": 400.0, "map": {"0": {"free": 100.0}}}}}),
              put("limits", "c0", {"name": "c0", "resources": {"cpu": {"boundary": 10}}})])
    s.commit([patch("structures", "h0", [(["resources", "cpu", "free"], 300.0),
                                         (["resources", "cpu", "map"], {"0": {"free": 0.0, "c0": 100.0}})]),
              patch("limits", "c0", [(["resources", "cpu", "upper"], 150.0), (["resources", "cpu", "lower"], 90.0)])])
    s.commit([patch("limits", "c0", [(["resources", "cpu", "upper"], 160.0)], [["resources", "cpu", "lower"]])])
    acknowledged = {c: dict(s.docs[c]) for c in ("structures", "limits")}
    s.close()
    r = DocumentStore(tmp_path).open()
    assert {c: r.docs[c] for c in ("structures", "limits")} == acknowledged
    assert r.get("limits", "c0") == {"name": "c0", "resources": {"cpu": {"boundary": 10, "upper": 160.0}}}
    assert r.replayed == 3 and r.last_write_seq[("limits", "c0")] == 2


def test_a_patch_of_a_missing_document_or_without_paths_is_refused_before_anything_is_written(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit([put("users", "u0", {"name": "u0"})])
    for bad in ([put("users", "u1", {"name": "u1"}), patch("users", "nosuch", [(["x"], 1)])],
                [delete("users", "u0"), patch("users", "u0", [(["x"], 1)])],
                [patch("users", "u0", [([], 1)])],
                [patch("users", "u0", [(["resources", 3], 1)])],  # type: ignore[list-item]
                [{"op": "patch", "c": "users", "name": "u0"}]):
        with pytest.raises(ValueError):
            s.commit(bad)  # type: ignore[arg-type]
    assert s.seq == 0 and set(s.docs["users"]) == {"u0"} and s.journal.records_since_reset == 1
    # A patch of a document an earlier op of the same record puts is fine.
    s.commit([put("users", "u1", {"name": "u1"}), patch("users", "u1", [(["n"], 2)])])
    assert s.get("users", "u1") == {"name": "u1", "n": 2}
