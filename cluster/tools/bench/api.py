"""`sc bench api`: p50/p99 of reads and writes through the Serve API, and `sc status` wall time.

Starts a private one-node Ray cluster, deploys the control plane and the API on a
free port, subscribes one real cgroup container through the API, then measures:
- for each concurrency level C: N requests of each operation spread over C
  keep-alive clients (one thread with its own `httpx.Client` each), after a
  warm-up. Reads: `GET /structure/<name>`, `GET /status`; writes (journaled by the
  StateDB): `PUT /structure/<name>/guard|unguard` alternating and
  `PUT /structure/<name>/limits/cpu/boundary` alternating between two values;
  `GET /heartbeat` (no actor call) is the baseline of Serve's own cost. Every
  request counts in the percentiles; any non-2xx or transport error is reported
  as an error, never dropped;
- `sc --url URL status` wall time, a fresh process each run.
The load average before and after is recorded: other work on the machine shows in
the numbers. Everything it created is removed at the end.
"""
from __future__ import annotations

import json
import logging
import os
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any, Callable

import typer
from rich.table import Table

from ..tables import print_table
from .common import REPO, console, fail, machine, out_dir, percentiles, positive_ints

TOKEN = "bench-token"
READ_TARGET_MS = 20.0  # the target: p99 of reads at concurrency 1


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def loadavg() -> list[float]:
    return [round(x, 2) for x in os.getloadavg()]


def _sc_path() -> str:
    here = Path(sys.executable).parent / "sc"
    return str(here if here.exists() else REPO / ".venv/bin/sc")


def operations(name: str) -> list[dict[str, Any]]:
    """What is measured: kind, label, and the i-th request of a client as (method, path, body)."""
    s = f"/structure/{name}"
    return [
        {"kind": "baseline", "op": "GET /heartbeat", "req": lambda i: ("GET", "/heartbeat", None)},
        {"kind": "read", "op": "GET /structure/<name>", "req": lambda i: ("GET", s, None)},
        {"kind": "read", "op": "GET /status", "req": lambda i: ("GET", "/status", None)},
        {"kind": "write", "op": "PUT /structure/<name>/guard|unguard",
         "req": lambda i: ("PUT", f"{s}/{'guard' if i % 2 == 0 else 'unguard'}", None)},
        {"kind": "write", "op": "PUT /structure/<name>/limits/cpu/boundary",
         "req": lambda i: ("PUT", f"{s}/limits/cpu/boundary", {"value": 10 + 10 * (i % 2)})},
    ]


def measure(url: str, headers: dict[str, str], req: Callable[[int], tuple[str, str, Any]],
            requests: int, concurrency: int, warmup: int) -> dict[str, Any]:
    """`requests` requests over `concurrency` keep-alive clients started together; latencies in ms."""
    import httpx

    share = [requests // concurrency + (1 if k < requests % concurrency else 0) for k in range(concurrency)]
    lat: list[list[float]] = [[] for _ in range(concurrency)]
    errs: list[Counter[str]] = [Counter() for _ in range(concurrency)]
    ready = threading.Barrier(concurrency + 1)
    done = threading.Barrier(concurrency + 1)

    def client(k: int) -> None:
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            try:
                for i in range(warmup):  # opens the connection and warms both ends
                    method, path, body = req(i)
                    try:
                        c.request(method, path, json=body)
                    except httpx.HTTPError:
                        pass
            finally:
                ready.wait()
            try:
                for i in range(share[k]):
                    method, path, body = req(warmup + i)
                    t0 = time.perf_counter()
                    code: int | str
                    try:
                        r = c.request(method, path, json=body)
                        code = r.status_code
                    except httpx.HTTPError as e:
                        code = type(e).__name__
                    lat[k].append((time.perf_counter() - t0) * 1000)
                    if not (isinstance(code, int) and 200 <= code < 300):
                        errs[k][str(code)] += 1
            finally:
                done.wait()

    threads = [threading.Thread(target=client, args=(k,), daemon=True) for k in range(concurrency)]
    for t in threads:
        t.start()
    ready.wait()
    t0 = time.perf_counter()
    done.wait()
    wall = time.perf_counter() - t0
    for t in threads:
        t.join()
    all_lat = [x for xs in lat for x in xs]
    errors: Counter[str] = sum(errs, Counter())
    return {**percentiles(all_lat), "concurrency": concurrency, "wall_s": round(wall, 3),
            "throughput_rps": round(len(all_lat) / wall, 1) if wall > 0 else None,
            "errors": sum(errors.values()), "errors_by_status": dict(errors)}


def run(requests: int = 200, concurrency: tuple[int, ...] = (1, 4, 16), status_runs: int = 10,
        out_dir: str = "bench-out", progress: Callable[[str], None] = print) -> dict[str, Any]:
    os.environ["RAY_AUTH_MODE"] = "disabled"
    os.environ["RAY_USAGE_STATS_ENABLED"] = "0"
    import httpx
    import ray
    from ray.cluster_utils import Cluster

    from sc_actors.backends import make_backend
    from sc_actors.settings import NAMESPACE, container_scaler_name

    from cluster.deploy import deploy, undeploy
    from cluster.serve_deploy import deploy_api, undeploy_api

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    sid = uuid.uuid4().hex[:6]
    host, parent, name = f"benchhost{sid}", f"sc-bench-api-{sid}", "bench0"
    warmup = 20
    results: dict[str, Any] = {
        "machine": machine(),
        "config": {"requests": requests, "concurrency": list(concurrency), "status_runs": status_runs,
                   "warmup_per_client": f"{warmup} at concurrency 1, else max(3, {warmup} // concurrency)", "clients": "one thread with a keep-alive httpx.Client each",
                   "api": "Ray Serve, 1 replica, HeadOnly proxy; private one-node Ray cluster (2 CPUs)",
                   "target": f"p99 <= {READ_TARGET_MS:g} ms for reads at concurrency 1"},
        "loadavg_start": loadavg(),
        "ops": [],
    }
    # Serve logs every app deletion at INFO; the figures are what this prints.
    logging.getLogger("ray.serve").setLevel(logging.WARNING)
    state_dir = tempfile.mkdtemp(prefix="sc-bench-api-")
    backend = make_backend("auto", "/sys/fs/cgroup", parent)
    cluster: Cluster | None = None
    api_up = False
    try:
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=2, object_store_memory=100 * 1024**2, include_dashboard=False,
            labels={"sc_host": host, "sc_cgroup_parent": parent}))
        ray.init(address=cluster.address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)
        deploy(state_dir, node_defaults={"parent": parent})
        api_up = True  # from here on Serve may be running, even if deploy_api fails
        url = deploy_api(port=free_port(), token=TOKEN)
        results["config"]["url"] = url
        progress(f"API at {url}")
        node = ray.get_actor(container_scaler_name(host), namespace=NAMESPACE)
        ray.get(node.create_container.remote(name))
        headers = {"Authorization": f"Bearer {TOKEN}"}
        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            # Resources unguarded: flipping the structure's guard then never makes the Guardian scale it.
            body = {"container": {"name": name, "host": host, "guard": False, "resources": {
                "cpu": {"min": 25, "current": 50, "max": 200, "guard": False},
                "mem": {"min": 64, "current": 128, "max": 512, "guard": False}}}}
            r = c.put(f"/structure/container/{name}", json=body)
            if r.status_code != 201:
                raise RuntimeError(f"subscribing {name} failed: {r.status_code} {r.text}")

        sc = _sc_path()
        walls, status_errors = [], []
        for _ in range(status_runs):
            t0 = time.perf_counter()
            p = subprocess.run([sc, "--url", url, "status"], capture_output=True, text=True)
            walls.append(time.perf_counter() - t0)
            if p.returncode != 0:
                status_errors.append((p.stderr or p.stdout).strip()[-300:])
        results["sc_status_s"] = {"n": len(walls), "median": round(statistics.median(walls), 3) if walls else None,
                                  "min": round(min(walls), 3) if walls else None,
                                  "max": round(max(walls), 3) if walls else None,
                                  "errors": len(status_errors), "error_samples": status_errors[:3]}
        progress(f"sc --url {url} status: {results['sc_status_s']}")
        results["loadavg_measure_start"] = loadavg()

        for op in operations(name):
            for conc in concurrency:
                m = measure(url, headers, op["req"], requests, conc, warmup if conc == 1 else max(3, warmup // conc))
                results["ops"].append({"kind": op["kind"], "op": op["op"], **m})
                progress(f"{op['op']} c={conc}: p50 {m['p50']} ms, p99 {m['p99']} ms, "
                         f"{m['throughput_rps']} req/s, errors {m['errors']}")

        with httpx.Client(base_url=url, headers=headers, timeout=30) as c:
            r = c.delete(f"/structure/container/{name}")
            if r.is_error:
                progress(f"desubscribing {name}: {r.status_code} {r.text}")

        reads_c1 = [o for o in results["ops"] if o["kind"] == "read" and o["concurrency"] == 1]
        results["target"] = {
            "read_p99_ms_at_c1": {o["op"]: o["p99"] for o in reads_c1},
            "met": bool(reads_c1) and all(o["p99"] is not None and o["p99"] <= READ_TARGET_MS and o["errors"] == 0
                                          for o in reads_c1),
        } if reads_c1 else {"met": None, "why": "concurrency 1 not measured"}
        results["loadavg_end"] = loadavg()
        (out / "api.json").write_text(json.dumps(results, indent=2))
        _plot_api(results, out / "api.png")
        return results
    finally:
        try:
            if api_up:
                undeploy_api()
        except Exception as e:
            progress(f"undeploy_api: {e}")
        try:
            if ray.is_initialized():
                undeploy()
        except Exception as e:
            progress(f"undeploy: {e}")
        try:
            for n in backend.list_containers():
                backend.remove(n)
        except Exception as e:
            progress(f"removing the bench cgroups: {e}")
        for controller in ("cpu", "cpuacct", "cpu,cpuacct", "cpuset", "memory", "unified", ""):
            d = os.path.join("/sys/fs/cgroup", controller, parent)
            if os.path.isdir(d) and not os.path.islink(os.path.join("/sys/fs/cgroup", controller)):
                try:
                    os.rmdir(d)
                except OSError:
                    pass
        ray.shutdown()
        if cluster is not None:
            cluster.shutdown()
        shutil.rmtree(state_dir, ignore_errors=True)


def _plot_api(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 4.5), sharey=True)
    for ax, kinds, title in ((axes[0], ("read", "baseline"), "reads"), (axes[1], ("write",), "writes")):
        ops = [o for o in dict.fromkeys(o["op"] for o in results["ops"] if o["kind"] in kinds)]
        for k, op in enumerate(ops):
            rows = [o for o in results["ops"] if o["op"] == op]
            cs = [o["concurrency"] for o in rows]
            color = "gray" if rows[0]["kind"] == "baseline" else f"C{k}"
            ax.plot(cs, [o["p50"] for o in rows], "o-", c=color, label=f"{op} p50")
            ax.plot(cs, [o["p99"] for o in rows], "s--", c=color, label=f"{op} p99")
            for o in rows:
                if o["errors"]:
                    ax.annotate(f"{o['errors']} err", (o["concurrency"], o["p99"]), color="red", fontsize=8)
        if title == "reads":
            ax.axhline(READ_TARGET_MS, ls=":", c="red", label=f"target p99 at c=1 ({READ_TARGET_MS:g} ms)")
        ax.set(title=f"API {title}: latency vs concurrency", xlabel="concurrent keep-alive clients",
               xscale="log", yscale="log")
        ax.set_xticks(results["config"]["concurrency"], [str(c) for c in results["config"]["concurrency"]])
        ax.grid(alpha=0.3, which="both")
        ax.legend(fontsize=7)
    axes[0].set_ylabel("latency (ms, log scale)")
    m = results["machine"]
    fig.suptitle(f"{m['cores']} cores, {m['mem_gib']} GiB; {results['config']['requests']} requests per point; "
                 f"1-min load avg {results['loadavg_measure_start'][0]} → {results['loadavg_end'][0]} "
                 "while measuring (this bench's own processes included)", fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def latency_table(ops: list[dict[str, Any]]) -> Table:
    """One row per operation and concurrency: p50 … max in ms, requests/s, errors."""
    t = Table(title="API latency (ms) through Ray Serve")
    for col in ("operation", "kind", "conc", "n", "p50", "p95", "p99", "max", "req/s", "errors"):
        t.add_column(col, justify="left" if col in ("operation", "kind") else "right", no_wrap=col == "operation")
    for o in ops:
        err = str(o["errors"]) + (f" {o['errors_by_status']}" if o["errors"] else "")
        t.add_row(o["op"], o["kind"], str(o["concurrency"]),
                  str(o["n"]), *(f"{o[k]:.1f}" if o[k] is not None else "-" for k in ("p50", "p95", "p99", "max")),
                  str(o["throughput_rps"]),
                  f"[red]{err}[/]" if o["errors"] else err)
    return t


def command(
    requests: int = typer.Option(200, min=1, help="requests per operation and concurrency level"),
    concurrency: str = typer.Option("1,4,16", help="numbers of concurrent keep-alive clients, comma-separated"),
    status_runs: int = typer.Option(10, min=0, help="fresh `sc --url URL status` processes timed"),
    out: Path = typer.Option(Path("bench-out"), help="where api.json and api.png go"),
) -> None:
    """p50/p99 of reads and writes through the Serve API at a few concurrency levels, and `sc status`."""
    from ..demo import cgroups_writable

    levels = positive_ints("--concurrency", concurrency)
    reason = cgroups_writable()
    if reason:
        fail(reason)
    r = run(requests=requests, concurrency=levels, status_runs=status_runs, out_dir=out_dir(out),
            progress=lambda m: console.print(f"  {m}", highlight=False))
    console.print(f"machine: {r['machine']}")
    console.print(f"config: {r['config']}", highlight=False)
    console.print(f"load average (1, 5, 15 min; this bench's own processes included): before Ray "
                  f"{r['loadavg_start']}, measuring from {r['loadavg_measure_start']} to {r['loadavg_end']}")
    print_table(console, latency_table(r["ops"]))
    s = r["sc_status_s"]
    console.print(f"sc --url URL status: median {s['median']} s, min {s['min']} s, max {s['max']} s "
                  f"over {s['n']} fresh processes, errors {s['errors']}")
    tg = r["target"]
    if tg["met"] is None:
        console.print(f"target (p99 ≤ {READ_TARGET_MS:g} ms for reads at concurrency 1): not measured")
    else:
        console.print(f"target (p99 ≤ {READ_TARGET_MS:g} ms for reads at concurrency 1): "
                      + ("[green]met[/]" if tg["met"] else "[red]NOT met[/]")
                      + f" {tg['read_p99_ms_at_c1']}")
    console.print(f"written: {out / 'api.json'}, {out / 'api.png'}")
