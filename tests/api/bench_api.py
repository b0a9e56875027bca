"""Measure the API on a live stack (not a test: numbers for the issue's acceptance).

    .venv/bin/python tests/api/bench_api.py [--n 200] [--status-runs 10]

Starts a private one-node Ray, deploys the control plane and the API on a free
port, subscribes one real cgroup container through the API, then measures:
- `sc status` wall time (a fresh `.venv/bin/sc --url URL status` process each run);
- p50/p99 of `GET /structure/<name>` and `PUT /structure/<name>/guard` over N
  sequential keep-alive requests each (after 20 warm-up requests).
Everything it created is removed at the end.
"""
from __future__ import annotations

import argparse
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(REPO))


def pct(xs: list[float], p: float) -> float:
    xs = sorted(xs)
    return xs[min(len(xs) - 1, int(round(p / 100 * (len(xs) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--status-runs", type=int, default=10)
    args = ap.parse_args()

    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    import httpx
    import ray
    from ray.cluster_utils import Cluster

    from cluster.deploy import deploy, undeploy
    from cluster.serve_deploy import deploy_api, undeploy_api
    from sc_actors.backends import make_backend
    from tests.api.live import free_port

    sid = uuid.uuid4().hex[:6]
    host, parent = f"benchhost{sid}", f"sc-bench-api-{sid}"
    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
        labels={"sc_host": host, "sc_cgroup_parent": parent}))
    ray.init(address=cluster.address, namespace="serverless_containers", log_to_driver=False, logging_level="ERROR")
    state_dir = tempfile.mkdtemp(prefix="sc-bench-state-")
    backend = make_backend("cgroup_v1", "/sys/fs/cgroup", parent)
    name = "bench0"
    try:
        actors = deploy(state_dir, node_defaults={"backend": "cgroup_v1"})
        url = deploy_api(port=free_port(), token="bench-token")
        node = ray.get_actor(f"container-scaler:{host}", namespace="serverless_containers")
        ray.get(node.create_container.remote(name))
        headers = {"Authorization": "Bearer bench-token"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            body = {"container": {"name": name, "host": host, "guard": False, "resources": {
                "cpu": {"min": 25, "current": 50, "max": 200}, "mem": {"min": 64, "current": 128, "max": 512}}}}
            r = c.put(f"/structure/container/{name}", json=body)
            assert r.status_code == 201, r.text

            sc = str(REPO / ".venv/bin/sc")
            walls = []
            for _ in range(args.status_runs):
                t0 = time.perf_counter()
                out = subprocess.run([sc, "--url", url, "status"], capture_output=True, text=True)
                walls.append(time.perf_counter() - t0)
                assert out.returncode == 0, out.stderr
            print(f"sc --url {url} status: median {statistics.median(walls):.3f} s over {len(walls)} runs "
                  f"(min {min(walls):.3f}, max {max(walls):.3f})")

            for label, method, path in (("GET /structure/<name>", "GET", f"/structure/{name}"),
                                        ("PUT /structure/<name>/guard", "PUT", f"/structure/{name}/guard")):
                for _ in range(20):
                    c.request(method, path)
                lat = []
                for _ in range(args.n):
                    t0 = time.perf_counter()
                    r = c.request(method, path)
                    lat.append((time.perf_counter() - t0) * 1000)
                    assert r.status_code == 200, r.text
                print(f"{label}: p50 {pct(lat, 50):.2f} ms, p99 {pct(lat, 99):.2f} ms, max {max(lat):.2f} ms "
                      f"over {len(lat)} requests")
            c.put(f"/structure/{name}/unguard")
            c.delete(f"/structure/container/{name}")
        del actors
    finally:
        try:
            undeploy_api()
            undeploy()
        finally:
            for n in backend.list_containers():
                backend.remove(n)
            for controller in ("cpu", "cpuacct", "cpuset", "memory"):
                p = os.path.join("/sys/fs/cgroup", controller, parent)
                if os.path.isdir(p):
                    try:
                        os.rmdir(p)
                    except OSError:
                        pass
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(state_dir, ignore_errors=True)


if __name__ == "__main__":
    main()
