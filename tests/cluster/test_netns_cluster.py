"""Three hosts in network namespaces: one Ray cluster over their own addresses, and a host
whose link goes down (issue 17).

Each host (tests/cluster/netns.py) has its own network, process table, /tmp and /root
and cgroup parent; Ray runs on each with cluster/configs/ray-start.sh, the workers
joining the head over the bridge. `sc up --address` deploys from the head, and a
container on a worker host is subscribed with the CLI and scaled by a CPU loop inside it.

Then `ip link set eth0 down` inside w2's namespace cuts it off from every other host, as a
pulled cable would. The Membership marks w2 unreachable when its ContainerScaler has not
answered for `MembershipSettings.silence_s` (3 s); the GCS keeps the node alive meanwhile,
because each of its health checks of a silent node waits `RAY_health_check_timeout_ms`
(Ray's default 10 s) before it counts as a miss. Once the link is back, the same raylet and
ContainerScaler answer again (after TCP's retransmission back-off, which grows with the
outage) and the host is reachable again: nothing to restart.

Timings: `pytest -s tests/cluster/test_netns_cluster.py | grep timing`.
"""
from __future__ import annotations

import time

import pytest

from tests.cluster.netns import wait_for
from tests.cluster.nodes import request

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]

ACCOUNTED = ("cpu", "mem")


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
        assert c.lab.quota_us("w1", "web") == 50_000  # 50 shares = 1000 µs × 50 on the 100 000 µs period
        loop = c.lab.busy_loop("w1", "web")
        t0 = time.monotonic()
        raised = wait_for(lambda: (q := c.lab.quota_us("w1", "web")) > 50_000 and q, 60,
                          what="the quota of web on w1 to be raised")
        print(f"\n[timing] CPU loop inside a container on namespace host w1 → quota raised "
              f"50 000 → {raised} µs in {time.monotonic() - t0:.2f} s")
        doc = c.sc_json("structure", "get", "web")
        assert doc["host"] == "w1" and doc["resources"]["cpu"]["current"] > 50, doc
        c.lab.kill(loop)
    finally:
        c.sc("container", "desubscribe", "web", check=False)


def host_accounting(c, host: str) -> dict:
    """What a host lends its containers: free and max cpu/mem and the core map."""
    doc = c.driver(f"get(statedb().get.remote('structures', {host!r}))")
    return {r: doc["resources"][r] for r in ACCOUNTED}


def limits_files(c, host: str, name: str) -> dict[str, str]:
    h = c.lab[host]
    return {f"{ctl}/{f}": (h.cgroup_dir(ctl, name) / f).read_text().strip()
            for ctl, f in (("cpu", "cpu.cfs_quota_us"), ("cpu", "cpu.cfs_period_us"),
                           ("cpuset", "cpuset.cpus"), ("memory", "memory.limit_in_bytes"))}


def limits_doc(c, name: str) -> dict:
    """The container's limits as its document has them (read through the API)."""
    res = c.sc_json("structure", "get", name)["resources"]
    return {r: {k: res[r][k] for k in ("min", "current", "max")} for r in ACCOUNTED}


def outcomes(c, name: str, outcome: str) -> list[dict]:
    return [r for r in c.driver(f"get(statedb().recent_requests.remote({name!r}))") if r.get("outcome") == outcome]


def submit(c, name: str, amount: int) -> None:
    c.driver(f"get(scaler().submit.remote([{request(name, amount)!r}]))")


def test_a_host_whose_link_goes_down_is_unreachable_the_others_scale_and_it_comes_back_intact(netns_cluster):
    c = netns_cluster
    created = []
    try:
        for host, name in (("w2", "lost"), ("w1", "busy"), ("w1", "probe")):
            c.driver(f"get(node_of({host!r}).create_container.remote({name!r}))")
            created.append(name)
            c.sc("container", "subscribe", name, "--host", host, "--cpu", "25,50,200", "--mem", "64,256,512",
                 *(["--guard"] if name == "busy" else []))
        before = host_accounting(c, "w2")
        lost_before = limits_files(c, "w2", "lost")
        lost_doc = limits_doc(c, "lost")

        c.lab.link("w2", "down")
        t_down = time.monotonic()
        # The other hosts keep scaling: a CPU loop started on w1 now (checked below, while w2 is down).
        loop = c.lab.busy_loop("w1", "busy")
        doc = wait_for(lambda: (d := c.driver("get(statedb().get.remote('structures', 'w2'))"))["reachable"]
                       is False and d, 30, interval_s=0.1, what="w2 to be marked unreachable")
        t_unreachable = time.monotonic()
        assert doc["unreachable_reason"], doc
        hosts = {h["name"]: h for h in c.sc_json("host", "list")}
        assert hosts["w2"]["reachable"] is False and hosts["w1"]["reachable"] is True, hosts

        # Its requests are dropped at once, saying why.
        submit(c, "lost", 25)
        dropped = wait_for(lambda: outcomes(c, "lost", "dropped"), 10, what="the request of lost dropped")
        assert "host 'w2' unreachable" in dropped[-1]["reason"], dropped
        assert doc["unreachable_reason"] in dropped[-1]["reason"], dropped
        # ... and a request on w1.
        submit(c, "probe", 25)
        wait_for(lambda: outcomes(c, "probe", "applied"), 15, what="the request of probe on w1 applied")
        assert c.lab.quota_us("w1", "probe") == 75_000
        # NOTE: the outage stays short (the GCS declares a silent node dead after about 55 s,
        # the long test below): the loop on w1 has had the whole time since the link went down.
        raised = wait_for(lambda: (q := c.lab.quota_us("w1", "busy")) > 50_000 and q, 30,
                          what="the quota of busy on w1 raised while w2 is down")
        t_raised = time.monotonic()
        c.lab.kill(loop)
        outage_s = time.monotonic() - t_down

        c.lab.link("w2", "up")
        t_up = time.monotonic()
        wait_for(lambda: c.driver("get(statedb().get.remote('structures', 'w2'))")["reachable"], 120,
                 interval_s=0.1, what=f"w2 reachable again (down for {outage_s:.1f} s)")
        t_back = time.monotonic()
        # The same Ray node came back: nothing was restarted.
        assert c.driver("[n['Alive'] for n in ray.nodes() if n['Labels'].get('sc_host') == 'w2']") == [True]
        # Its accounting is as it was, and so are its container's limits (files and document).
        assert host_accounting(c, "w2") == before
        assert limits_files(c, "w2", "lost") == lost_before
        assert limits_doc(c, "lost") == lost_doc
        # And it is served again: a request for its container is applied on it.
        submit(c, "lost", 30)
        wait_for(lambda: outcomes(c, "lost", "applied"), 15, what="the request of lost applied after the rejoin")
        assert c.lab.quota_us("w2", "lost") == 80_000
        print(f"\n[timing] link down → w2 unreachable {t_unreachable - t_down:.2f} s "
              f"(reason: {doc['unreachable_reason']}); a CPU loop started on w1 at the link's loss → quota "
              f"50 000 → {raised} µs in {t_raised - t_down:.2f} s")
        print(f"[timing] link up after {outage_s:.1f} s down → w2 reachable again {t_back - t_up:.2f} s "
              f"(same Ray node; TCP retransmission back-off)")
    finally:
        c.lab.link("w2", "up")
        for name in created:
            c.sc("container", "desubscribe", name, check=False)


@pytest.mark.cluster_long
def test_a_host_cut_off_until_declared_dead_is_served_again_once_its_ray_is_started_again(netns_cluster):
    """The long outage: the GCS declares w2 dead (about 55 s: 5 health checks that each wait
    RAY_health_check_timeout_ms = 10 s); when the link is back, w2's raylet learns it and exits,
    and the host's service manager starts Ray again, here `ray-start.sh worker` as the test."""
    c = netns_cluster
    c.driver("get(node_of('w2').create_container.remote('far'))")
    try:
        c.sc("container", "subscribe", "far", "--host", "w2", "--cpu", "25,50,200", "--mem", "64,256,512")
        before = host_accounting(c, "w2")
        far_before = limits_files(c, "w2", "far")
        far_doc = limits_doc(c, "far")
        old_node = c.driver("[n['NodeID'] for n in ray.nodes() if n['Alive'] and n['Labels'].get('sc_host') == 'w2']")
        assert len(old_node) == 1

        c.lab.link("w2", "down")
        t_down = time.monotonic()
        wait_for(lambda: c.driver(f"[n['Alive'] for n in ray.nodes() if n['NodeID'] == {old_node[0]!r}]") == [False],
                 150, interval_s=0.5, what="the GCS to declare w2's node dead")
        t_dead = time.monotonic()
        c.lab.link("w2", "up")
        t_up = time.monotonic()
        wait_for(lambda: not c.lab.processes("w2", "raylet"), 120, interval_s=0.5,
                 what="w2's raylet to exit once it learns it was declared dead")
        t_exit = time.monotonic()
        c.lab.ray_start("w2", "worker", head="head")
        t_start = time.monotonic()
        st = wait_for(lambda: (s := c.driver("get(membership().status.remote())")["w2"])["reachable"]
                      and s["node_id"] != old_node[0] and s, 90, interval_s=0.2, what="w2 back on a new node")
        t_back = time.monotonic()
        assert host_accounting(c, "w2") == before
        assert limits_files(c, "w2", "far") == far_before
        assert limits_doc(c, "far") == far_doc
        submit(c, "far", 30)
        wait_for(lambda: outcomes(c, "far", "applied"), 15, what="the request of far applied after the restart")
        assert c.lab.quota_us("w2", "far") == 80_000
        print(f"\n[timing] link down → GCS declares w2's node dead {t_dead - t_down:.1f} s; link up → its raylet "
              f"exits by itself {t_exit - t_up:.1f} s; ray-start.sh worker again → w2 reachable on the new node "
              f"{t_back - t_exit:.1f} s (ray start {t_start - t_exit:.1f} s, Membership {st['join_to_ready_s']} s)")
    finally:
        c.lab.link("w2", "up")
        c.sc("container", "desubscribe", "far", check=False)
