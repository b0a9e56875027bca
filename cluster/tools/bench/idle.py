"""`sc bench idle`: what the stack, and one controlled host, cost while nothing runs.

Brought up the way a user does: `sc up` starts a `ray start --head` and deploys the
control plane and the API (private `SC_HOME`, state dir, Ray temp dir and free ports,
so nothing collides with another Ray on the machine), then a second controlled host
joins as its own Ray node (`ray start --address … --labels sc_host=…`, as
`cluster/configs/ray-start.sh worker` does). No containers. Once that host's
ContainerScaler runs and a warm-up has passed, every process of the two Ray nodes
is sampled from /proc for `--seconds`:

- CPU: utime + stime from /proc/<pid>/stat, first to last sample, as % of one core;
- memory: PSS from /proc/<pid>/smaps_rollup (shared pages split among their users),
  the mean of the samples.

Groups: the whole stack, the head node's processes, and the controlled host's own
(raylet, dashboard agent, runtime env agent, log monitor if any, its ContainerScaler,
and any other worker Ray placed there). Everything started is killed at the end by
its process group and pids, also on Ctrl-C or a failure (never `ray stop`).

NOTE: both nodes run on this one machine, so the Python and Ray libraries' pages are
shared by more processes than on a real host, and each process's PSS is a little
lower than it would be there (its private memory, most of it, is the same).

Run it alone: `flock /tmp/sc-bench.lock sc bench idle --ray-defaults`.
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Iterator, Mapping

import typer
from rich.table import Table

from ..tables import print_table
from .common import REPO, console, fail, machine, out_dir, pyplot, remove_parent, save_figure

HOST = "sc-idle-host"
"""The `sc_host` label of the controlled host that joins."""
PARENT = "sc-idle-bench"
"""Cgroup parent of both hosts' (absent) containers: nothing of a real stack's."""
OBJECT_STORE_MB = 200
"""As `ray-start.sh` gives a host (`SC_OBJECT_STORE_MB`)."""

GROUPS = ("stack", "head", "host")
GROUP_TITLES = {"stack": "whole stack", "head": "head node", "host": "controlled host"}

TARGET_HOST_CPU_PCT = 1.0
TARGET_HOST_PSS_MB = 150.0
"""Issue 16: a controlled host idles at ≤ 1 % of a core and ≤ 150 MB PSS."""


# ---------------------------------------------------------------------------- /proc, pure


@dataclass(frozen=True)
class Stat:
    """What /proc/<pid>/stat says that we use."""

    state: str
    ppid: int
    pgid: int
    cpu_ticks: int
    """utime + stime of all its threads, clock ticks."""


def parse_stat(text: str) -> Stat:
    """/proc/<pid>/stat. The command (field 2) may hold spaces and parentheses: the
    fields after it start after its last `)` (state is field 3, utime 14, stime 15)."""
    rest = text.rsplit(")", 1)[1].split()
    return Stat(state=rest[0], ppid=int(rest[1]), pgid=int(rest[2]), cpu_ticks=int(rest[11]) + int(rest[12]))


def parse_pss_kb(text: str) -> int:
    """The `Pss:` of /proc/<pid>/smaps_rollup, kB (summed, so a full smaps works too)."""
    return sum(int(line.split()[1]) for line in text.splitlines() if line.startswith("Pss:"))


_SCRIPTS = {
    "dashboard.py": "dashboard (head)",
    "log_monitor.py": "log monitor",
    "monitor.py": "autoscaler monitor",
    "agent.py": "dashboard agent",
    "main.py": "runtime env agent",
    "default_worker.py": "ray::IDLE",
}


def role(cmdline: list[str]) -> str:
    """A short name for a Ray process from its command line: `ray::<Actor>` for workers
    (`ray::IDLE` when no actor runs in it), the binary for gcs_server and raylet, the
    script for Ray's Python daemons."""
    if not cmdline or not cmdline[0]:
        return "?"
    first = cmdline[0]
    if first.startswith("ray::"):
        # "ray::ServeReplica:orchestrator:API" → "ray::ServeReplica"; "ray::Guardian.on_usage"
        # (an actor while it runs a method) → "ray::Guardian"
        return "ray::" + (first[len("ray::"):].split() or ["?"])[0].split(":")[0].split(".")[0]
    if first.startswith("ray-dashboard-"):
        return "dashboard module " + first[len("ray-dashboard-"):].split()[0].rsplit("-", 1)[0]
    for arg in cmdline[1:4]:
        base = os.path.basename(arg)
        if base in _SCRIPTS:
            return _SCRIPTS[base]
    return os.path.basename(first)


def members(stats: Mapping[int, Stat], pgids: Iterable[int]) -> set[int]:
    """The live processes of these process groups and every descendant of theirs (Ray's
    workers are children of their raylet but each in a process group of its own)."""
    wanted = set(pgids)
    out = {pid for pid, s in stats.items() if s.pgid in wanted and s.state != "Z"}
    children: dict[int, list[int]] = {}
    for pid, s in stats.items():
        if s.state != "Z":
            children.setdefault(s.ppid, []).append(pid)
    todo = list(out)
    while todo:
        for child in children.get(todo.pop(), []):
            if child not in out:
                out.add(child)
                todo.append(child)
    return out


@dataclass
class ProcUsage:
    """One process over the sampled time."""

    pid: int
    group: str
    role: str
    first_ticks: int | None
    """CPU ticks at the first sample; None when it started later (counted from 0)."""
    last_ticks: int = 0
    pss_kb: list[int] = field(default_factory=list)

    def cpu_s(self, clk_tck: int) -> float:
        return (self.last_ticks - (self.first_ticks or 0)) / clk_tck


@dataclass(frozen=True)
class Row:
    """A line of the report: one process, or a group's total."""

    group: str
    role: str
    pid: int | None
    cpu_pct: float
    """% of one core."""
    pss_mb: float


def summarize(usages: Iterable[ProcUsage], wall_s: float, clk_tck: int,
              order: tuple[str, ...] = ("head", "host")) -> tuple[list[Row], dict[str, Row]]:
    """Per-process rows (by group in `order`, heaviest CPU first within each) and each
    group's total; `stack` is all of them together."""
    rows = [Row(u.group, u.role, u.pid, 100 * u.cpu_s(clk_tck) / wall_s,
                sum(u.pss_kb) / len(u.pss_kb) / 1024 if u.pss_kb else 0.0) for u in usages]
    rows.sort(key=lambda r: (order.index(r.group), -r.cpu_pct, r.role))
    totals = {}
    for g in ("stack", *order):
        mine = [r for r in rows if g == "stack" or r.group == g]
        totals[g] = Row(g, GROUP_TITLES.get(g, g), None, sum(r.cpu_pct for r in mine), sum(r.pss_mb for r in mine))
    return rows, totals


def parse_settings(pairs: Iterable[str]) -> dict[str, str]:
    """`KEY=VALUE` options as a dict; ValueError names the first one without `=`."""
    out = {}
    for p in pairs:
        key, sep, value = p.partition("=")
        if not sep or not key:
            raise ValueError(f"expected KEY=VALUE, got {p!r}")
        out[key] = value
    return out


# ---------------------------------------------------------------------------- /proc, reads


def _read_stats() -> dict[int, Stat]:
    out = {}
    for d in Path("/proc").glob("[0-9]*"):
        try:
            out[int(d.name)] = parse_stat((d / "stat").read_text())
        except (OSError, IndexError, ValueError):
            continue
    return out


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").rstrip("\0").split("\0")
    except OSError:
        return []


def _pss_kb(pid: int) -> int | None:
    try:
        return parse_pss_kb(Path(f"/proc/{pid}/smaps_rollup").read_text())
    except OSError:
        return None


# ---------------------------------------------------------------------------- one measured stack


@dataclass(frozen=True)
class Variant:
    """How the controlled host's Ray is started: environment and `ray start` flags."""

    label: str
    env: dict[str, str]
    args: list[str]


def ray_defaults() -> Variant:
    return Variant("ray defaults", {}, [])


def tuned(extra: Mapping[str, str] | None = None, label: str = "tuned") -> Variant:
    """A host as `ray-start.sh worker` starts it: cluster.local's quiet settings, its PYTHONPATH
    with the node's sitecustomize first (and `extra`)."""
    from cluster.local import QUIET_NODE_ARGS, quiet_node_env

    env = quiet_node_env({k: v for k, v in os.environ.items() if k == "PYTHONPATH"})
    return Variant(label, {**env, **(extra or {})}, list(QUIET_NODE_ARGS))


class _Stack:
    """The processes one run started: their process groups, and the dir they live in."""

    def __init__(self) -> None:
        self.tmp = Path(tempfile.mkdtemp(prefix="sc-idle-"))
        self.pgids: dict[str, int] = {}
        self.api_port = self.dashboard_port = 0
        """The head's, once `sc up` has run."""

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k != "RAY_ADDRESS"}
        # Ray's sessions and `ray_current_cluster` in a dir of our own: `sc up` starts
        # its own head even when another Ray runs on this machine.
        env.update(SC_HOME=str(self.tmp / "home"), RAY_TMPDIR=str(self.tmp), RAY_AUTH_MODE="token",
                   RAY_USAGE_STATS_ENABLED="0")
        return env

    def pids(self) -> set[int]:
        return members(_read_stats(), self.pgids.values())

    def kill(self, timeout_s: float = 20.0) -> None:
        """SIGTERM to every process of ours, SIGKILL to what is left after `timeout_s`."""
        pids = self.pids()
        for sig in (signal.SIGTERM, signal.SIGKILL):
            for pgid in self.pgids.values():
                try:
                    os.killpg(pgid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            for pid in pids:
                try:
                    os.kill(pid, sig)
                except (ProcessLookupError, PermissionError):
                    pass
            deadline = time.monotonic() + timeout_s
            while time.monotonic() < deadline:
                stats = _read_stats()
                pids = {p for p in pids if p in stats and stats[p].state != "Z"} | members(stats, self.pgids.values())
                if not pids:
                    return
                time.sleep(0.2)


def _sc() -> str:
    return shutil.which("sc") or str(Path(sys.executable).with_name("sc"))


def _start_head(stack: _Stack, label: str, progress: Callable[[str], None]) -> str:
    """`sc up` on a head of its own; the head's address."""
    from cluster.local import free_port

    env = stack.env()
    gcs_port, stack.api_port, stack.dashboard_port = free_port(), free_port(), free_port()
    progress(f"[{label}] sc up (head on :{gcs_port}) …")
    # `sc up` records the head's process group first thing: read it even if `sc up` fails.
    up = subprocess.run([_sc(), "up", "--port", str(gcs_port), "--dashboard-port", str(stack.dashboard_port),
                         "--api-port", str(stack.api_port), "--state-dir", str(stack.tmp / "state"), "--parent", PARENT],
                        env=env, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=300)
    try:
        record = json.loads((stack.tmp / "home" / "up.json").read_text())
        stack.pgids["head"] = int(record["head_pgid"])
    except (OSError, ValueError, KeyError):
        record = {}
    if up.returncode != 0 or "head" not in stack.pgids:
        raise RuntimeError(f"sc up failed ({up.returncode}): {up.stdout.strip()[-600:]}")
    return str(record["address"])


def _join(stack: _Stack, address: str, group: str, host: str, variant: Variant,
          progress: Callable[[str], None]) -> None:
    """A controlled host `host` joins as a Ray node of its own, started as `variant` says."""
    from cluster.local import free_port, worker_command

    env = stack.env()
    progress(f"[{variant.label}] controlled host {host} joins: ray start --address {address} "
             f"{' '.join(variant.args)}" + (f" with {len(variant.env)} settings" if variant.env else ""))
    # Ports of our own: the head's agent and metrics ports are taken on this machine.
    worker = subprocess.Popen(
        [*worker_command(address, host, quiet=False, object_store_bytes=OBJECT_STORE_MB * 2**20),
         f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}", *variant.args],
        env={**env, **variant.env}, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        start_new_session=True)
    stack.pgids[group] = worker.pid
    out, _ = worker.communicate(timeout=120)
    if worker.returncode != 0:
        raise RuntimeError(f"ray start --address failed ({worker.returncode}): {out.strip()[-600:]}")


def _groups(stack: _Stack) -> dict[int, str]:
    stats = _read_stats()
    return {p: group for group, pgid in stack.pgids.items() for p in members(stats, [pgid])}


def _wait_scalers(stack: _Stack, groups: Iterable[str], timeout_s: float) -> float:
    """Seconds until each of these hosts' ContainerScaler runs (its worker took the actor's name)."""
    t0 = time.monotonic()
    waiting = set(groups)
    while time.monotonic() - t0 < timeout_s:
        waiting -= {g for p, g in _groups(stack).items() if role(_cmdline(p)) == "ray::ContainerScaler"}
        if not waiting:
            return time.monotonic() - t0
        time.sleep(0.5)
    raise TimeoutError(f"no ContainerScaler on {', '.join(sorted(waiting))} within {timeout_s:g} s")


def _sample(stack: _Stack, seconds: float, interval_s: float,
            progress: Callable[[str], None]) -> tuple[list[ProcUsage], float]:
    usages: dict[int, ProcUsage] = {}

    def take(first: bool) -> None:
        stats = _read_stats()
        for pid, group in _groups(stack).items():
            s = stats.get(pid)
            if s is None:
                continue
            u = usages.get(pid)
            if u is None:
                u = usages[pid] = ProcUsage(pid, group, role(_cmdline(pid)), s.cpu_ticks if first else None)
            u.last_ticks = s.cpu_ticks
            pss = _pss_kb(pid)
            if pss is not None:
                u.pss_kb.append(pss)

    t0 = time.monotonic()
    take(first=True)
    next_report = 10.0
    while (left := seconds - (time.monotonic() - t0)) > 0:
        time.sleep(min(interval_s, left))
        take(first=False)
        done = time.monotonic() - t0
        if done >= next_report or done >= seconds:
            progress(f"sampled {done:.0f}/{seconds:g} s, {len(usages)} processes")
            next_report += 10.0
    return list(usages.values()), time.monotonic() - t0


def measure(variant: Variant, seconds: float = 60.0, warmup_s: float = 10.0, interval_s: float = 2.0,
            progress: Callable[[str], None] = print) -> dict[str, Any]:
    """Bring up a stack with a controlled host started as `variant` says, sample it idle,
    take it down; the per-process rows and group totals."""
    run = measure_hosts({"host": variant}, seconds, warmup_s, interval_s, progress, label=variant.label)
    return {"label": variant.label, "env": variant.env, "args": variant.args, **run}


def measure_hosts(hosts: Mapping[str, Variant], seconds: float = 60.0, warmup_s: float = 10.0,
                  interval_s: float = 2.0, progress: Callable[[str], None] = print,
                  label: str = "idle") -> dict[str, Any]:
    """`measure` with several controlled hosts at once (group name → how it is started),
    each labelled `sc_host=<HOST>-<group>`: settings compared side by side in one stack."""
    stack = _Stack()
    try:
        t0 = time.monotonic()
        address = _start_head(stack, label, progress)
        t_join = time.monotonic()
        for group, variant in hosts.items():
            _join(stack, address, group, HOST if group == "host" else f"{HOST}-{group}", variant, progress)
        _wait_scalers(stack, hosts, 120)
        progress(f"[{label}] ContainerScaler(s) up {time.monotonic() - t0:.0f} s after `sc up` began "
                 f"({time.monotonic() - t_join:.1f} s after the first node joined); warm-up {warmup_s:g} s")
        time.sleep(warmup_s)
        usages, wall = _sample(stack, seconds, interval_s, lambda m: progress(f"[{label}] {m}"))
        rows, totals = summarize(usages, wall, os.sysconf("SC_CLK_TCK"), order=("head", *hosts))
        return {"seconds": round(wall, 1), "groups": {g: _rounded(r) for g, r in totals.items()},
                "processes": [_rounded(r) for r in rows]}
    finally:
        progress(f"[{label}] tearing down")
        stack.kill()
        remove_parent(PARENT)
        shutil.rmtree(stack.tmp, ignore_errors=True)


def _rounded(r: Row) -> dict[str, Any]:
    d = asdict(r)
    d["cpu_pct"], d["pss_mb"] = round(r.cpu_pct, 2), round(r.pss_mb, 1)
    return d


@dataclass
class _Interrupted:
    """SIGTERM ends a run like Ctrl-C: through the `finally` that tears the stack down."""

    previous: Any = None

    def __enter__(self) -> None:
        def raise_interrupt(signum: int, frame: Any) -> None:
            raise KeyboardInterrupt

        self.previous = signal.signal(signal.SIGTERM, raise_interrupt)

    def __exit__(self, *exc: object) -> None:
        signal.signal(signal.SIGTERM, self.previous)


def idle(variants: list[Variant], seconds: float, warmup_s: float, out_dir: str,
         progress: Callable[[str], None] = print) -> dict[str, Any]:
    out = Path(out_dir)
    results: dict[str, Any] = {"machine": machine(), "host_label": HOST,
                               "target": {"host_cpu_pct": TARGET_HOST_CPU_PCT, "host_pss_mb": TARGET_HOST_PSS_MB},
                               "runs": []}
    with _Interrupted():
        for v in variants:
            results["runs"].append(measure(v, seconds, warmup_s, progress=progress))
    (out / "idle.json").write_text(json.dumps(results, indent=2))
    _plot(results, out / "idle.png")
    return results


# ---------------------------------------------------------------------------- output


def _plot(results: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    fig, (ax_cpu, ax_mem) = plt.subplots(1, 2, figsize=(10, 4.2))
    runs = results["runs"]
    width = 0.8 / max(len(runs), 1)
    for i, run in enumerate(runs):
        xs = [g + (i - (len(runs) - 1) / 2) * width for g in range(len(GROUPS))]
        ax_cpu.bar(xs, [run["groups"][g]["cpu_pct"] for g in GROUPS], width, label=run["label"])
        ax_mem.bar(xs, [run["groups"][g]["pss_mb"] for g in GROUPS], width, label=run["label"])
    for ax, target, unit in ((ax_cpu, TARGET_HOST_CPU_PCT, "% of one core"), (ax_mem, TARGET_HOST_PSS_MB, "PSS, MB")):
        ax.set_xticks(range(len(GROUPS)), [GROUP_TITLES[g] for g in GROUPS])
        ax.set_ylabel(unit)
        ax.axhline(target, color="red", linestyle="--", linewidth=1, label="host target")
        ax.grid(alpha=0.3, axis="y")
        ax.legend(fontsize=8)
    fig.suptitle(f"Idle cost, no containers ({runs[0]['seconds'] if runs else 0:g} s sampled)")
    save_figure(fig, path)


def tables(results: dict[str, Any]) -> Iterator[Table]:
    runs = results["runs"]
    t = Table(title="idle cost per group (% of one core, PSS MB)")
    t.add_column("group")
    for run in runs:
        t.add_column(f"{run['label']} CPU", justify="right")
        t.add_column(f"{run['label']} PSS", justify="right")
    for g in GROUPS:
        t.add_row(GROUP_TITLES[g], *(x for run in runs for x in (f"{run['groups'][g]['cpu_pct']:.2f} %",
                                                                  f"{run['groups'][g]['pss_mb']:.0f}")))
    yield t
    for run in runs:
        p = Table(title=f"{run['label']}: per process")
        for col in ("group", "process", "pid", "CPU (% core)", "PSS (MB)"):
            p.add_column(col, justify="right" if col in ("pid", "CPU (% core)", "PSS (MB)") else "left")
        for r in run["processes"]:
            p.add_row(GROUP_TITLES.get(r["group"], r["group"]), r["role"], str(r["pid"]), f"{r['cpu_pct']:.2f}",
                      f"{r['pss_mb']:.1f}")
        yield p


def command(
    seconds: float = typer.Option(60.0, min=5, help="seconds sampled while idle"),
    warmup: float = typer.Option(10.0, min=0, help="seconds after the host's ContainerScaler is up, not sampled"),
    with_ray_defaults: bool = typer.Option(False, "--ray-defaults",
                                           help="also measure a host started with Ray's defaults (before/after)"),
    setting: list[str] = typer.Option([], "--set", help="KEY=VALUE added to the tuned host's environment "
                                                        "(to try one more Ray setting); repeatable"),
    out: Path = typer.Option(Path("bench-out"), help="where idle.json and idle.png go"),
) -> None:
    """Idle CPU and PSS of the stack (`sc up`) and of one more controlled host, no containers."""
    try:
        extra = parse_settings(setting)
    except ValueError as e:
        fail(f"--set: {e}")
    variants = ([ray_defaults()] if with_ray_defaults else []) + [tuned(extra)]
    try:
        r = idle(variants, seconds, warmup, out_dir(out), progress=lambda m: console.print(f"  {m}", highlight=False))
    except KeyboardInterrupt:
        fail("interrupted; every process it started is stopped", 130)
    except (RuntimeError, TimeoutError) as e:
        fail(str(e))
    console.print(f"machine: {r['machine']}")
    for t in tables(r):
        print_table(console, t)
    console.print(f"written: {out / 'idle.json'}, {out / 'idle.png'}")
