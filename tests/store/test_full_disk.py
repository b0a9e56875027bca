"""A full file system, for real: a 2 MiB tmpfs this test mounts (root only).

A refused change is answered 507 with the cause and the state dir, is not applied in
memory, is never written later, and the StateDB serves normally once space is freed.
`journal_cls` (conftest.py) lets the first test run against the old journal too.
"""
from __future__ import annotations

import errno
import os
import pickle
import subprocess
import uuid
from pathlib import Path

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sc_actors.errors import ScError, StorageFailed, StorageFull
from sc_actors.statedb import StateDB
from sc_actors.store.checkpoint import read_checkpoint, tmp_path
from sc_actors.store.documents import DocumentStore, put


@pytest.fixture
def tmpfs(tmp_path):
    """A 2 MiB tmpfs mounted on a fresh dir, unmounted at the end whatever happens."""
    mnt = tmp_path / "fs"
    mnt.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=2m", "tmpfs", str(mnt)],
                          capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs (root needed): {done.stderr.strip()}")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", "-l", str(mnt)], check=False)


def _fill(fs: Path) -> Path:
    """Write a file until the file system refuses another byte; returns it."""
    filler = fs / f"filler-{uuid.uuid4().hex[:6]}"
    fd = os.open(filler, os.O_WRONLY | os.O_CREAT, 0o600)
    try:
        for size in (1 << 16, 4096, 1):
            while True:
                try:
                    if os.write(fd, b"\xaa" * size) < size:
                        break
                except OSError as e:
                    assert e.errno == errno.ENOSPC, e
                    break
    finally:
        os.close(fd)
    return filler


def _ops(i: int) -> list[dict]:
    return [put("rules", f"r{i}", {"name": f"r{i}", "amount": i, "pad": "y" * 3000})]


def test_seen_3_a_change_refused_on_a_full_disk_never_comes_back(journal_cls, tmpfs):
    path = tmpfs / "journal"
    j = journal_cls(path)
    acked, seq, refused = [], 0, 0
    for _ in range(3):
        j.append(seq, _ops(seq))
        acked.append(seq)
        seq += 1
    filler = _fill(tmpfs)
    for _ in range(4):
        try:
            j.append(seq, _ops(seq))
        except (OSError, ScError):
            refused += 1  # refused: the caller keeps its seq, as DocumentStore.commit does
            continue
        acked.append(seq)
        seq += 1
    assert refused >= 3
    filler.unlink()
    j.append(seq, _ops(seq))  # normal service once space is freed
    acked.append(seq)
    j.close()
    j = journal_cls(path)
    assert [s for s, _ in j.records()] == acked
    j.close()


def test_the_statedb_answers_507_applies_nothing_and_serves_again_once_space_is_freed(tmpfs):
    state = tmpfs / "state"
    db = StateDB(str(state))
    db.patch("rules", "CpuRescaleUp", {"amount": 75})
    before = db.get("rules", "CpuRescaleUp")
    filler = _fill(tmpfs)
    seq, changes = db.seq(), db.ping()["changes"]
    with pytest.raises(StorageFull) as e:
        for i in range(20):  # the journal's last page may still take a small record or two
            db.put("rules", {**before, "name": f"New{i}", "amount": 10 + i, "description": "z" * 4000})
    assert e.value.status == 507
    assert "no space left" in e.value.message and str(state) in e.value.message and "ENOSPC" in e.value.message
    refused = f"New{i}"
    assert not db.exists("rules", refused)  # not applied in memory
    assert db.seq() == seq + i and db.ping()["changes"] == changes + i  # the refused one is not counted
    # A small change may still fit the journal's last page (how much is left there depends on
    # what the journal held); the first one refused is not applied, the acknowledged ones are.
    acknowledged = before["amount"]
    with pytest.raises(StorageFull):
        for amount in range(99, 199):
            db.patch("rules", "CpuRescaleUp", {"amount": amount})
            acknowledged = amount
    assert db.get("rules", "CpuRescaleUp") == {**before, "amount": acknowledged}

    filler.unlink()
    db.patch("rules", "CpuRescaleUp", {"amount": 80})
    kept = {c: dict(db.store.docs[c]) for c in db.store.docs}
    db.store.close()
    restarted = StateDB(str(state))
    assert {c: dict(restarted.store.docs[c]) for c in restarted.store.docs} == kept
    assert not restarted.exists("rules", refused) and restarted.get("rules", "CpuRescaleUp")["amount"] == 80
    restarted.store.close()


def test_a_checkpoint_refused_by_a_full_disk_leaves_the_previous_one_and_no_temp_file(tmpfs):
    state = tmpfs / "state"
    s = DocumentStore(state, checkpoint_every_records=4).open()
    for i in range(3):
        s.commit(_ops(i))
    s.checkpoint()
    before = (state / "checkpoint.parquet").read_bytes()
    for i in range(3, 6):
        s.commit([put("rules", f"r{i}", {"name": f"r{i}", "amount": i})])  # small: they fit
    filler = _fill(tmpfs)
    with pytest.raises(StorageFull):
        s.checkpoint()
    assert (state / "checkpoint.parquet").read_bytes() == before
    assert not tmp_path(state / "checkpoint.parquet").exists()
    # A commit that makes a checkpoint due is still acknowledged: the checkpoint waits.
    try:
        seq = s.commit([put("rules", "r0", {"name": "r0", "amount": 100})])
    except StorageFull:
        seq = None  # the journal's last page was full too: refused, and not applied
    filler.unlink()
    s.close()
    r = DocumentStore(state).open()
    assert read_checkpoint(state / "checkpoint.parquet")[1] == 2
    assert r.get("rules", "r0")["amount"] == (0 if seq is None else 100)
    assert sorted(r.docs["rules"]) == [f"r{i}" for i in range(6)]


def test_storage_errors_reach_the_client_as_507_and_503_with_the_message():
    from serve.app import install_error_handlers

    app = FastAPI()
    install_error_handlers(app)

    @app.put("/full")
    def full() -> None:
        # As it arrives from the actor: pickled across Ray's process boundary.
        raise pickle.loads(pickle.dumps(StorageFull("no space left in /state (ENOSPC)")))

    @app.put("/eio")
    def eio() -> None:
        raise pickle.loads(pickle.dumps(StorageFailed("Input/output error (EIO) in /state")))

    client = TestClient(app)
    r = client.put("/full")
    assert r.status_code == 507 and r.json() == {"message": "no space left in /state (ENOSPC)"}
    r = client.put("/eio")
    assert r.status_code == 503 and r.json() == {"message": "Input/output error (EIO) in /state"}
