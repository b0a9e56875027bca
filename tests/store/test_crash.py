"""SIGKILL at random moments: every acknowledged change is back, none half-applied.

The writer is a real process (forked from this one, so it starts in milliseconds and
hundreds of kills fit in a few seconds). It commits changes to a real state dir and
writes each acknowledged counter to a pipe only after `commit` returned; the test
kills it after a random number of acknowledgements, while it is somewhere inside the
next commit, fsync or checkpoint, then opens the state dir as a restarted StateDB does.

A SIGKILL cannot tear a record (each batch is one `pwrite`, which a signal does not cut
in half); what a power cut leaves is tested byte by byte in test_journal.py.
"""
from __future__ import annotations

import os
import random
import signal
import struct
import time
from pathlib import Path
from typing import Callable

from sc_actors.store.checkpoint import read_checkpoint
from sc_actors.store.checkpoint import tmp_path as checkpoint_tmp
from sc_actors.store.documents import DocumentStore, put

KILLS = 250
ACK = struct.Struct("<q")


def _fork_writer(body: Callable[[int], None]) -> tuple[int, int]:
    """Run `body(write_fd)` in a child process; returns (pid, read_fd)."""
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: never returns into pytest
        code = 1
        try:
            os.close(r)
            body(w)
            code = 0
        except BaseException:  # noqa: BLE001  (a crash shows as the parent's missing acks)
            import traceback

            traceback.print_exc()
        finally:
            os._exit(code)
    os.close(w)
    return pid, r


def _kill_after(pid: int, r: int, acks_wanted: int, delay_s: float) -> list[int]:
    """Read `acks_wanted` acks, wait `delay_s`, SIGKILL the writer; every ack it sent before dying."""
    buf = b""
    while len(buf) < acks_wanted * ACK.size:
        chunk = os.read(r, 4096)
        if not chunk:
            break  # the writer ended by itself: its exit code says why
        buf += chunk
    # NOTE: the delay is not a wait for anything: it picks the moment of the kill.
    time.sleep(delay_s)
    os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL, f"writer exited with {status}"
    while chunk := os.read(r, 4096):  # acks written before the kill are acknowledged too
        buf += chunk
    os.close(r)
    whole = len(buf) // ACK.size * ACK.size
    return [ACK.unpack_from(buf, i)[0] for i in range(0, whole, ACK.size)]


SLOTS = 64
"""Change n writes users/u{n % SLOTS}: the state stays small, and each slot tells the last n."""


def _counter_writer(state_dir: Path) -> Callable[[int], None]:
    def body(w: int) -> None:
        s = DocumentStore(state_dir, checkpoint_every_records=5).open()
        n = (s.get("structures", "a") or {"n": -1})["n"] + 1
        while True:
            # One record, three documents: a and b always carry the same n.
            s.commit([put("structures", "a", {"name": "a", "n": n}),
                      put("users", f"u{n % SLOTS}", {"name": f"u{n % SLOTS}", "n": n}),
                      put("structures", "b", {"name": "b", "n": n})])
            os.write(w, ACK.pack(n))
            n += 1
    return body


def test_kills_at_random_moments_lose_no_acknowledged_change_and_half_apply_none(tmp_path):
    rng = random.Random(2026)
    acked: set[int] = set()
    torn_cut = checkpoints_cut = 0
    seen = -1  # the n a restart found last: an unacknowledged change seen once must stay
    t0 = time.monotonic()
    for kill in range(KILLS):
        pid, r = _fork_writer(_counter_writer(tmp_path))
        acked.update(_kill_after(pid, r, rng.randrange(0, 12), rng.uniform(0, 0.003)))
        checkpoints_cut += checkpoint_tmp(tmp_path / "checkpoint.parquet").exists()

        s = DocumentStore(tmp_path).open()  # the restart
        torn_cut += s.journal.cut_bytes > 0
        a, b = s.get("structures", "a"), s.get("structures", "b")
        top = max(acked, default=-1)
        if a is None:
            assert b is None and top == seen == -1 and not s.docs["users"]
        else:
            # The change in flight when the kill came is there or not; none after it.
            base = max(top, seen)
            assert base <= a["n"] <= base + 1, (kill, a["n"], top, seen)
            seen = a["n"]
            assert a["n"] == b["n"], f"half-applied after kill {kill}"
            # Each slot holds the last change written to it, up to and including a's.
            want = {f"u{k % SLOTS}": k for k in range(a["n"] + 1)}
            assert {u: d["n"] for u, d in s.docs["users"].items()} == want, f"after kill {kill}"
        lost = [n for n in acked if n > a["n"]] if a is not None else sorted(acked)
        assert not lost, f"acknowledged changes lost after kill {kill}: {lost[:10]}"
        s.close()
    elapsed = time.monotonic() - t0
    print(f"{KILLS} kills, {len(acked)} acknowledged changes, 0 lost; {torn_cut} torn tails cut, "
          f"{checkpoints_cut} kills inside a checkpoint; {elapsed:.1f} s")
    assert len(acked) > KILLS  # the writers did write, between the kills


PAUSED = -1
"""What a writer sends when it stopped at its kill point (acks are >= 0)."""


def _checkpointing_writer(state_dir: Path, stop_at: str | None = None) -> Callable[[int], None]:
    """Commits and checkpoints in turn; with `stop_at`, it says PAUSED at that point of a
    checkpoint and waits there for its kill: "write" (the temp file whole, not renamed),
    "rename" (renamed, the directory not yet fsynced), "reset" (the journal not yet emptied)."""
    def body(w: int) -> None:
        # NOTE: patched in the forked writer only; this test's process keeps the real ones.
        from sc_actors.store import checkpoint as checkpoint_mod
        from sc_actors.store.journal import Journal

        def pause() -> None:
            os.write(w, ACK.pack(PAUSED))
            signal.pause()  # until the SIGKILL

        real_replace, real_fsync_dir, real_reset = os.replace, checkpoint_mod.fsync_dir, Journal.reset
        if stop_at == "write":
            checkpoint_mod.os.replace = lambda a, b: (pause(), real_replace(a, b))  # type: ignore[assignment]
        elif stop_at == "rename":
            checkpoint_mod.fsync_dir = lambda d: (pause(), real_fsync_dir(d))  # type: ignore[assignment]
        elif stop_at == "reset":
            Journal.reset = lambda self: (pause(), real_reset(self))  # type: ignore[assignment]
        s = DocumentStore(state_dir, checkpoint_every_records=10**9, checkpoint_every_s=1e9).open()
        n = (s.get("structures", "a") or {"n": -1})["n"] + 1
        while True:
            s.commit([put("structures", "a", {"name": "a", "n": n})])
            os.write(w, ACK.pack(n))
            s.checkpoint()  # most of this writer's time: the random kills land in here
            n += 1
    return body


def _open_and_check(state_dir: Path, acked: set[int]) -> DocumentStore:
    s = DocumentStore(state_dir).open()
    assert s.get("structures", "a")["n"] >= max(acked)
    assert len(s.docs["rules"]) == 2000
    assert not checkpoint_tmp(state_dir / "checkpoint.parquet").exists()  # removed at open
    return s


def test_kills_during_checkpoints_leave_the_previous_one_usable(tmp_path):
    s = DocumentStore(tmp_path).open()
    s.commit([put("rules", f"r{i}", {"name": f"r{i}", "text": "x" * 200}) for i in range(2000)])
    s.checkpoint()
    s.close()
    acked: set[int] = set()
    # At each named point of a checkpoint, for certain.
    for stop_at in ("write", "rename", "reset"):
        pid, r = _fork_writer(_checkpointing_writer(tmp_path, stop_at))
        got = _kill_after(pid, r, 2, 0.0)  # one ack, then PAUSED
        assert got[-1] == PAUSED, (stop_at, got)
        acked.update(n for n in got if n != PAUSED)
        assert checkpoint_tmp(tmp_path / "checkpoint.parquet").exists() == (stop_at == "write")
        in_checkpoint = read_checkpoint(tmp_path / "checkpoint.parquet")[1]
        s = _open_and_check(tmp_path, acked)
        if stop_at == "write":
            assert in_checkpoint < s.seq and s.replayed == 1  # the old checkpoint and the journal
        else:
            assert in_checkpoint == s.seq and s.replayed == 0  # the new one; its records skipped
        s.close()
    # And at random moments.
    rng = random.Random(13)
    for kill in range(40):
        pid, r = _fork_writer(_checkpointing_writer(tmp_path))
        acked.update(_kill_after(pid, r, rng.randrange(1, 3), rng.uniform(0, 0.03)))
        _open_and_check(tmp_path, acked).close()


# --------------------------------------------------------------------------- group commit: threads share fsyncs

THREADS = 8
PAIR = struct.Struct("<qq")
"""A group writer's ack: (thread, n)."""


def _group_writer(state_dir: Path, hold_after: int | None = None) -> Callable[[int], None]:
    """THREADS threads commit through one store, as the StateDB actor's calls do, sharing fsyncs.

    Thread t's change n writes a{t} and b{t} with n in one record, and acks (t, n) only once
    `commit` returned. With `hold_after`, once that many changes were acknowledged the next
    fsync never returns; when every other thread has applied a change behind it (in memory,
    not written), the writer sends (-1, seq of the last one applied) and waits for its kill.
    """
    def body(w: int) -> None:
        import threading

        from sc_actors.store import journal as journal_mod

        s = DocumentStore(state_dir, checkpoint_every_records=40).open()
        acks = [0]
        lock = threading.Lock()
        real = journal_mod.os.fdatasync

        def fdatasync(fd: int) -> None:
            with lock:
                hold = hold_after is not None and acks[0] >= hold_after
            if hold:
                # The others, applied behind this batch; not all of them when one of them waits
                # for this committer itself (its checkpoint's turn), so with a deadline.
                deadline = time.monotonic() + 5.0
                while len(s._pending) < THREADS - 1 and time.monotonic() < deadline:
                    time.sleep(0.001)
                os.write(w, PAIR.pack(-2, len(s._pending)) + PAIR.pack(-1, s.seq))
                signal.pause()
            real(fd)
        journal_mod.os.fdatasync = fdatasync  # type: ignore[assignment]  (the forked writer only)

        def thread(t: int) -> None:
            n = (s.get("structures", f"a{t}") or {"n": -1})["n"] + 1
            while True:
                s.commit([put("structures", f"a{t}", {"name": f"a{t}", "n": n}),
                          put("structures", f"b{t}", {"name": f"b{t}", "n": n})])
                with lock:
                    acks[0] += 1
                    os.write(w, PAIR.pack(t, n))
                n += 1
        threads = [threading.Thread(target=thread, args=(t,), daemon=True) for t in range(THREADS)]
        for th in threads:
            th.start()
        signal.pause()  # the threads write until the SIGKILL
    return body


def _pairs(pid: int, r: int, until: Callable[[list[tuple[int, int]]], bool], delay_s: float) -> list[tuple[int, int]]:
    """Read acks until `until(acks)`, wait `delay_s` (the moment of the kill), SIGKILL; every ack sent."""
    buf = b""
    got: list[tuple[int, int]] = []
    while not until(got):
        chunk = os.read(r, 4096)
        assert chunk, "the writer ended by itself"
        buf += chunk
        whole = len(buf) // PAIR.size * PAIR.size
        got = [PAIR.unpack_from(buf, i) for i in range(0, whole, PAIR.size)]
    time.sleep(delay_s)  # NOTE: not a wait for anything: it picks the moment of the kill
    os.kill(pid, signal.SIGKILL)
    os.waitpid(pid, 0)
    while chunk := os.read(r, 4096):
        buf += chunk
    os.close(r)
    whole = len(buf) // PAIR.size * PAIR.size
    return [PAIR.unpack_from(buf, i) for i in range(0, whole, PAIR.size)]


def _check_group(state_dir: Path, acked: dict[int, int]) -> DocumentStore:
    s = DocumentStore(state_dir).open()
    for t in range(THREADS):
        a, b = s.get("structures", f"a{t}"), s.get("structures", f"b{t}")
        assert (a or {}).get("n") == (b or {}).get("n"), f"thread {t}: half-applied"
        if t in acked:
            assert a is not None and a["n"] >= acked[t], f"thread {t}: acknowledged n {acked[t]} lost"
    return s


def test_kills_of_concurrent_group_committers_lose_no_acknowledged_change(tmp_path):
    rng = random.Random(16)
    acked: dict[int, int] = {}
    for kill in range(60):
        pid, r = _fork_writer(_group_writer(tmp_path))
        want = rng.randrange(1, 40)
        for t, n in _pairs(pid, r, lambda got: len(got) >= want, rng.uniform(0, 0.003)):
            acked[t] = max(acked.get(t, -1), n)
        _check_group(tmp_path, acked).close()
    assert len(acked) == THREADS  # every thread had changes acknowledged, and none was lost


def test_a_kill_between_apply_and_fsync_keeps_the_acknowledged_and_drops_the_queued(tmp_path):
    pid, r = _fork_writer(_group_writer(tmp_path, hold_after=50))
    got = _pairs(pid, r, lambda got: any(t == -1 for t, _ in got), 0.0)
    acked: dict[int, int] = {}
    for t, n in got:
        if t >= 0:
            acked[t] = max(acked.get(t, -1), n)
    applied_seq = next(n for t, n in got if t == -1)
    behind = next(n for t, n in got if t == -2)
    # `behind` changes were applied behind the held fsync (none when the threads' next commit
    # waited for a checkpoint, which takes the held committer's turn)
    s = _check_group(tmp_path, acked)
    # The batch whose fsync was held was written (a kill is no power cut) or not; the changes
    # applied behind it, answered to nobody, were never written: the journal ends before them.
    assert s.seq <= applied_seq - behind
    assert sum(acked.values()) + len(acked) >= 50
    s.close()
