"""Cost of the time series at scale, from the Guardian's frames (not a test; run it).

    .venv/bin/python -m tests.timeseries.bench_frames --containers 10000 --seconds 20
    .venv/bin/python -m tests.timeseries.bench_frames --containers 10000 --seconds 20 --rows all

Feeds a real `DatabaseSnapshoter` (in this process, no Ray: its StateDB handle calls an
in-process `StateDB` holding the containers) one `SeriesFrame` per host per second —
`--containers` / 100 hosts of 100 containers, `--batch` frames per `on_windows` call — in
real time for `--seconds`, as the Guardian would at 1-s windows. Usage is a random walk,
1 % of the containers get a new `current` (and its `upper`/`lower`) each second.

Reports rows per second, the snapshoter's CPU in % of one core (this process's CPU, its
writer threads included, minus making the frames and minus the StateDB's calls, which are
reported apart), the dataset's bytes per hour (part files as written, then compacted) and
the compaction's CPU per second of data. Ray's pickling of the call is not included.
"""
from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

from sc_actors.columns import HostWindow, SeriesFrame
from sc_actors.database_snapshoter import DatabaseSnapshoter
from sc_actors.statedb import StateDB
from sc_actors.store import timeseries as ts

PER_HOST = 100


class _Call:
    def __init__(self, fn: Callable[..., Any], spent: list[float]) -> None:
        self.fn, self.spent = fn, spent

    def remote(self, *args: Any) -> "asyncio.Future[Any]":
        c0 = time.thread_time()
        fut: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        fut.set_result(self.fn(*args))
        self.spent[0] += time.thread_time() - c0
        return fut


class _Handle:
    """An actor handle over an in-process object: `h.method.remote(...)` is awaited as with Ray."""

    def __init__(self, obj: Any) -> None:
        self.obj, self.spent = obj, [0.0]

    def __getattr__(self, name: str) -> _Call:
        return _Call(getattr(self.obj, name), self.spent)


class _Handles:
    def __init__(self, db: StateDB) -> None:
        self.statedb = _Handle(db)


def _margins(current: np.ndarray, floor: float) -> tuple[np.ndarray, np.ndarray]:
    m = np.maximum(np.round(current * 0.04), floor)
    return current - m, current - 2 * m


async def _run(containers: int, seconds: float, batch: int, rows: str, root: Path, state: Path,
               seed: int, flush_rows: int | None) -> dict[str, Any]:
    rng = np.random.default_rng(seed)
    hosts = [f"h{h:03d}" for h in range(max(1, containers // PER_HOST))]
    names = {h: tuple(f"{h}-c{i:03d}" for i in range(PER_HOST)) for h in hosts}
    db = StateDB(str(state), fsync=False)
    for h in hosts:
        for n in names[h]:
            db.put("structures", {"name": n, "subtype": "container", "host": h, "guard": True, "resources": {
                "cpu": {"min": 25, "max": 400, "current": 100, "guard": True},
                "mem": {"min": 64, "max": 4096, "current": 1024, "guard": True}}})
    config: dict[str, Any] = {"config.DATASET_DIR": str(root), "config.SERIES_ROWS": rows}
    if flush_rows:
        config["config.FLUSH_ROWS"] = flush_rows
    db.patch("services", "database_snapshoter", config)
    n_all = len(hosts) * PER_HOST
    cpu_cur, mem_cur = np.full(n_all, 100.0), np.full(n_all, 1024.0)
    cpu_use, mem_use = np.full(n_all, 50.0), np.full(n_all, 500.0)
    const = {"cpu.max": np.full(PER_HOST, 400.0), "cpu.min": np.full(PER_HOST, 25.0),
             "cpu.boundary": np.full(PER_HOST, 4.0), "mem.max": np.full(PER_HOST, 4096.0),
             "mem.min": np.full(PER_HOST, 64.0), "mem.boundary": np.full(PER_HOST, 10.0)}

    snap = DatabaseSnapshoter(str(root))
    handles = _Handles(db)
    snap._actors = handles  # type: ignore[assignment]
    await snap.tick()  # its settings from the StateDB, as every TICK_S
    t_wall = time.time()
    gen = 0.0
    p0, w0 = time.process_time(), time.monotonic()
    db0 = handles.statedb.spent[0]
    steps = int(seconds)
    for k in range(steps):
        g0 = time.thread_time()
        # Rounded to 3 decimals, as the node rounds them (container_scaler.host_window).
        cpu_use = np.round(np.clip(cpu_use + rng.normal(0, 5, n_all), 0, 400), 3)
        mem_use = np.round(np.clip(mem_use + rng.normal(0, 10, n_all), 64, 4096), 3)
        moved = rng.random(n_all) < 0.01
        cpu_cur = np.where(moved, np.clip(cpu_cur + rng.choice([-30.0, 75.0], n_all), 25, 400), cpu_cur)
        cu, cl = _margins(cpu_cur, 2)
        mu, ml = _margins(mem_cur, 32)
        end = t_wall + k + 1
        frames = []
        for j, h in enumerate(hosts):
            sl = slice(j * PER_HOST, (j + 1) * PER_HOST)
            w = HostWindow(h, end - 1, end, names[h], cpu_use[sl], mem_use[sl], np.zeros(PER_HOST), np.zeros(PER_HOST))
            frames.append(SeriesFrame(w, {**const, "cpu.current": cpu_cur[sl], "cpu.upper": cu[sl],
                                          "cpu.lower": cl[sl], "mem.current": mem_cur[sl], "mem.upper": mu[sl],
                                          "mem.lower": ml[sl]}))
        gen += time.thread_time() - g0
        for i in range(0, len(frames), batch):
            await snap.on_windows(frames[i:i + batch])
        # The actor's housekeeping (flush by age, in a thread) runs while we wait for the next second.
        await asyncio.sleep(max(0.0, k + 1 - (time.monotonic() - w0)))
    await snap.flush()
    wall, proc = time.monotonic() - w0, time.process_time() - p0
    spent_db = handles.statedb.spent[0] - db0
    snap._task.cancel()
    status = await snap.ping()
    parts_bytes = ts.dataset_bytes(root)
    c0 = time.process_time()
    ts.compact(root, now=time.time() + 2 * 3600, grace_s=0)
    compact_cpu = time.process_time() - c0
    compacted = ts.dataset_bytes(root)
    return {
        "containers": n_all,
        "hosts": len(hosts),
        "series_rows": rows,
        "flush_rows": snap.settings.flush_rows,
        "seconds": round(wall, 1),
        "calls_per_s": round(len(range(0, len(hosts), batch)) * steps / wall, 1),
        "rows_per_s": round(status["rows_written"] / wall),
        "rows_per_container_window": round(status["rows_written"] / (n_all * steps), 2),
        "snapshoter_cpu_pct": round(100 * (proc - gen - spent_db) / wall, 2),
        "statedb_cpu_pct": round(100 * spent_db / wall, 2),
        "frames_cpu_pct (not counted)": round(100 * gen / wall, 2),
        "compaction_cpu_pct": round(100 * compact_cpu / wall, 2),
        "files": status["files_written"],
        "mb_per_hour_parts": round(parts_bytes * 3600 / wall / 1e6, 1),
        "mb_per_hour_compacted": round(compacted * 3600 / wall / 1e6, 1),
        "errors": status["errors"],
    }


def run(containers: int = 10_000, seconds: float = 20, batch: int = 10, rows: str = "changes",
        out: Path | None = None, seed: int = 1, flush_rows: int | None = None) -> dict[str, Any]:
    work = Path(tempfile.mkdtemp(prefix="sc-bench-frames-"))
    try:
        return asyncio.run(_run(containers, seconds, batch, rows, out or work / "timeseries", work / "state", seed,
                                flush_rows))
    finally:
        shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--containers", type=int, default=10_000)
    p.add_argument("--seconds", type=float, default=20)
    p.add_argument("--batch", type=int, default=10, help="frames (hosts) per on_windows call")
    p.add_argument("--rows", choices=ts.SERIES_ROWS, default="changes", help="SERIES_ROWS")
    p.add_argument("--flush-rows", type=int, default=None, help="FLUSH_ROWS (default: the setting's)")
    p.add_argument("--out", type=Path, default=None, help="keep the dataset here")
    a = p.parse_args()
    print(json.dumps(run(a.containers, a.seconds, a.batch, a.rows, a.out, flush_rows=a.flush_rows), indent=2))


if __name__ == "__main__":
    main()
