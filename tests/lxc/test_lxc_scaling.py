"""The whole loop on a real LXC container: a node with the LXC backend joins the
session cluster, a busybox container on it is subscribed and guarded, a CPU loop
runs inside it (lxc-attach), and its quota is raised within [min, max].

`pytest -s tests/lxc -k scaling | grep timing` prints the scale-up time.
"""
from __future__ import annotations

import time

import pytest
import ray

from cluster.deploy import wait_for
from tests.cluster.nodes import ExtraNodes
from tests.containers import container_doc

pytestmark = pytest.mark.cgroup  # real LXC containers: real cgroups


@pytest.fixture
def lxc_host(stack):
    """A node of the session cluster whose ContainerScaler scales LXC containers."""
    nodes = ExtraNodes(stack)
    try:
        host = nodes.new_host()
        node = nodes.add(host, sc_backend="lxc")
        nodes.wait_ready(host, node.node_id)
        yield host
    finally:
        nodes.cleanup()


def test_a_cpu_loop_inside_an_lxc_container_gets_its_quota_raised(stack, lxc_host, lxc_containers, lxc_backend):
    node = stack.node_of(lxc_host)
    assert ray.get(node.ping.remote())["backend"] == "lxc"
    name = lxc_containers.new_name("sclxc-busy")
    ray.get(node.create_container.remote(name))  # lxc-create + lxc-start, from the node's actor
    assert name in ray.get(node.list_containers.remote())

    ray.get(stack.scaler.subscribe_container.remote(container_doc(name, lxc_host, cpu=(25, 50, 200))))
    try:
        limits = lxc_backend.read_limits(name)
        assert limits.cpu_allowance_limit == 50 and limits.mem_limit == 256
        ray.get(stack.statedb.patch.remote("structures", name, {"guard": True, "resources.cpu.guard": True}))
        lxc_containers.busy_loop(name)
        t0 = time.monotonic()
        raised = wait_for(lambda: (q := lxc_backend.read_limits(name).cpu_allowance_limit) > 50 and q, 20,
                          what="the quota of the LXC container to be raised")
        up_s = time.monotonic() - t0
        assert 50 < raised <= 200
        # The StateDB agrees with the container's cgroup, and the usage came from the node.
        wait_for(lambda: ray.get(stack.statedb.get.remote("structures", name))["resources"]["cpu"]["current"]
                 == lxc_backend.read_limits(name).cpu_allowance_limit, 10, what="StateDB current == LXC cgroup")
        usage = ray.get(stack.statedb.get.remote("structures", name))["resources"]["cpu"].get("usage")
        assert usage is not None and usage > 25
        print(f"\n[timing] LXC scale-up: quota {raised:g} shares {up_s:.2f} s after the loop started")
    finally:
        ray.get(stack.scaler.desubscribe_container.remote(name))
