"""Deploy the control plane onto a running Ray cluster, and take it down.

`deploy()` creates (or finds) the StateDB, Guardian, Scaler,
StructuresSnapshoter, DatabaseSnapshoter and ReBalancer (time series in `<state_dir>/timeseries`
unless `dataset_dir` says otherwise), then the Membership (sc_actors/membership.py), which
places one ContainerScaler per controlled node and registers a host structure for
each node that has none, now and whenever a node joins later, and marks the hosts
of dead nodes unreachable. Nodes are controlled when they carry the `sc_host` label;
`sc_exclude=1` leaves a node out. Per-node settings come from the labels
`sc_cgroup_parent` and `sc_backend`, else from `node_defaults`.
"""
from __future__ import annotations

import logging
import time
from pathlib import Path
from typing import Any, Callable

import ray

from sc_actors.settings import DATABASE_SNAPSHOTER_NAME, NAMESPACE, container_scaler_name

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
) -> dict[str, Any]:
    """Start (or find) every actor and wait until each answers."""
    node_defaults = node_defaults or {}
    statedb = placement.statedb_actor(state_dir, fsync)
    try:
        ray.get(statedb.ping.remote(), timeout=timeout_s)
    except ray.exceptions.RayActorError as e:
        # The StateDB refuses a damaged state dir in __init__, and Ray does not retry that.
        said = [line.strip() for line in str(e).splitlines() if "Corrupt: " in line]
        raise StateDBDidNotStart(f"the StateDB did not start: {said[-1] if said else e}") from None
    progress("statedb ready")
    actors = {
        "guardian": placement.guardian_actor(),
        "scaler": placement.scaler_actor(),
        "structures_snapshoter": placement.structures_snapshoter_actor(),
        "database_snapshoter": placement.database_snapshoter_actor(
            dataset_dir or str(Path(state_dir) / "timeseries")),
        "rebalancer": placement.rebalancer_actor(),
    }
    ray.get([a.ping.remote() for a in actors.values()], timeout=timeout_s)
    progress("guardian, scaler, structures_snapshoter, database_snapshoter, rebalancer ready")
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
    names = list(placement.CONTROL_PLANE)
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
