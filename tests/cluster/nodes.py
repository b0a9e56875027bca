"""Extra Ray nodes for the multi-node tests: added to the session cluster, removed after.

The session cluster (tests/conftest.py) has three nodes that every test shares; a
test that needs a node to join, die or come back adds its own here and removes only
that one, never the base three. Each extra node is a controlled host with its own
cgroup parent, so its containers are its own.
"""
from __future__ import annotations

import itertools
import signal
import time
from typing import Any

import psutil
import ray

from cluster.deploy import wait_for
from sc_actors.membership import MEMBERSHIP_NAME
from sc_actors.settings import HOST_LABEL, NAMESPACE, container_scaler_name
from tests.conftest import _remove_parent

_ids = itertools.count(4)


def membership() -> Any:
    return ray.get_actor(MEMBERSHIP_NAME, namespace=NAMESPACE)


def host_status(host: str) -> dict[str, Any] | None:
    return ray.get(membership().status.remote(), timeout=10).get(host)


def alive_node_ids(host: str) -> set[str]:
    return {n["NodeID"] for n in ray.nodes() if n.get("Alive") and (n.get("Labels") or {}).get(HOST_LABEL) == host}


class ExtraNodes:
    """Nodes a test adds; `cleanup` removes them, their ContainerScalers and host structures."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.nodes: list[Any] = []
        self.hosts: list[str] = []

    def new_host(self) -> str:
        """A host name of this session whose cgroup parent `stack.backend_of` knows."""
        host = f"{self.stack.host}-n{next(_ids)}"
        self.hosts.append(host)
        return host

    def parent_of(self, host: str) -> str:
        """The host's cgroup parent, as `stack.backend_of` has it."""
        return self.stack.backend_of(host).parent

    def add(self, host: str, **labels: str) -> Any:
        """Start a node carrying `sc_host=host` (again, for a rejoin); returns it once alive."""
        if host not in self.hosts:
            self.hosts.append(host)
        node = self.stack.cluster.add_node(
            num_cpus=1,
            object_store_memory=80 * 1024**2,
            labels={HOST_LABEL: host, "sc_cgroup_parent": self.parent_of(host), **labels},
        )
        self.nodes.append(node)
        return node

    def kill(self, node: Any) -> None:
        """A crash: every process of the node is SIGKILLed, nobody tells the GCS.

        NOTE: `remove_node` kills the raylet and its agents; its workers (our
        ContainerScaler) would notice and exit only a moment later, answering calls
        meanwhile. A machine that dies takes them along at once, so they go first.
        """
        workers = []
        for infos in node.all_processes.values():
            for info in infos:
                try:
                    workers += psutil.Process(info.process.pid).children(recursive=True)
                except psutil.NoSuchProcess:
                    pass
        for w in workers:
            try:
                w.send_signal(signal.SIGKILL)
            except psutil.NoSuchProcess:
                pass
        self.stack.cluster.remove_node(node, allow_graceful=False)
        self.nodes.remove(node)

    def remove(self, node: Any) -> None:
        """A clean leave: the GCS knows at once."""
        self.stack.cluster.remove_node(node, allow_graceful=True)
        self.nodes.remove(node)

    def wait_ready(self, host: str, node_id: str, timeout_s: float = 60) -> dict[str, Any]:
        """Until the host's ContainerScaler answers from `node_id` and the host is reachable."""

        def ready() -> dict[str, Any] | None:
            st = host_status(host)
            return st if st and st["ready"] and st["node_id"] == node_id and st["reachable"] else None

        return wait_for(ready, timeout_s, interval_s=0.05, what=f"host {host} ready on node {node_id[:8]}")

    def cleanup(self) -> None:
        for node in list(self.nodes):
            try:
                self.remove(node)
            except Exception:
                pass
        for host in self.hosts:
            # Once no node carries the label and no placement is under way, the
            # Membership leaves the host alone: then its ContainerScaler can go.
            wait_for(lambda host=host: not alive_node_ids(host), 30, what=f"nodes of {host} gone")
            wait_for(lambda host=host: not (host_status(host) or {}).get("placing"), 90,
                     what=f"no placement for {host}")
            try:
                ray.kill(ray.get_actor(container_scaler_name(host), namespace=NAMESPACE), no_restart=True)
            except ValueError:
                pass
            if ray.get(self.stack.statedb.exists.remote("structures", host)):
                ray.get(self.stack.statedb.delete.remote("structures", host))
            b = self.stack.backend_of(host)
            for name in b.list_containers():
                b.remove(name)
            _remove_parent(self.parent_of(host))


def request(name: str, amount: int, resource: str = "cpu") -> dict[str, Any]:
    """A scaling request as the Guardian sends it."""
    return {
        "type": "request",
        "resource": resource,
        "amount": amount,
        "structure": name,
        "action": f"{resource.capitalize()}RescaleUp" if amount > 0 else f"{resource.capitalize()}RescaleDown",
        "timestamp": time.time(),
        "structure_type": "container",
    }
