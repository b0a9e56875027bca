"""The DatabaseSnapshoter actor's real cost at N containers (not a test; run it).

    .venv/bin/python -m tests.timeseries.bench_actor --containers 100 --seconds 60

A local Ray cluster with 3 nodes of simulated containers (the synthetic backend of the
scale benchmark), the whole control plane with 1-s Guardian windows, N subscribed and
guarded containers. Measures over `--seconds`: the DatabaseSnapshoter process's CPU
(% of one core), the StateDB's, the rows and bytes written (bytes per container-hour
of part files, before compaction; `bench_writer` gives the compacted size).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time


def run(containers: int = 100, seconds: float = 60.0, nodes: int = 3, window_s: float = 1.0) -> dict:
    import ray

    from cluster.tools.bench.scale import _actor_pids, _bulk_subscribe, _cpu_rss, simulated_cluster
    from cluster.deploy import deploy, undeploy, wait_for
    from sc_actors.settings import DATABASE_SNAPSHOTER_NAME, STATEDB_NAME
    from sc_actors.store import timeseries as ts

    os.environ["RAY_AUTH_MODE"] = "disabled"
    hosts = [f"tsim{i}" for i in range(nodes)]
    cluster = simulated_cluster(hosts)
    state = tempfile.mkdtemp(prefix="sc-ts-bench-")
    try:
        actors = deploy(state, node_defaults={"synthetic_cores": max(8, -(-containers // nodes))})
        db, snap = actors["statedb"], actors["database_snapshoter"]
        ray.get(db.patch.remote("services", "guardian", {"config.WINDOW_TIMELAPSE": window_s,
                                                         "config.EVENT_TIMEOUT": 10 * window_s}))
        per_host = {h: [f"{h}-c{i}" for i in range(containers * k // nodes, containers * (k + 1) // nodes)]
                    for k, h in enumerate(hosts)}
        _bulk_subscribe(db, per_host, cpu=(10, 50, 200), mem=(64, 256, 2048))
        wait_for(lambda: ray.get(snap.ping.remote())["windows"] > 3 * nodes, 60, what="windows snapshotted")
        pids = _actor_pids([DATABASE_SNAPSHOTER_NAME, STATEDB_NAME])
        p0 = ray.get(snap.ping.remote())
        root = p0["dataset_dir"]
        u0 = _cpu_rss(pids)
        snap_cpu0, db_cpu0 = u0[DATABASE_SNAPSHOTER_NAME][0], u0[STATEDB_NAME][0]
        t0 = time.monotonic()
        time.sleep(seconds)  # the measuring interval, not a synchronisation
        elapsed = time.monotonic() - t0
        u1 = _cpu_rss(pids)
        (snap_cpu1, rss), db_cpu1 = u1[DATABASE_SNAPSHOTER_NAME], u1[STATEDB_NAME][0]
        p1 = ray.get(snap.ping.remote())
        ray.get(snap.flush.remote())
        hours = elapsed / 3600
        return {
            "containers": containers,
            "nodes": nodes,
            "window_s": window_s,
            "seconds": round(elapsed, 1),
            "windows_snapshotted_per_s": round((p1["windows"] - p0["windows"]) / elapsed, 2),
            "rows_per_s": round((p1["rows_written"] + p1["buffered"] - p0["rows_written"] - p0["buffered"]) / elapsed),
            "snapshoter_cpu_pct": round(100 * (snap_cpu1 - snap_cpu0) / elapsed, 2),
            "snapshoter_rss_mib": round(rss),
            "statedb_cpu_pct_total": round(100 * (db_cpu1 - db_cpu0) / elapsed, 2),
            "bytes_per_container_hour_parts": round(
                (p1["bytes_written"] - p0["bytes_written"]) / containers / hours),
            "dataset_files": len(ts.data_files(root)),
        }
    finally:
        try:
            undeploy()
        finally:
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(state, ignore_errors=True)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--containers", type=int, default=100)
    p.add_argument("--seconds", type=float, default=60)
    a = p.parse_args()
    print(json.dumps(run(a.containers, a.seconds), indent=2))


if __name__ == "__main__":
    main()
