"""Group commit, in process (no Ray): concurrent calls share one fsync, each is answered
only after the fsync that covers it, and a refused batch fails each of its calls and is
undone in memory.

The StateDB actor runs its calls in threads (`StateDB.MAX_CONCURRENCY`); here threads
call a real `StateDB` on a real state dir the same way. The journal's fsync
(`os.fdatasync` as the journal module calls it) is wrapped by `Disk`, which can hold a
fsync at a gate until the test lets it go, or fail it: so "a change applied while a
batch is on its way to the disk" is a state the test builds on purpose, not a timing
it hopes for. Every wait has a deadline.
"""
from __future__ import annotations

import errno
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import pytest

from sc_actors.errors import StorageFailed
from sc_actors.statedb import StateDB
from sc_actors.store import documents as documents_mod
from sc_actors.store import journal as journal_mod
from sc_actors.store.documents import DocumentStore
from sc_actors.store.journal import read_records

DEADLINE_S = 20.0


class Disk:
    """The journal's fsync, watched: counts calls, can hold the next one at a gate or fail it."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.real = journal_mod.os.fdatasync
        self.calls = 0
        self.log: list[str] = []
        self.hold: Optional[threading.Event] = None
        """When set: the next fsync says it arrived (`held`) and waits for this event."""
        self.held = threading.Event()
        self.fail_next = 0
        """That many next fsyncs raise EIO (after the gate, if any)."""
        self._lock = threading.Lock()
        monkeypatch.setattr(journal_mod.os, "fdatasync", self)

    def __call__(self, fd: int) -> None:
        with self._lock:
            self.calls += 1
            gate, self.hold = self.hold, None
            fail = self.fail_next > 0
            self.fail_next -= fail
        self.log.append("fsync begins")
        if gate is not None:
            self.held.set()
            assert gate.wait(DEADLINE_S), "the test never opened the gate"
        if fail:
            self.log.append("fsync fails")
            raise OSError(errno.EIO, "Input/output error (injected)")
        self.real(fd)
        self.log.append("fsync done")

    def hold_next(self) -> threading.Event:
        """The next fsync waits for the returned event (set it to let the fsync go)."""
        gate = threading.Event()
        self.held.clear()
        self.hold = gate
        return gate


class Call(threading.Thread):
    """One StateDB call in its own thread, as Ray runs it: its result, or its error."""

    def __init__(self, fn: Callable[[], Any]) -> None:
        super().__init__(daemon=True)
        self.fn = fn
        self.result: Any = None
        self.error: Optional[BaseException] = None

    def run(self) -> None:
        try:
            self.result = self.fn()
        except BaseException as e:  # noqa: BLE001 - the test reads it
            self.error = e

    def done(self) -> "Call":
        self.join(DEADLINE_S)
        assert not self.is_alive(), "a call did not return in time"
        return self


def wait_until(predicate: Callable[[], bool], what: str) -> None:
    ok = threading.Event()
    for _ in range(int(DEADLINE_S / 0.005)):
        if predicate():
            return
        ok.wait(0.005)
    raise AssertionError(f"timed out waiting for {what}")


def pending(db: StateDB) -> int:
    with db.store.lock:
        return len(db.store._pending)


def rule(db: StateDB, name: str, amount: int) -> dict[str, Any]:
    """A rule document as the StateDB validates it: the shipped CpuRescaleUp, renamed."""
    return {**db.get("rules", "CpuRescaleUp"), "name": name, "amount": amount}


def computed(db: StateDB, method: str, monkeypatch: pytest.MonkeyPatch) -> threading.Event:
    """Set once `db.state.<method>` has returned (under the lock): the call's answer is made."""
    done = threading.Event()
    real = getattr(db.state, method)

    def wrapped(*args: Any) -> Any:
        out = real(*args)
        done.set()
        return out
    monkeypatch.setattr(db.state, method, wrapped)
    return done


@pytest.fixture
def db(tmp_path: Path):
    d = StateDB(str(tmp_path))  # fsync on, as the actor runs
    yield d
    d.store.close()


def _limits(i: int, upper: float) -> dict[str, Any]:
    return {"name": f"c{i}", "resources": {"cpu": {"boundary": 10, "upper": upper, "lower": upper - 20}}}


def test_concurrent_writers_share_fsyncs_all_acknowledged_and_journaled_in_order(db, tmp_path, monkeypatch):
    disk = Disk(monkeypatch)
    writers, per_writer = 16, 25
    seq0 = db.seq()

    def writer(w: int) -> list[int]:
        # Each writer patches its own document; its n-th acknowledged change has upper n.
        seqs = []
        for n in range(per_writer):
            db.put("limits", _limits(w, 100.0 + n))
            seqs.append(db.store.last_write_seq[("limits", f"c{w}")])
        return seqs

    calls = [Call(lambda w=w: writer(w)) for w in range(writers)]
    for c in calls:
        c.start()
    for c in calls:
        assert c.done().error is None, c.error
    changes = writers * per_writer
    assert db.seq() == seq0 + changes
    assert disk.calls < changes  # shared: fewer fsyncs than acknowledged changes
    db.store.close()

    # The journal holds every change once, seqs one by one, each writer's in its own order.
    records = list(read_records(tmp_path / "journal.wal", after_seq=seq0))
    assert [s for s, _ in records] == list(range(seq0 + 1, seq0 + changes + 1))
    by_writer: dict[str, list[float]] = {}
    for _, ops in records:
        (op,) = ops
        by_writer.setdefault(op["name"], []).append(op["doc"]["resources"]["cpu"]["upper"])
    assert by_writer == {f"c{w}": [100.0 + n for n in range(per_writer)] for w in range(writers)}
    reopened = StateDB(str(tmp_path))
    assert {n: reopened.get("limits", n)["resources"]["cpu"]["upper"] for n in by_writer} == \
        {f"c{w}": 100.0 + per_writer - 1 for w in range(writers)}
    reopened.store.close()


def test_calls_applied_during_an_fsync_wait_and_go_together_in_the_next_one(db, monkeypatch):
    disk = Disk(monkeypatch)
    gate = disk.hold_next()
    first = Call(lambda: db.put("limits", _limits(0, 100.0)))
    first.start()
    assert disk.held.wait(DEADLINE_S)  # the first change is on its way to the disk
    others = [Call(lambda i=i: db.put("limits", _limits(i, 200.0))) for i in range(1, 9)]
    for c in others:
        c.start()
    wait_until(lambda: pending(db) == 8, "eight changes applied and queued behind the fsync")
    assert all(c.is_alive() for c in others)  # none answered before its fsync
    gate.set()
    for c in [first, *others]:
        assert c.done().error is None
    assert disk.calls == 2  # one for the first, one for the eight queued behind it


def test_a_read_is_answered_only_once_the_change_it_saw_is_durable(db, monkeypatch):
    disk = Disk(monkeypatch)
    db.put("limits", _limits(0, 100.0))
    gate = disk.hold_next()
    writer = Call(lambda: db.put("limits", _limits(0, 150.0)))
    writer.start()
    assert disk.held.wait(DEADLINE_S)  # applied in memory, its fsync held

    def read() -> float:
        upper: float = db.get("limits", "c0")["resources"]["cpu"]["upper"]
        disk.log.append("read answered")
        return upper
    answered = computed(db, "get", monkeypatch)
    reader = Call(read)
    reader.start()
    # The reader has read the new value (it needs the lock only for that) and waits for the disk.
    assert answered.wait(DEADLINE_S)
    assert reader.is_alive() and writer.is_alive()
    gate.set()
    assert reader.done().result == 150.0 and writer.done().error is None
    assert disk.log.index("read answered") > disk.log.index("fsync done")


def test_a_failed_fsync_fails_every_call_of_its_batch_and_undoes_them_keeping_what_was_acknowledged(
        db, tmp_path, monkeypatch):
    disk = Disk(monkeypatch)
    db.put("rules", rule(db, "Kept", 10))  # acknowledged before anything fails
    before = {c: dict(db.store.docs[c]) for c in db.store.docs}
    seq_before = db.seq()

    first_rule, doomed_rule, built_rule = rule(db, "First", 11), rule(db, "Doomed0", 12), rule(db, "Doomed0", 13)
    gate = disk.hold_next()
    first = Call(lambda: db.put("rules", first_rule))
    first.start()
    assert disk.held.wait(DEADLINE_S)
    # Queued behind the held fsync: a new document, a change to an existing one, a delete,
    # and a check-then-commit that saw "Doomed0" (applied, not yet durable) and builds on it.
    batch = [Call(lambda: db.put("rules", doomed_rule)),
             Call(lambda: db.patch("rules", "Kept", {"amount": 99})),
             Call(lambda: db.delete("rules", "CpuRescaleDown"))]
    for c in batch:
        c.start()
    wait_until(lambda: pending(db) == 3, "three changes queued")
    built_on = Call(lambda: db.put("rules", built_rule, True))  # create: Conflict, Doomed0 exists
    built_on.start()
    built_on.done()
    disk.fail_next = 1  # the first fsync is fine; the batch of the three fails
    gate.set()
    assert first.done().error is None
    for c in batch:
        assert isinstance(c.done().error, StorageFailed), c.error
        assert c.error.status == 503 and "Input/output error" in str(c.error)
    assert built_on.error is not None  # it saw Doomed0: refused either way, nothing of it applied

    # In memory: what was acknowledged, nothing of the failed batch.
    after = {c: dict(db.store.docs[c]) for c in db.store.docs}
    before["rules"]["First"] = db.store.docs["rules"]["First"]
    assert after == before
    assert db.seq() == seq_before + 1 and db.store.durable_seq == db.seq()
    assert db.get("rules", "Kept")["amount"] == 10 and db.exists("rules", "CpuRescaleDown")
    # The StateDB serves on: the next write is acknowledged and durable.
    db.put("rules", rule(db, "After", 14))
    db.store.close()
    reopened = StateDB(str(tmp_path))
    assert {c: dict(reopened.store.docs[c]) for c in reopened.store.docs} == \
        {c: dict(db.store.docs[c]) for c in db.store.docs}
    assert not reopened.exists("rules", "Doomed0") and reopened.exists("rules", "After")
    reopened.store.close()


def test_a_change_applied_while_a_failing_batch_is_written_is_undone_too(db, monkeypatch):
    disk = Disk(monkeypatch)
    gate = disk.hold_next()
    disk.fail_next = 1
    doomed = Call(lambda: db.put("limits", _limits(1, 100.0)))
    doomed.start()
    assert disk.held.wait(DEADLINE_S)  # the failing fsync, held
    # Applied on top of the doomed change while its fsync runs: it read c1 and must go with it.
    on_top = Call(lambda: db.patch("limits", "c1", {"resources.cpu.upper": 120.0, "resources.cpu.lower": 100.0}))
    on_top.start()
    wait_until(lambda: pending(db) == 1, "the change on top queued")
    gate.set()
    assert isinstance(doomed.done().error, StorageFailed)
    assert isinstance(on_top.done().error, StorageFailed)
    assert not db.exists("limits", "c1") and db.store._pending == []
    db.put("limits", _limits(1, 130.0))  # and the next one is fine
    assert db.get("limits", "c1")["resources"]["cpu"]["upper"] == 130.0


def test_a_read_that_saw_a_refused_change_is_answered_from_the_disk_state(db, monkeypatch):
    disk = Disk(monkeypatch)
    gate = disk.hold_next()
    disk.fail_next = 1
    doomed = Call(lambda: db.put("limits", _limits(2, 100.0)))
    doomed.start()
    assert disk.held.wait(DEADLINE_S)
    reads: list[bool] = []
    real_get = db.store.get
    monkeypatch.setattr(db.store, "get", lambda c, n: (reads.append(real_get(c, n) is not None), real_get(c, n))[1])
    reader = Call(lambda: db.exists("limits", "c2"))
    reader.start()
    wait_until(lambda: reads == [True], "the reader seeing c2, applied but not durable")
    assert reader.is_alive()
    gate.set()
    assert isinstance(doomed.done().error, StorageFailed)
    assert reader.done().error is None and reader.result is False  # run again, on what is on disk
    assert reads == [True, False]


def test_a_checkpoint_never_interleaves_with_a_batch_being_written(tmp_path, monkeypatch):
    store = DocumentStore(tmp_path, checkpoint_every_records=10**9, checkpoint_every_s=1e9).open()
    disk = Disk(monkeypatch)
    real_write = documents_mod.write_checkpoint
    monkeypatch.setattr(documents_mod, "write_checkpoint",
                        lambda *a: (disk.log.append("checkpoint"), real_write(*a)))
    op = [{"op": "put", "c": "users", "name": "u", "doc": {"name": "u", "n": 1}}]
    gate = disk.hold_next()
    writer = Call(lambda: store.commit(op))  # type: ignore[list-item]
    writer.start()
    assert disk.held.wait(DEADLINE_S)
    # Applied, queued behind the held fsync: the checkpoint must write it before including it.
    queued = Call(lambda: store.commit([{**op[0], "doc": {"name": "u", "n": 2}}]))  # type: ignore[list-item]
    queued.start()
    wait_until(lambda: len(store._pending) == 1, "a change queued")
    checkpoint = Call(store.checkpoint)
    checkpoint.start()
    assert checkpoint.is_alive()  # it waits for the committer's turn (the writer holds it until the gate)
    gate.set()
    for c in (writer, queued, checkpoint):
        assert c.done().error is None, c.error
    # Never a checkpoint between an fsync's start and end; the queued change went first.
    assert disk.log[:2] == ["fsync begins", "fsync done"]
    assert disk.log.index("checkpoint") > max(i for i, x in enumerate(disk.log) if x == "fsync done")
    assert store.journal.size_bytes() == 0 and store.durable_seq == store.seq
    store.close()
    again = DocumentStore(tmp_path).open()
    assert again.get("users", "u") == {"name": "u", "n": 2} and again.replayed == 0
    again.close()
