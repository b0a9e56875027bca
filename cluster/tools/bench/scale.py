"""`sc bench scale`: control-plane cost for N simulated containers on realistic simulated hosts.

Realistic simulation (issue 16): N containers live on simulated hosts of 32–128 cores
(4 or 8 GiB of memory per core) with 50–150 containers each, sized like real ones
(max a few cores, current near the demand, min small), drawn with a seeded RNG so a
run is reproducible. The hosts are spread over `nodes` Ray nodes of a local cluster:
each node's ContainerScaler is the synthetic node agent of its share of the hosts
(`ContainerScaler.simulate_hosts`), so 10 000 containers are ~100 hosts and still
3 agents. Each simulated host has its own host document (`agent` = the node's host),
accounting and windows.

`--json` prints one JSON object per size on stdout (progress and tables on stderr).
"""
from __future__ import annotations

import collections
import inspect
import json
import logging
import math
import os
import sys
import random
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, cast

import typer
from rich.console import Console
from rich.table import Table

from ..tables import print_table
from .common import console, machine, out_dir, percentiles, positive_ints

HOST_CORES = (32, 48, 64, 96, 128)
"""Cores of a simulated host, drawn uniformly."""
MEM_GIB_PER_CORE = (4, 8)
CONTAINERS_PER_CORE = (1.2, 1.6)
"""Containers on a host per core of it (drawn), kept within CONTAINERS_PER_HOST."""
CONTAINERS_PER_HOST = (50, 150)
AGENT_CORES = 8
"""Cores of a node agent's own host (it has no containers)."""
KEYS = ("containers", "hosts", "epoch_p99_s", "windows_per_host_per_s", "request_applied_p99_s",
        "control_plane_cores", "node_agent_cores", "statedb_changes_per_s")
"""The keys every `--json` line has (issue 16), before the others."""
AGENT_CLASS = "ContainerScaler"
"""Actors of this class are node agents; every other actor of the namespace is the control plane."""


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


@dataclass(frozen=True)
class ActorProcess:
    name: str
    class_name: str
    pid: int


def namespace_actors() -> list[ActorProcess]:
    """Every alive actor of the control plane's namespace, with its class and pid
    (`ray.util.state.list_actors`; the head runs the dashboard for it)."""
    from ray.util.state import list_actors

    from sc_actors.settings import NAMESPACE

    import ray

    rows = list_actors(address=ray.get_runtime_context().gcs_address, filters=[("state", "=", "ALIVE")],
                       detail=True, limit=10_000, raise_on_missing_output=False)
    return [ActorProcess(r.name or f"{r.class_name}:{r.pid}", r.class_name or "", int(r.pid))
            for r in rows if r.ray_namespace == NAMESPACE and r.pid]


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


# --------------------------------------------------------------------------- realistic hosts


@dataclass(frozen=True)
class ContainerSize:
    name: str
    cpu: tuple[float, float, float]
    """min, current, max, shares."""
    mem: tuple[float, float, float]
    """min, current, max, MiB."""
    demand: float
    """CPU it wants at first, shares."""
    mem_use: float
    """Memory it uses at first, MiB."""


@dataclass(frozen=True)
class HostSize:
    name: str
    cores: int
    mem_mib: int
    containers: tuple[ContainerSize, ...]


def container_size(rng: random.Random, name: str) -> ContainerSize:
    """A container sized like a real one: max 2–4 cores, min 10–25 shares, and its current
    limits where the adaptive profile would fit them: CPU demand / 0.94, memory use / 0.85
    (README "Fit"), so a run starts near its steady state; memory 200 MiB–1.7 GiB in use,
    max twice the limit."""
    demand = rng.uniform(5, 60)
    cpu_max = float(rng.choice((200, 300, 400)))
    cpu_min = float(rng.choice((10, 20, 25)))
    cpu = float(min(max(math.ceil(demand / 0.94), cpu_min), cpu_max))
    mem_use = round(rng.uniform(200, 1700), 1)
    mem = float(math.ceil(mem_use / 0.85))
    return ContainerSize(name, (cpu_min, cpu, cpu_max), (64.0, mem, 2 * mem), round(demand, 1), mem_use)


def realistic_hosts(containers: int, seed: int = 16, hosts: int | None = None, prefix: str = "sim") -> list[HostSize]:
    """Hosts for `containers` containers: 32–128 cores, 4 or 8 GiB per core, 50–150 containers
    each (about 1.2–1.6 per core). With `hosts`, exactly that many, the containers split evenly
    (each host's cores at least what its containers' currents take, over 80 %)."""
    rng = random.Random(seed)
    counts: list[int] = []
    cores: list[int] = []
    if hosts is None:
        left = containers
        while left > 0:
            c = rng.choice(HOST_CORES)
            n = min(max(round(c * rng.uniform(*CONTAINERS_PER_CORE)), CONTAINERS_PER_HOST[0]), CONTAINERS_PER_HOST[1])
            counts.append(min(n, left))
            cores.append(c)
            left -= counts[-1]
    else:
        counts = [containers * (k + 1) // hosts - containers * k // hosts for k in range(hosts)]
        cores = [rng.choice(HOST_CORES) for _ in range(hosts)]
    out = []
    for k, (n, c) in enumerate(zip(counts, cores)):
        name = f"{prefix}-h{k}"
        sizes = tuple(container_size(rng, f"{name}-c{i}") for i in range(n))
        need = math.ceil(sum(s.cpu[1] for s in sizes) / 100 / 0.8)
        c = max(c, need)
        gib = rng.choice(MEM_GIB_PER_CORE)
        out.append(HostSize(name, c, c * gib * 1024, sizes))
    return out


@dataclass(frozen=True)
class Demand:
    """How the simulated containers' CPU demand moves (`backends.synthetic`)."""

    noise: float = 0.03
    """σ of the jitter around a phase's level, relative."""
    phase_s: float = 60.0
    """Mean length of a phase, seconds (0: one phase)."""
    burst_per_s: float = 0.01
    """Chance a container starts a burst in a second."""


def plan_hosts(sizes: list[HostSize], agent: str,
               demand: Demand = Demand()) -> tuple[list[Any], list[tuple[str, dict[str, Any]]]]:
    """What a node agent simulates for these hosts (`SimulatedHost`s, cores placed as the
    Scaler's subscription would: Group_PP_LL), and the documents that subscribe them: each
    host (with `agent`, its free CPU, memory and core map), each container and its limits."""
    from sc_actors.backends.synthetic import SimulatedContainer, SimulatedHost
    from sc_actors.model import Host, HostInfo
    from sc_actors.policy.cores import allocate_cores, core_distribution
    from sc_actors.policy.membership import host_document

    sims, docs = [], []
    for hs in sizes:
        topology = {"0": {str(i): [i] for i in range(hs.cores)}}
        host = Host.model_validate(host_document(HostInfo(name=hs.name, cores=hs.cores, mem_mib=hs.mem_mib,
                                                          topology=topology), agent=agent))
        dist = core_distribution(topology, "Group_PP_LL")
        cmap = host.resources["cpu"].core_usage_mapping or {}
        containers = []
        for c in hs.containers:
            alloc = allocate_cores(cmap, c.name, c.cpu[1], dist)
            cmap = alloc.core_map
            containers.append(SimulatedContainer(c.name, cpu=c.cpu[1], cpu_num=alloc.cpu_num, mem=c.mem[1],
                                                 demand=c.demand, mem_use=c.mem_use, mem_cap=c.mem[2]))
            docs.append(("structures", {"name": c.name, "host": hs.name, "subtype": "container", "guard": True,
                                        "resources": {"cpu": {"min": c.cpu[0], "current": c.cpu[1], "max": c.cpu[2],
                                                              "guard": True},
                                                      "mem": {"min": c.mem[0], "current": c.mem[1], "max": c.mem[2],
                                                              "guard": True}}}))
            docs.append(("limits", {"name": c.name, "resources": {"cpu": {"boundary": 4, "boundary_type": "adaptive"},
                                                                  "mem": {"boundary": 10,
                                                                          "boundary_type": "adaptive"}}}))
        host.resources["cpu"].core_usage_mapping = cmap
        host.resources["cpu"].free -= sum(c.cpu[1] for c in hs.containers)
        host.resources["mem"].free -= sum(c.mem[1] for c in hs.containers)
        docs.insert(0, ("structures", host.model_dump(mode="json", exclude_none=True)))
        sims.append(SimulatedHost(hs.name, hs.cores, hs.mem_mib, tuple(containers), demand_noise=demand.noise,
                                  phase_s=demand.phase_s, burst_probability_per_s=demand.burst_per_s))
    return sims, docs


def simulate(db: Any, agents: list[str], sizes: list[HostSize], demand: Demand = Demand()) -> dict[str, list[str]]:
    """Give each agent its share of the hosts (round robin) and subscribe their containers
    in bulk (the per-container path asks the node for its list each time); the hosts by agent."""
    import ray

    from sc_actors.settings import NAMESPACE, container_scaler_name

    by_agent: dict[str, list[HostSize]] = {a: [] for a in agents}
    for k, hs in enumerate(sizes):
        by_agent[agents[k % len(agents)]].append(hs)
    for agent, mine in by_agent.items():
        if not mine:
            continue
        sims, docs = plan_hosts(mine, agent, demand)
        node = ray.get_actor(container_scaler_name(agent), namespace=NAMESPACE)
        ray.get(node.simulate_hosts.remote(sims), timeout=120)
        hosts = [d for d in docs if d[1].get("subtype") == "host"]
        ray.get(db.transact.remote(puts=hosts), timeout=120)
        rest = [d for d in docs if d[1].get("subtype") != "host"]
        for i in range(0, len(rest), 2000):
            ray.get(db.transact.remote(puts=rest[i:i + 2000]), timeout=120)
    return {a: [h.name for h in mine] for a, mine in by_agent.items()}


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
    process connected to it; `cluster.shutdown()` (after `ray.shutdown()`) ends it.
    The head runs the dashboard: the benchmark finds the actors' processes through it."""
    import ray
    from ray.cluster_utils import Cluster

    cluster = Cluster(initialize_head=True, head_node_args=dict(
        num_cpus=2, object_store_memory=150 * 1024**2, include_dashboard=True, dashboard_port=0,
        labels={"sc_role": "head"}))
    for h in hosts:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2,
                         labels={"sc_host": h, "sc_backend": "synthetic", "sc_cgroup_parent": h})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, log_to_driver=False, logging_level=logging.ERROR)
    return cluster


def _deploy(state_dir: str, shards: int | None) -> dict[str, Any]:
    """The control plane, with `shards` Guardians and Scalers where deploy takes a count."""
    from cluster.deploy import deploy

    kwargs: dict[str, Any] = {"node_defaults": {"synthetic_cores": AGENT_CORES}}
    if shards is not None:
        if "shards" not in inspect.signature(deploy).parameters:
            raise typer.BadParameter("this deploy has no shards yet", param_hint="--shards")
        kwargs["shards"] = shards
    return deploy(state_dir, **kwargs)


def _processes(fallback: list[str]) -> list[ActorProcess]:
    """The actors to measure: every alive one of the namespace, or (no State API) these names."""
    from sc_actors.settings import GUARDIAN_NAME, SCALER_NAME, container_scaler_name

    try:
        found = namespace_actors()
        if found:
            return found
    except Exception as e:  # the State API needs the dashboard
        logging.getLogger(__name__).warning("actors not listed (%s); measuring %s", e, fallback)
    classes = {GUARDIAN_NAME: "Guardian", SCALER_NAME: "Scaler"}
    return [ActorProcess(n, AGENT_CLASS if n.startswith(container_scaler_name("")) else classes.get(n, ""), pid)
            for n, pid in _actor_pids(fallback).items()]


def _guardians(actors: list[ActorProcess]) -> list[Any]:
    import ray

    from sc_actors.settings import GUARDIAN_NAME, NAMESPACE

    names = [a.name for a in actors if a.class_name == "Guardian"] or [GUARDIAN_NAME]
    return [ray.get_actor(n, namespace=NAMESPACE) for n in names]


def _guardian_counts(guardians: list[Any]) -> list[dict[str, Any]]:
    import ray

    return cast(list[dict[str, Any]], ray.get([g.ping.remote(1000) for g in guardians], timeout=120))


def _scaler_outcomes(actors: list[ActorProcess]) -> dict[str, int]:
    """The Scaler shards' decisions so far, by outcome (applied, trimmed, refused, …; a request
    one shard forwards to another is "forwarded" there and decided by the other)."""
    import ray

    from sc_actors.settings import NAMESPACE

    outcomes: dict[str, int] = {}
    for a in actors:
        if a.class_name == "Scaler":
            status = cast(dict[str, Any], ray.get(ray.get_actor(a.name, namespace=NAMESPACE).ping.remote()))
            for k, v in status["outcomes"].items():
                outcomes[k] = outcomes.get(k, 0) + v
    return outcomes


def measure(db: Any, agents: list[str], hosts: int, containers: int, window_s: float, duration_s: float,
            warmup_s: float, progress: Callable[[str], None]) -> dict[str, Any]:
    """Run `duration_s` after `warmup_s` and measure; the run's figures (KEYS first)."""
    import ray

    from sc_actors.settings import NAMESPACE, container_scaler_name

    from cluster.placement import CONTROL_PLANE

    time.sleep(warmup_s)  # the first windows fetch and prepare every container once
    actors = _processes(list(CONTROL_PLANE) + [container_scaler_name(a) for a in agents])
    guardians = _guardians(actors)
    pids = {a.name: a.pid for a in actors}
    agent_names = {a.name for a in actors if a.class_name == AGENT_CLASS}
    c0 = _guardian_counts(guardians)
    g0 = [g["windows"] for g in c0]
    db0 = ray.get(db.ping.remote())
    outcomes0 = _scaler_outcomes(actors)
    usage0 = _cpu_rss(pids)
    t_start, wall_start = time.monotonic(), time.time()
    time.sleep(duration_s)  # the benchmark's measuring interval, not a synchronisation
    elapsed = time.monotonic() - t_start
    usage1 = _cpu_rss(pids)
    progress(f"N={containers}: measured; collecting figures")
    g1 = _guardian_counts(guardians)
    db1 = ray.get(db.ping.remote(), timeout=120)
    reqs = ray.get(db.recent_requests.remote(None, 100_000), timeout=120)
    lat = [r["applied_at"] - r["timestamp"] for r in reqs
           if r.get("outcome") in ("applied", "trimmed") and r["applied_at"] >= wall_start]
    refused = collections.Counter(str(r.get("reason", ""))[:70] for r in reqs
                                  if r.get("outcome") == "refused" and r.get("applied_at", 0) >= wall_start)
    by_rule = collections.Counter(f'{r.get("rule") or r.get("action")}:{r.get("outcome")}' for r in reqs
                                  if r.get("timestamp", 0) >= wall_start)
    windows = sum(g["windows"] for g in g1) - sum(g0)
    source = "window_lag_s" if all("window_lag_s" in g for g in g1) else "epoch_s"
    lags: list[float] = []
    for g, w0 in zip(g1, g0):
        n = g["windows"] - w0
        lags += g[source][-n:] if n > 0 else []
    cores = {a: round((usage1[a][0] - usage0[a][0]) / elapsed, 3) for a in usage1 if a in usage0}
    epoch, applied = percentiles(lags), percentiles(lat)
    outcomes = {k: v - outcomes0.get(k, 0) for k, v in _scaler_outcomes(actors).items()}
    decided = sum(v for k, v in outcomes.items() if k != "forwarded")
    run: dict[str, Any] = {
        "containers": containers,
        "hosts": hosts,
        "epoch_p99_s": epoch["p99"],
        "windows_per_host_per_s": round(windows / hosts / elapsed, 3),
        "request_applied_p99_s": applied["p99"],
        "control_plane_cores": round(sum(v for a, v in cores.items() if a not in agent_names), 3),
        "node_agent_cores": round(sum(v for a, v in cores.items() if a in agent_names), 3),
        "statedb_changes_per_s": round((db1["changes"] - db0["changes"]) / elapsed, 1),
        "statedb_records_per_s": round((db1["seq"] - db0["seq"]) / elapsed, 1),
        "nodes": len(agents),
        "window_s": window_s,
        "seconds": round(elapsed, 1),
        "epoch_source": source,
        "epoch_p50_s": epoch["p50"],
        "request_applied_p50_s": applied["p50"],
        "requests_applied": len(lat),
        "guardian_per_s": {k: round((sum(g.get(k, 0) for g in g1) - sum(g.get(k, 0) for g in c0)) / elapsed, 1)
                           for k in ("decided", "prepares", "requests_sent", "requests_dropped")},
        "guardian_eval_s": percentiles([x for g in g1 for x in g.get("epoch_s", [])]),
        "control_plane_rss_mib": round(sum(usage1[a][1] for a in usage1 if a not in agent_names)),
        "node_agent_rss_mib": round(sum(usage1[a][1] for a in usage1 if a in agent_names)),
        "cores_by_actor": dict(sorted(cores.items())),
        "scaler_outcomes": outcomes,
        "refused_reasons": dict(refused.most_common(5)),
        "decisions_per_s": round(decided / elapsed, 1),
        "decisions_per_container_per_s": round(decided / elapsed / containers, 4),
        "decisions_by_rule": dict(by_rule.most_common(10)),
        "node_lagged_windows": sum(_node_ping(container_scaler_name(a))["lagged_windows"] for a in agents),
    }
    run["keeps_up"] = bool(run["windows_per_host_per_s"] >= 0.95 / window_s
                           and (run["epoch_p99_s"] or math.inf) <= window_s)
    return run


def scale(sizes: tuple[int, ...] = (100, 1000, 10000), nodes: int = 3, window_s: float = 1.0,
          duration_s: float = 30.0, warmup_s: float = 5.0, out_dir: str = "bench-out",
          progress: Callable[[str], None] = print, hosts_per_node: int | None = None, seed: int = 16,
          shards: int | None = None, on_run: Callable[[dict[str, Any]], None] = lambda run: None,
          demand: Demand = Demand()) -> dict[str, Any]:
    """N simulated containers on realistic simulated hosts served by `nodes` node agents;
    the control plane's cost per window. `on_run` gets each size's figures as they come.

    The control plane is every actor of the namespace but the node agents (ContainerScalers),
    which in a real cluster run on the hosts they control and are reported apart.
    """
    import ray

    from cluster.deploy import undeploy

    os.environ["RAY_AUTH_MODE"] = "disabled"
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {"machine": machine(), "config": {
        "nodes": nodes, "window_s": window_s, "duration_s": duration_s, "warmup_s": warmup_s,
        "hosts_per_node": hosts_per_node, "seed": seed, "shards": shards, "demand_noise": demand.noise,
        "phase_s": demand.phase_s, "burst_per_s": demand.burst_per_s}, "runs": {}}
    for n in sizes:
        agents = [f"sim{i}" for i in range(nodes)]
        sizes_n = realistic_hosts(n, seed, None if hosts_per_node is None else hosts_per_node * nodes)
        cluster = simulated_cluster(agents)
        try:
            actors = _deploy(tempfile.mkdtemp(prefix="sc-scale-"), shards)
            db = actors["statedb"]
            ray.get(db.patch.remote("services", "guardian", {"config.WINDOW_TIMELAPSE": window_s,
                                                             "config.EVENT_TIMEOUT": max(10 * window_s, 4)}))
            t0 = time.monotonic()
            simulate(db, agents, sizes_n, demand)
            progress(f"N={n}: {n} containers on {len(sizes_n)} hosts "
                     f"({min(h.cores for h in sizes_n)}–{max(h.cores for h in sizes_n)} cores) over {nodes} agents, "
                     f"subscribed in {time.monotonic() - t0:.1f}s; running {duration_s:g}s")
            run = measure(db, agents, len(sizes_n), n, window_s, duration_s, warmup_s, progress)
            results["runs"][str(n)] = run
            on_run(run)
            undeploy(agents)
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
    for q in ("p50", "p99"):
        pts = [(n, runs[str(n)][f"epoch_{q}_s"]) for n in ns]
        pts = [(n, v) for n, v in pts if v is not None]
        axes[0].plot([n for n, _ in pts], [v for _, v in pts], "o-", label=q)
    axes[0].axhline(results["config"]["window_s"], ls="--", c="gray", label="window")
    axes[0].set(title="one host's window, end → evaluated", ylabel="s", xscale="log", xlabel="containers")
    axes[0].legend()
    # CPU by actor, stacked, one bar per size; node agents hatched (they run on the hosts).
    actors = sorted({a for run in runs.values() for a in run["cores_by_actor"]},
                    key=lambda a: (a.startswith("container-scaler"), a))
    bottom = [0.0] * len(ns)
    for a in actors:
        vals = [runs[str(n)]["cores_by_actor"].get(a, 0.0) for n in ns]
        axes[1].bar([str(n) for n in ns], vals, bottom=bottom, label=a,
                    hatch="//" if a.startswith("container-scaler") else None)
        bottom = [b + v for b, v in zip(bottom, vals)]
    axes[1].axhline(1.0, ls="--", c="gray")
    axes[1].set(title="CPU by actor (cores of this machine)", xlabel="containers")
    axes[1].legend(fontsize=6)
    for q in ("p99", "p50"):
        pts = [(n, runs[str(n)][f"request_applied_{q}_s"]) for n in ns]
        pts = [(n, v) for n, v in pts if v is not None]  # none measured: no point, not a zero
        axes[2].plot([n for n, _ in pts], [v for _, v in pts], "o-", label=q)
    for n in ns:
        if runs[str(n)]["request_applied_p50_s"] is None:
            axes[2].annotate(f"N={n}: none applied\nin the window", (n, 0), fontsize=7, ha="right")
    axes[2].set(title="request → applied", ylabel="s", xscale="log", xlabel="containers")
    axes[2].legend()
    for a in axes:
        a.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def json_line(run: dict[str, Any]) -> str:
    """One size's figures as one JSON line: the issue's keys first."""
    return json.dumps({**{k: run[k] for k in KEYS}, **{k: v for k, v in run.items() if k not in KEYS}})


def scale_tables(runs: dict[str, dict[str, Any]]) -> tuple[Table, Table]:
    """The figures of each size, and the CPU of each actor by size."""
    t = Table(title="scale (CPU in cores of this machine; control plane = every actor but the node agents)")
    for col in ("containers", "hosts", "epoch p50 s", "epoch p99 s", "windows/host/s", "req→applied p50 s",
                "p99 s", "control cores", "control RSS MiB", "node agents cores", "StateDB changes/s", "keeps up"):
        t.add_column(col, justify="right")
    for n, run in runs.items():
        t.add_row(n, str(run["hosts"]), str(run["epoch_p50_s"]), str(run["epoch_p99_s"]),
                  str(run["windows_per_host_per_s"]),
                  str(run["request_applied_p50_s"]), str(run["request_applied_p99_s"]),
                  str(run["control_plane_cores"]), str(run["control_plane_rss_mib"]),
                  str(run["node_agent_cores"]), str(run["statedb_changes_per_s"]),
                  "yes" if run["keeps_up"] else "NO")
    by_actor = Table(title="CPU by actor, cores of this machine")
    by_actor.add_column("actor")
    for n in runs:
        by_actor.add_column(f"N={n}", justify="right")
    actors = sorted({a for run in runs.values() for a in run["cores_by_actor"]})
    for a in actors:
        by_actor.add_row(a, *(str(run["cores_by_actor"].get(a, "")) for run in runs.values()))
    return t, by_actor


def command(
    sizes: str = typer.Option("100,1000,10000", help="numbers of simulated containers, comma-separated"),
    nodes: int = typer.Option(3, min=1, help="Ray nodes, each one synthetic node agent serving its share of the hosts"),
    hosts_per_node: int = typer.Option(0, "--hosts-per-node", min=0,
                                       help="simulated hosts per node agent; 0: as many as realistic hosts "
                                            "(50–150 containers each) take"),
    window: float = typer.Option(1.0, min=0.1, help="Guardian window, seconds"),
    duration: float = typer.Option(30.0, min=5, help="measured seconds per size"),
    warmup: float = typer.Option(5.0, min=0, help="seconds after subscribing before measuring"),
    seed: int = typer.Option(16, help="seed of the hosts' and containers' sizes"),
    demand_noise: float = typer.Option(Demand.noise, min=0, max=1,
                                       help="σ of each container's demand jitter around its level, relative"),
    phase_s: float = typer.Option(Demand.phase_s, "--phase-s", min=0,
                                  help="mean length of a demand phase, seconds (0: one level for ever)"),
    burst_per_s: float = typer.Option(0.01, min=0, max=1, help="chance a container starts a burst in a second"),
    shards: int = typer.Option(0, min=0, help="Guardian and Scaler shards (passed to deploy); 0: deploy's default"),
    as_json: bool = typer.Option(False, "--json", help="one JSON object per size on stdout; progress on stderr"),
    out: Path = typer.Option(Path("bench-out"), help="where scale.json and scale.png go"),
) -> None:
    """Control-plane cost for N simulated containers on realistic simulated hosts (synthetic backend)."""
    ns = positive_ints("--sizes", sizes)
    say = Console(stderr=True) if as_json else console
    lines = sys.stdout
    if as_json:
        # Only the JSON lines on stdout: Ray prints its workers' and raylets' messages (a task of
        # an actor taken down between sizes) to this process's stdout, so they go to stderr.
        sys.stdout.flush()
        lines = os.fdopen(os.dup(1), "w", buffering=1)
        os.dup2(2, 1)

    def on_run(run: dict[str, Any]) -> None:
        if as_json:
            print(json_line(run), file=lines, flush=True)

    r = scale(sizes=ns, nodes=nodes, window_s=window, duration_s=duration, warmup_s=warmup, out_dir=out_dir(out),
              progress=lambda m: say.print(f"  {m}"), hosts_per_node=hosts_per_node or None, seed=seed,
              shards=shards or None, on_run=on_run,
              demand=Demand(demand_noise, phase_s, burst_per_s))
    say.print(f"machine: {r['machine']}  config: {r['config']}")
    for t in scale_tables(r["runs"]):
        print_table(say, t)
    say.print(f"written: {out / 'scale.json'}, {out / 'scale.png'}")
