"""`sc bench journal`: changes per second the StateDB's journal makes durable (fsync each).

No Ray: the journal and the document store on a real directory (`--dir`, on the disk
of the state dir to mean anything; tmpfs makes fsync free). Measured, each run on a fresh
file and with the same document (a container's limits, about 300 bytes of JSON):

- `journal append`: one record, one `pwrite`, one fsync per change (what one
  `StateDB.patch` costs at the journal), with the p50/p99 of each append;
- `store commit`: the same through `DocumentStore.commit` (framing, apply, checkpoints);
- `store commit_many xB`: group commit, B changes per fsync, each its own record;
- `old journal append` (with `--old-journal FILE`, e.g. the JSON-lines journal from git:
  `git show 82657a4~1:sc_actors/store/journal.py > /tmp/old_journal.py`): the same loop
  through that file's `Journal`;
- with `--kills N`, the crash test of tests/store/test_crash.py at a larger scale: a writer
  process (forked) commits changes and reports each acknowledged one; it is SIGKILLed N
  times at random moments, and after each restart the acknowledged changes missing and
  the half-applied records (two documents of one record that disagree) are counted.

Run it alone: `flock /tmp/sc-bench.lock sc bench journal`.
"""
from __future__ import annotations

import importlib.util
import json
import logging
import os
import random
import shutil
import signal
import struct
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import typer
from rich.table import Table

from .common import console, fail, machine, out_dir, percentiles

if TYPE_CHECKING:
    from sc_actors.store.journal import Ops


def _doc(i: int) -> dict[str, Any]:
    return {"name": f"c{i % 64}", "type": "limit",
            "resources": {r: {"boundary": 10 + i % 7, "boundary_type": "percentage_of_max",
                              "upper": 150.0 + i % 50, "lower": 100.0 + i % 30} for r in ("cpu", "mem", "disk")}}


def _ops(i: int) -> Ops:
    return [{"op": "put", "c": "limits", "name": f"c{i % 64}", "doc": _doc(i)}]


def _load_journal_cls(path: Path) -> Any:
    spec = importlib.util.spec_from_file_location("bench_old_journal", path)
    if spec is None or spec.loader is None:
        fail(f"cannot load a journal from {path}")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Journal


def _timed(n: int, step: Callable[[int], int]) -> dict[str, Any]:
    """Run `step(i)` until n changes are done (it returns how many it made durable)."""
    lat_ms: list[float] = []
    done = 0
    t0 = time.perf_counter()
    while done < n:
        t = time.perf_counter()
        done += step(done)
        lat_ms.append((time.perf_counter() - t) * 1000)
    wall = time.perf_counter() - t0
    return {"changes": done, "wall_s": round(wall, 3), "changes_per_s": round(done / wall, 1),
            "fsyncs": len(lat_ms), "fsync_call_ms": percentiles(lat_ms)}


def run(base: Path, changes: int, batches: tuple[int, ...], old_journal: Path | None) -> dict[str, Any]:
    from sc_actors.store.documents import DocumentStore
    from sc_actors.store.journal import Journal

    rows: list[dict[str, Any]] = []

    def fresh(name: str) -> Path:
        d = base / name
        shutil.rmtree(d, ignore_errors=True)
        d.mkdir(parents=True)
        return d

    def journal_row(label: str, cls: Any) -> None:
        j = cls(fresh(label.replace(" ", "_")) / "journal")

        def step(i: int) -> int:
            j.append(i, _ops(i))
            return 1
        rows.append({"what": label, "batch": 1, **_timed(changes, step)})
        j.close()

    if old_journal is not None:
        journal_row("old journal append", _load_journal_cls(old_journal))
    journal_row("journal append", Journal)

    for batch in (1, *batches):
        # As the StateDB runs it: checkpoints every 2000 records are part of the cost.
        s = DocumentStore(fresh(f"store_{batch}")).open()
        def step(i: int, s: DocumentStore = s, b: int = batch) -> int:
            if b == 1:
                s.commit(_ops(i))
            else:
                s.commit_many([_ops(i + k) for k in range(b)])
            return b
        label = "store commit" if batch == 1 else f"store commit_many x{batch}"
        rows.append({"what": label, "batch": batch, **_timed(changes, step)})
        s.close()
    return {"machine": machine(), "dir": str(base), "changes": changes, "rows": rows,
            "loadavg": [round(x, 2) for x in os.getloadavg()]}


_ACK = struct.Struct("<q")


def crash_run(base: Path, kills: int, seed: int = 2026) -> dict[str, Any]:
    """SIGKILL a writer `kills` times; count acknowledged changes lost and records half-applied."""
    from sc_actors.store.documents import DocumentStore

    # Each restart after a kill inside a checkpoint warns that it removed the cut one.
    logging.getLogger("sc_actors.store").setLevel(logging.ERROR)
    rng = random.Random(seed)
    acked: set[int] = set()
    lost_max = half_applied = 0
    t0 = time.perf_counter()
    for _ in range(kills):
        r, w = os.pipe()
        pid = os.fork()
        if pid == 0:  # the writer: commits, then acknowledges; never returns
            try:
                os.close(r)
                s = DocumentStore(base, checkpoint_every_records=5).open()
                n = (s.get("structures", "a") or {"n": -1})["n"] + 1
                while True:
                    s.commit([{"op": "put", "c": "structures", "name": "a", "doc": {"name": "a", "n": n}},
                              {"op": "put", "c": "structures", "name": "b", "doc": {"name": "b", "n": n}}])
                    os.write(w, _ACK.pack(n))
                    n += 1
            finally:
                os._exit(1)
        os.close(w)
        want, buf = rng.randrange(0, 12) * _ACK.size, b""
        while len(buf) < want and (chunk := os.read(r, 4096)):
            buf += chunk
        time.sleep(rng.uniform(0, 0.003))  # picks the moment of the kill
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
        while chunk := os.read(r, 4096):
            buf += chunk
        os.close(r)
        acked.update(_ACK.unpack_from(buf, i)[0] for i in range(0, len(buf) // _ACK.size * _ACK.size, _ACK.size))
        s = DocumentStore(base).open()
        a, b = s.get("structures", "a"), s.get("structures", "b")
        have = -1 if a is None else a["n"]
        half_applied += (a or {}).get("n") != (b or {}).get("n")
        lost_max = max(lost_max, len([n for n in acked if n > have]))
        s.close()
    return {"kills": kills, "acknowledged": len(acked), "acknowledged_lost": lost_max,
            "half_applied": half_applied, "wall_s": round(time.perf_counter() - t0, 1)}


# ---------------------------------------------------------------------------- through a real StateDB actor

ACTOR_KINDS = {"put": 1, "patch": 1, "transact16": 16, "transact64": 64}
"""Calls measured through the actor and the changes each carries (a Guardian report or a Scaler
record of a busy window carries tens of changes in one call, as transact64 does)."""
"""What each call of the actor measurement writes, and how many changes that is."""


class _Caller:
    """A client of the StateDB in its own process, keeping `inflight` calls outstanding."""

    def __init__(self, db: Any) -> None:
        self.db = db

    def pid(self) -> int:
        return os.getpid()

    async def run(self, kind: str, calls: int, inflight: int, seed: int) -> dict[str, Any]:
        import asyncio

        lat_ms: list[float] = []
        sem = asyncio.Semaphore(inflight)

        async def one(i: int) -> None:
            async with sem:
                t = time.perf_counter()
                await _call(self.db, kind, seed + i)
                lat_ms.append((time.perf_counter() - t) * 1000)
        t0 = time.perf_counter()
        await asyncio.gather(*(one(i) for i in range(calls)))
        return {"calls": calls, "wall_s": time.perf_counter() - t0, "lat_ms": lat_ms}


def _cpu_s(pid: int) -> float:
    """CPU seconds (user + system) process `pid` has used so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _limits(i: int) -> dict[str, Any]:
    """A container's limits document as the StateDB validates it (about 200 bytes of JSON)."""
    return {"name": f"c{i % 64}", "resources": {r: {"boundary": 10 + i % 7, "boundary_type": "percentage_of_max",
                                                      "upper": 150.0 + i % 50, "lower": 100.0 + i % 30}
                                                for r in ("cpu", "mem")}}


def _call(db: Any, kind: str, i: int) -> Any:
    """One call of `kind` (ACTOR_KINDS) on the StateDB handle `db`; returns its ObjectRef."""
    if kind == "put":
        return db.put.remote("limits", _limits(i))
    if kind == "patch":
        return db.patch.remote("limits", f"c{i % 64}", {"resources.cpu.upper": 150.0 + i % 997})
    if kind.startswith("transact"):
        n = ACTOR_KINDS[kind]
        return db.transact.remote([("limits", _limits(i * n + k)) for k in range(n)])
    raise ValueError(f"unknown kind {kind!r}")


def actor_run(base: Path, calls: int, inflight: int, callers: int, sequential: int,
              kinds: tuple[str, ...] = tuple(ACTOR_KINDS), concurrency: int | None = None) -> dict[str, Any]:
    """Acknowledged changes/s through a real StateDB actor (fsync on) on a private local Ray.

    `callers` caller actors share `inflight` outstanding calls; each call returns once
    the StateDB acknowledged it. Also one caller, one put after another (`sequential`
    calls): the latency a lone writer sees.
    """
    import ray

    from sc_actors.statedb import ACTOR_OPTIONS, MAX_CONCURRENCY, StateDB

    concurrency = concurrency or MAX_CONCURRENCY
    state_dir = base / "actor_state"
    shutil.rmtree(state_dir, ignore_errors=True)
    ray.init(address="local", num_cpus=2, include_dashboard=False, object_store_memory=100 * 1024**2,
             log_to_driver=False, logging_level=logging.ERROR)
    try:
        # As cluster/placement.py makes it (without the name and the head pin: this Ray is private).
        class StateDBCounted(StateDB):
            """The StateDB, which also says how many journal writes (fsyncs) it made."""

            def fsyncs(self) -> int:
                return self.store.batches

        db: Any = ray.remote(StateDBCounted).options(**{**ACTOR_OPTIONS, "max_concurrency": concurrency},
                                                     max_restarts=-1, max_task_retries=-1,
                                                     num_cpus=0).remote(str(state_dir), True)
        ray.get([db.put.remote("limits", _limits(i)) for i in range(64)])
        rows: list[dict[str, Any]] = []
        lat: list[float] = []
        for i in range(sequential):
            t = time.perf_counter()
            ray.get(_call(db, "put", i))
            lat.append((time.perf_counter() - t) * 1000)
        rows.append({"what": "actor put, one caller", "calls": sequential, "changes_per_s":
                     round(sequential / (sum(lat) / 1000), 1), "call_ms": percentiles(lat)})
        pool: list[Any] = [ray.remote(_Caller).options(num_cpus=0).remote(db) for _ in range(callers)]
        ray.get([c.run.remote("put", 4, 4, 0) for c in pool])  # warm: each caller's worker and its handle
        per = max(1, inflight // callers)
        db_pid = ray.get(db.ping.remote())["pid"]
        caller_pids = ray.get([c.pid.remote() for c in pool])
        for kind in kinds:
            seq0: int = ray.get(db.seq.remote())
            fsyncs0: int = ray.get(db.fsyncs.remote())
            cpu0, callers0 = _cpu_s(db_pid), sum(_cpu_s(p) for p in caller_pids)
            t0 = time.perf_counter()
            got: list[dict[str, Any]] = ray.get([c.run.remote(kind, calls // callers, per, k * calls) for k, c in enumerate(pool)])
            wall = time.perf_counter() - t0
            cpu, callers_cpu = _cpu_s(db_pid) - cpu0, sum(_cpu_s(p) for p in caller_pids) - callers0
            n = sum(g["calls"] for g in got)
            changes = n * ACTOR_KINDS[kind]
            seq1, fsyncs1 = ray.get([db.seq.remote(), db.fsyncs.remote()])
            rows.append({"what": f"actor {kind}, {per * callers} in flight", "calls": n, "changes": changes,
                         "records": seq1 - seq0, "fsyncs": fsyncs1 - fsyncs0, "wall_s": round(wall, 3),
                         "changes_per_s": round(changes / wall, 1),
                         "statedb_cores": round(cpu / wall, 2), "statedb_cpu_us_per_call": round(cpu / n * 1e6),
                         "callers_cores": round(callers_cpu / wall, 2),
                         "call_ms": percentiles([x for g in got for x in g["lat_ms"]])})
        status = ray.get(db.ping.remote())
    finally:
        ray.shutdown()
    return {"inflight": inflight, "callers": callers, "max_concurrency": concurrency, "rows": rows,
            "status": dict(status)}


def command(
    changes: int = typer.Option(2000, min=1, help="changes per measurement"),
    batch: str = typer.Option("8,64", help="group-commit sizes (changes per fsync), comma-separated"),
    old_journal: Path = typer.Option(None, exists=True, dir_okay=False,
                                     help="also measure this file's Journal (e.g. the old one from git)"),
    dir: Path = typer.Option(None, help="directory to write in (default: a temp dir under ~/.sc); "
                                        "put it on the state dir's disk"),
    kills: int = typer.Option(0, min=0, help="also SIGKILL a writer this many times and count what is lost"),
    actor: bool = typer.Option(False, "--actor", help="also through a real StateDB actor (private local Ray): "
                                                     "acknowledged changes/s with many callers, and one caller's latency"),
    actor_calls: int = typer.Option(20000, min=1, help="--actor: calls per measurement"),
    inflight: int = typer.Option(64, min=1, help="--actor: calls in flight, shared by the callers"),
    callers: int = typer.Option(2, min=1, help="--actor: caller actors (each in its own process)"),
    sequential: int = typer.Option(1000, min=1, help="--actor: puts one after another, for one caller's latency"),
    out: Path = typer.Option(Path("bench-out"), help="where journal.json goes"),
) -> None:
    """Changes per second with fsync: one per change, and group commit; the old journal beside;
    with --actor, through the StateDB actor itself."""
    try:
        batches = tuple(int(x) for x in batch.split(",") if x)
    except ValueError:
        fail(f"--batch must be integers separated by commas, got {batch!r}")
    if any(b < 2 for b in batches):
        fail(f"--batch sizes must be at least 2, got {batch!r}")
    parent = dir or Path.home() / ".sc"
    parent.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix="bench-journal-", dir=parent))
    try:
        r = run(base, changes, batches, old_journal)
        if kills:
            crash_dir = base / "crash"
            crash_dir.mkdir()
            r["crash"] = crash_run(crash_dir, kills)
        if actor:
            r["actor"] = actor_run(base, actor_calls, inflight, callers, sequential)
    finally:
        shutil.rmtree(base, ignore_errors=True)
    t = Table(title=f"journal: changes/s with fsync ({r['dir']})")
    for col in ("what", "changes/s", "fsyncs", "call p50 ms", "call p99 ms"):
        t.add_column(col, justify="left" if col == "what" else "right")
    for row in r["rows"]:
        ms = row["fsync_call_ms"]
        t.add_row(row["what"], f"{row['changes_per_s']:.0f}", str(row["fsyncs"]), f"{ms['p50']:.3f}",
                  f"{ms['p99']:.3f}")
    console.print(t)
    if "crash" in r:
        c = r["crash"]
        console.print(f"crash: {c['kills']} SIGKILLs, {c['acknowledged']} acknowledged changes, "
                      f"{c['acknowledged_lost']} lost, {c['half_applied']} half-applied ({c['wall_s']} s)")
    if "actor" in r:
        a = r["actor"]
        t = Table(title=f"through the StateDB actor: acknowledged changes/s with fsync "
                        f"({a['callers']} callers, max_concurrency {a['max_concurrency']})")
        for col in ("what", "changes/s", "changes/call", "records/fsync", "call p50 ms", "call p99 ms",
                    "StateDB cores", "StateDB µs/call", "callers cores"):
            t.add_column(col, justify="left" if col == "what" else "right")
        for row in a["rows"]:
            ms = row["call_ms"]
            per_call = row.get("changes", row["calls"]) / row["calls"]
            fsyncs = row.get("fsyncs")
            t.add_row(row["what"], f"{row['changes_per_s']:.0f}", f"{per_call:g}",
                      f"{row['records'] / fsyncs:.1f}" if fsyncs else "", f"{ms['p50']:.2f}", f"{ms['p99']:.2f}",
                      str(row.get("statedb_cores", "")), str(row.get("statedb_cpu_us_per_call", "")),
                      str(row.get("callers_cores", "")))
        console.print(t)
    console.print(f"machine: {r['machine']}; load average after: {r['loadavg']}")
    path = Path(out_dir(out)) / "journal.json"
    path.write_text(json.dumps(r, indent=1))
    console.print(f"written: {path}")
