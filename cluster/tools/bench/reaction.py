"""`sc bench reaction`: how fast a limit follows a CPU step, ours vs the original's timing.

A guarded real-cgroup container gets repeated CPU steps (idle → N cores → idle). For
each step we measure, by reading the cgroup files from this process: (a) step start →
quota raised, (b) step end → quota lowered. Two timing profiles run in the same
invocation on the same machine: ours (the defaults) and the original's (window 10 s,
delay 10 s, 2 events up / 6 down, Scaler ticking every 5 s, reference §9), so the
ratio is measured, not assumed.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any, Callable

import typer
from rich.table import Table


from .common import REPO, console, fail, fmt_s, machine, out_dir, percentiles, poll_until, set_profile, settle

BENCH_PARENT = "sc-bench"


def reaction(steps: int = 20, original_steps: int = 3, cores: float = 1.0, out_dir: str = "bench-out",
             progress: Callable[[str], None] = print) -> dict[str, Any]:
    import ray

    from sc_actors.backends import make_backend
    from sc_actors.settings import NAMESPACE, container_scaler_name

    from cluster.deploy import deploy, undeploy
    from cluster.local import default_host_name, init_embedded

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    host = default_host_name()
    init_embedded(host, parent=BENCH_PARENT)
    backend = make_backend("auto", "/sys/fs/cgroup", BENCH_PARENT)
    name = "bench-reaction"
    results: dict[str, Any] = {"machine": machine(), "steps": {}, "config": {}}
    load: subprocess.Popen[str] | None = None
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
        # ours: the shipped default (adaptive profile, our timing); original: the original's
        # rules and limits at the original's timing.
        for label, profile, n in (("ours", "adaptive", steps), ("original", "original", original_steps)):
            if n <= 0:
                continue
            results["config"][label] = {"profile": profile,
                                        **set_profile(db, profile, timing="ours" if label == "ours" else "original")}
            up_timeout = 20.0 if label == "ours" else 120.0
            down_timeout = 30.0 if label == "ours" else 240.0
            # Start from the floor: wait until the limit stops moving.
            settle(quota, 2.0 if label == "ours" else 25.0, down_timeout)
            ups, downs = [], []
            for i in range(n):
                base = quota()
                load = subprocess.Popen([sys.executable, "-m", "cluster.tools.load", "--phases", f"{cores * 100:g}:3600"],
                                        stdin=subprocess.PIPE, stdout=subprocess.DEVNULL, text=True, cwd=REPO)
                ray.get(node.attach.remote(name, load.pid))
                assert load.stdin is not None
                load.stdin.write("go\n")
                load.stdin.flush()
                up = poll_until(lambda: quota() > base, up_timeout)
                # Let the limit reach its level for this demand before the step ends.
                settle(quota, 2.0 if label == "ours" else 25.0, up_timeout)
                top = quota()
                load.kill()
                load.wait()
                load = None
                down = poll_until(lambda: quota() < top, down_timeout)
                settle(quota, 2.0 if label == "ours" else 25.0, down_timeout)
                if up is not None:
                    ups.append(round(up, 3))
                if down is not None:
                    downs.append(round(down, 3))
                progress(f"{label} step {i + 1}/{n}: up {fmt_s(up)} (→{top:g}), down {fmt_s(down)} (→{quota():g})")
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


def command(
    steps: int = typer.Option(20, min=1, help="CPU steps with our default timing"),
    original_steps: int = typer.Option(3, min=0, help="CPU steps with the original's timing (about 2 min each)"),
    cores: float = typer.Option(1.0, min=0.2, max=4, help="demand of each step, in cores"),
    out: Path = typer.Option(Path("bench-out"), help="where reaction.json and reaction.png go"),
) -> None:
    """Step start → quota raised and step end → quota lowered, ours vs the original's timing."""
    from ..demo import cgroups_writable

    reason = cgroups_writable()
    if reason:
        fail(reason)
    r = reaction(steps=steps, original_steps=original_steps, cores=cores, out_dir=out_dir(out),
                 progress=lambda m: console.print(f"  {m}"))
    console.print(f"machine: {r['machine']}")
    console.print(f"config: {r['config']}  steps of {cores:g} cores")
    t = Table(title="reaction (s), read from the cgroup files")
    for col in ("profile", "direction", "n", "p50", "p95", "p99", "max"):
        t.add_column(col, justify="right")
    for profile, res in r["steps"].items():
        for kind in ("up", "down"):
            p = res[kind]
            t.add_row(profile, kind, *(str(p[k]) for k in ("n", "p50", "p95", "p99", "max")))
    console.print(t)
    for key in ("speedup_up_p50", "speedup_down_p50"):
        if key in r:
            console.print(f"{key}: {r[key]}×")
    console.print(f"written: {out / 'reaction.json'}, {out / 'reaction.png'}")
