"""`sc bench efficiency`: utilization and time-to-finish of a bursty trace, four ways.

Each of 2–3 real-cgroup containers runs a seeded bursty trace of fixed work
(`cluster.tools.load --work`): phases of 20 to 130–150 shares (see below), about 5–30 s each, minutes
in all. A phase `d:s` is d/100 × s CPU-seconds of work done at d shares at most, so
a throttled container does not lose work, it finishes later. The same traces run
four times in one invocation, sequentially in this order, on fresh containers:

  static         the CPU quota fixed at the container's max (a reserved VM); the
                 containers are not subscribed (the Scaler would refuse Σmax > host)
  adaptive       guarded at the shipped defaults: the adaptive profile, our timing (0.4 s windows)
  original-fast  the original's profile (limits 10 % of max, CpuRescaleUp +75, …) at our timing
  original       the original's profile at the original's timing (window 10 s, delay 10 s,
                 Scaler ticking every 5 s, reference §9)

Every guarded way subscribes its containers with no limits of their own, so they get
what a user who subscribes and guards a container gets from that profile; there is no
knob here to tune a margin for the benchmark. A guarded way starts once the node
pushes usage windows at its profile's pace, each container at the limit its profile
would fit to the first phase.

This process samples every container each `SAMPLE_S` from the cgroup files:
usage from `cpuacct.usage` deltas, the limit from `cpu.cfs_quota_us` /
`cpu.cfs_period_us` (the backend's `read_limits`), throttled time from `cpu.stat`
`throttled_time`, OOM kills from `memory.oom_control`. Per way, container and overall
it reports utilization ∫usage/∫limit, CPU-seconds allocated but unused ∫(limit − usage)
(and the part of it more than two margins above usage, outside the band the policy
keeps on purpose), throttled seconds, time to finish the fixed work and its overhead
vs static, reaction times (for each phase whose demand is above the limit when it
starts: phase start → first raise and → limit ≥ demand, within the phase), limit
changes (and per minute) and OOM kills.

The machine this was written on has 2 cores (200 shares), and the control plane
runs on it too (about 0.15 cores with our 0.4 s windows, measured and reported per
way), so the traces are shaped so that the containers' summed demand stays under
`SUM_CAP` (150 shares) at any time of the plan, leaving ~50 shares for the control
plane and this process: the containers' phases are planned together in time order,
each new phase's demand drawn below what the others leave free over its span,
keeping 20 shares for each other container (staggered, complementary phases). A
container alone thus peaks at 150 − 20·(n − 1) shares. With 170 the loads and the
control plane saturated the 2 cores: the loads then miss CPU that their quota
allows, usage falls below the limit and the guarded ways scale down into the
demand. Throttled phases stretch, so in the guarded ways the real phases drift from
the plan and the sum can briefly exceed it (static is never throttled). Other work on
the machine does the same to every way, static included: a way during which other
processes took more than EXTERNAL_BUSY_CORES is flagged as disturbed.
"""
from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import typer
from rich.console import Console
from rich.table import Table

from sc_actors.policy.limits import margin as margin_of
from sc_actors.policy.requests import fit_to_demand_target
from sc_actors.profiles import PROFILES

from .common import (REPO, console, cpu_stat, fail, host_busy_s, machine, num, out_dir, pct, percentiles,
                     real_cgroup_cluster, secs, set_profile, signed, tree_cpu, wait_window)

if TYPE_CHECKING:
    from sc_actors.backends.cgroup_v1 import CgroupV1Backend

BENCH_PARENT = "sc-bench-efficiency"
WAYS: dict[str, tuple[str, str] | None] = {
    "static": None,
    "adaptive": ("adaptive", "ours"),
    "original-fast": ("original", "ours"),
    "original": ("original", "original"),
}
"""Way → (profile, timing), in the order they run. From the original's 10 s windows back
to ours a node takes 20–30 s to follow (the Guardian, whose evaluations the original's
WINDOW_DELAY holds back, tells the node its window length); the other way round it
follows at once, so the original's timing runs last."""
SAMPLE_S = 0.25
"""How often this process reads every container's cgroup files, seconds."""
CPU_MIN, CPU_MAX = 10, 200
"""Each container's CPU [min, max], shares. Static runs at max."""
SUM_CAP = 150
"""Most the containers' planned demands add up to at any time, shares (see the docstring)."""
Sample = tuple[float, int, float, int, str]
"""(epoch, cpuacct.usage ns, limit in shares, throttled_time ns, cpuset) of one container."""
DEMAND_LO, DEMAND_HI = 20, 180
DURATION_S = (5.0, 30.0)
MEM = {"min": 64, "current": 256, "max": 512, "guard": False}
EXTERNAL_BUSY_CORES = 0.15
"""CPU other processes (not the loads, the control plane or this one) may take before
the time figures of a way are flagged as disturbed, cores."""


# ---------------------------------------------------------------------------- the trace


def make_traces(n: int, minutes: float, seed: int) -> list[list[tuple[float, float]]]:
    """Per container, phases (demand in shares, seconds) of about `minutes` in all.

    The containers' phases are planned together in time order: the container whose
    current phase ends first plans its next one. Its room is SUM_CAP − the highest
    sum, over the new phase's span, of the other containers' planned demands
    (DEMAND_LO where not planned yet), so the planned sum never exceeds SUM_CAP and
    the room is never below DEMAND_LO. Bursty: a phase is high (55–95 % of the room)
    or low (20–35 % of it, at least DEMAND_LO), flipping with probability 0.75.
    Durations are DURATION_S, shrunk for traces shorter than 3 minutes.
    """
    rng = random.Random(seed)
    total = minutes * 60.0
    shrink = min(1.0, max(total / 180.0, 0.2))
    traces: list[list[tuple[float, float]]] = [[] for _ in range(n)]
    ends = [0.0] * n
    high = [rng.random() < 0.5 for _ in range(n)]
    while min(ends) < total - 1e-9:
        i = min(range(n), key=lambda k: (ends[k], k))
        t = ends[i]
        d = round(rng.uniform(*DURATION_S) * shrink, 1)
        if total - t - d < DURATION_S[0] * shrink:
            d = max(round(total - t, 1), 0.1)  # no sliver at the end
        others = [traces[j] for j in range(n) if j != i]
        room = min(DEMAND_HI, SUM_CAP - _busiest(others, t, t + d))
        if rng.random() < 0.75:
            high[i] = not high[i]
        frac = rng.uniform(0.55, 0.95) if high[i] else rng.uniform(0.2, 0.35)
        demand = max(DEMAND_LO, min(room, round(frac * room)))
        traces[i].append((float(demand), d))
        ends[i] = t + d
    return traces


def _busiest(traces: list[list[tuple[float, float]]], t0: float, t1: float) -> float:
    """The highest summed demand of `traces` over [t0, t1), DEMAND_LO where not planned."""
    edges = {t0}
    for phases in traces:
        t = 0.0
        for _, s in phases:
            t += s
            if t0 < t < t1:
                edges.add(t)
    return max(sum(_demand_at(p, e) for p in traces) for e in edges)


def _demand_at(phases: list[tuple[float, float]], t: float) -> float:
    acc = 0.0
    for d, s in phases:
        if acc <= t < acc + s:
            return d
        acc += s
    return DEMAND_LO


def phases_arg(phases: list[tuple[float, float]]) -> str:
    return ",".join(f"{d:g}:{s:g}" for d, s in phases)


# ---------------------------------------------------------------------------- one way


class _Load:
    """A `cluster.tools.load --work` process and the JSON lines it printed (with receipt time)."""

    def __init__(self, phases: list[tuple[float, float]]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "cluster.tools.load", "--work", "--phases", phases_arg(phases)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True, cwd=REPO)
        self.lines: list[dict[str, Any]] = []
        self.ended = threading.Event()
        threading.Thread(target=self._read, daemon=True).start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.lines.append(json.loads(line))
            except ValueError:
                continue
        self.ended.set()

    def go(self) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()

    @property
    def end(self) -> dict[str, Any] | None:
        return next((x for x in self.lines if x.get("end")), None)

    def phase_now(self) -> int:
        return max((x["phase"] for x in self.lines if "work_cpu_s" in x), default=-1)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()


def oom_kills(backend: CgroupV1Backend, name: str) -> int:
    """Processes the OOM killer has killed in a cgroup v1 container (`memory.oom_control`)."""
    from sc_actors.backends import base

    return base.parse_keyed(backend._read(name, "memory.oom_control")).get("oom_kill", 0)


def _sample(backend: CgroupV1Backend, name: str) -> Sample:
    """(epoch, cpuacct.usage ns, limit in shares, throttled_time ns, cpuset) of one container."""
    t = time.time()
    cpu_ns = backend.read_counters(name).cpu_ns
    limits = backend.read_limits(name)
    throttled = cpu_stat(backend, name).get("throttled_time", 0)
    return t, cpu_ns, limits.cpu_allowance_limit, throttled, limits.cpu_num


def run_way(way: str, traces: list[list[tuple[float, float]]], ctx: dict[str, Any],
            progress: Callable[[str], None]) -> dict[str, Any]:
    """Run all traces at once under one way; the samples and the loads' lines."""
    import ray

    backend, node, scaler, db, host = ctx["backend"], ctx["node"], ctx["scaler"], ctx["db"], ctx["host"]
    names = [f"eff-{way}-{i}" for i in range(len(traces))]
    loads: list[_Load] = []
    subscribed: list[str] = []
    try:
        for name in names:
            backend.remove(name)
            ray.get(node.create_container.remote(name))
        # The loads wait for "go" in their containers (idle) while the way is set up.
        for name, tr in zip(names, traces):
            load = _Load(tr)
            loads.append(load)
            ray.get(node.attach.remote(name, load.proc.pid))
        spec = WAYS[way]
        if spec is None:  # static
            cores = ",".join(str(c) for c in range(ctx["machine"]["cores"]))
            for name in names:
                ray.get(node.apply.remote(name, {"cpu_allowance_limit": CPU_MAX, "cpu_num": cores}))
        else:
            profile, timing = spec
            configs = set_profile(db, profile, timing)
            # The node samples every container under its parent, subscribed or not: once its
            # windows follow the profile, subscribe and start at once. (Idle subscribed
            # containers would collect underuse events, and with the original's rules 3 of
            # them block any scale-up for EVENT_TIMEOUT, 120 s.)
            window_s = float(configs["guardian"]["WINDOW_TIMELAPSE"])
            if not wait_window(node, window_s, timeout_s=60):
                progress(f"{way}: the node's windows did not follow the profile's {window_s:g} s within 60 s")
            # Start where the profile's fit would put the first phase, within what the host
            # has free: every guarded way starts adapted. Subscribed with no limits of their
            # own: the profile's defaults, as a user who subscribes and guards gets them.
            cpu = PROFILES[profile]["cpu"]
            free = ray.get(db.get.remote("structures", host))["resources"]["cpu"]["free"]
            starts = [min(CPU_MAX, fit_to_demand_target(tr[0][0], cpu["boundary"], cpu["boundary_type"], CPU_MAX, "cpu"))
                      for tr in traces]
            if sum(starts) > free:
                starts = [s * free / sum(starts) for s in starts]
            for name, start in zip(names, starts):
                ray.get(scaler.subscribe_container.remote(
                    {"name": name, "host": host, "guard": True,
                     "resources": {"cpu": {"min": CPU_MIN, "current": int(max(start, CPU_MIN)), "max": CPU_MAX,
                                           "guard": True}, "mem": dict(MEM)}}))
                subscribed.append(name)
        samples: dict[str, list[Sample]] = {n: [_sample(backend, n)] for n in names}
        ooms0 = {n: oom_kills(backend, n) for n in names}
        busy0, load0 = host_busy_s(), os.getloadavg()[0]
        skip = {x.proc.pid for x in loads}
        ray0, me0 = tree_cpu(skip), time.process_time()
        t_go = time.time()
        for load in loads:
            load.go()
        planned = max(sum(s for _, s in tr) for tr in traces)
        deadline = t_go + 3 * planned + 120
        next_tick, next_report = t_go + SAMPLE_S, t_go + 15
        finished_at: dict[str, float] = {}
        while len(finished_at) < len(names) and time.time() < deadline:
            time.sleep(max(next_tick - time.time(), 0))
            # Late (this process starved)? Sample now and keep the period, no burst to catch up.
            next_tick = max(next_tick + SAMPLE_S, time.time() + SAMPLE_S / 2)
            for name, load in zip(names, loads):
                if name in finished_at:
                    continue
                samples[name].append(_sample(backend, name))
                if load.end is not None or load.ended.is_set():
                    finished_at[name] = samples[name][-1][0]
            if time.time() >= next_report:
                next_report += 15
                parts = []
                for name, load, tr in zip(names, loads, traces):
                    s = samples[name]
                    use = _shares(s[-2], s[-1]) if len(s) > 1 else 0.0
                    parts.append(f"{name} phase {load.phase_now() + 1}/{len(tr)} limit {s[-1][2]:g} use {use:.0f}")
                progress(f"{way} {time.time() - t_go:5.0f}s  " + " | ".join(parts))
        unfinished = [n for n in names if n not in finished_at]
        ray1 = tree_cpu(skip)
        host = {"busy_cpu_s": round(host_busy_s() - busy0, 2), "elapsed_s": round(time.time() - t_go, 2),
                "loadavg_1m_start": load0, "loadavg_1m_end": os.getloadavg()[0],
                "control_plane_cpu_s": round(sum(v - ray0.get(pid, 0.0) for pid, v in ray1.items()), 2),
                "bench_process_cpu_s": round(time.process_time() - me0, 2)}
        return {"names": names, "t_go": t_go, "samples": samples, "lines": [list(x.lines) for x in loads],
                "unfinished": unfinished, "host": host,
                "oom_kills": {n: oom_kills(backend, n) - ooms0[n] for n in names}}
    finally:
        for load in loads:
            load.kill()
        for name in subscribed:
            try:
                ray.get(scaler.desubscribe_container.remote(name))
            except Exception as e:  # noqa: BLE001 — cleanup goes on
                progress(f"could not desubscribe {name}: {e}")
        for name in names:
            backend.remove(name)


def _shares(a: Sample, b: Sample) -> float:
    return (b[1] - a[1]) / 1e9 / max(b[0] - a[0], 1e-9) * 100


# ---------------------------------------------------------------------------- figures


def container_figures(samples: list[Sample], lines: list[dict[str, Any]],
                      t_go: float, cores: int, margin: Callable[[float], float]) -> dict[str, Any]:
    """Utilization, unused and throttled CPU, time to finish and reactions of one container.

    Unused CPU is split at 2 × `margin(limit)` above usage: the band the policy keeps on
    purpose (usage between current − 2m and current − m), and the excess above it
    (scale-up steps past the need, scale-downs not yet done, a static limit).
    """
    end = next((x for x in lines if x.get("end")), None)
    t_end = end["t"] if end else samples[-1][0]
    used = alloc = unused = excess = 0.0
    series = []
    for a, b in zip(samples, samples[1:]):
        if a[0] >= t_end:
            break
        dt = b[0] - a[0]
        use_s = (b[1] - a[1]) / 1e9
        lim = [x if x >= 0 else cores * 100 for x in (a[2], b[2])]
        # The limit over the interval (trapezoid), up to the end of the work only.
        lim_s = (lim[0] + lim[1]) / 2 / 100 * (min(b[0], t_end) - a[0])
        used += use_s
        alloc += lim_s
        unused += max(lim_s - use_s, 0.0)
        excess += max(lim_s - use_s - 2 * margin((lim[0] + lim[1]) / 2) / 100 * (min(b[0], t_end) - a[0]), 0.0)
        series.append((round(b[0] - t_go, 3), round(use_s / dt * 100, 1), b[2]))
    starts = [x for x in lines if "work_cpu_s" in x]
    dones = {x["phase"]: x for x in lines if x.get("done")}
    raise_s, reach_s, missed, rises = [], [], 0, 0
    for p in starts:
        t0, d = p["t"], p["demand"]
        t1 = dones[p["phase"]]["t"] if p["phase"] in dones else t_end
        before = [s for s in samples if s[0] <= t0]
        limit0 = before[-1][2] if before else samples[0][2]
        if limit0 < 0 or d <= limit0:
            continue
        rises += 1
        after = [s for s in samples if t0 < s[0] <= t1]
        up = next((s[0] for s in after if s[2] > limit0), None)
        reach = next((s[0] for s in after if s[2] >= d), None)
        if up is not None:
            raise_s.append(round(up - t0, 3))
        if reach is not None:
            reach_s.append(round(reach - t0, 3))
        else:
            missed += 1
    limits = [s[2] for s in samples if s[0] <= t_end]
    changes = sum(1 for x, y in zip(limits, limits[1:]) if x != y)
    minutes = max((min(samples[-1][0], t_end) - samples[0][0]) / 60, 1e-9)
    throttled = [s[3] for s in samples if s[0] <= t_end] or [0]
    demand = [(round(p["t"] - t_go, 3), p["demand"]) for p in starts]
    cpusets = [(round(b[0] - t_go, 3), b[4]) for a, b in zip([None, *samples], samples)
               if a is None or a[4] != b[4]]
    if end:
        demand.append((round(end["t"] - t_go, 3), 0.0))
    return {
        "finish_s": end["wall_s"] if end else None,
        "planned_s": end["planned_s"] if end else None,
        "stretch_vs_plan": round(end["wall_s"] / end["planned_s"] - 1, 4) if end else None,
        "work_cpu_s": round(sum(p["work_cpu_s"] for p in starts), 3),
        "used_cpu_s": round(used, 3),
        "allocated_cpu_s": round(alloc, 3),
        "unused_cpu_s": round(unused, 3),
        "unused_beyond_2m_cpu_s": round(excess, 3),
        "utilization": round(used / alloc, 4) if alloc else None,
        "throttled_s": round((throttled[-1] - throttled[0]) / 1e9, 3),
        "limit_changes": changes,
        "limit_changes_per_min": round(changes / minutes, 1),
        "minutes": round(minutes, 3),
        "rises_above_limit": rises,
        "reaction_first_raise_s": percentiles(raise_s),
        "reaction_limit_ge_demand_s": percentiles(reach_s),
        "first_raise_each_s": raise_s,
        "limit_ge_demand_each_s": reach_s,
        "rises_not_covered_in_phase": missed,
        "series": {"t": [s[0] for s in series], "usage": [s[1] for s in series], "limit": [s[2] for s in series]},
        "demand": demand,
        "cpusets": cpusets,
    }


def way_figures(per: dict[str, dict[str, Any]]) -> dict[str, Any]:
    """Overall figures of a way from its containers'."""
    cs = list(per.values())
    used = sum(c["used_cpu_s"] for c in cs)
    alloc = sum(c["allocated_cpu_s"] for c in cs)
    finish = [c["finish_s"] for c in cs]
    return {
        "utilization": round(used / alloc, 4) if alloc else None,
        "used_cpu_s": round(used, 3),
        "allocated_cpu_s": round(alloc, 3),
        "unused_cpu_s": round(sum(c["unused_cpu_s"] for c in cs), 3),
        "unused_beyond_2m_cpu_s": round(sum(c["unused_beyond_2m_cpu_s"] for c in cs), 3),
        "throttled_s": round(sum(c["throttled_s"] for c in cs), 3),
        "finish_sum_s": round(sum(finish), 3) if None not in finish else None,
        "finish_max_s": round(max(finish), 3) if None not in finish else None,
        "planned_sum_s": round(sum(c["planned_s"] or 0 for c in cs), 3),
        "stretch_vs_plan": (round(sum(finish) / sum(c["planned_s"] for c in cs) - 1, 4)
                            if None not in finish else None),
        "limit_changes": sum(c["limit_changes"] for c in cs),
        "limit_changes_per_min": round(sum(c["limit_changes_per_min"] for c in cs) / max(len(cs), 1), 1),
        "oom_kills": sum(c.get("oom_kills", 0) for c in cs),
        "rises_above_limit": sum(c["rises_above_limit"] for c in cs),
        "rises_not_covered_in_phase": sum(c["rises_not_covered_in_phase"] for c in cs),
        "reaction_first_raise_s": percentiles([x for c in cs for x in c["first_raise_each_s"]]),
        "reaction_limit_ge_demand_s": percentiles([x for c in cs for x in c["limit_ge_demand_each_s"]]),
    }


def _overheads(result: dict[str, Any]) -> None:
    """Time-to-finish overhead vs static, per container and overall (Σ finish times)."""
    static = result["ways"].get("static")
    if not static:
        return
    for way, r in result["ways"].items():
        for i, (name, c) in enumerate(r["containers"].items()):
            base = list(static["containers"].values())[i]["finish_s"]
            c["overhead_vs_static"] = round(c["finish_s"] / base - 1, 4) if c["finish_s"] and base else None
        a, b = r["overall"]["finish_sum_s"], static["overall"]["finish_sum_s"]
        r["overall"]["overhead_vs_static"] = round(a / b - 1, 4) if a and b else None


# ---------------------------------------------------------------------------- the bench


def way_margin(way: str) -> Callable[[float], float]:
    """The cpu margin (shares) of a way's limits at a given limit; 0 for static."""
    spec = WAYS[way]
    if spec is None:
        return lambda limit: 0.0
    cpu = PROFILES[spec[0]]["cpu"]
    return lambda limit: margin_of(cpu["boundary"], cpu["boundary_type"], CPU_MAX, limit, "cpu")


def efficiency(minutes: float = 3.0, containers: int = 2, seed: int = 1,
               ways: tuple[str, ...] = tuple(WAYS), out_dir: str = "bench-out",
               progress: Callable[[str], None] = print) -> dict[str, Any]:
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    ways = tuple(w for w in WAYS if w in ways)
    traces = make_traces(containers, minutes, seed)
    mach = machine()
    result: dict[str, Any] = {
        "machine": mach,
        "config": {"minutes": minutes, "containers": containers, "seed": seed,
                   "ways": {w: WAYS[w] for w in ways}, "cpu_min": CPU_MIN, "cpu_max": CPU_MAX, "sum_cap": SUM_CAP,
                   "sample_s": SAMPLE_S, "profiles": PROFILES},
        "traces": [[list(p) for p in tr] for tr in traces],
        "ways": {},
    }
    with real_cgroup_cluster(BENCH_PARENT, "efficiency") as ctx:
        ctx.update(machine=mach)
        for way in ways:
            progress(f"{way}: {containers} containers, {minutes:g} min of planned work")
            raw = run_way(way, traces, ctx, progress)
            per = {name: {**container_figures(raw["samples"][name], lines, raw["t_go"], mach["cores"], way_margin(way)),
                          "oom_kills": raw["oom_kills"][name]}
                   for name, lines in zip(raw["names"], raw["lines"])}
            r = {"containers": per, "overall": way_figures(per), "unfinished": raw["unfinished"]}
            # CPU the rest of the machine took meanwhile (control plane, this process, other users), in
            # cores: what competed with the loads. The control plane runs in every way (idle in static).
            h = raw["host"]
            el = max(h["elapsed_s"], 1e-9)
            h["others_cores"] = round((h["busy_cpu_s"] - r["overall"]["used_cpu_s"]) / el, 2)
            h["control_plane_cores"] = round(h["control_plane_cpu_s"] / el, 2)
            h["bench_process_cores"] = round(h["bench_process_cpu_s"] / el, 2)
            h["external_cores"] = round(h["others_cores"] - h["control_plane_cores"] - h["bench_process_cores"], 2)
            r["host"] = h
            result["ways"][way] = r
            o = r["overall"]
            progress(f"{way}: done, utilization {pct(o['utilization'])}, finish Σ {o['finish_sum_s']} s, "
                     f"throttled {o['throttled_s']} s; besides the loads the machine used {h['others_cores']} "
                     f"cores (control plane {h['control_plane_cores']}), "
                     f"load average {h['loadavg_1m_start']:.1f} → {h['loadavg_1m_end']:.1f}")
        _overheads(result)
        (out / "efficiency.json").write_text(json.dumps(result, indent=1))
        plot_efficiency(result, out / "efficiency.png")
        return result


def plot_efficiency(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    ways = list(result["ways"])
    n = result["config"]["containers"]
    fig, axes = plt.subplots(len(ways), n, figsize=(6.5 * n, 2.9 * len(ways)), sharex=True, sharey=True,
                             squeeze=False)
    for row, way in enumerate(ways):
        r = result["ways"][way]
        for col, (name, c) in enumerate(r["containers"].items()):
            ax = axes[row][col]
            s = c["series"]
            if c["demand"]:
                ts, ds = zip(*c["demand"])
                ax.step(ts, ds, where="post", color="black", ls="--", lw=1.2, label="demand")
            ax.plot(s["t"], s["usage"], color="tab:blue", lw=0.9, label="usage")
            ax.step(s["t"], s["limit"], where="post", color="tab:red", lw=1.4, label="limit")
            oh = c.get("overhead_vs_static")
            ax.set_title(f"{way} · {name}: util {pct(c['utilization'])}, finish {num(c['finish_s'])} s"
                         + (f" ({oh * 100:+.1f} % vs static)" if oh is not None and way != "static" else ""),
                         fontsize=9)
            ax.grid(alpha=0.3)
            if col == 0:
                ax.set_ylabel("CPU shares (100 = 1 core)")
            if row == len(ways) - 1:
                ax.set_xlabel("seconds since start")
    axes[0][0].legend(loc="upper right", fontsize=8)
    cfg = result["config"]
    fig.suptitle(f"Bursty fixed-work trace, {n} containers, shipped defaults of each profile "
                 f"({result['machine']['cores']} cores)", fontsize=11)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def command(
    minutes: float = typer.Option(3.0, min=0.2, max=30, help="planned length of each container's trace"),
    containers: int = typer.Option(2, min=2, max=3, help="real-cgroup containers running at once"),
    seed: int = typer.Option(1, help="seed of the traces"),
    ways: str = typer.Option(",".join(WAYS), help=f"comma-separated subset of {','.join(WAYS)} (run in this order)"),
    out: Path = typer.Option(Path("bench-out"), help="where efficiency.json and efficiency.png go"),
) -> None:
    """Utilization, throttling, time to finish, OOM kills of a bursty trace: static, the adaptive
    profile (the default), the original profile at our timing and at the original's."""
    from ..demo import cgroups_writable

    given = [w.strip() for w in ways.split(",") if w.strip()]
    bad = [w for w in given if w not in WAYS]
    if bad or not given:
        fail(f"--ways takes a comma-separated subset of {','.join(WAYS)}, got {ways!r}")
    chosen = tuple(w for w in WAYS if w in given)  # they run in this order
    reason = cgroups_writable()
    if reason:
        fail(reason.replace("sc demo", "sc bench efficiency"))
    # A plain `kill` unwinds like Ctrl-C: the loads, containers and Ray are cleaned up.
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    traces = make_traces(containers, minutes, seed)
    console.print(f"machine: {machine()}")
    console.print(f"config: {containers} containers, {minutes:g} min, seed {seed}, cpu [{CPU_MIN}, {CPU_MAX}], "
                  f"ways {','.join(chosen)} (profile, timing: "
                  + "; ".join(f"{w} {WAYS[w] or 'limit = max'}" for w in chosen) + f"), sample {SAMPLE_S} s")
    for i, tr in enumerate(traces):
        console.print(f"  trace {i}: {phases_arg(tr)}", highlight=False)
    r = efficiency(minutes=minutes, containers=containers, seed=seed, ways=chosen,
                   out_dir=out_dir(out), progress=lambda m: console.print(f"  {m}", highlight=False))
    t = Table(title=f"efficiency, {containers} containers × {minutes:g} min, shipped defaults")
    for col in ("way", "ctr", "util", "unused CPU-s", "beyond 2m", "throttled s", "finish s", "vs static", "vs plan",
                "raise p50", "raise p95", "≥demand p50", "missed", "scalings", "/min", "OOM"):
        t.add_column(col, justify="right")
    for way, res in r["ways"].items():
        rows = [(f"c{i}", c) for i, c in enumerate(res["containers"].values())] + [("all", res["overall"])]
        for label, c in rows:
            rr = c.get("reaction_first_raise_s") or {}
            reach = c.get("reaction_limit_ge_demand_s") or {}
            t.add_row(way, label, pct(c["utilization"]), f"{c['unused_cpu_s']:.1f}",
                      f"{c['unused_beyond_2m_cpu_s']:.1f}", f"{c['throttled_s']:.1f}",
                      num(c.get("finish_s", c.get("finish_sum_s"))), signed(c.get("overhead_vs_static")),
                      signed(c.get("stretch_vs_plan")), secs(rr.get("p50")), secs(rr.get("p95")),
                      secs(reach.get("p50")), f"{c['rises_not_covered_in_phase']}/{c['rises_above_limit']}",
                      str(c["limit_changes"]), f"{c['limit_changes_per_min']:.1f}", str(c.get("oom_kills", 0)),
                      end_section=label == "all")
    # Piped or logged, rich would squeeze the table into 80 columns.
    (console if console.is_terminal else Console(width=150)).print(t)
    console.print("util = ∫usage/∫limit; unused = ∫(limit − usage), 'beyond 2m' its part more than two margins "
                  "above usage (outside the band the policy keeps); finish = wall time of the fixed work ('all' = "
                  "Σ), vs static and vs the planned time; raise = phase start → first raise of the limit, ≥demand "
                  "= → limit ≥ demand, for phases starting above the limit; missed = such phases whose limit never "
                  "reached the demand before they ended; scalings = limit changes seen (/min: per minute and "
                  "container); OOM = processes the OOM killer killed", highlight=False)
    for way, res in r["ways"].items():
        h = res["host"]
        if h["external_cores"] > EXTERNAL_BUSY_CORES:
            console.print(f"[yellow]warning:[/] during {way} other processes took {h['external_cores']} cores of "
                          "this machine: its time figures are disturbed", highlight=False)
        if res["unfinished"]:
            console.print(f"[yellow]warning:[/] {way}: {', '.join(res['unfinished'])} did not finish in time",
                          highlight=False)
        console.print(f"{way}: besides the loads the machine used {h['others_cores']} cores on average, of which "
                      f"the control plane (embedded Ray) {h['control_plane_cores']} and this process "
                      f"{h['bench_process_cores']} (load average {h['loadavg_1m_start']:.1f} → "
                      f"{h['loadavg_1m_end']:.1f})", highlight=False)
    console.print(f"written: {out / 'efficiency.json'}, {out / 'efficiency.png'}")
