"""`sc bench rebalance`: an application of 3 containers with a fixed `max`, whose demand moves between them.

The case the ReBalancer exists for (reference §7.4). One application of 3 real-cgroup
containers has a fixed CPU `max` (`TOTAL`, 150 shares). Its work rotates: in each turn
one container is hot (`HOT` shares) and the two others cool (`COOL`), so the application
as a whole always wants `HOT + 2 × COOL` = its max. Each turn is fixed work
(`cluster.tools.load --work`: d/100 × s CPU-seconds at d shares at most), so a container held
back finishes later, it does not do less. The same traces run three ways, one after
the other in one invocation, on fresh containers:

  static       each container's quota fixed at max / 3 (the application's max split evenly)
  container    guarded by the Guardian in container scope (the shipped adaptive profile),
               each container's max = max / 3: container scope alone cannot move CPU
               between siblings, so this is how it keeps the application within its max
  rebalancer   unguarded, the ReBalancer active (shipped settings: thresholds, DIFF 0.4,
               STOLEN 0.4, a round at most every WINDOW_TIMELAPSE 1 s per node), each
               container in [COOL_MIN, max − 2 × COOL_MIN], starting at max / 3: swaps
               move `current` from the cool containers to the hot one, the sum stays at max
  rebalancer-0.2  the same with DIFF_PERCENTAGE 0.2: a donor stops giving once its usage is
               80 % of its limit (60 % at 0.4), so more reaches the receiver

This process samples every container each `SAMPLE_S` from the cgroup files (usage from
`cpuacct.usage`, the limit from the CFS quota) and reports, per way: utilization
∫usage/∫limit and ∫usage/(max × time) (what the application had), the time to finish
all its work, the largest Σ limit seen (never above max), and the time a receiver
waits for CPU: for each phase that starts with its demand above its limit, phase start
→ limit ≥ `REACHED` × demand; a phase that never gets there counts its whole length.
"""
from __future__ import annotations

import json
import signal
import sys
import time
from pathlib import Path
from typing import Any, Callable

import typer
from rich.console import Console
from rich.table import Table

from .common import (console, fail, machine, num, out_dir, pct, percentiles, pyplot, real_cgroup_cluster,
                     save_figure, secs, set_profile)
from .efficiency import _Load, _sample, _shares, phases_arg

BENCH_PARENT = "sc-bench-rebalance"
WAYS = ("static", "container", "rebalancer", "rebalancer-0.2")
TIGHT_DIFF = 0.2
"""DIFF_PERCENTAGE of the way `rebalancer-0.2`: a donor keeps 20 % of its limit above its usage, not 40 %."""
TOTAL = 150
"""The application's CPU max, shares: 1.5 of the 2 cores, the rest for the control plane."""
HOT, COOL = 110, 20
COOL_MIN = 10
"""Each container's CPU min, shares."""
SAMPLE_S = 0.25
REACHED = 0.9
"""A receiver has its CPU once its limit is this share of its demand: the ReBalancer takes
STOLEN % of the donors' slack per round, so the last shares come in ever smaller steps."""
MEM = {"min": 64, "current": 256, "max": 512, "guard": False}
APP = "rb-app"


def make_traces(phase_s: float, rounds: int) -> list[list[tuple[float, float]]]:
    """3 traces of 3 × rounds turns; in turn k container k mod 3 is hot, the others cool."""
    return [[(float(HOT if k % 3 == i else COOL), phase_s) for k in range(3 * rounds)] for i in range(3)]


def _setup(way: str, names: list[str], ctx: dict[str, Any]) -> list[str]:
    """Limits, subscriptions and services of one way; the names subscribed."""
    import ray

    node, scaler, db, host = ctx["node"], ctx["scaler"], ctx["db"], ctx["host"]
    third = TOTAL // 3
    if way == "static":
        cores = ",".join(str(c) for c in range(ctx["machine"]["cores"]))
        for name in names:
            ray.get(node.apply.remote(name, {"cpu_allowance_limit": third, "cpu_num": cores}))
        return []
    guard = way == "container"
    cpu_max = third if guard else TOTAL - 2 * COOL_MIN
    for name in names:
        ray.get(scaler.subscribe_container.remote(
            {"name": name, "host": host, "guard": guard,
             "resources": {"cpu": {"min": COOL_MIN, "current": third, "max": cpu_max, "guard": guard},
                           "mem": dict(MEM)}}))
    if way.startswith("rebalancer"):
        ray.get(db.put.remote("structures", {
            "name": APP, "subtype": "application", "guard": False, "state": "running", "containers": names,
            "resources": {"cpu": {"min": 3 * COOL_MIN, "max": TOTAL}, "mem": {"min": 192, "max": 1536}}}))
        diff = TIGHT_DIFF if way == "rebalancer-0.2" else ctx["shipped_diff"]
        ray.get(db.patch.remote("services", "rebalancer", {"config.ACTIVE": True, "config.DIFF_PERCENTAGE": diff}))
    return names


def _teardown(way: str, subscribed: list[str], ctx: dict[str, Any], progress: Callable[[str], None]) -> None:
    import ray

    db = ctx["db"]
    if way.startswith("rebalancer"):
        ray.get(db.patch.remote("services", "rebalancer", {"config.ACTIVE": False,
                                                           "config.DIFF_PERCENTAGE": ctx["shipped_diff"]}))
        if ray.get(db.exists.remote("structures", APP)):
            ray.get(db.delete.remote("structures", APP))
    for name in subscribed:
        try:
            ray.get(ctx["scaler"].desubscribe_container.remote(name))
        except Exception as e:  # noqa: BLE001 — cleanup goes on
            progress(f"could not desubscribe {name}: {e}")


def run_way(way: str, traces: list[list[tuple[float, float]]], ctx: dict[str, Any],
            progress: Callable[[str], None]) -> dict[str, Any]:
    """All three traces at once under one way: every container's samples and its load's lines."""
    import ray

    backend, node = ctx["backend"], ctx["node"]
    names = [f"rb-{way}-{i}" for i in range(len(traces))]
    loads: list[_Load] = []
    subscribed: list[str] = []
    try:
        for name, tr in zip(names, traces):
            backend.remove(name)
            ray.get(node.create_container.remote(name))
            loads.append(_Load(tr))
            ray.get(node.attach.remote(name, loads[-1].proc.pid))
        subscribed = _setup(way, names, ctx)
        samples = {n: [_sample(backend, n)] for n in names}
        t_go = time.time()
        for load in loads:
            load.go()
        deadline = t_go + 4 * sum(s for _, s in traces[0]) + 60
        next_tick = t_go + SAMPLE_S
        while not all(x.ended.is_set() for x in loads) and time.time() < deadline:
            time.sleep(max(next_tick - time.time(), 0))
            next_tick = max(next_tick + SAMPLE_S, time.time() + SAMPLE_S / 2)
            for name, load in zip(names, loads):
                if not load.ended.is_set():
                    samples[name].append(_sample(backend, name))
        swaps = [e for n in names for e in ray.get(ctx["db"].recent_requests.remote(n, 10_000))
                 if e.get("pair_structure") and e.get("rule") == "ReBalancer" and e["structure"] == n]
        return {"names": names, "t_go": t_go, "samples": samples, "lines": [list(x.lines) for x in loads],
                "unfinished": [n for n, x in zip(names, loads) if x.end is None],
                "swaps": {o: sum(1 for e in swaps if e["outcome"] == o) for o in {e["outcome"] for e in swaps}}}
    finally:
        for load in loads:
            load.kill()
        _teardown(way, subscribed, ctx, progress)
        for name in names:
            backend.remove(name)


# ---------------------------------------------------------------------------- figures


def _series(samples: list[Any], t_go: float) -> dict[str, list[float]]:
    return {"t": [b[0] - t_go for b in samples[1:]], "usage": [_shares(a, b) for a, b in zip(samples, samples[1:])],
            "limit": [b[2] for b in samples[1:]]}


def receiver_waits(series: dict[str, list[float]], lines: list[dict[str, Any]], t_go: float) -> list[dict[str, Any]]:
    """Each phase that starts with demand above the limit: how long until limit ≥ REACHED × demand."""
    starts = {x["phase"]: x for x in lines if "work_cpu_s" in x}
    dones = {x["phase"]: x for x in lines if x.get("done")}
    out = []
    for i, s in sorted(starts.items()):
        t0, end = s["t"] - t_go, (dones[i]["t"] - t_go) if i in dones else None
        if end is None or s["demand"] <= 0:
            continue
        during = [(t, lim) for t, lim in zip(series["t"], series["limit"]) if t0 <= t <= end]
        if not during or during[0][1] >= s["demand"]:
            continue
        got = next((t for t, lim in during if lim >= REACHED * s["demand"]), None)
        raised = next((t for t, lim in during if lim > during[0][1]), None)
        out.append({"phase": i, "demand": s["demand"], "wait_s": round((got if got is not None else end) - t0, 2),
                    "reached": got is not None, "first_raise_s": None if raised is None else round(raised - t0, 2),
                    "limit_at_end": during[-1][1]})
    return out


def way_figures(raw: dict[str, Any]) -> dict[str, Any]:
    t_go = raw["t_go"]
    series = {n: _series(raw["samples"][n], t_go) for n in raw["names"]}
    # CPU-seconds used from the counters, given as ∫limit over each sampling interval.
    used = sum((s[-1][1] - s[0][1]) / 1e9 for s in raw["samples"].values())
    given = sum(b[2] / 100 * (b[0] - a[0]) for s in raw["samples"].values() for a, b in zip(s, s[1:]))
    ends = [next((x for x in lines if x.get("end")), None) for lines in raw["lines"]]
    finish = max((e["wall_s"] for e in ends if e), default=None) if all(ends) else None
    waits = [w for n, lines in zip(raw["names"], raw["lines"]) for w in receiver_waits(series[n], lines, t_go)]
    n = min(len(s["limit"]) for s in series.values())
    sums = [sum(s["limit"][k] for s in series.values()) for k in range(n)]
    elapsed = max((s["t"][-1] for s in series.values() if s["t"]), default=0.0)
    return {
        "utilization": used / given if given else None,
        "of_app_max": used / (TOTAL / 100 * elapsed) if elapsed else None,
        "used_cpu_s": round(used, 1),
        "finish_s": finish,
        "waits": waits,
        "wait_s": percentiles([w["wait_s"] for w in waits]),
        "reached": sum(w["reached"] for w in waits),
        "first_raise_s": percentiles([w["first_raise_s"] for w in waits if w["first_raise_s"] is not None]),
        "limit_at_end_mean": (sum(w["limit_at_end"] for w in waits) / len(waits)) if waits else None,
        "max_sum_limit": max(sums, default=None),
        "swaps": raw["swaps"],
        "unfinished": raw["unfinished"],
        "series": series,
    }


def rebalance(phase_s: float = 8.0, rounds: int = 2, ways: tuple[str, ...] = WAYS, out: str = "bench-out",
              progress: Callable[[str], None] = print) -> dict[str, Any]:
    traces = make_traces(phase_s, rounds)
    mach = machine()
    result: dict[str, Any] = {"machine": mach, "config": {"total": TOTAL, "hot": HOT, "cool": COOL, "phase_s": phase_s,
                                                         "rounds": rounds, "sample_s": SAMPLE_S, "reached": REACHED},
                              "traces": [[list(p) for p in tr] for tr in traces], "ways": {}}
    with real_cgroup_cluster(BENCH_PARENT, "rebalance") as ctx:
        ctx.update(machine=mach)
        import ray

        set_profile(ctx["db"], "adaptive")  # the shipped profile, whatever the state dir held
        result["config"]["rebalancer"] = ray.get(ctx["db"].get.remote("services", "rebalancer"))["config"]
        ctx["shipped_diff"] = result["config"]["rebalancer"]["DIFF_PERCENTAGE"]
        for way in ways:
            progress(f"{way}: 3 containers, application max {TOTAL}, {3 * rounds} turns of {phase_s:g} s")
            r = way_figures(run_way(way, traces, ctx, progress))
            result["ways"][way] = r
            progress(f"{way}: done, finish {num(r['finish_s'])} s, utilization {pct(r['utilization'])}, "
                     f"receiver wait p50 {secs(r['wait_s']['p50'])}, Σ limit ≤ {r['max_sum_limit']}")
    plot(result, Path(out) / "rebalance.png")
    (Path(out) / "rebalance.json").write_text(json.dumps(result, indent=1))
    return result


def plot(result: dict[str, Any], path: Path) -> None:
    plt = pyplot()
    ways = list(result["ways"])
    fig, axes = plt.subplots(len(ways), 1, figsize=(11, 3.0 * len(ways)), sharex=True, squeeze=False)
    colors = ("tab:red", "tab:blue", "tab:green")
    for row, way in enumerate(ways):
        ax, r = axes[row][0], result["ways"][way]
        for (name, s), color in zip(r["series"].items(), colors):
            ax.step(s["t"], s["limit"], where="post", color=color, lw=1.4, label=f"{name[-1]} limit")
            ax.plot(s["t"], s["usage"], color=color, lw=0.7, alpha=0.6, ls=":", label=f"{name[-1]} usage")
        n = min(len(s["limit"]) for s in r["series"].values())
        first = next(iter(r["series"].values()))
        ax.plot(first["t"][:n], [sum(s["limit"][k] for s in r["series"].values()) for k in range(n)],
                color="black", lw=1.0, label="Σ limit")
        ax.axhline(TOTAL, color="grey", ls="--", lw=0.8)
        ax.set_title(f"{way}: finish {num(r['finish_s'])} s, utilization {pct(r['utilization'])}, receiver wait "
                     f"p50 {secs(r['wait_s']['p50'])} ({r['reached']}/{len(r['waits'])} reached)", fontsize=9)
        ax.set_ylabel("CPU shares")
        ax.grid(alpha=0.3)
    axes[0][0].legend(loc="upper right", fontsize=7, ncol=4)
    axes[-1][0].set_xlabel("seconds since start")
    fig.suptitle(f"One application, 3 containers, max {TOTAL} shares; the hot container ({HOT}) rotates", fontsize=11)
    save_figure(fig, path)


def command(
    phase_s: float = typer.Option(8.0, min=2, max=120, help="planned seconds of each turn (one container hot)"),
    rounds: int = typer.Option(2, min=1, max=10, help="rotations: each container is hot once per round"),
    ways: str = typer.Option(",".join(WAYS), help=f"comma-separated subset of {','.join(WAYS)} (run in this order)"),
    out: Path = typer.Option(Path("bench-out"), help="where rebalance.json and rebalance.png go"),
) -> None:
    """One application of 3 containers with a fixed max, its demand moving between them: the
    ReBalancer vs container scope alone vs static (utilization, time to finish, receiver wait)."""
    from ..demo import cgroups_writable

    given = [w.strip() for w in ways.split(",") if w.strip()]
    if not given or any(w not in WAYS for w in given):
        fail(f"--ways takes a comma-separated subset of {','.join(WAYS)}, got {ways!r}")
    reason = cgroups_writable()
    if reason:
        fail(reason.replace("sc demo", "sc bench rebalance"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    chosen = tuple(w for w in WAYS if w in given)
    console.print(f"machine: {machine()}")
    for i, tr in enumerate(make_traces(phase_s, rounds)):
        console.print(f"  trace {i}: {phases_arg(tr)}", highlight=False)
    r = rebalance(phase_s, rounds, chosen, out_dir(out), progress=lambda m: console.print(f"  {m}", highlight=False))
    t = Table(title=f"rebalance: application max {TOTAL}, 3 containers, hot {HOT} / cool {COOL}, "
                    f"{3 * rounds} turns of {phase_s:g} s")
    for col in ("way", "util ∫use/∫limit", "use / app max", "finish s", "vs static", "first raise p50",
                "receiver wait p50", "p95", f"reached {REACHED:g}×demand", "receiver limit at phase end",
                "max Σ limit", "swaps applied"):
        t.add_column(col, justify="right")
    static = (r["ways"].get("static") or {}).get("finish_s")
    for way, w in r["ways"].items():
        vs = f"{(w['finish_s'] / static - 1) * 100:+.1f} %" if static and w["finish_s"] else "–"
        t.add_row(way, pct(w["utilization"]), pct(w["of_app_max"]), num(w["finish_s"]), vs,
                  secs(w["first_raise_s"]["p50"]), secs(w["wait_s"]["p50"]), secs(w["wait_s"]["p95"]),
                  f"{w['reached']}/{len(w['waits'])}", f"{num(w['limit_at_end_mean'])} of {HOT}",
                  num(w["max_sum_limit"]), str(w["swaps"].get("applied", 0)))
    (console if console.is_terminal else Console(width=200)).print(t)
    console.print(f"receiver wait = phase start → limit ≥ {REACHED:g} × demand, for each phase starting with its demand "
                  "above its limit; a phase that never gets there counts its whole length (reached = how many got "
                  "there); first raise = phase start → its limit first goes up; limit at phase end = the receiver's "
                  "mean limit when its hot phase ended; finish = wall time until the application's last container finished its fixed work",
                  highlight=False)
    for way, w in r["ways"].items():
        if w["unfinished"]:
            console.print(f"[yellow]warning:[/] {way}: {', '.join(w['unfinished'])} did not finish in time")
    console.print(f"written: {out / 'rebalance.json'}, {out / 'rebalance.png'}")
