"""`sc bench scale`: control-plane cost for N simulated containers over M nodes.

The synthetic backend gives each container a seeded random walk with bursts; each
simulated node is a Ray node of a local cluster with its own ContainerScaler.
"""
from __future__ import annotations

import json
import logging
import os
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, cast

import typer
from rich.table import Table

from ..tables import print_table
from .common import console, machine, out_dir, percentiles, positive_ints



def _node_ping(name: str) -> dict[str, Any]:
    """A ContainerScaler's `ping` answer."""
    import ray

    from sc_actors.settings import NAMESPACE

    # NOTE: Ray's stubs type `get` of an untyped actor call as a list; it is the answer.
    return cast(dict[str, Any], ray.get(ray.get_actor(name, namespace=NAMESPACE).ping.remote()))


def _actor_pids(names: list[str]) -> dict[str, int]:
    import ray

    from sc_actors.settings import NAMESPACE

    out: dict[str, int] = {}
    for n in names:
        try:
            a = ray.get_actor(n, namespace=NAMESPACE)
            out[n] = cast(int, ray.get(a.__ray_call__.remote(lambda self: os.getpid()), timeout=30))
        except Exception:
            pass
    return out


def _cpu_rss(pids: dict[str, int]) -> dict[str, tuple[float, float]]:
    """CPU seconds and RSS MiB of each of these processes (by actor name)."""
    import psutil

    out = {}
    for name, pid in pids.items():
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            out[name] = (t.user + t.system, p.memory_info().rss / 2**20)
        except psutil.Error:
            pass
    return out


def _bulk_subscribe(db: Any, hosts: dict[str, list[str]], cpu: tuple[float, float, float],
                    mem: tuple[float, float, float]) -> None:
    """Subscribe many simulated containers at once: plan cores locally, write in chunks.

    The per-container `subscribe_container` path asks the node for its container
    list each time, which is what a person subscribing one container wants and a
    10 000-container set-up does not.
    """
    import ray

    from sc_actors.model import Host
    from sc_actors.policy.cores import allocate_cores, core_distribution
    from sc_actors.settings import NAMESPACE, container_scaler_name

    for host_name, names in hosts.items():
        host = Host.model_validate(ray.get(db.get.remote("structures", host_name)))
        dist = core_distribution(host.topology, "Group_PP_LL")  # type: ignore[attr-defined]
        cmap = host.resources["cpu"].core_usage_mapping or {}  # the Host validator fills it
        docs, cpu_nums = [], {}
        for name in names:
            alloc = allocate_cores(cmap, name, cpu[1], dist)
            cmap = alloc.core_map
            cpu_nums[name] = alloc.cpu_num
            docs.append(("structures", {"name": name, "host": host_name, "subtype": "container", "guard": True,
                                        "resources": {"cpu": {"min": cpu[0], "current": cpu[1], "max": cpu[2],
                                                              "guard": True},
                                                      "mem": {"min": mem[0], "current": mem[1], "max": mem[2],
                                                              "guard": True}}}))
            docs.append(("limits", {"name": name, "resources": {"cpu": {"boundary": 10}, "mem": {"boundary": 10}}}))
        host.resources["cpu"].core_usage_mapping = cmap
        host.resources["cpu"].free -= cpu[1] * len(names)
        host.resources["mem"].free -= mem[1] * len(names)
        node = ray.get_actor(container_scaler_name(host_name), namespace=NAMESPACE)

        def setup(self: Any, cpu_nums: dict[str, str], cpu_current: float, mem_current: float) -> int:
            from sc_actors.model import LimitChange

            for n, cores in cpu_nums.items():
                self.backend.create(n)
                self.backend.write_limits(n, LimitChange(cpu_allowance_limit=cpu_current, cpu_num=cores,
                                                         mem_limit=mem_current))
            return len(cpu_nums)

        ray.get(node.__ray_call__.remote(setup, cpu_nums, cpu[1], mem[1]))
        for i in range(0, len(docs), 2000):
            ray.get(db.transact.remote(puts=docs[i:i + 2000]))
        ray.get(db.put.remote("structures", host.model_dump(mode="json", exclude_none=True)))


def simulated_cluster(hosts: list[str]) -> Any:
    """A local Ray cluster with one synthetic-backend node per host name, and this
    process connected to it; `cluster.shutdown()` (after `ray.shutdown()`) ends it."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, object_store_memory=150 * 1024**2, include_dashboard=False, labels={"sc_role": "head"}))
    for h in hosts:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2,
                         labels={"sc_host": h, "sc_backend": "synthetic", "sc_cgroup_parent": h})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    return cluster


def scale(sizes: tuple[int, ...] = (100, 1000, 10000), nodes: int = 3, window_s: float = 1.0,
          duration_s: float = 30.0, warmup_s: float = 5.0, out_dir: str = "bench-out",
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """N simulated containers over `nodes` ContainerScalers; control-plane cost per window.

    The control plane is every actor of `placement.CONTROL_PLANE` (StateDB, Guardian,
    Scaler, snapshoters, Membership); the ContainerScalers are node agents, which in a
    real cluster run on the hosts they control, and are reported apart.
    """
    import ray

    from sc_actors.settings import NAMESPACE, container_scaler_name

    from cluster.placement import CONTROL_PLANE

    from cluster.deploy import deploy, undeploy

    os.environ["RAY_AUTH_MODE"] = "disabled"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "config": {"nodes": nodes, "window_s": window_s,
                                                                "duration_s": duration_s, "warmup_s": warmup_s},
                               "runs": {}}
    for n in sizes:
        hosts = [f"sim{i}" for i in range(nodes)]
        cluster = simulated_cluster(hosts)
        try:
            # One core per simulated container on average: room for bursts, not for all at max.
            cores = max(8, -(-n // nodes))
            actors = deploy(tempfile.mkdtemp(prefix="sc-scale-"), node_defaults={"synthetic_cores": cores})
            db = actors["statedb"]
            ray.get(db.patch.remote("services", "guardian", {"config.WINDOW_TIMELAPSE": window_s,
                                                             "config.EVENT_TIMEOUT": max(10 * window_s, 4)}))
            per_host = {h: [f"{h}-c{i}" for i in range(n * k // nodes, n * (k + 1) // nodes)]
                        for k, h in enumerate(hosts)}
            t0 = time.monotonic()
            _bulk_subscribe(db, per_host, cpu=(10, 50, 200), mem=(64, 256, 2048))
            progress(f"N={n}: {n} containers subscribed in {time.monotonic() - t0:.1f}s; running {duration_s:g}s")
            control = list(CONTROL_PLANE)
            agents = [container_scaler_name(h) for h in hosts]
            pids = _actor_pids(control + agents)
            time.sleep(warmup_s)  # the first windows fetch and prepare every container once
            g0 = ray.get(actors["guardian"].ping.remote())["windows"]
            seq0 = ray.get(db.ping.remote())["seq"]
            usage0 = _cpu_rss(pids)
            t_start, wall_start = time.monotonic(), time.time()
            time.sleep(duration_s)  # the benchmark's measuring interval, not a synchronisation
            elapsed = time.monotonic() - t_start
            usage1 = _cpu_rss(pids)
            progress(f"N={n}: measured; collecting figures")
            g = ray.get(actors["guardian"].ping.remote(1000), timeout=120)
            seq1 = ray.get(db.ping.remote(), timeout=120)["seq"]
            reqs = ray.get(db.recent_requests.remote(None, 100_000), timeout=120)
            lat = [r["applied_at"] - r["timestamp"] for r in reqs
                   if r.get("outcome") in ("applied", "trimmed") and r["applied_at"] >= wall_start]
            windows = g["windows"] - g0
            cpu_pct = {a: round(100 * (usage1[a][0] - usage0[a][0]) / elapsed, 1) for a in usage1 if a in usage0}
            run = {
                "containers": n,
                "guardian_epoch_s": percentiles(g["epoch_s"][-windows:] if windows > 0 else []),
                "guardian_windows_per_node_per_s": round(windows / nodes / elapsed, 2),
                "request_to_applied_s": percentiles(lat),
                "requests_applied": len(lat),
                "control_plane_cpu_pct": round(sum(v for a, v in cpu_pct.items() if a in control), 1),
                "control_plane_rss_mib": round(sum(usage1[a][1] for a in control if a in usage1), 0),
                "node_agents_cpu_pct": round(sum(v for a, v in cpu_pct.items() if a in agents), 1),
                "cpu_pct_by_actor": cpu_pct,
                "statedb_writes_per_s": round((seq1 - seq0) / elapsed, 1),
                "scaler_outcomes": ray.get(actors["scaler"].ping.remote())["outcomes"],
                "node_lagged_windows": sum(_node_ping(container_scaler_name(h))["lagged_windows"] for h in hosts),
            }
            run["keeps_up"] = bool(run["guardian_windows_per_node_per_s"] >= 0.9 / window_s
                                   and (run["guardian_epoch_s"]["p99"] or 0) <= window_s)
            results["runs"][str(n)] = run
            progress(f"N={n}: {json.dumps(run)}")
            undeploy(hosts)
        finally:
            ray.shutdown()
            cluster.shutdown()
    (out / "scale.json").write_text(json.dumps(results, indent=2))
    _plot_scale(results, out / "scale.png")
    return results


def _plot_scale(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    runs = results["runs"]
    ns = [int(k) for k in runs]
    fig, axes = plt.subplots(1, 3, figsize=(13, 4))
    axes[0].plot(ns, [runs[str(n)]["guardian_epoch_s"]["p50"] for n in ns], "o-", label="p50")
    axes[0].plot(ns, [runs[str(n)]["guardian_epoch_s"]["p99"] for n in ns], "o-", label="p99")
    axes[0].axhline(results["config"]["window_s"], ls="--", c="gray", label="window")
    axes[0].set(title="Guardian epoch (per node batch)", ylabel="s", xscale="log", xlabel="containers")
    axes[0].legend()
    # CPU by actor, stacked, one bar per size; node agents hatched (they run on the hosts).
    actors = sorted({a for run in runs.values() for a in run["cpu_pct_by_actor"]},
                    key=lambda a: (a.startswith("container-scaler"), a))
    bottom = [0.0] * len(ns)
    for a in actors:
        vals = [runs[str(n)]["cpu_pct_by_actor"].get(a, 0.0) for n in ns]
        axes[1].bar([str(n) for n in ns], vals, bottom=bottom, label=a,
                    hatch="//" if a.startswith("container-scaler") else None)
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[1].axhline(100, ls="--", c="gray")
    axes[1].set(title="CPU by actor (% of one core)", xlabel="containers")
    axes[1].legend(fontsize=6)
    for q in ("p99", "p50"):
        pts = [(n, runs[str(n)]["request_to_applied_s"][q]) for n in ns]
        pts = [(n, v) for n, v in pts if v is not None]  # none measured: no point, not a zero
        axes[2].plot([n for n, _ in pts], [v for _, v in pts], "o-", label=q)
    for n in ns:
        if runs[str(n)]["request_to_applied_s"]["p50"] is None:
            axes[2].annotate(f"N={n}: none applied\nin the window", (n, 0), fontsize=7, ha="right")
    axes[2].set(title="request → applied", ylabel="s", xscale="log", xlabel="containers")
    axes[2].legend()
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def scale_tables(runs: dict[str, dict[str, Any]]) -> tuple[Table, Table]:
    """The figures of each size, and the CPU of each actor by size."""
    t = Table(title="scale (CPU in % of one core; control plane = every actor but the node agents)")
    for col in ("containers", "epoch p50 s", "epoch p99 s", "windows/node/s", "req→applied p50 s", "p99 s",
                "control CPU %", "control RSS MiB", "node agents CPU %", "writes/s", "keeps up"):
        t.add_column(col, justify="right")
    for n, run in runs.items():
        t.add_row(n, str(run["guardian_epoch_s"]["p50"]), str(run["guardian_epoch_s"]["p99"]),
                  str(run["guardian_windows_per_node_per_s"]),
                  str(run["request_to_applied_s"]["p50"]), str(run["request_to_applied_s"]["p99"]),
                  str(run["control_plane_cpu_pct"]), str(run["control_plane_rss_mib"]),
                  str(run["node_agents_cpu_pct"]), str(run["statedb_writes_per_s"]),
                  "yes" if run["keeps_up"] else "NO")
    by_actor = Table(title="CPU % of one core by actor")
    by_actor.add_column("actor")
    for n in runs:
        by_actor.add_column(f"N={n}", justify="right")
    actors = sorted({a for run in runs.values() for a in run["cpu_pct_by_actor"]})
    for a in actors:
        by_actor.add_row(a, *(str(run["cpu_pct_by_actor"].get(a, "")) for run in runs.values()))
    return t, by_actor


def command(
    sizes: str = typer.Option("100,1000,10000", help="numbers of simulated containers, comma-separated"),
    nodes: int = typer.Option(3, min=1, help="simulated Ray nodes (one ContainerScaler each)"),
    window: float = typer.Option(1.0, min=0.1, help="Guardian window, seconds"),
    duration: float = typer.Option(30.0, min=5, help="measured seconds per size"),
    warmup: float = typer.Option(5.0, min=0, help="seconds after subscribing before measuring"),
    out: Path = typer.Option(Path("bench-out"), help="where scale.json and scale.png go"),
) -> None:
    """Control-plane cost for N simulated containers over M nodes (synthetic backend)."""
    ns = positive_ints("--sizes", sizes)
    r = scale(sizes=ns, nodes=nodes, window_s=window, duration_s=duration, warmup_s=warmup, out_dir=out_dir(out),
              progress=lambda m: console.print(f"  {m}"))
    console.print(f"machine: {r['machine']}  config: {r['config']}")
    for t in scale_tables(r["runs"]):
        print_table(console, t)
    console.print(f"written: {out / 'scale.json'}, {out / 'scale.png'}")
