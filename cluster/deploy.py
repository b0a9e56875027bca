"""Deploy the control plane onto a running Ray cluster, and take it down.

`deploy()` creates (or finds) the StateDB, Guardian, Scaler,
StructuresSnapshoter, DatabaseSnapshoter and ReBalancer (time series in `<state_dir>/timeseries`
unless `dataset_dir` says otherwise), then the Membership (sc_actors/membership.py), which
places one ContainerScaler per controlled node and registers a host structure for
each node that has none, now and whenever a node joins later, and marks the hosts
of dead nodes unreachable. Nodes are controlled when they carry the `sc_host` label;
`sc_exclude=1` leaves a node out. Per-node settings come from the labels
`sc_cgroup_parent` and `sc_backend`, else from `node_defaults`.

With `shards` N > 1 the Guardian and the Scaler run as N shards by host (issue 16,
`sc_actors/policy/shards.py`): `guardian`, `guardian-1`, … and `scaler`, `scaler-1`, ….
The count is written first, into the `guardian` service document (the one place the
node agents, the shards and the API read it from); shards of an earlier deployment
with more are taken down. A node labelled `sc_shard_home=<i>` is the home of shard i (≥ 1):
its Guardian and Scaler run there, not on the head (a shard already running stays where
it is until `sc down`).
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import ray

from sc_actors.policy.shards import check_shards, shard_service
from sc_actors.settings import (
    DATABASE_SNAPSHOTER_NAME,
    GUARDIAN_NAME,
    NAMESPACE,
    SHARD_HOME_LABEL,
    SHARDS_FIELD,
    container_scaler_name,
    guardian_name,
    scaler_name,
)

from . import placement

log = logging.getLogger(__name__)


class StateDBDidNotStart(RuntimeError):
    """The StateDB actor died in its constructor (a damaged journal or checkpoint)."""


def deploy(
    state_dir: str,
    node_defaults: dict[str, Any] | None = None,
    fsync: bool = True,
    timeout_s: float = 60,
    progress: Callable[[str], None] = lambda msg: None,
    dataset_dir: str | None = None,
    shards: int = 1,
) -> dict[str, Any]:
    """Start (or find) every actor and wait until each answers; `shards` Guardians and Scalers."""
    check_shards(shards)
    node_defaults = node_defaults or {}
    statedb = placement.statedb_actor(state_dir, fsync)
    try:
        ray.get(statedb.ping.remote(), timeout=timeout_s)
    except ray.exceptions.RayActorError as e:
        # The StateDB refuses a damaged state dir in __init__, and Ray does not retry that.
        said = [line.strip() for line in str(e).splitlines() if "Corrupt: " in line]
        raise StateDBDidNotStart(f"the StateDB did not start: {said[-1] if said else e}") from None
    progress("statedb ready")
    # NOTE: the count before the shards: whoever routes by host reads it from here.
    ray.get(statedb.patch.remote("services", GUARDIAN_NAME, {SHARDS_FIELD: shards}), timeout=timeout_s)
    for name, shard in shard_actors().items():
        if shard >= shards:  # a shard of an earlier deployment with more
            _kill(name)
    homes = placement.shard_homes(ray.nodes()) if shards > 1 else set()
    for i in sorted(homes & set(range(1, shards))):
        progress(f"shard {i} of the guardian and the scaler on its home node ({SHARD_HOME_LABEL}={i})")
    actors = {
        "guardian": placement.guardian_actor(),
        "scaler": placement.scaler_actor(),
        **{guardian_name(i): placement.guardian_actor(i, i in homes) for i in range(1, shards)},
        **{scaler_name(i): placement.scaler_actor(i, i in homes) for i in range(1, shards)},
        "structures_snapshoter": placement.structures_snapshoter_actor(),
        "database_snapshoter": placement.database_snapshoter_actor(
            dataset_dir or str(Path(state_dir) / "timeseries")),
        "rebalancer": placement.rebalancer_actor(),
    }
    ray.get([a.ping.remote() for a in actors.values()], timeout=timeout_s)
    # NOTE: Scaler shards that ran before (shard 0 at least) read the count again now: with
    # an old one they would write the accounting of hosts another shard owns now.
    seen = ray.get([actors[scaler_name(i)].read_shards.remote() for i in range(shards)], timeout=timeout_s)
    if seen != [shards] * shards:
        raise RuntimeError(f"the scaler shards read {seen} shards, not {shards}")
    progress("guardian, scaler, structures_snapshoter, database_snapshoter, rebalancer ready"
             + (f" ({shards} shards of the guardian and the scaler)" if shards > 1 else ""))
    # One ContainerScaler and one host structure per controlled node, now and for
    # nodes that join later: the Membership does both (sc_actors/membership.py).
    membership = placement.membership_actor(node_defaults)
    ray.get(membership.configure.remote(node_defaults), timeout=timeout_s)
    hosts = ray.get(membership.reconcile.remote(timeout_s), timeout=timeout_s + 30)
    for host in hosts:
        progress(f"container-scaler:{host} ready")
    return {"statedb": statedb, **actors, "membership": membership, "hosts": hosts}


def undeploy(hosts: list[str] | None = None) -> None:
    """Kill every control-plane actor (detached actors outlive their creator)."""
    names = list(placement.CONTROL_PLANE) + list(shard_actors())
    if hosts is None:
        hosts = [
            a["name"][len(container_scaler_name("")):]
            for a in ray.util.list_named_actors(all_namespaces=True)
            if a["namespace"] == NAMESPACE and a["name"].startswith(container_scaler_name(""))
        ]
    names += [container_scaler_name(h) for h in hosts]
    try:
        # Buffered time series rows would die with the actor.
        ray.get(ray.get_actor(DATABASE_SNAPSHOTER_NAME, namespace=NAMESPACE).flush.remote(), timeout=10)
    except Exception as e:
        log.warning("time series not flushed: %s", e)
    for name in names:
        _kill(name)


def shard_actors() -> dict[str, int]:
    """The Guardian and Scaler shards past 0 running now: name → shard."""
    out = {}
    for a in ray.util.list_named_actors(all_namespaces=True):
        if a["namespace"] == NAMESPACE:
            _, shard = shard_service(a["name"])
            if shard > 0:
                out[a["name"]] = shard
    return out


def _kill(name: str) -> None:
    try:
        ray.kill(ray.get_actor(name, namespace=NAMESPACE), no_restart=True)
    except ValueError:
        pass


def wait_for(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.05, what: str = "condition") -> Any:
    """Poll `predicate` until it returns something truthy, or raise TimeoutError."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout_s:g}s waiting for {what}")
        time.sleep(interval_s)
