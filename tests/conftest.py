"""One local Ray cluster for the whole test session, with the control plane on it.

Tests that need it take the `stack` fixture; pure tests never start Ray. The
cluster's node is a controlled host named `TEST_HOST` whose plain-cgroup
containers live under their own cgroup parent, so nothing collides with a demo
or another session; everything created there is removed at the end.
"""
from __future__ import annotations

import os
import shutil
import tempfile
import uuid

import pytest

os.environ["RAY_AUTH_MODE"] = "disabled"
os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
os.environ.setdefault("RAY_metrics_report_interval_ms", "1000")
os.environ.pop("RAY_ADDRESS", None)

SESSION_ID = uuid.uuid4().hex[:6]
TEST_HOST = f"testhost{SESSION_ID}"
TEST_PARENT = f"sc-test-{SESSION_ID}"
WORKER_HOSTS = [f"{TEST_HOST}-n{i}" for i in (1, 2)]
"""Two more controlled hosts on worker nodes: each its own cgroup parent, so the
three "hosts" of this one machine never share containers."""


def parent_of(host: str) -> str:
    return TEST_PARENT if host == TEST_HOST else f"{TEST_PARENT}-{host.rsplit('-', 1)[1]}"


class Stack:
    """Handles to the deployed control plane and what the tests need around it."""

    def __init__(self, cluster, actors, state_dir, backend):
        self.cluster = cluster
        self.statedb = actors["statedb"]
        self.guardian = actors["guardian"]
        self.scaler = actors["scaler"]
        self.snapshoter = actors["structures_snapshoter"]
        self.host = TEST_HOST
        self.parent = TEST_PARENT
        self.state_dir = state_dir
        self.backend = backend
        self.worker_hosts = list(WORKER_HOSTS)

    def backend_of(self, host: str):
        from sc_actors.backends import make_backend

        return make_backend("cgroup_v1", "/sys/fs/cgroup", parent_of(host))

    def node_of(self, host: str):
        import ray

        from sc_actors.settings import NAMESPACE, container_scaler_name

        return ray.get_actor(container_scaler_name(host), namespace=NAMESPACE)

    @property
    def node(self):
        import ray

        from sc_actors.settings import NAMESPACE, container_scaler_name

        return ray.get_actor(container_scaler_name(self.host), namespace=NAMESPACE)


@pytest.fixture(scope="session")
def stack():
    import ray
    from ray.cluster_utils import Cluster

    from cluster.deploy import deploy, undeploy
    from sc_actors.backends import make_backend

    cluster = Cluster(
        initialize_head=True,
        head_node_args=dict(
            num_cpus=2,
            object_store_memory=100 * 1024**2,
            labels={"sc_host": TEST_HOST, "sc_cgroup_parent": TEST_PARENT},
            include_dashboard=False,
        ),
    )
    for host in WORKER_HOSTS:
        cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2,
                         labels={"sc_host": host, "sc_cgroup_parent": parent_of(host)})
    cluster.wait_for_nodes()
    ray.init(address=cluster.address, namespace="serverless_containers", log_to_driver=False,
             logging_level="ERROR")
    state_dir = tempfile.mkdtemp(prefix="sc-test-state-")
    backend = make_backend("cgroup_v1", "/sys/fs/cgroup", TEST_PARENT)
    try:
        actors = deploy(state_dir, node_defaults={"backend": "cgroup_v1"})
        yield Stack(cluster, actors, state_dir, backend)
    finally:
        try:
            undeploy()
        finally:
            for host in [TEST_HOST, *WORKER_HOSTS]:
                b = make_backend("cgroup_v1", "/sys/fs/cgroup", parent_of(host))
                for name in b.list_containers():
                    b.remove(name)
                _remove_parent(parent_of(host))
            ray.shutdown()
            cluster.shutdown()
            shutil.rmtree(state_dir, ignore_errors=True)


def _remove_parent(parent: str) -> None:
    for controller in ("cpu", "cpuacct", "cpuset", "memory"):
        path = os.path.join("/sys/fs/cgroup", controller, parent)
        if os.path.isdir(path):
            try:
                os.rmdir(path)
            except OSError:
                pass


@pytest.fixture
def containers(stack):
    """Plain-cgroup containers on the test node, with their processes; all removed after the test."""
    from tests.containers import Containers

    c = Containers(stack)
    try:
        yield c
    finally:
        c.cleanup()


def pytest_collection_modifyitems(config, items):
    """Mark every test that needs the session's Ray (`ray`) or writes real cgroups (`cgroup`).

    A test is marked by the fixtures it takes (directly or through others), so
    `pytest -m "not ray and not cgroup"` is the fast suite without a list to keep.
    Tests that start Ray or touch cgroups themselves carry the marks in their module.
    """
    for item in items:
        if "stack" in getattr(item, "fixturenames", ()):
            # The session's stack: its Ray cluster and the nodes' real cgroup parents.
            item.add_marker(pytest.mark.ray)
            item.add_marker(pytest.mark.cgroup)
