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
    from ray.cluster_utils import Cluster

    from cluster.bench.scale import _actor_pids, _bulk_subscribe, _cpu_rss
    from cluster.deploy import deploy, undeploy, wait_for
    from sc_actors.settings import DATABASE_SNAPSHOTER_NAME, STATEDB_NAME
    from sc_actors.store import timeseries as ts

    os.environ["RAY_AUTH_MODE"] = "disabled"
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, object_store_memory=150 * 1024**2, include_dashboard=False))
    hosts = [f"tsim{i}" for i in range(nodes)]
    for h in hosts:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2,
                         labels={"sc_host": h, "sc_backend": "synthetic", "sc_cgroup_parent": h})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
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
        snap_pid, db_pid = {"s": pids[DATABASE_SNAPSHOTER_NAME]}, {"d": pids[STATEDB_NAME]}
        p0 = ray.get(snap.ping.remote())
        root = p0["dataset_dir"]
        snap_cpu0, db_cpu0 = _cpu_rss(snap_pid)[0], _cpu_rss(db_pid)[0]
        t0 = time.monotonic()
        time.sleep(seconds)  # the measuring interval, not a synchronisation
        elapsed = time.monotonic() - t0
        (snap_cpu1, rss), db_cpu1 = _cpu_rss(snap_pid), _cpu_rss(db_pid)[0]
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
