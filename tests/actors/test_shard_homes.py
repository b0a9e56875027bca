"""Shard homes on the session's Ray stack: a node labelled `sc_shard_home=1` (a machine of the
control plane, no controlled host) takes Guardian and Scaler shard 1; the other shards stay on
the head; the hosts shard 1 owns are served from there."""
from __future__ import annotations

import ray

from cluster.deploy import wait_for
from cluster.placement import shard_homes
from sc_actors.settings import NAMESPACE, SHARD_HOME_LABEL, guardian_name, scaler_name
from tests.actors.sharding import Sharded


def _node_of(name: str) -> str:
    actor = ray.get_actor(name, namespace=NAMESPACE)
    return str(ray.get(actor.__ray_call__.remote(lambda self: ray.get_runtime_context().get_node_id()), timeout=30))


def test_shards_past_0_run_on_the_node_labelled_their_home(stack):
    home = stack.cluster.add_node(num_cpus=1, object_store_memory=80 * 1024**2, labels={SHARD_HOME_LABEL: "1"})
    sharded = Sharded(stack)
    try:
        stack.cluster.wait_for_nodes()
        assert 1 in shard_homes(ray.nodes())
        sharded.up()
        head = _node_of("statedb")
        assert _node_of(guardian_name(1)) == home.node_id and _node_of(scaler_name(1)) == home.node_id
        assert {_node_of(guardian_name(0)), _node_of(scaler_name(0))} == {head}
        assert all(_node_of(guardian_name(i)) == head for i in range(2, sharded.n))
        # A host of shard 1 (if the split gave it one) is evaluated and scaled from the home node.
        for h in (h for h in sharded.hosts if sharded.shard(h) == 1):
            name = sharded.container_on(h)
            before = sharded.current(name)
            ray.get(sharded.scaler_of(h).submit.remote([sharded.request(name, 10)]))
            wait_for(lambda: sharded.current(name) == before + 10, 15, what="a request applied by shard 1")
            ray.get(sharded.scaler_of(h).submit.remote([sharded.request(name, -10)]))
            wait_for(lambda: sharded.current(name) == before, 15, what="the request put back")
    finally:
        sharded.down()
        stack.cluster.remove_node(home)


def test_only_alive_nodes_with_a_shard_number_past_0_are_homes():
    nodes = [{"Alive": True, "Labels": {SHARD_HOME_LABEL: "2"}}, {"Alive": False, "Labels": {SHARD_HOME_LABEL: "3"}},
             {"Alive": True, "Labels": {SHARD_HOME_LABEL: "0"}}, {"Alive": True, "Labels": {SHARD_HOME_LABEL: "x"}},
             {"Alive": True, "Labels": {}}, {"Alive": True}]
    assert shard_homes(nodes) == {2}
