"""Cost of the time series: CPU per window and bytes per container-hour (not a test; run it).

    .venv/bin/python -m tests.timeseries.bench_writer --containers 100 --seconds 3600

Simulates `--seconds` of 1-s windows of `--containers` guarded containers as fast as it
can (no sleeping): each window the StateDB's `timeseries_snapshot` (in process, no Ray),
`rows_from_snapshot`, and the writer with the default settings (flush every 5 s of
windows), then one compaction of the finished hours. Usage is a random walk, `current`
changes now and then, as under a real load. Reports the CPU seconds spent per simulated
second (= CPU % of one core at 1-s windows) on each side (StateDB, snapshoter) and the
dataset size per container-hour before and after compaction. `--realtime` sleeps to the
window instead and reports process CPU over wall time.
"""
from __future__ import annotations

import argparse
import json
import random
import shutil
import tempfile
import time
from pathlib import Path

from sc_actors.statedb import StateDB
from sc_actors.store import timeseries as ts

T0 = 1_714_557_600.0  # an hour boundary (2024-05-01 10:00 UTC)


def _statedb(state_dir: Path, n: int) -> StateDB:
    db = StateDB(str(state_dir), fsync=False)
    db.put("structures", {"name": "h0", "subtype": "host", "resources": {
        "cpu": {"max": 100 * 64, "free": 100 * 64}, "mem": {"max": 1 << 20, "free": 1 << 20}}})
    for i in range(n):
        name = f"c{i:03d}"
        db.put("structures", {"name": name, "subtype": "container", "host": "h0", "guard": True, "resources": {
            "cpu": {"min": 25, "max": 400, "current": 100, "guard": True},
            "mem": {"min": 64, "max": 4096, "current": 1024, "guard": True}}})
        db.put("limits", {"name": name, "resources": {
            "cpu": {"boundary": 10, "upper": 60, "lower": 20}, "mem": {"boundary": 10, "upper": 614, "lower": 205}}})
    return db


def run(containers: int = 100, seconds: int = 3600, window_s: float = 1.0, realtime: bool = False,
        out: Path | None = None, seed: int = 1) -> dict:
    rng = random.Random(seed)
    work = Path(tempfile.mkdtemp(prefix="sc-bench-"))
    root = out or work / "timeseries"
    try:
        db = _statedb(work / "state", containers)
        names = [f"c{i:03d}" for i in range(containers)]
        usage = {n: {"cpu": 50.0, "mem": 500.0} for n in names}
        writer = ts.TimeseriesWriter(root)  # the DatabaseSnapshoter's defaults
        cpu_db = cpu_snap = 0.0
        wall0, proc0 = time.monotonic(), time.process_time()
        services = ["guardian", "scaler"]
        for k in range(int(seconds / window_s)):
            t = T0 + k * window_s
            for n in names:  # what the Guardian's report puts in the StateDB each window
                u = usage[n]
                u["cpu"] = min(max(u["cpu"] + rng.gauss(0, 5), 0.0), 400.0)
                u["mem"] = min(max(u["mem"] + rng.gauss(0, 10), 64.0), 4096.0)
                db.usages[n] = {"cpu": round(u["cpu"], 3), "mem": round(u["mem"], 3)}
                db.usage_t[n] = t
                if rng.random() < 0.01:  # a scaling now and then
                    c = db.store.docs["structures"][n]["resources"]["cpu"]
                    c["current"] = float(min(max(c["current"] + rng.choice((-30, 75)), 25), 400))
            c0 = time.process_time()
            snap = db.timeseries_snapshot("h0", names, services if k % max(int(1 / window_s), 1) == 0 else None)
            c1 = time.process_time()
            writer.append(ts.rows_from_snapshot(snap, t))
            if writer.due() or (not realtime and (k + 1) * window_s % 5 == 0):
                writer.flush()
            cpu_db += c1 - c0
            cpu_snap += time.process_time() - c1
            if realtime:
                time.sleep(max(0.0, (k + 1) * window_s - (time.monotonic() - wall0)))
        c0 = time.process_time()
        writer.flush()
        parts_bytes = ts.dataset_bytes(root)
        parts = len(ts.data_files(root))
        ts.compact(root, now=T0 + seconds + 3600)
        cpu_compact = time.process_time() - c0
        wall, proc = time.monotonic() - wall0, time.process_time() - proc0
        compacted = ts.dataset_bytes(root)
        hours = seconds / 3600
        result = {
            "containers": containers,
            "simulated_s": seconds,
            "window_s": window_s,
            "rows": writer.rows_written,
            "rows_per_window": writer.rows_written / (seconds / window_s),
            "statedb_cpu_pct": 100 * cpu_db / seconds,
            "snapshoter_cpu_pct": 100 * (cpu_snap + cpu_compact) / seconds,
            "compaction_cpu_s": cpu_compact,
            "part_files": parts,
            "bytes_per_container_hour_parts": parts_bytes / containers / hours,
            "bytes_per_container_hour_compacted": compacted / containers / hours,
            "bytes_per_row_compacted": compacted / max(writer.rows_written, 1),
        }
        if realtime:
            result["process_cpu_pct_of_wall"] = 100 * proc / wall
        return result
    finally:
        if out is None:
            shutil.rmtree(work, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--containers", type=int, default=100)
    p.add_argument("--seconds", type=int, default=3600)
    p.add_argument("--window", type=float, default=1.0)
    p.add_argument("--realtime", action="store_true")
    p.add_argument("--out", type=Path, default=None, help="keep the dataset here")
    a = p.parse_args()
    print(json.dumps(run(a.containers, a.seconds, a.window, a.realtime, a.out), indent=2))


if __name__ == "__main__":
    main()
