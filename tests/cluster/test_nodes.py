"""Which Ray nodes are controlled hosts, and what each becomes: pure functions, no Ray."""
from __future__ import annotations

import pytest

from sc_actors.model import Host, HostInfo
from sc_actors.policy.membership import Node, controlled_nodes, host_document, hosts_of, is_controlled, node_settings


def node(node_id: str, alive: bool = True, **labels: str) -> Node:
    """A node as `ray.nodes()` lists it, read the way the Membership reads it."""
    return Node.from_ray({"NodeID": node_id, "Alive": alive, "Labels": {"ray.io/node-id": node_id, **labels}})


@pytest.mark.parametrize(
    "labels, controlled",
    [
        pytest.param({"sc_host": "a"}, True, id="labelled"),
        pytest.param({}, False, id="no-label"),
        pytest.param({"sc_host": ""}, False, id="empty-name"),
        pytest.param({"sc_host": "a", "sc_exclude": "1"}, False, id="excluded-1"),
        pytest.param({"sc_host": "a", "sc_exclude": "true"}, False, id="excluded-true"),
        pytest.param({"sc_host": "a", "sc_exclude": "0"}, True, id="exclude-0-is-not-excluded"),
    ],
)
def test_a_node_is_a_controlled_host_when_labelled_and_not_excluded(labels, controlled):
    assert is_controlled(node("n1", **labels)) is controlled


def test_hosts_keep_their_alive_and_dead_nodes_apart():
    nodes = [
        node("old", alive=False, sc_host="a"),
        node("new", sc_host="a"),
        node("b1", sc_host="b"),
        node("head", sc_host="h", sc_exclude="1"),
        node("plain"),
    ]
    hosts = hosts_of(nodes)
    assert set(hosts) == {"a", "b"}
    assert [n.node_id for n in hosts["a"].alive] == ["new"]
    assert [n.node_id for n in hosts["a"].dead] == ["old"]
    assert hosts["a"].alive_ids == {"new"}
    assert [n.node_id for n in controlled_nodes(nodes)] == ["new", "b1"]


def test_a_ray_row_without_labels_or_alive_flag_is_a_dead_uncontrolled_node():
    n = Node.from_ray({"NodeID": "x"})
    assert (n.alive, n.host, is_controlled(n)) == (False, "", False)


def test_node_labels_override_the_defaults_of_sc_up():
    defaults = {"backend": "cgroup_v1", "parent": "serverless"}
    assert node_settings(node("n", sc_host="a"), defaults) == defaults
    got = node_settings(node("n", sc_host="a", sc_backend="lxc", sc_cgroup_parent="p2"), defaults)
    assert got == {"backend": "lxc", "parent": "p2"}
    assert defaults == {"backend": "cgroup_v1", "parent": "serverless"}  # not changed in place


def test_a_host_structure_has_cores_times_100_shares_and_the_node_memory():
    info = HostInfo(name="a", cores=4, mem_mib=8192, topology={"0": {"0": [0, 2], "1": [1, 3]}})
    doc = host_document(info)
    host = Host.model_validate(doc)
    # 4 cores × 100 = 400 shares, all free, one entry per logical core.
    assert host.resources["cpu"].max == host.resources["cpu"].free == 400
    assert host.resources["mem"].max == host.resources["mem"].free == 8192
    assert sorted(host.resources["cpu"].core_usage_mapping, key=int) == ["0", "1", "2", "3"]
    assert host.reachable is True and host.name == "a"
