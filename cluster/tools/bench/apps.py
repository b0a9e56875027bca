"""`sc bench apps`: real software from Debian under the controller, three ways in one run.

Each program runs in its own plain-cgroup container (cgroup v1, parent `BENCH_PARENT`),
started behind a gate (`sh -c 'read _ && exec …'`) so that it and every process it forks
live in the container from their first instruction. Its load comes from outside:

  web    nginx (own config, 127.0.0.1, a free port) in front of a CPU-bound WSGI app,
         `WEB_WORKERS` pre-forked Python workers (`apps_web`), every request a fixed few
         milliseconds of CPU. Driven by `wrk` with a rate schedule: low / peak (more
         than one core) / medium / idle / low. Reported per phase and overall: p50,
         p99 and p99.9 latency, errors, requests served against offered, CPU
         utilization ∫usage/∫limit.
  batch  `sysbench cpu`, phases of 1, 2, 1, 2 threads, each a fixed number of events
         (calibrated once per run so that each phase takes its planned time at full
         speed). Reported: time to finish per phase and in all, against static, and
         CPU utilization.
  redis  `redis-server` (127.0.0.1, a free port, no persistence), its dataset filled
         and emptied in phases by `apps_redis` (64 KiB values: fill, hold, fill, hold,
         delete, hold, flush, idle) while a second connection probes GET latency on a
         fixed schedule. Memory is guarded too. Reported: memory utilization
         ∫usage/∫limit, with usage as the controller reads it (memory.usage_in_bytes −
         total_cache) and with the page cache, OOM kills (memory.oom_control
         `oom_kill`), times the limit was hit (memory.failcnt) and probe latency.

Program by program, the ways run back to back in this order, each on a fresh container:

  static    limits fixed at the container's max (a reserved VM), not subscribed
  adaptive  the shipped default: `set_profile(db, "adaptive")`, our timing, and the
            container subscribed without a limits document (the defaults apply)
  original  the original's profile and timing (10 s windows, 10 s delay, Scaler every
            5 s), subscribed with the original's limits (10 % of max) explicitly

Original last: a node follows a longer window within three of them, a shorter one only
after 20–30 s. Every way runs the same phases; `--minutes` sets the whole run's length
(about `SETUP_S` of it goes to Ray, the control plane and the profile changes).

Why wrk and how: `hey -q R -c C` paces each of its C workers with its own ticker, all
started together, so requests leave in bursts of C, and a worker waiting on a slow
response skips its ticks (coordinated omission). wrk is closed-loop per connection,
but its Lua `delay()` can wait before each request: `apps_wrk.lua` draws exponential
think times with mean C / rate over C connections (about half a second each), so
arrivals are close to a Poisson stream, a slow response holds back only its own
connection's next request, and the think time dwarfs the service time. Latency is
wrk's, request sent → response read. What the schedule did not get served shows as
`got` < `rps` in the table. wrk gives Lua no raw latencies, only percentiles: each
phase prints a grid of them, and the overall figures are the quantiles of the phases'
mixture (`mixture_quantile`).

This process samples the container every `SAMPLE_S` from its cgroup files (usage,
limits, throttled time, memory with and without cache, OOM kills). All traffic stays on
127.0.0.1; every wait is bounded; on exit, Ctrl-C or SIGTERM the drivers, the
containers (with everything in them), the control plane and Ray are removed.
"""
from __future__ import annotations

import bisect
import itertools
import json
import math
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, NamedTuple

import typer
from rich.table import Table

from ..tables import print_table
from .common import (REPO, console, cpu_stat, fail, host_busy_s, machine, out_dir, pct, pyplot, real_cgroup_cluster,
                     save_figure, set_profile, signed, wait_window)

if TYPE_CHECKING:
    from sc_actors.backends.cgroup_v1 import CgroupV1Backend

BENCH_PARENT = "sc-bench-apps"
PROGRAMS = ("web", "batch", "redis")
WAYS = ("static", "adaptive", "original")
"""In the order they run (see the module docstring)."""
SAMPLE_S = 0.25
"""How often this process reads the container's cgroup files, seconds."""
SETUP_S = 180.0
"""Part of `--minutes` not spent running programs: Ray, the control plane, profile changes
(a node follows the original's 10 s windows after 3 of them, ours after 20–30 s)."""
RUN_OVERHEAD_S = 8.0
"""Per program and way: start, readiness, clean-up, seconds."""
OTHERS_BUSY_CORES = 0.9
"""CPU the rest of the machine may take during a run before its figures are flagged, cores.
On a quiet machine the control plane, the redis client and this process took 0.15–0.26 (batch,
redis), with wrk 0.54–0.79 (web); runs beside other users' tests took 1.1–1.8."""
REPORT_S = 15.0
"""Seconds between two progress lines."""
WEB_WORKERS = 4
WEB_CPU_MS = 8.0
"""CPU per request of the handler, milliseconds (the loop count is calibrated to it)."""
WEB_PEAK_RPS = 140
"""Peak offered rate: 140 × 8 ms = 1.1 cores in the handler, plus nginx."""
WEB_THINK_S = 0.5
"""Mean think time of each wrk connection; connections = rate × think."""
BATCH_PRIME = 10000
REDIS_PEAK_MIB = 600
APT_PACKAGES = {"web": ("nginx", "wrk"), "batch": ("sysbench",), "redis": ("redis-server",)}
"""Debian packages each program needs (bootstrap.sh installs them too)."""
BINARIES = {"nginx": "nginx", "wrk": "wrk", "sysbench": "sysbench", "redis-server": "redis-server"}
SERVICES = ("nginx", "redis-server")
"""System services the packages may start on install; the bench stops them."""


@dataclass(frozen=True)
class Spec:
    """A program's container: CPU shares and memory MiB as (min, current, max), memory guarded?"""

    cpu: tuple[int, int, int]
    mem: tuple[int, int, int]
    mem_guard: bool


SPECS = {
    "web": Spec(cpu=(10, 100, 200), mem=(64, 512, 512), mem_guard=False),
    "batch": Spec(cpu=(10, 100, 200), mem=(64, 512, 512), mem_guard=False),
    "redis": Spec(cpu=(10, 100, 200), mem=(64, 256, 1024), mem_guard=True),
}


# ---------------------------------------------------------------------------- phase schedules


@dataclass(frozen=True)
class Phase:
    """One phase of a program's schedule.

    `level` is the load: offered requests/s (web), threads (batch) or the dataset in
    MiB at the phase's end (redis).
    """

    name: str
    seconds: float
    level: float


def _scaled(shape: list[tuple[str, float, float]], seconds: float) -> list[Phase]:
    """Phases of (name, fraction of `seconds`, level), at least 2 s each, 0.1 s rounded."""
    return [Phase(name, max(round(frac * seconds, 1), 2.0), level) for name, frac, level in shape]


def web_phases(seconds: float, peak_rps: float = WEB_PEAK_RPS) -> list[Phase]:
    """Bursty offered load: low, peak (above one core), medium, idle, low again."""
    return _scaled([("low", 0.2, round(0.2 * peak_rps)), ("peak", 0.3, peak_rps),
                    ("medium", 0.2, round(0.5 * peak_rps)), ("idle", 0.15, 0), ("low2", 0.15, round(0.2 * peak_rps))],
                   seconds)


def batch_phases(seconds: float) -> list[Phase]:
    """Parallelism 1, 2, 1, 2 threads; `seconds` is the planned time at full speed."""
    return _scaled([("1 thread", 0.3, 1), ("2 threads", 0.2, 2), ("1 thread", 0.3, 1), ("2 threads", 0.2, 2)],
                   seconds)


def redis_phases(seconds: float, peak_mib: float = REDIS_PEAK_MIB) -> list[Phase]:
    """Dataset fill, hold, fill to the peak, hold, delete to a quarter, hold, flush, idle."""
    return _scaled([("fill", 0.15, round(0.4 * peak_mib)), ("hold", 0.1, round(0.4 * peak_mib)),
                    ("fill", 0.2, peak_mib), ("hold", 0.1, peak_mib), ("delete", 0.1, round(0.25 * peak_mib)),
                    ("hold", 0.1, round(0.25 * peak_mib)), ("flush", 0.1, 0), ("idle", 0.15, 0)], seconds)


PHASES: dict[str, Callable[[float], list[Phase]]] = {"web": web_phases, "batch": batch_phases, "redis": redis_phases}


def run_seconds(minutes: float, runs: int) -> float:
    """Load seconds of each program and way so that all `runs` take about `minutes`."""
    return max(20.0, (minutes * 60 - SETUP_S) / max(runs, 1) - RUN_OVERHEAD_S)


def wrk_connections(rps: float, think_s: float = WEB_THINK_S) -> int:
    """Connections for `rps` with each one thinking `think_s` on average (at least 2)."""
    return max(2, math.ceil(rps * think_s))


# ---------------------------------------------------------------------------- parsing tool output


def parse_wrk(text: str) -> dict[str, Any]:
    """The SCJSON line `apps_wrk.lua` prints at the end of a wrk run, latencies in ms.

    Returns requests, duration_s, errors (total) and errors_by_kind, and latency_ms
    with min, max, mean, p50, p99, p999 and the whole percentile grid ({p: ms}).
    """
    line = next((x for x in text.splitlines() if x.startswith("SCJSON ")), None)
    if line is None:
        raise ValueError("no SCJSON line in wrk's output")
    d = json.loads(line[len("SCJSON "):])
    lat = d["latency_us"]
    grid = {float(p): v / 1000 for p, v in lat["percentiles"].items()}
    grid[100.0] = lat["max"] / 1000  # wrk 4.1 reads percentile(100) as 0
    return {
        "requests": d["requests"],
        "duration_s": d["duration_us"] / 1e6,
        "errors": sum(d["errors"].values()),
        "errors_by_kind": d["errors"],
        "latency_ms": {"min": lat["min"] / 1000, "max": lat["max"] / 1000, "mean": round(lat["mean"] / 1000, 3),
                       "p50": grid[50.0], "p99": grid[99.0], "p999": grid[99.9], "grid": grid},
    }


def parse_sysbench(text: str) -> dict[str, float]:
    """`total time` (s) and `total number of events` of a `sysbench cpu run`."""
    t = re.search(r"total time:\s+([\d.]+)s", text)
    n = re.search(r"total number of events:\s+(\d+)", text)
    if not t or not n:
        raise ValueError("no totals in sysbench's output")
    eps = re.search(r"events per second:\s+([\d.]+)", text)
    return {"total_s": float(t.group(1)), "events": int(n.group(1)),
            "events_per_s": float(eps.group(1)) if eps else int(n.group(1)) / float(t.group(1))}


def mixture_quantile(parts: list[tuple[int, dict[float, float]]], q: float) -> float | None:
    """The q-th percentile of the union of several runs known by their percentile grids.

    Each part is (number of requests, {percentile: value}). The union's CDF at x is the
    request-weighted mean of the parts' CDFs, each interpolated linearly between its
    grid points; the answer is found by bisection. E.g. parts (100, {50: 1, 100: 2})
    and (100, {50: 3, 100: 4}) have the union's median at 2: half of all requests are
    at most 2 (all of the first part, none of the second).
    """
    parts = [(n, g) for n, g in parts if n > 0 and g]
    if not parts:
        return None
    total = sum(n for n, _ in parts)
    # Sorted by percentile, values made non-decreasing (a grid read from rounded figures may dip).
    grids = [(n, list(zip(sorted(g), itertools.accumulate((g[p] for p in sorted(g)), max)))) for n, g in parts]

    def cdf(x: float) -> float:
        acc = 0.0
        for n, g in grids:
            ps, vs = [p for p, _ in g], [v for _, v in g]
            if x < vs[0]:
                f = 0.0
            elif x >= vs[-1]:
                f = 100.0
            else:
                k = bisect.bisect_right(vs, x)
                v0, v1, p0, p1 = vs[k - 1], vs[k], ps[k - 1], ps[k]
                f = p0 + (p1 - p0) * (x - v0) / (v1 - v0) if v1 > v0 else p1
            acc += n * f
        return acc / total

    lo = min(g[0][1] for _, g in grids)
    hi = max(g[-1][1] for _, g in grids)
    for _ in range(60):
        mid = (lo + hi) / 2
        if cdf(mid) >= q:
            hi = mid
        else:
            lo = mid
    return round(hi, 3)


# ---------------------------------------------------------------------------- samples and figures


class Sample(NamedTuple):
    """One reading of a container's cgroup files."""

    t: float
    cpu_ns: int
    cpu_limit: float
    """Shares; −1 unlimited."""
    throttled_ns: int
    mem_bytes: int
    """memory.usage_in_bytes − total_cache: what the controller sees."""
    mem_cache_bytes: int
    """memory.usage_in_bytes, page cache included."""
    mem_limit_mib: float
    """−1 unlimited."""
    oom_kills: int
    failcnt: int
    cpuset_cores: int
    """CPUs in the container's cpuset: a limit the quota's throttling counters do not see."""


def read_sample(backend: CgroupV1Backend, name: str) -> Sample:
    from sc_actors.backends import base

    t = time.time()
    counters = backend.read_counters(name)
    limits = backend.read_limits(name)
    oom = base.parse_keyed(backend._read(name, "memory.oom_control"))
    return Sample(t, counters.cpu_ns, limits.cpu_allowance_limit, cpu_stat(backend, name).get("throttled_time", 0),
                  counters.mem_bytes, int(backend._read(name, "memory.usage_in_bytes")),
                  limits.mem_limit, oom.get("oom_kill", 0), int(backend._read(name, "memory.failcnt")),
                  len([c for c in limits.cpu_num.split(",") if c]))


def window_figures(samples: list[Sample], t0: float, t1: float, cpu_max: float, mem_max_mib: float) -> dict[str, Any]:
    """CPU and memory figures of one container over [t0, t1].

    Between two samples usage is taken as even (a counter delta) and limits and memory
    as the mean of both ends; intervals are cut at t0 and t1. An unlimited limit counts
    as the container's max. E.g. samples 1 s apart using 0.5 core under a 100-share
    limit give utilization 0.5.
    """
    used = alloc = mem = mem_cache = mem_lim = cores = 0.0
    span = 0.0
    limits: list[float] = []
    peak_mem = 0
    for a, b in zip(samples, samples[1:]):
        o = min(b.t, t1) - max(a.t, t0)
        if o <= 0 or b.t <= a.t:
            continue
        frac = o / (b.t - a.t)
        span += o
        used += (b.cpu_ns - a.cpu_ns) / 1e9 * frac
        cl = [x if x >= 0 else cpu_max for x in (a.cpu_limit, b.cpu_limit)]
        alloc += (cl[0] + cl[1]) / 2 / 100 * o
        ml = [x if x >= 0 else mem_max_mib for x in (a.mem_limit_mib, b.mem_limit_mib)]
        mem_lim += (ml[0] + ml[1]) / 2 * o
        mem += (a.mem_bytes + b.mem_bytes) / 2 / 2**20 * o
        mem_cache += (a.mem_cache_bytes + b.mem_cache_bytes) / 2 / 2**20 * o
        peak_mem = max(peak_mem, a.mem_bytes, b.mem_bytes)
        cores += a.cpuset_cores * o
        limits.append(b.cpu_limit)
    inside = [s for s in samples if t0 <= s.t <= t1] or samples[-1:]
    first = next((s for s in reversed(samples) if s.t <= t0), samples[0]) if samples else None
    last = inside[-1] if inside else None
    return {
        "seconds": round(span, 2),
        "used_cpu_s": round(used, 3),
        "allocated_cpu_s": round(alloc, 3),
        "utilization": round(used / alloc, 4) if alloc else None,
        "mean_usage_shares": round(used / span * 100, 1) if span else None,
        "mean_limit_shares": round(alloc / span * 100, 1) if span else None,
        "mean_cpuset_cores": round(cores / span, 2) if span else None,
        "throttled_s": round((last.throttled_ns - first.throttled_ns) / 1e9, 3) if first and last else 0.0,
        "cpu_limit_changes": sum(1 for x, y in zip(limits, limits[1:]) if x != y),
        "mem_utilization": round(mem / mem_lim, 4) if mem_lim else None,
        "mem_utilization_with_cache": round(mem_cache / mem_lim, 4) if mem_lim else None,
        "mean_mem_mib": round(mem / span, 1) if span else None,
        "mean_mem_limit_mib": round(mem_lim / span, 1) if span else None,
        "peak_mem_mib": round(peak_mem / 2**20, 1),
        "oom_kills": (last.oom_kills - first.oom_kills) if first and last else 0,
        "failcnt": (last.failcnt - first.failcnt) if first and last else 0,
    }


def series(samples: list[Sample], t_go: float) -> dict[str, list[float]]:
    """Plot series: seconds since go, CPU usage and limit (shares), memory and its limit (MiB)."""
    out: dict[str, list[float]] = {"t": [], "usage": [], "limit": [], "cpuset": [], "mem": [], "mem_limit": []}
    for a, b in zip(samples, samples[1:]):
        if b.t <= a.t:
            continue
        out["t"].append(round(b.t - t_go, 3))
        out["usage"].append(round((b.cpu_ns - a.cpu_ns) / 1e9 / (b.t - a.t) * 100, 1))
        out["limit"].append(b.cpu_limit)
        out["cpuset"].append(b.cpuset_cores * 100)
        out["mem"].append(round(b.mem_bytes / 2**20, 1))
        out["mem_limit"].append(b.mem_limit_mib)
    return out


# ---------------------------------------------------------------------------- processes


def stop(proc: subprocess.Popen[Any]) -> None:
    """Kill a process this bench started and reap it (bounded)."""
    if proc.poll() is None:
        proc.kill()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        pass


class Gated:
    """A command started behind `read _ && exec`, put in a container, then let go.

    The process and all it forks belong to the container from their first instruction.
    """

    def __init__(self, cmd: list[str], node: Any, container: str, log: Path, cwd: Path | str = REPO) -> None:
        import ray

        self.log = log
        with open(log, "wb") as out:
            self.proc = subprocess.Popen(["/bin/sh", "-c", 'read _ && exec "$@"', "sh", *cmd],
                                         stdin=subprocess.PIPE, stdout=out, stderr=subprocess.STDOUT, cwd=cwd)
        ray.get(node.attach.remote(container, self.proc.pid))
        assert self.proc.stdin is not None
        self.proc.stdin.write(b"go\n")
        self.proc.stdin.close()

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def kill(self) -> None:
        stop(self.proc)


class Outside:
    """A driver process outside the containers; JSON lines from its stdout kept as they come."""

    def __init__(self, cmd: list[str], stdin: bool = False) -> None:
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, cwd=REPO)
        self.lines: list[str] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))
        self.ended.set()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    def json_lines(self) -> list[dict[str, Any]]:
        out = []
        for x in list(self.lines):
            try:
                out.append(json.loads(x))
            except ValueError:
                continue
        return out

    def kill(self) -> None:
        stop(self.proc)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _wait_http(url: str, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with urllib.request.urlopen(url, timeout=2) as r:
                if r.status == 200:
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


def _wait_redis(port: int, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
                s.sendall(b"PING\r\n")
                if s.recv(16).startswith(b"+PONG"):
                    return True
        except OSError:
            pass
        time.sleep(0.2)
    return False


NGINX_CONF = """worker_processes 1;
daemon off;
pid {d}/nginx.pid;
error_log {d}/error.log warn;
events {{ worker_connections 2048; }}
http {{
    access_log off;
    client_body_temp_path {d}/body;
    proxy_temp_path {d}/proxy;
    fastcgi_temp_path {d}/fastcgi;
    uwsgi_temp_path {d}/uwsgi;
    scgi_temp_path {d}/scgi;
    upstream handler {{ server 127.0.0.1:{app}; }}
    server {{
        listen 127.0.0.1:{port};
        location / {{ proxy_pass http://handler; }}
    }}
}}
"""


# ---------------------------------------------------------------------------- the drivers


class Driver:
    """Runs one program's phases against its container; the bench's loop polls it."""

    def __init__(self, ctx: dict[str, Any], container: str, phases: list[Phase], work: Path) -> None:
        self.ctx, self.container, self.phases, self.work = ctx, container, phases, work
        self.servers: list[Gated] = []
        self.t_start = 0.0

    def start_server(self) -> None:
        """Start the program in the container and wait until it answers."""

    def begin(self, i: int) -> None:
        self.t_start = time.time()

    def phase_over(self, i: int) -> bool:
        return time.time() >= self.t_start + self.phases[i].seconds

    def end(self, i: int) -> dict[str, Any]:
        return {}

    def server_alive(self) -> bool:
        return all(s.proc.poll() is None for s in self.servers)

    def close(self) -> None:
        for s in self.servers:
            s.kill()


class WebDriver(Driver):
    def start_server(self) -> None:
        node, d = self.ctx["node"], self.work
        app_port, self.port = free_port(), free_port()
        (d / "nginx.conf").write_text(NGINX_CONF.format(d=d, app=app_port, port=self.port))
        self.servers.append(Gated([sys.executable, "-m", "cluster.tools.bench.apps_web", "--port", str(app_port),
                                   "--workers", str(WEB_WORKERS), "--loops", str(self.ctx["web_loops"])],
                                  node, self.container, d / "handler.log"))
        self.servers.append(Gated(["nginx", "-p", str(d), "-e", str(d / "error.log"), "-c", str(d / "nginx.conf")],
                                  node, self.container, d / "nginx.log"))
        if not _wait_http(f"http://127.0.0.1:{self.port}/", 20):
            raise RuntimeError(f"nginx or the handler did not answer within 20 s (see {d})")
        self.wrk: subprocess.Popen[str] | None = None

    def begin(self, i: int) -> None:
        super().begin(i)
        rps = self.phases[i].level
        self.wrk = None
        if rps > 0:
            conns = wrk_connections(rps)
            think_ms = conns / rps * 1000
            self.wrk = subprocess.Popen(
                ["wrk", "-t", "1", "-c", str(conns), "-d", f"{max(int(round(self.phases[i].seconds)), 1)}s",
                 "--timeout", "5s", "-s", str(Path(__file__).with_name("apps_wrk.lua")),
                 f"http://127.0.0.1:{self.port}/", "--", f"{think_ms:.1f}", str(i + 1)],
                stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)

    def phase_over(self, i: int) -> bool:
        if self.wrk is None:
            return super().phase_over(i)
        # wrk stops on its own after -d; the bound only catches a hung one.
        return self.wrk.poll() is not None or time.time() > self.t_start + self.phases[i].seconds + 15

    def end(self, i: int) -> dict[str, Any]:
        rps = self.phases[i].level
        if self.wrk is None:
            return {"rps": rps, "requests": 0}
        if self.wrk.poll() is None:
            self.wrk.kill()
        out, _ = self.wrk.communicate(timeout=10)
        self.wrk = None
        try:
            r = parse_wrk(out)
        except (ValueError, KeyError) as e:
            return {"rps": rps, "requests": 0, "error": f"{e}: {out[-300:]}"}
        r["rps"] = rps
        r["served_rps"] = round(r["requests"] / r["duration_s"], 1) if r["duration_s"] else None
        return r

    def close(self) -> None:
        wrk = getattr(self, "wrk", None)
        if wrk is not None:
            stop(wrk)
        super().close()


class BatchDriver(Driver):
    def start_server(self) -> None:
        self.job: Gated | None = None

    def begin(self, i: int) -> None:
        super().begin(i)
        p = self.phases[i]
        events = self.events(p)
        self.job = Gated(["sysbench", "cpu", f"--threads={int(p.level)}", f"--events={events}", "--time=0",
                          f"--cpu-max-prime={BATCH_PRIME}", "run"], self.ctx["node"], self.container,
                         self.work / f"sysbench-{i}.log")

    def events(self, p: Phase) -> int:
        return max(1, int(self.ctx["sysbench_eps"] * p.level * p.seconds))

    def phase_over(self, i: int) -> bool:
        assert self.job is not None
        # Work-driven: the phase lasts until its events are done (bounded: 4× the plan + 60 s).
        return self.job.proc.poll() is not None or time.time() > self.t_start + 4 * self.phases[i].seconds + 60

    def end(self, i: int) -> dict[str, Any]:
        assert self.job is not None
        wall = time.time() - self.t_start
        done = self.job.proc.poll() is not None
        self.job.kill()
        out = self.job.output()
        self.job = None
        r: dict[str, Any] = {"threads": int(self.phases[i].level), "events": self.events(self.phases[i]),
                             "wall_s": round(wall, 3), "finished": done}
        try:
            r.update(sysbench=parse_sysbench(out))
        except ValueError:
            r["error"] = out[-300:]
        return r

    def server_alive(self) -> bool:
        return True

    def close(self) -> None:
        job = getattr(self, "job", None)
        if job is not None:
            job.kill()
        super().close()


class RedisDriver(Driver):
    def start_server(self) -> None:
        self.port = free_port()
        self.servers.append(Gated(["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
                                   "--appendonly", "no", "--dir", str(self.work), "--protected-mode", "yes"],
                                  self.ctx["node"], self.container, self.work / "redis.log"))
        if not _wait_redis(self.port, 20):
            raise RuntimeError(f"redis-server did not answer within 20 s (see {self.work})")
        plan = [{"name": p.name, "seconds": p.seconds, "mib": p.level} for p in self.phases]
        self.client = Outside([sys.executable, "-m", "cluster.tools.bench.apps_redis", "--port", str(self.port),
                               "--phases", json.dumps(plan)], stdin=True)

    def begin(self, i: int) -> None:
        super().begin(i)
        if i == 0:
            self.client.go()

    def _line(self, i: int, key: str) -> dict[str, Any] | None:
        return next((x for x in self.client.json_lines() if x.get("phase") == i and x.get(key)), None)

    def phase_over(self, i: int) -> bool:
        # The client times its phases; the bound only catches a hung one.
        return (self._line(i, "done") is not None or self.client.ended.is_set()
                or time.time() > self.t_start + self.phases[i].seconds + 30)

    def end(self, i: int) -> dict[str, Any]:
        line = self._line(i, "done")
        if line is None:
            return {"mib": self.phases[i].level, "latency_ms": [], "errors": None, "error": "no report"}
        return {"mib": self.phases[i].level, **{k: v for k, v in line.items() if k not in ("phase", "done", "t")}}

    def close(self) -> None:
        if getattr(self, "client", None) is not None:
            self.client.kill()
        super().close()


DRIVERS: dict[str, type[Driver]] = {"web": WebDriver, "batch": BatchDriver, "redis": RedisDriver}


# ---------------------------------------------------------------------------- one program, one way


def run_one(program: str, way: str, phases: list[Phase], ctx: dict[str, Any],
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Run `program`'s phases under `way` on a fresh container; samples and phase results."""
    import ray

    backend, node, scaler, host = ctx["backend"], ctx["node"], ctx["scaler"], ctx["host"]
    spec = SPECS[program]
    name = f"apps-{program}-{way}"
    work = Path(tempfile.mkdtemp(prefix=f"sc-bench-apps-{program}-"))
    driver = DRIVERS[program](ctx, name, phases, work)
    subscribed = False
    try:
        backend.remove(name)
        ray.get(node.create_container.remote(name))
        driver.start_server()
        if ctx.get("window_pending"):
            # The node pushes windows only while it has containers: with this one there, wait
            # until they follow the profile (once per way).
            window_s = ctx.pop("window_pending")
            if not wait_window(node, window_s, timeout_s=60):
                progress(f"{way}: the node's windows did not follow the profile's {window_s:g} s within 60 s")
        if way == "static":
            cores = ",".join(str(c) for c in range(ctx["machine"]["cores"]))
            ray.get(node.apply.remote(name, {"cpu_allowance_limit": spec.cpu[2], "cpu_num": cores,
                                             "mem_limit": spec.mem[2]}))
        else:
            # adaptive: no limits document, so the shipped defaults apply; original: the
            # original's limits named explicitly (its exact semantics under any profile).
            limits = None if way == "adaptive" else {"resources": {
                "cpu": {"boundary": 10, "boundary_type": "percentage_of_max"},
                "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}}}
            ray.get(scaler.subscribe_container.remote(
                {"name": name, "host": host, "guard": True,
                 "resources": {"cpu": {"min": spec.cpu[0], "current": spec.cpu[1], "max": spec.cpu[2], "guard": True},
                               "mem": {"min": spec.mem[0], "current": spec.mem[1] if spec.mem_guard else spec.mem[2],
                                       "max": spec.mem[2], "guard": spec.mem_guard}}}, limits))
            subscribed = True
        samples = [read_sample(backend, name)]
        results: list[dict[str, Any]] = []
        bounds: list[tuple[float, float]] = []
        planned = sum(p.seconds for p in phases)
        busy0 = host_busy_s()
        t_go = time.time()
        deadline = t_go + 4 * planned + 120
        next_tick, next_report = t_go + SAMPLE_S, t_go + REPORT_S
        died_at: float | None = None
        i = 0
        driver.begin(0)
        t_phase = time.time()
        progress(f"{way} {program}: phase 1/{len(phases)} {phases[0].name} ({_level(program, phases[0])})")
        while i < len(phases) and time.time() < deadline:
            time.sleep(max(next_tick - time.time(), 0))
            next_tick = max(next_tick + SAMPLE_S, time.time() + SAMPLE_S / 2)
            samples.append(read_sample(backend, name))
            if died_at is None and not driver.server_alive():
                died_at = time.time()
                progress(f"{way} {program}: the server died (OOM kills so far: {samples[-1].oom_kills})")
            if driver.phase_over(i):
                samples.append(read_sample(backend, name))
                results.append(driver.end(i))
                bounds.append((t_phase, time.time()))
                i += 1
                if i < len(phases):
                    driver.begin(i)
                    t_phase = time.time()
                    progress(f"{way} {program}: phase {i + 1}/{len(phases)} {phases[i].name} "
                             f"({_level(program, phases[i])})")
            if time.time() >= next_report:
                next_report += REPORT_S
                s = samples[-2:]
                use = (s[1].cpu_ns - s[0].cpu_ns) / 1e9 / max(s[1].t - s[0].t, 1e-9) * 100 if len(s) == 2 else 0.0
                progress(f"{way} {program} {time.time() - t_go:4.0f}s: cpu use {use:.0f} limit {s[-1].cpu_limit:g} "
                         f"shares, mem {s[-1].mem_bytes / 2**20:.0f} limit {s[-1].mem_limit_mib:g} MiB")
        # CPU the rest of the machine took meanwhile (control plane, drivers, this process, other users).
        elapsed = max(time.time() - t_go, 1e-9)
        others = (host_busy_s() - busy0 - (samples[-1].cpu_ns - samples[0].cpu_ns) / 1e9) / elapsed
        return {"name": name, "t_go": t_go, "samples": samples, "phases": results, "bounds": bounds, "plan": phases,
                "others_cores": round(others, 2),
                "unfinished": i < len(phases), "server_died_at": died_at - t_go if died_at else None}
    finally:
        driver.close()
        if subscribed:
            try:
                ray.get(scaler.desubscribe_container.remote(name))
            except Exception as e:  # noqa: BLE001 — clean-up goes on
                progress(f"could not desubscribe {name}: {e}")
        try:
            backend.remove(name)
        finally:
            shutil.rmtree(work, ignore_errors=True)


def _level(program: str, p: Phase) -> str:
    return {"web": f"{p.level:g} req/s", "batch": f"{p.level:g} threads", "redis": f"dataset {p.level:g} MiB"}[program]


# ---------------------------------------------------------------------------- figures of a run


def run_figures(program: str, raw: dict[str, Any], cores: int) -> dict[str, Any]:
    """Per phase and overall figures of one program under one way."""
    spec = SPECS[program]
    samples: list[Sample] = raw["samples"]
    t0 = raw["bounds"][0][0] if raw["bounds"] else raw["t_go"]
    t1 = raw["bounds"][-1][1] if raw["bounds"] else samples[-1].t

    def fig(a: float, b: float) -> dict[str, Any]:
        return window_figures(samples, a, b, min(spec.cpu[2], cores * 100), spec.mem[2])

    phases = []
    for (a, b), r, plan in zip(raw["bounds"], raw["phases"], raw["plan"]):
        phases.append({"name": plan.name, **fig(a, b), **r, "start_s": round(a - raw["t_go"], 2),
                       "end_s": round(b - raw["t_go"], 2)})
    overall: dict[str, Any] = fig(t0, t1)
    overall["wall_s"] = round(t1 - t0, 2)
    if program == "web":
        parts = [(p.get("requests", 0), p.get("latency_ms", {}).get("grid", {})) for p in phases]
        overall["latency_ms"] = {k: mixture_quantile(parts, q) for k, q in (("p50", 50), ("p99", 99), ("p999", 99.9))}
        overall["requests"] = sum(p.get("requests", 0) for p in phases)
        overall["errors"] = sum(p.get("errors", 0) or 0 for p in phases)
        overall["offered"] = round(sum(p["rps"] * (p["end_s"] - p["start_s"]) for p in phases))
        served = sum(p.get("requests", 0) for p in phases)
        overall["cpu_ms_per_request"] = round(overall["used_cpu_s"] * 1000 / served, 2) if served else None
    elif program == "batch":
        overall["finish_s"] = round(sum(p["wall_s"] for p in phases), 3)
        overall["finished"] = all(p.get("finished") for p in phases) and not raw["unfinished"]
    else:
        lat = [x for p in phases for x in p.get("latency_ms", [])]
        overall["latency"] = _lat(lat)
        overall["errors"] = sum(p.get("errors") or 0 for p in phases)
        for p in phases:
            p["latency"] = _lat(p.pop("latency_ms", []))
    return {"phases": phases, "overall": overall, "unfinished": raw["unfinished"], "others_cores": raw["others_cores"],
            "server_died_at_s": raw["server_died_at"], "series": series(samples, raw["t_go"])}


def _lat(xs: list[float]) -> dict[str, float | None]:
    """p50, p99, p99.9 and max (ms) of raw latencies."""
    if not xs:
        return {"n": 0, "p50": None, "p99": None, "p999": None, "max": None}
    s = sorted(xs)

    def q(f: float) -> float:  # nearest rank
        return s[min(len(s) - 1, max(0, math.ceil(f * len(s)) - 1))]

    return {"n": len(s), "p50": q(0.5), "p99": q(0.99), "p999": q(0.999), "max": s[-1]}


def vs_static(result: dict[str, Any]) -> None:
    """Time to finish (batch) and p99 latency (web, redis) of each way against static's."""
    for program, ways in result["programs"].items():
        st = ways.get("static")
        if not st:
            continue
        for way, r in ways.items():
            o, so = r["overall"], st["overall"]
            if program == "batch":
                o["finish_vs_static"] = _ratio(o["finish_s"], so["finish_s"])
                for p, sp in zip(r["phases"], st["phases"]):
                    p["wall_vs_static"] = _ratio(p["wall_s"], sp["wall_s"])
            elif program == "web":
                o["p99_vs_static"] = _ratio(o["latency_ms"]["p99"], so["latency_ms"]["p99"], minus_one=False)
            else:
                o["p99_vs_static"] = _ratio(o["latency"]["p99"], so["latency"]["p99"], minus_one=False)


def _ratio(a: float | None, b: float | None, minus_one: bool = True) -> float | None:
    if a is None or not b:
        return None
    return round(a / b - (1 if minus_one else 0), 4)


def acceptance(result: dict[str, Any]) -> list[str]:
    """One line per program and guarded way against issue 12's targets."""
    lines = []
    for program, ways in result["programs"].items():
        for way in ("adaptive", "original"):
            r = ways.get(way)
            if not r:
                continue
            o = r["overall"]
            if program in ("web", "batch") and "static" not in ways:
                lines.append(f"–    {program} {way}: no static run to compare with")
                continue
            if program == "web":
                ok = (o.get("p99_vs_static") is not None and o["p99_vs_static"] <= 1.2
                      and (o["utilization"] or 0) >= 0.8)
                what = (f"p99 {_x(o.get('p99_vs_static'))} static's (≤ 1.2×), CPU utilization "
                        f"{pct(o['utilization'])} (≥ 80 %)")
            elif program == "batch":
                ok = o.get("finish_vs_static") is not None and o["finish_vs_static"] <= 0.03
                what = f"time to finish {signed(o.get('finish_vs_static'))} vs static (≤ +3 %)"
            else:
                ok = o["oom_kills"] == 0 and (o["mem_utilization"] or 0) >= 0.8 and r["server_died_at_s"] is None
                what = (f"OOM kills {o['oom_kills']} (0), memory utilization {pct(o['mem_utilization'])} "
                        f"(≥ 80 %)")
            lines.append(f"{'met ' if ok else 'MISS'} {program} {way}: {what}")
            if not ok:
                lines.append(f"     what limits it: {diagnose(program, r)}")
    return lines


def diagnose(program: str, r: dict[str, Any]) -> str:
    """The figures behind a missed target: the phase where the limit lay furthest above use, the
    slowest phase, throttling, OOM kills."""
    o, phases = r["overall"], r["phases"]
    if not phases:
        return "no phase ran"
    if program == "redis":
        if r["server_died_at_s"] is not None or o["oom_kills"]:
            t = r["server_died_at_s"]
            p = next((x for x in phases if t is not None and x["start_s"] <= t <= x["end_s"]), phases[0])
            return (f"redis-server killed at {_n(t, 1)} s, phase {p['name']} (dataset → {p.get('mib')} MiB): "
                    f"memory limit {_n(p['mean_mem_limit_mib'], 0)} MiB on average there, peak usage "
                    f"{_n(p['peak_mem_mib'], 0)} MiB, limit hit {o['failcnt']} times (memory.failcnt)")
        idle = max(phases, key=lambda x: ((x["mean_mem_limit_mib"] or 0) - (x["mean_mem_mib"] or 0)) * x["seconds"])
        return (f"mean memory limit {_n(o['mean_mem_limit_mib'], 0)} MiB for a mean usage of "
                f"{_n(o['mean_mem_mib'], 0)} MiB; most unused in phase {idle['name']}: limit "
                f"{_n(idle['mean_mem_limit_mib'], 0)} MiB, usage {_n(idle['mean_mem_mib'], 0)} MiB")
    idle = max(phases, key=lambda x: x["allocated_cpu_s"] - x["used_cpu_s"])
    key = (lambda x: (x.get("latency_ms") or {}).get("p99") or 0) if program == "web" else (
        lambda x: x.get("wall_vs_static") or 0)
    worst = max(phases, key=key)
    what = (f"p99 {_n((worst.get('latency_ms') or {}).get('p99'), 1)} ms" if program == "web"
            else f"{signed(worst.get('wall_vs_static'))} vs static")
    return (f"CPU throttled {o['throttled_s']:.1f} s in all; mean limit {_n(o['mean_limit_shares'], 0)} for a mean "
            f"use of {_n(o['mean_usage_shares'], 0)} shares; most unused in phase {idle['name']}: limit "
            f"{_n(idle['mean_limit_shares'], 0)}, use {_n(idle['mean_usage_shares'], 0)}; slowest phase "
            f"{worst['name']} ({what}): limit {_n(worst['mean_limit_shares'], 0)}, use "
            f"{_n(worst['mean_usage_shares'], 0)}, throttled {worst['throttled_s']:.1f} s, cpuset "
            f"{_n(worst['mean_cpuset_cores'], 1)} cores, {worst['cpu_limit_changes']} limit changes")


def _x(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}×"


# ---------------------------------------------------------------------------- set-up


def ensure_packages(programs: tuple[str, ...], progress: Callable[[str], None]) -> None:
    """Install the programs' Debian packages when their binaries are missing (as root)."""
    missing = [p for prog in programs for p in APT_PACKAGES[prog] if shutil.which(BINARIES[p]) is None
               and not Path("/usr/sbin", BINARIES[p]).exists()]
    if not missing:
        return
    if os.geteuid() != 0 or shutil.which("apt-get") is None:
        raise RuntimeError(f"missing {', '.join(missing)}: install them (apt-get install {' '.join(missing)})")
    progress(f"apt-get install {' '.join(missing)}")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    if subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, capture_output=True,
                      timeout=900).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True, timeout=900, check=True)
        subprocess.run(["apt-get", "install", "-y", "-q", *missing], env=env, capture_output=True, timeout=900,
                       check=True)
    # A package may start its system service: stop it, it would sit in the root cgroup on a port.
    for svc in SERVICES:
        if svc in missing:
            for cmd in (["systemctl", "disable", "--now", svc], ["service", svc, "stop"]):
                if shutil.which(cmd[0]):
                    subprocess.run(cmd, capture_output=True, timeout=60)


def calibrate(programs: tuple[str, ...]) -> dict[str, Any]:
    """Loop count of a WEB_CPU_MS request, and sysbench events/s of one thread (outside containers)."""
    from .apps_web import burn

    out: dict[str, Any] = {}
    if "web" in programs:
        t = time.thread_time()
        n = 200_000
        burn(n)
        per_ms = n / max((time.thread_time() - t) * 1000, 1e-6)
        out["web_loops"] = int(per_ms * WEB_CPU_MS)
    if "batch" in programs:
        r = subprocess.run(["sysbench", "cpu", "--threads=1", "--time=3", f"--cpu-max-prime={BATCH_PRIME}", "run"],
                           capture_output=True, text=True, timeout=60, check=True)
        out["sysbench_eps"] = parse_sysbench(r.stdout)["events_per_s"]
    return out


# ---------------------------------------------------------------------------- the bench


def apps(programs: tuple[str, ...] = PROGRAMS, ways: tuple[str, ...] = WAYS, minutes: float = 14.0,
         out_dir: str = "bench-out", progress: Callable[[str], None] = print) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    programs = tuple(p for p in PROGRAMS if p in programs)
    ways = tuple(w for w in WAYS if w in ways)
    seconds = run_seconds(minutes, len(programs) * len(ways))
    plans = {p: PHASES[p](seconds) for p in programs}
    ensure_packages(programs, progress)
    mach = machine()
    cal = calibrate(programs)
    result: dict[str, Any] = {
        "machine": mach,
        "config": {"minutes": minutes, "seconds_per_run": seconds, "programs": list(programs), "ways": list(ways),
                   "sample_s": SAMPLE_S, "specs": {p: SPECS[p].__dict__ for p in programs},
                   "web": {"workers": WEB_WORKERS, "cpu_ms_per_request": WEB_CPU_MS, "think_s": WEB_THINK_S},
                   "batch": {"cpu_max_prime": BATCH_PRIME}, "calibration": cal,
                   "phases": {p: [ph.__dict__ for ph in plans[p]] for p in programs},
                   "adaptive_default_limits": _default_limits()},
        "programs": {p: {} for p in programs},
    }
    with real_cgroup_cluster(BENCH_PARENT, "apps") as ctx:
        ctx.update(machine=mach, **cal)
        # Program by program, its ways back to back: each way meets about the same load from the
        # rest of the machine as the static run it is compared with.
        for program in programs:
            for way in ways:
                if way != "static":
                    cfg = set_profile(ctx["db"], way, timing="original" if way == "original" else "ours")
                    result["config"].setdefault("profiles", {})[way] = cfg
                    ctx["window_pending"] = float(cfg["guardian"]["WINDOW_TIMELAPSE"])
                progress(f"{way} {program}: {sum(p.seconds for p in plans[program]):g} s planned")
                raw = run_one(program, way, plans[program], ctx, progress)
                r = run_figures(program, raw, mach["cores"])
                result["programs"][program][way] = r
                progress(f"{way} {program}: done, {_summary(program, r)}; besides it the machine used "
                         f"{r['others_cores']} cores")
        vs_static(result)
        result["acceptance"] = acceptance(result)
        (out / "apps.json").write_text(json.dumps(result, indent=1))
        result["pngs"] = [str(plot_program(result, p, out / f"apps-{p}.png")) for p in programs]
        return result


def _default_limits() -> Any:
    """The limits a subscription without a limits document gets under the adaptive profile."""
    try:
        from sc_actors.profiles import subscription_limits

        return subscription_limits("adaptive", None)
    except ImportError as e:
        return f"unknown: {e}"


def _summary(program: str, r: dict[str, Any]) -> str:
    o = r["overall"]
    if program == "web":
        lat = o["latency_ms"]
        return (f"p50 {_ms(lat['p50'])} p99 {_ms(lat['p99'])} p99.9 {_ms(lat['p999'])}, errors {o['errors']}, "
                f"CPU utilization {pct(o['utilization'])}")
    if program == "batch":
        return f"finished in {o['finish_s']:.1f} s, CPU utilization {pct(o['utilization'])}"
    return (f"memory utilization {pct(o['mem_utilization'])}, OOM kills {o['oom_kills']}, "
            f"p99 {_ms(o['latency']['p99'])}")


def _ms(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}ms"


# ---------------------------------------------------------------------------- tables and figures


def tables(result: dict[str, Any]) -> list[Table]:
    """One table per program, a row per phase and one for all, way by way."""
    out = []
    progs = result["programs"]
    if "web" in progs:
        rows = []
        for way, r in progs["web"].items():
            for p in [*r["phases"], {**r["overall"], "name": "all", "rps": None}]:
                lat = p.get("latency_ms") or {}
                served = p.get("served_rps") if p["name"] != "all" else None
                rows.append([way, p["name"], _n(p.get("rps"), 0), _n(served, 1), _n(lat.get("p50"), 1),
                             _n(lat.get("p99"), 1), _n(lat.get("p999"), 1), str(p.get("errors", "–")),
                             pct(p["utilization"]), _n(p["mean_usage_shares"], 0), _n(p["mean_limit_shares"], 0)])
        out.append(_table("web: nginx + Python handler under wrk (latency ms, CPU shares)",
                          ["way", "phase", "rps", "got", "p50", "p99", "p99.9", "err", "util", "use", "limit"], rows))
    if "batch" in progs:
        rows = []
        for way, r in progs["batch"].items():
            for p in [*r["phases"], {**r["overall"], "name": "all", "threads": None}]:
                wall = p["finish_s"] if p["name"] == "all" else p["wall_s"]
                vs = p.get("wall_vs_static", p.get("finish_vs_static"))
                rows.append([way, p["name"], _n(wall, 1), signed(vs), pct(p["utilization"]),
                             _n(p["throttled_s"], 1), _n(p["mean_usage_shares"], 0), _n(p["mean_limit_shares"], 0)])
        out.append(_table("batch: sysbench cpu, fixed work per phase (CPU shares)",
                          ["way", "phase", "wall s", "vs static", "util", "thr s", "use", "limit"], rows))
    if "redis" in progs:
        rows = []
        for way, r in progs["redis"].items():
            for p in [*r["phases"], {**r["overall"], "name": "all", "mib": None}]:
                lat = p.get("latency") or {}
                rows.append([way, p["name"], _n(p.get("mib"), 0), _n(p["peak_mem_mib"], 0),
                             _n(p["mean_mem_limit_mib"], 0), pct(p["mem_utilization"]), str(p["oom_kills"]),
                             str(p["failcnt"]), _n(lat.get("p50"), 2), _n(lat.get("p99"), 1), str(p.get("errors", "–"))])
        out.append(_table("redis: dataset by phase (MiB; GET probe latency ms)",
                          ["way", "phase", "data", "peak", "limit", "mem util", "oom", "fail", "p50", "p99", "err"],
                          rows))
    return out


def _table(title: str, header: list[str], rows: list[list[str]]) -> Table:
    """Way and phase left, numbers right; the way named once, a rule after each way's 'all'."""
    t = Table(title=title)
    for i, h in enumerate(header):
        t.add_column(h, justify="left" if i < 2 else "right", no_wrap=True)
    for prev, row in zip([None, *rows], rows):
        t.add_row("" if prev and prev[0] == row[0] else row[0], *row[1:], end_section=row[1] == "all")
    return t


def _n(x: float | None, digits: int) -> str:
    return "–" if x is None else f"{x:.{digits}f}"


def plot_program(result: dict[str, Any], program: str, path: Path) -> Path:
    """Demand (or offered load), usage and limit over time, one row per way."""
    plt = pyplot()
    ways = result["programs"][program]
    mem_col = program == "redis"
    ncols = 2 if mem_col else 1
    fig, axes = plt.subplots(len(ways), ncols, figsize=(11 if mem_col else 9, 2.8 * len(ways)), sharex=True,
                             squeeze=False)
    base = ways.get("static") or next(iter(ways.values()))
    cpu_ms = base["overall"].get("cpu_ms_per_request") or WEB_CPU_MS
    for row, (way, r) in enumerate(ways.items()):
        s, ax = r["series"], axes[row][0]
        ax.set_ylim(0, SPECS[program].cpu[2] * 1.1)
        ax.plot(s["t"], s["usage"], color="tab:blue", lw=0.8, label="CPU usage")
        ax.step(s["t"], [x if x >= 0 else SPECS[program].cpu[2] for x in s["limit"]], where="post",
                color="tab:red", lw=1.3, label="CPU limit")
        ax.step(s["t"], s["cpuset"], where="post", color="grey", ls=":", lw=1, label="cpuset cores × 100")
        ax.set_ylabel("CPU shares")
        ax.set_title(f"{way} · {_summary(program, r)}", fontsize=8)
        ax.grid(alpha=0.3)
        if program == "web":
            # Demand in shares: the offered rate × the CPU a request took where nothing limited it.
            ts, vs = _steps(r["phases"], "rps")
            ax.step(ts, [v * cpu_ms / 10 for v in vs], where="post", color="black", ls="--", lw=1,
                    label=f"demand (offered req/s × {cpu_ms:.1f} ms)")
        elif program == "batch":
            ts, vs = _steps(r["phases"], "threads")
            ax.step(ts, [v * 100 for v in vs], where="post", color="black", ls="--", lw=1,
                    label="demand (threads × 100)")
        if mem_col:
            axm = axes[row][1]
            ts, vs = _ramps(r["phases"])
            axm.plot(ts, vs, color="black", ls="--", lw=1, label="dataset (planned)")
            axm.plot(s["t"], s["mem"], color="tab:green", lw=0.9, label="memory usage (no cache)")
            axm.step(s["t"], [x if x >= 0 else SPECS[program].mem[2] for x in s["mem_limit"]], where="post",
                     color="tab:red", lw=1.3, label="memory limit")
            axm.set_ylabel("MiB")
            axm.grid(alpha=0.3)
            if row == 0:
                axm.legend(loc="upper right", fontsize=7)
        if row == 0:
            ax.legend(loc="upper left", fontsize=7)
    for ax in axes[-1]:
        ax.set_xlabel("seconds since start")
    fig.suptitle(f"sc bench apps · {program} ({result['machine']['cores']} cores)", fontsize=10)
    save_figure(fig, path)
    return path


def _steps(phases: list[dict[str, Any]], key: str) -> tuple[list[float], list[float]]:
    ts, vs = [], []
    for p in phases:
        ts.append(p["start_s"])
        vs.append(float(p.get(key) or 0))
    if phases:
        ts.append(phases[-1]["end_s"])
        vs.append(0.0)
    return ts, vs


def _ramps(phases: list[dict[str, Any]]) -> tuple[list[float], list[float]]:
    """The planned dataset: a rise spread over its phase, a fall at the phase's start."""
    ts, vs, level = [0.0], [0.0], 0.0
    for p in phases:
        target = float(p.get("mib") or 0)
        if target < level:
            ts.append(p["start_s"])
            vs.append(target)
        ts.append(p["end_s"])
        vs.append(target)
        level = target
    return ts, vs


def _choose(given: str, allowed: tuple[str, ...], option: str) -> tuple[str, ...]:
    picked = [x.strip() for x in given.split(",") if x.strip()]
    bad = [x for x in picked if x not in allowed]
    if bad or not picked:
        fail(f"{option} takes a comma-separated subset of {','.join(allowed)}, got {given!r}")
    return tuple(x for x in allowed if x in picked)


def command(
    programs: str = typer.Option(",".join(PROGRAMS), help="comma-separated subset of web,batch,redis"),
    ways: str = typer.Option(",".join(WAYS), help="comma-separated subset of static,adaptive,original"),
    minutes: float = typer.Option(14.0, min=2, max=120, help="about how long the whole run takes"),
    out: Path = typer.Option(Path("bench-out"), help="where apps.json and apps-<program>.png go"),
) -> None:
    """Real software (nginx, sysbench, redis) under static, the original profile and the default."""
    from ..demo import cgroups_writable

    chosen_programs = _choose(programs, PROGRAMS, "--programs")
    chosen_ways = _choose(ways, WAYS, "--ways")
    reason = cgroups_writable()
    if reason:
        fail(reason.replace("sc demo", "sc bench apps"))
    # A plain `kill` unwinds like Ctrl-C: drivers, containers and Ray are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    seconds = run_seconds(minutes, len(chosen_programs) * len(chosen_ways))

    def say(m: str) -> None:
        console.print(m, highlight=False, soft_wrap=True)

    say(f"machine: {machine()}")
    say(f"config: programs {','.join(chosen_programs)}, ways {','.join(chosen_ways)}, {minutes:g} min in all, "
        f"{seconds:.0f} s of load per program and way, sample {SAMPLE_S} s")
    for p in chosen_programs:
        say(f"  {p}: " + ", ".join(f"{ph.name} {ph.seconds:g}s {_level(p, ph)}" for ph in PHASES[p](seconds)))
    try:
        r = apps(programs=chosen_programs, ways=chosen_ways, minutes=minutes, out_dir=out_dir(out),
                 progress=lambda m: say(f"  {m}"))
    except RuntimeError as e:
        fail(str(e))
    for t in tables(r):
        print_table(console, t)
    say("")
    say("util = ∫usage/∫limit over the phase (CPU; 'mem util' memory without page cache); use, limit = mean "
        "shares; got = requests served per second; err = wrk's errors (connect, read, write, status, timeout) or "
        "failed probes; oom = OOM kills, fail = memory.failcnt (times the limit was hit)")
    for program, ways_ in r["programs"].items():
        for way, res in ways_.items():
            if res["unfinished"]:
                say(f"warning: {program} {way} did not finish its phases in time")
            if res["others_cores"] > OTHERS_BUSY_CORES:
                say(f"warning: during {program} {way} the rest of the machine took {res['others_cores']} cores "
                    "(control plane, load drivers, other users): its figures are disturbed")
            if res["server_died_at_s"] is not None:
                say(f"warning: {program} {way}: the server died at {res['server_died_at_s']:.1f} s")
    say("")
    for line in r["acceptance"]:
        say(line)
    say(f"written: {out / 'apps.json'}, " + ", ".join(r["pngs"]))
