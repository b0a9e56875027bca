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
import statistics
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
