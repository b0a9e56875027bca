"""Three hosts in network namespaces join one Ray cluster over their own addresses (issue 17).

Each host (tests/cluster/netns.py) has its own network, process table, /tmp and /root
and cgroup parent; Ray runs on each with cluster/configs/ray-start.sh, the workers
joining the head over the bridge. `sc up --address` deploys from the head, and a
container on a worker host is subscribed with the CLI and scaled by a CPU loop inside
it. Timings: `pytest -s tests/cluster/test_netns_cluster.py | grep timing`.
"""
from __future__ import annotations

import time

import pytest

from tests.cluster.netns import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]


def read_quota(cluster, host: str, name: str) -> int:
    return int((cluster.lab[host].cgroup_dir("cpu", name) / "cpu.cfs_quota_us").read_text())


def start_loop(cluster, host: str, name: str):
    """A CPU loop inside container `name` of `host`: started on that host, in the container's cgroups.

    NOTE: the shell writes its own pid, which the kernel reads in the writer's PID namespace.
    """
    dirs = " ".join(str(cluster.lab[host].cgroup_dir(c, name)) for c in ("cpu", "cpuacct", "cpuset", "memory"))
    return cluster.lab.popen(host, ["sh", "-c", f'for d in {dirs}; do echo $$ > "$d/cgroup.procs"; done; '
                                                "exec python3 -c 'while True: pass'"])


def test_three_namespace_hosts_join_one_cluster_over_their_own_addresses(netns_cluster):
    c = netns_cluster
    nodes = wait_for(lambda: (ns := c.driver(
        "[(n['Labels'].get('sc_host'), n['NodeManagerAddress']) for n in ray.nodes() if n['Alive']]"))
        and len(ns) == 3 and ns, 30, what="three alive nodes")
    assert sorted(map(tuple, nodes)) == sorted((h, c.lab[h].addr) for h in c.lab.names)
    # The control plane sees them as three reachable hosts, read through the API.
    assert "ready: 3 host(s)" in c.sc_up_output, c.sc_up_output
    hosts = {h["name"]: h for h in c.sc_json("host", "list")}
    assert sorted(hosts) == ["head", "w1", "w2"]
    assert all(h["reachable"] for h in hosts.values()), hosts
    status = c.driver("get(membership().status.remote())")
    joins = {h: status[h]["join_to_ready_s"] for h in c.lab.names}
    print(f"\n[timing] namespaces up {c.timings['namespaces']:.2f} s; ray start: "
          + ", ".join(f"{h} {c.timings[f'ray start {h}']:.1f} s" for h in c.lab.names)
          + f"; sc up --address {c.timings['sc up']:.1f} s; node seen → ContainerScaler ready: "
          + ", ".join(f"{h} {s} s" for h, s in joins.items()))


def test_a_container_on_a_worker_host_is_subscribed_and_scaled(netns_cluster):
    c = netns_cluster
    c.driver("get(node_of('w1').create_container.remote('web'))")
    try:
        c.sc("container", "subscribe", "web", "--host", "w1", "--cpu", "25,50,200", "--mem", "64,256,512", "--guard")
        assert read_quota(c, "w1", "web") == 50_000  # 50 shares = 1000 µs × 50 on the 100 000 µs period
        loop = start_loop(c, "w1", "web")
        t0 = time.monotonic()
        raised = wait_for(lambda: (q := read_quota(c, "w1", "web")) > 50_000 and q, 30,
                          what="the quota of web on w1 to be raised")
        print(f"\n[timing] CPU loop inside a container on namespace host w1 → quota raised "
              f"50 000 → {raised} µs in {time.monotonic() - t0:.2f} s")
        doc = c.sc_json("structure", "get", "web")
        assert doc["host"] == "w1" and doc["resources"]["cpu"]["current"] > 50, doc
        c.lab.kill(loop)
    finally:
        c.sc("container", "desubscribe", "web", check=False)
