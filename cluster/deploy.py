"""Deploy the control plane onto a running Ray cluster, and take it down.

`deploy()` creates (or finds) the StateDB, Guardian, Scaler and
StructuresSnapshoter, then one ContainerScaler per controlled node, and registers a
host structure for each node that has none. Nodes are controlled when they carry the
`sc_host` label; `sc_exclude=1` leaves a node out. Per-node settings come from the
labels `sc_cgroup_parent` and `sc_backend`, else from `node_defaults`.
"""
from __future__ import annotations

import logging
import time
from typing import Any, Callable

import ray

from sc_actors.model import Host, HostInfo
from sc_actors.settings import HOST_LABEL, NAMESPACE, container_scaler_name

from . import placement

log = logging.getLogger(__name__)


def controlled_nodes() -> list[dict[str, Any]]:
    """Alive Ray nodes that are controlled hosts (label `sc_host`, no `sc_exclude`)."""
    out = []
    for n in ray.nodes():
        labels = n.get("Labels") or {}
        if n.get("Alive") and HOST_LABEL in labels and labels.get("sc_exclude") not in ("1", "true"):
            out.append(n)
    return out


def node_settings(node: dict[str, Any], defaults: dict[str, Any]) -> dict[str, Any]:
    labels = node.get("Labels") or {}
    s = dict(defaults)
    if "sc_cgroup_parent" in labels:
        s["parent"] = labels["sc_cgroup_parent"]
    if "sc_backend" in labels:
        s["backend"] = labels["sc_backend"]
    return s


def host_document(info: HostInfo) -> dict[str, Any]:
    """A host structure for a node: CPU shares = cores × 100 with its core map, memory MiB."""
    host = Host(
        name=info.name,
        host=info.name,
        resources={
            "cpu": {"max": info.cores * 100, "free": info.cores * 100},
            "mem": {"max": info.mem_mib, "free": info.mem_mib},
        },
        topology=info.topology,
    )
    return host.model_dump(mode="json", exclude_none=True)


def place_node(node: dict[str, Any], statedb: Any, defaults: dict[str, Any], timeout_s: float = 60) -> str:
    """One ContainerScaler on this node, and its host structure if none exists."""
    host = node["Labels"][HOST_LABEL]
    cs = placement.container_scaler_actor(host, node_settings(node, defaults))
    info = HostInfo.model_validate(ray.get(cs.host_info.remote(), timeout=timeout_s))
    if not ray.get(statedb.exists.remote("structures", host)):
        ray.get(statedb.put.remote("structures", host_document(info)))
    else:
        doc = ray.get(statedb.get.remote("structures", host))
        if doc.get("reachable") is False:
            ray.get(statedb.patch.remote("structures", host, {"reachable": True}))
    return host


def deploy(
    state_dir: str,
    node_defaults: dict[str, Any] | None = None,
    fsync: bool = True,
    timeout_s: float = 60,
    progress: Callable[[str], None] = lambda msg: None,
) -> dict[str, Any]:
    """Start (or find) every actor and wait until each answers."""
    node_defaults = node_defaults or {}
    statedb = placement.statedb_actor(state_dir, fsync)
    ray.get(statedb.ping.remote(), timeout=timeout_s)
    progress("statedb ready")
    actors = {
        "guardian": placement.guardian_actor(),
        "scaler": placement.scaler_actor(),
        "structures_snapshoter": placement.structures_snapshoter_actor(),
    }
    ray.get([a.ping.remote() for a in actors.values()], timeout=timeout_s)
    progress("guardian, scaler, structures_snapshoter ready")
    hosts = []
    for node in controlled_nodes():
        hosts.append(place_node(node, statedb, node_defaults, timeout_s))
        progress(f"container-scaler:{hosts[-1]} ready")
    return {"statedb": statedb, **actors, "hosts": hosts}


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
