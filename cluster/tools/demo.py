"""`sc demo`: two real-cgroup containers whose CPU limit follows a phased load.

On an embedded local Ray: deploy the control plane, create two plain-cgroup
containers under `<cgroup root>/<controller>/serverless/`, start a load process in
each (idle → burst of ~1.5 cores → medium → idle), subscribe and guard them, show a
live table, then report the scale-up and scale-down reaction times (measured from
the cgroup files, not the control plane's log), write one PNG per container and the
series as Parquet, and remove the cgroups and processes — also on Ctrl-C.

With `backend="lxc"` (`sc demo --backend lxc`, `run_lxc_demo`) the two containers
are busybox LXC containers (offline template, no network), the node scales them
through the LXC backend, the same phases run inside them as a shell duty cycle
started with lxc-attach (`LXC_LOAD_SH`), and the containers are destroyed at the end.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.table import Table

DEMO_PARENT = "serverless"

DEMO_LOCK = Path("/tmp/sc-demo.lock")
"""Held while a demo runs: two demos on one machine would remove each other's containers."""


class DemoBusy(RuntimeError):
    """Another demo runs on this machine."""


def _exclusive(path: Path = DEMO_LOCK) -> Any:
    """The demo's lock, held until the returned file is closed; DemoBusy if another holds it."""
    import fcntl

    f = open(path, "a+")
    try:
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        f.close()
        raise DemoBusy(f"another `sc demo` is running on this machine (its containers demo-a and demo-b are "
                       f"under the same cgroup parent {DEMO_PARENT!r}); wait until it ends") from None
    return f


@dataclass
class DemoContainer:
    name: str
    phases: list[tuple[float, float]]
    cpu: tuple[float, float, float] = (25, 50, 200)  # min, current, max (shares)
    mem: tuple[float, float, float] = (64, 256, 512)  # MiB
    proc: subprocess.Popen[str] | None = None
    phase_starts: list[dict[str, Any]] = field(default_factory=list)


def default_containers(scale: float = 1.0) -> list[DemoContainer]:
    s = scale
    return [
        DemoContainer("demo-a", [(0, 8 * s), (150, 22 * s), (60, 20 * s), (0, 30 * s)]),
        DemoContainer("demo-b", [(0, 37 * s), (120, 18 * s), (50, 14 * s), (0, 18 * s)]),
    ]


def cgroups_writable(root: str = "/sys/fs/cgroup") -> str | None:
    """None when we can create cgroups here, else the reason why not."""
    if os.geteuid() != 0:
        return "sc demo needs root: it creates cgroups under /sys/fs/cgroup (run it with sudo)"
    for probe in (f"{root}/cpu", f"{root}/unified", root):
        if os.path.isdir(probe) and os.access(probe, os.W_OK):
            return None
    return f"cgroups under {root} are not writable"


def container_doc(c: DemoContainer, host: str) -> dict[str, Any]:
    return {
        "name": c.name,
        "host": host,
        "guard": False,
        "resources": {
            "cpu": {"min": c.cpu[0], "current": c.cpu[1], "max": c.cpu[2], "guard": False},
            "mem": {"min": c.mem[0], "current": c.mem[1], "max": c.mem[2], "guard": False},
        },
    }


def start_load(c: DemoContainer, node: Any) -> None:
    import ray

    c.proc = subprocess.Popen(
        [sys.executable, "-m", "cluster.tools.load", "--phases", ",".join(f"{d:g}:{s:g}" for d, s in c.phases)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        cwd=str(Path(__file__).resolve().parents[2]),
    )
    ray.get(node.attach.remote(c.name, c.proc.pid))

    def read_phases() -> None:
        assert c.proc is not None and c.proc.stdout is not None
        for line in c.proc.stdout:
            try:
                c.phase_starts.append(json.loads(line))
            except ValueError:
                pass

    threading.Thread(target=read_phases, daemon=True).start()


LXC_LOAD_SH = r"""
worker() {  # $1: percent of one core (1-100), $2: end in centiseconds of /proc/uptime
  while :; do
    read u _ < /proc/uptime; t=${u%.*}${u#*.}
    [ "$t" -ge "$2" ] && return
    b=$((t + $1 / 5))
    while [ "$t" -lt "$b" ]; do read u _ < /proc/uptime; t=${u%.*}${u#*.}; done
    [ "$1" -lt 100 ] && usleep $(( (100 - $1) * 2000 ))
  done
}
read go
read u _ < /proc/uptime; start=${u%.*}${u#*.}
i=0
for p in "$@"; do
  d=${p%:*}; end=$((start + ${p#*:}))
  echo "phase $i $d"
  n=0
  while [ $((n * 100)) -lt "$d" ]; do
    pct=$((d - n * 100)); [ "$pct" -gt 100 ] && pct=100
    worker "$pct" "$end" &
    n=$((n + 1))
  done
  while :; do read u _ < /proc/uptime; t=${u%.*}${u#*.}; [ "$t" -ge "$end" ] && break; usleep 100000; done
  wait
  start=$end; i=$((i + 1))
done
echo end
"""
"""The phased load inside a busybox container (busybox has no Python): `sh -c LXC_LOAD_SH
sh DEMAND:CS …`, demand in shares, duration in centiseconds. After a line on stdin it
runs each phase with one worker per started core; a worker is busy `pct`% of each
200 ms slice (busy-waiting on /proc/uptime, then usleep). It prints `phase I DEMAND`
at each start and `end` at the end; the host stamps the lines as they arrive."""


def start_load_lxc(c: DemoContainer, backend: Any) -> None:
    """Run the phases inside LXC container `c` (lxc-attach); phase starts as `start_load` records them."""
    phases = [f"{round(d)}:{round(s * 100)}" for d, s in c.phases]
    c.proc = subprocess.Popen(
        backend.attach_argv(c.name, ["sh", "-c", LXC_LOAD_SH, "sh", *phases]),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )

    def read_phases() -> None:
        assert c.proc is not None and c.proc.stdout is not None
        for line in c.proc.stdout:
            words, now = line.split(), time.time()
            if len(words) == 3 and words[0] == "phase":
                c.phase_starts.append({"phase": int(words[1]), "demand": float(words[2]), "t": now})
            elif words == ["end"]:
                c.phase_starts.append({"phase": len(c.phases), "demand": 0, "t": now, "end": True})

    threading.Thread(target=read_phases, daemon=True).start()


def lxc_ready() -> str | None:
    """None when this machine can run the LXC demo, else the reason why not."""
    import shutil

    if os.geteuid() != 0:
        return "sc demo --backend lxc needs root: it creates LXC containers (run it with sudo)"
    missing = [t for t in ("lxc-create", "lxc-start", "lxc-attach", "lxc-destroy", "busybox") if not shutil.which(t)]
    if missing:
        return f"missing {', '.join(missing)}: install the Debian packages lxc and busybox-static"
    try:
        import lxc  # noqa: F401
    except ImportError:
        return "the `lxc` Python bindings are missing: apt install lxc-dev, then pip install -e '.[lxc]'"
    return None


def reactions(samples: list[dict[str, Any]], phase_starts: list[dict[str, Any]]) -> dict[str, list[float]]:
    """Scale-up and scale-down reaction times, seconds, from sampled limits.

    Up: for each phase whose demand rises, the time from its start to the first
    sample where the CPU limit is above the limit at its start. Down: for each
    phase whose demand falls, the time to the first sample below it.
    """
    out: dict[str, list[float]] = {"up": [], "down": []}
    for i in range(1, len(phase_starts)):
        prev, cur = phase_starts[i - 1], phase_starts[i]
        if cur.get("end"):
            break
        t0 = cur["t"]
        t_end = phase_starts[i + 1]["t"] if i + 1 < len(phase_starts) else float("inf")
        before = [s for s in samples if s["t"] <= t0]
        if not before:
            continue
        base = before[-1]["cpu_limit"]
        rising = cur["demand"] > prev["demand"]
        for s in samples:
            if s["t"] <= t0 or s["t"] > t_end:
                continue
            if (rising and s["cpu_limit"] > base) or (not rising and s["cpu_limit"] < base):
                out["up" if rising else "down"].append(round(s["t"] - t0, 2))
                break
    return out


def plot(name: str, samples: list[dict[str, Any]], path: Path, resource: str = "cpu") -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = samples[0]["t"]
    t = [s["t"] - t0 for s in samples]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for key, style, label in (
        ("max", ":", "max"),
        ("current", "-", "current (limit)"),
        ("upper", "--", "upper"),
        ("lower", "--", "lower"),
        ("min", ":", "min"),
    ):
        ax.plot(t, [s[f"{resource}_{key}"] for s in samples], style, label=label, linewidth=1.6)
    ax.fill_between(t, [s[f"{resource}_usage"] or 0 for s in samples], alpha=0.35, label="usage", color="tab:green")
    unit = "shares (100 = 1 core)" if resource == "cpu" else "MiB"
    ax.set(xlabel="time (s)", ylabel=f"{resource} {unit}", title=f"{name}: {resource} usage and limits")
    ax.legend(loc="upper right", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def write_parquet(rows: list[dict[str, Any]], path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(rows), path)


def _fmt(v: Any) -> str:
    return "-" if v is None else f"{v:.0f}"


def live_table(containers: list[Any], rows: list[dict[str, Any]], elapsed_s: float, total_s: float) -> Table:
    """The demo's live table: each container's demand, last usage and limits."""
    from rich.table import Table

    tb = Table(title=f"sc demo — {elapsed_s:4.0f}s / {total_s:.0f}s  (cpu in shares, mem in MiB)")
    for col in ("container", "demand", "cpu usage", "cpu limit", "upper", "lower", "min", "max",
                "mem usage", "mem limit"):
        tb.add_column(col, justify="right")
    for c in containers:
        last = next((r for r in reversed(rows) if r["structure"] == c.name), None)
        demand = c.phase_starts[-1]["demand"] if c.phase_starts else 0
        if last:
            tb.add_row(c.name, f"{demand:g}", *(_fmt(last[k]) for k in (
                "cpu_usage", "cpu_limit", "cpu_upper", "cpu_lower", "cpu_min", "cpu_max", "mem_usage",
                "mem_limit")))
    return tb


def run(duration_scale: float = 1.0, out_dir: str = "demo-out", live: bool = True,
        sample_s: float = 0.2, backend: str = "cgroup", observe: bool = False,
        api_port: int = 8000, dashboard_port: int = 8265) -> dict[str, Any]:
    """The demo; `backend` "cgroup" (plain cgroups, the default) or "lxc" (busybox LXC containers).

    `observe` also serves the Orchestrator API with its live `/ui` page and the Ray
    dashboard while the demo runs, on 127.0.0.1."""
    import ray
    from rich.console import Console
    from rich.live import Live
    from rich.table import Table

    from sc_actors.backends import make_backend

    from cluster.deploy import deploy, undeploy
    from cluster.local import default_host_name, init_embedded
    from .tables import fit

    console = Console()
    kind = backend
    if kind not in ("cgroup", "lxc"):
        raise ValueError(f"unknown demo backend {kind!r}: cgroup or lxc")
    reason = cgroups_writable() or (lxc_ready() if kind == "lxc" else None)
    if reason:
        raise PermissionError(reason)
    lock = _exclusive()
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    host = default_host_name()
    containers = default_containers(duration_scale)
    console.print(f"[bold]sc demo[/]: starting an embedded Ray on host [cyan]{host}[/] …")
    init_embedded(host, parent=DEMO_PARENT, dashboard_port=dashboard_port if observe else None)
    local_backend = make_backend("lxc") if kind == "lxc" else make_backend("auto", "/sys/fs/cgroup", DEMO_PARENT)
    state_dir = tempfile.mkdtemp(prefix="sc-demo-state-")
    rows: list[dict[str, Any]] = []
    try:
        defaults = {"parent": DEMO_PARENT, **({"backend": "lxc"} if kind == "lxc" else {})}
        shutil.rmtree(out / "timeseries", ignore_errors=True)  # this run's series only
        actors = deploy(state_dir, node_defaults=defaults, dataset_dir=str(out / "timeseries"),
                        progress=lambda m: console.print(f"  {m}"))
        db, scaler = actors["statedb"], actors["scaler"]
        if observe:
            from cluster.serve_deploy import deploy_api

            url = deploy_api("127.0.0.1", api_port, None)
            console.print(f"  live view: {url.rstrip('/')}/ui   Ray dashboard: http://127.0.0.1:{dashboard_port}"
                          f"/#/actors")
        from sc_actors.settings import NAMESPACE, container_scaler_name

        node = ray.get_actor(container_scaler_name(host), namespace=NAMESPACE)
        for c in containers:
            local_backend.remove(c.name)  # leftovers of an interrupted run
            ray.get(node.create_container.remote(c.name))
            if kind == "lxc":
                start_load_lxc(c, local_backend)
            else:
                start_load(c, node)
            ray.get(scaler.subscribe_container.remote(container_doc(c, host)))
            ray.get(db.patch.remote("structures", c.name,
                                    {"guard": True, "resources.cpu.guard": True, "resources.mem.guard": True}))
        console.print("  containers subscribed and guarded; load starts now")
        for c in containers:
            assert c.proc is not None and c.proc.stdin is not None
            c.proc.stdin.write("go\n")
            c.proc.stdin.flush()
        total = max(sum(s for _, s in c.phases) for c in containers) + 2
        t_start = time.time()

        def table() -> Table:
            return live_table(containers, rows, time.time() - t_start, total)

        # Fitted to the terminal's width: compact headers, or plain lines, never `conta…`.
        with Live(fit(console, table()), console=console, refresh_per_second=4, transient=not live) as lv:
            while time.time() - t_start < total:
                now = time.time()
                docs = ray.get([db.get.remote("structures", c.name) for c in containers])
                lims = ray.get([db.get.remote("limits", c.name) for c in containers])
                for c, d, lim in zip(containers, docs, lims):
                    real = local_backend.read_limits(c.name)
                    row = {"t": now, "structure": c.name, "cpu_limit": real.effective_cpu_limit,
                           "mem_limit": real.mem_limit}
                    for res in ("cpu", "mem"):
                        r, lr = d["resources"][res], lim["resources"].get(res, {})
                        for k in ("usage", "current", "max", "min"):
                            row[f"{res}_{k}"] = r.get(k)
                        row[f"{res}_upper"] = lr.get("upper")
                        row[f"{res}_lower"] = lr.get("lower")
                    rows.append(row)
                lv.update(fit(console, table()))
                time.sleep(max(0.0, sample_s - (time.time() - now)))
        summary: dict[str, Any] = {}
        for c in containers:
            samples = [r for r in rows if r["structure"] == c.name and r["cpu_upper"] is not None]
            rx = reactions(samples, c.phase_starts)
            png = out / f"{c.name}.png"
            plot(c.name, samples, png)
            plot(c.name, samples, out / f"{c.name}-mem.png", resource="mem")
            summary[c.name] = {"scale_up_s": rx["up"], "scale_down_s": rx["down"], "plot": str(png)}
        write_parquet(rows, out / "series.parquet")
        summary["parquet"] = str(out / "series.parquet")
        (out / "summary.json").write_text(json.dumps(summary, indent=2))
        return summary
    finally:
        for c in containers:
            if c.proc is not None and c.proc.poll() is None:
                c.proc.kill()
                c.proc.wait(timeout=5)
        for c in containers:
            try:
                local_backend.remove(c.name)
            except Exception as e:  # keep cleaning the others
                console.print(f"[yellow]could not remove container {c.name}: {e}[/]")
        try:
            undeploy()
        finally:
            ray.shutdown()
            lock.close()


def run_lxc_demo(duration_scale: float = 1.0, out_dir: str = "demo-out", live: bool = True) -> dict[str, Any]:
    """`sc demo --backend lxc`: the demo on two busybox LXC containers."""
    return run(duration_scale=duration_scale, out_dir=out_dir, live=live, backend="lxc")
