"""Benchmarks that print numbers: `sc bench reaction` (and friends later).

Reaction: a guarded real-cgroup container gets repeated CPU steps (idle → N cores →
idle). For each step we measure, by reading the cgroup files from this process:
(a) step start → quota raised, (b) step end → quota lowered. Two timing profiles run
in the same invocation on the same machine: ours (the defaults) and the original's
(window 10 s, delay 10 s, 2 events up / 6 down, Scaler ticking every 5 s, reference
§9), so the ratio is measured, not assumed.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any, Callable

from sc_actors.settings import ORIGINAL_PROFILE, GuardianSettings, ScalerSettings

BENCH_PARENT = "sc-bench"
REPO = Path(__file__).resolve().parent.parent


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(xs)

    def p(q: float) -> float:
        k = (len(s) - 1) * q
        lo, hi = int(k), min(int(k) + 1, len(s) - 1)
        return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 3)

    return {"n": len(s), "p50": p(0.5), "p95": p(0.95), "p99": p(0.99), "max": round(s[-1], 3)}


def _poll(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.02) -> float | None:
    """Seconds until `predicate` holds, or None on time-out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval_s)
    return None


def _set_profile(db: Any, profile: dict[str, dict[str, Any]]) -> None:
    import ray

    for service, config in profile.items():
        ray.get(db.patch.remote("services", service, {f"config.{k}": v for k, v in config.items()}))


OURS = {
    "guardian": GuardianSettings().to_config(),
    "scaler": ScalerSettings().to_config(),
}


def reaction(steps: int = 20, original_steps: int = 3, cores: float = 1.0, out_dir: str = "bench-out",
             progress: Callable[[str], None] = print) -> dict[str, Any]:
    import ray

    from sc_actors.backends import make_backend
    from sc_actors.settings import NAMESPACE, container_scaler_name

    from .deploy import deploy, undeploy
    from .local import default_host_name, init_embedded

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    host = default_host_name()
    init_embedded(host, parent=BENCH_PARENT)
    backend = make_backend("auto", "/sys/fs/cgroup", BENCH_PARENT)
    name = "bench-reaction"
    results: dict[str, Any] = {"machine": machine(), "steps": {}, "config": {}}
    load: subprocess.Popen | None = None
    try:
        actors = deploy(tempfile.mkdtemp(prefix="sc-bench-"), node_defaults={"parent": BENCH_PARENT})
        db, scaler = actors["statedb"], actors["scaler"]
        node = ray.get_actor(container_scaler_name(host), namespace=NAMESPACE)
        backend.remove(name)
        ray.get(node.create_container.remote(name))
        ray.get(scaler.subscribe_container.remote({
            "name": name, "host": host, "guard": True,
            "resources": {"cpu": {"min": 25, "current": 50, "max": 200, "guard": True},
                          "mem": {"min": 64, "current": 256, "max": 512, "guard": False}}}))
        quota = lambda: backend.read_limits(name).cpu_allowance_limit  # noqa: E731
        for label, profile, n in (("ours", OURS, steps), ("original", ORIGINAL_PROFILE, original_steps)):
            if n <= 0:
                continue
            _set_profile(db, profile)
            results["config"][label] = profile
            up_timeout = 20.0 if label == "ours" else 120.0
            down_timeout = 30.0 if label == "ours" else 240.0
            # Start from the floor: wait until the limit stops moving.
            _settle(quota, 2.0 if label == "ours" else 25.0, down_timeout)
            ups, downs = [], []
            for i in range(n):
                base = quota()
                load = subprocess.Popen([sys.executable, "-m", "cluster.load", "--phases", f"{cores * 100:g}:3600"],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
                ray.get(node.attach.remote(name, load.pid))
                assert load.stdin is not None
                load.stdin.write("go\n")
                load.stdin.flush()
                up = _poll(lambda: quota() > base, up_timeout)
                # Let the limit reach its level for this demand before the step ends.
                _settle(quota, 2.0 if label == "ours" else 25.0, up_timeout)
                top = quota()
                load.kill()
                load.wait()
                load = None
                down = _poll(lambda: quota() < top, down_timeout)
                _settle(quota, 2.0 if label == "ours" else 25.0, down_timeout)
                if up is not None:
                    ups.append(round(up, 3))
                if down is not None:
                    downs.append(round(down, 3))
                progress(f"{label} step {i + 1}/{n}: up {_s(up)} (→{top:g}), down {_s(down)} (→{quota():g})")
            results["steps"][label] = {"up_s": ups, "down_s": downs,
                                       "up": percentiles(ups), "down": percentiles(downs)}
        o, g = results["steps"].get("ours"), results["steps"].get("original")
        if o and g and o["up"]["p50"] and g["up"]["p50"]:
            results["speedup_up_p50"] = round(g["up"]["p50"] / o["up"]["p50"], 1)
        if o and g and o["down"]["p50"] and g["down"]["p50"]:
            results["speedup_down_p50"] = round(g["down"]["p50"] / o["down"]["p50"], 1)
        (out / "reaction.json").write_text(json.dumps(results, indent=2))
        _plot_reaction(results, out / "reaction.png")
        return results
    finally:
        if load is not None and load.poll() is None:
            load.kill()
        backend.remove(name)
        try:
            undeploy()
        finally:
            ray.shutdown()


def _s(x: float | None) -> str:
    return "timeout" if x is None else f"{x:.2f}s"


def _settle(read: Callable[[], float], quiet_s: float, timeout_s: float) -> None:
    """Wait until `read()` has not changed for `quiet_s` (or `timeout_s` passes)."""
    t0 = time.monotonic()
    last, since = read(), time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        v = read()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)


def _plot_reaction(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels, data = [], []
    for profile, r in results["steps"].items():
        for kind in ("up", "down"):
            if r[f"{kind}_s"]:
                labels.append(f"{profile}\nscale-{kind}")
                data.append(r[f"{kind}_s"])
    fig, ax = plt.subplots(figsize=(8, 4.5))
    ax.boxplot(data, tick_labels=labels, showfliers=True)
    ax.set_yscale("log")
    ax.set_ylabel("reaction time (s, log scale)")
    ax.set_title("Reaction to CPU steps, read from the cgroup files")
    ax.grid(alpha=0.3, axis="y")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


# ---------------------------------------------------------------------------- scale


def _actor_pids(names: list[str]) -> dict[str, int]:
    import ray

    from sc_actors.settings import NAMESPACE

    out = {}
    for n in names:
        try:
            a = ray.get_actor(n, namespace=NAMESPACE)
            out[n] = ray.get(a.__ray_call__.remote(lambda self: os.getpid()), timeout=30)
        except Exception:
            pass
    return out


def _cpu_rss(pids: dict[str, int]) -> tuple[float, float]:
    """Total CPU seconds and RSS MiB of these processes."""
    import psutil

    cpu = rss = 0.0
    for pid in pids.values():
        try:
            p = psutil.Process(pid)
            t = p.cpu_times()
            cpu += t.user + t.system
            rss += p.memory_info().rss / 2**20
        except psutil.Error:
            pass
    return cpu, rss


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
        cmap = host.resources["cpu"].core_usage_mapping
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


def scale(sizes: tuple[int, ...] = (100, 1000, 10000), nodes: int = 3, window_s: float = 1.0,
          duration_s: float = 30.0, out_dir: str = "bench-out",
          progress: Callable[[str], None] = print) -> dict[str, Any]:
    """N simulated containers over `nodes` ContainerScalers; control-plane cost per window."""
    import ray
    from ray.cluster_utils import Cluster

    from sc_actors.settings import (
        GUARDIAN_NAME,
        NAMESPACE,
        SCALER_NAME,
        STATEDB_NAME,
        STRUCTURES_SNAPSHOTER_NAME,
        container_scaler_name,
    )

    from .deploy import deploy, undeploy

    os.environ["RAY_AUTH_MODE"] = "disabled"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "config": {"nodes": nodes, "window_s": window_s,
                                                                "duration_s": duration_s}, "runs": {}}
    for n in sizes:
        cluster = Cluster(initialize_head=True, head_node_args=dict(
            num_cpus=2, object_store_memory=150 * 1024**2, include_dashboard=False,
            labels={"sc_role": "head"}))
        hosts = [f"sim{i}" for i in range(nodes)]
        for h in hosts:
            cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2,
                             labels={"sc_host": h, "sc_backend": "synthetic", "sc_cgroup_parent": h})
        cluster.wait_for_nodes()
        ray.init(address=cluster.address, log_to_driver=False, logging_level="ERROR")
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
            names = [STATEDB_NAME, GUARDIAN_NAME, SCALER_NAME, STRUCTURES_SNAPSHOTER_NAME] + [
                container_scaler_name(h) for h in hosts]
            pids = _actor_pids(names)
            g0 = ray.get(actors["guardian"].ping.remote())["windows"]
            seq0 = ray.get(db.ping.remote())["seq"]
            cpu0, _ = _cpu_rss(pids)
            t_start = time.monotonic()
            time.sleep(duration_s)  # the benchmark's measuring interval, not a synchronisation
            elapsed = time.monotonic() - t_start
            cpu1, rss = _cpu_rss(pids)
            g = ray.get(actors["guardian"].ping.remote())
            seq1 = ray.get(db.ping.remote())["seq"]
            reqs = ray.get(db.recent_requests.remote(None, 20000))
            lat = [r["applied_at"] - r["timestamp"] for r in reqs if r.get("outcome") in ("applied", "trimmed")]
            windows = g["windows"] - g0
            run = {
                "containers": n,
                "guardian_epoch_s": percentiles(g["epoch_s"]),
                "guardian_windows_per_node_per_s": round(windows / nodes / elapsed, 2),
                "request_to_applied_s": percentiles(lat),
                "requests_applied": len(lat),
                "control_plane_cpu_pct": round(100 * (cpu1 - cpu0) / elapsed, 1),
                "control_plane_rss_mib": round(rss, 0),
                "statedb_writes_per_s": round((seq1 - seq0) / elapsed, 1),
                "scaler_outcomes": ray.get(actors["scaler"].ping.remote())["outcomes"],
                "node_lagged_windows": sum(ray.get(ray.get_actor(container_scaler_name(h), namespace=NAMESPACE)
                                                   .ping.remote())["lagged_windows"] for h in hosts),
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
    axes[1].plot(ns, [runs[str(n)]["control_plane_cpu_pct"] for n in ns], "o-")
    axes[1].axhline(100, ls="--", c="gray")
    axes[1].set(title="control-plane CPU (% of one core)", xscale="log", xlabel="containers")
    axes[2].plot(ns, [runs[str(n)]["request_to_applied_s"]["p99"] or 0 for n in ns], "o-", label="p99")
    axes[2].plot(ns, [runs[str(n)]["request_to_applied_s"]["p50"] or 0 for n in ns], "o-", label="p50")
    axes[2].set(title="request → applied", ylabel="s", xscale="log", xlabel="containers")
    axes[2].legend()
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
