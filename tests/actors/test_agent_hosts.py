"""One node agent serving several simulated hosts, end to end on the session's Ray stack.

A synthetic node joins the session cluster; its ContainerScaler is given two simulated
hosts (`simulate_hosts`), whose host documents name it as `agent`. Their containers are
subscribed through the Scaler (which finds them through the agent), each host's windows
reach the Guardian (their usage is reported), the Membership keeps them reachable although
no Ray node carries their label, and a request for a container of a simulated host is
applied through the agent.
"""
from __future__ import annotations

import pytest
import ray

from cluster.deploy import wait_for
from sc_actors.backends.synthetic import SimulatedContainer, SimulatedHost
from sc_actors.model import HostInfo
from sc_actors.policy.membership import host_document
from tests.cluster.nodes import ExtraNodes, membership, request
from tests.containers import container_doc


@pytest.fixture
def agent_node(stack):
    nodes = ExtraNodes(stack)
    try:
        yield nodes
    finally:
        nodes.cleanup()


def test_one_agent_serves_several_simulated_hosts(stack, agent_node):
    db, scaler = stack.statedb, stack.scaler
    agent_host = agent_node.new_host()
    node = agent_node.add(agent_host, sc_backend="synthetic")
    agent_node.wait_ready(agent_host, node.node_id)
    agent = stack.node_of(agent_host)
    sims = [SimulatedHost(f"{agent_host}-s{k}", cores=8, mem_mib=8 * 4096, containers=tuple(
        SimulatedContainer(f"{agent_host}-s{k}-c{i}", cpu=50, cpu_num="0", mem=256, demand=40, mem_use=100)
        for i in range(3))) for k in range(2)]
    names = {s.name: [c.name for c in s.containers] for s in sims}
    subscribed: list[str] = []
    try:
        infos = ray.get(agent.simulate_hosts.remote(sims), timeout=30)
        assert [i["name"] for i in infos] == [s.name for s in sims]
        for info in infos:
            ray.get(db.put.remote("structures", host_document(HostInfo.model_validate(info), agent=agent_host)))
        for s in sims:
            for n in names[s.name]:
                ray.get(scaler.subscribe_container.remote(container_doc(n, s.name)), timeout=30)
                subscribed.append(n)

        # The agent lists each host's containers apart; its own host has none.
        assert ray.get(agent.list_containers.remote()) == []
        for s in sims:
            assert ray.get(agent.list_containers.remote(s.name)) == names[s.name]
            assert set(ray.get(agent.read_all.remote(s.name))) == set(names[s.name])

        # Each host's windows reach the Guardian: every container's usage is reported.
        wait_for(lambda: all(ray.get(db.recent_usage.remote(n)) for n in subscribed), 30,
                 what="usage of every simulated container reported")
        assert ray.get(agent.ping.remote())["hosts"] == 3  # its own and the two simulated ones
        # Counted per host window, once the Guardian took them (after it reported their usage).
        wait_for(lambda: ray.get(agent.ping.remote())["windows_pushed"] >= 2, 30, what="two host windows pushed")

        # The Membership keeps them reachable (no Ray node carries their label): a few ticks on.
        ticks = ray.get(membership().ping.remote())["ticks"]
        wait_for(lambda: ray.get(membership().ping.remote())["ticks"] >= ticks + 2, 30, what="two membership ticks")
        for s in sims:
            assert ray.get(db.get.remote("structures", s.name)).get("reachable", True) is True

        # A request for a container of a simulated host is applied through the agent.
        target = names[sims[1].name][2]
        before = ray.get(db.get.remote("structures", target))["resources"]["cpu"]["current"]
        ray.get(scaler.submit.remote([request(target, 30)]))
        wait_for(lambda: ray.get(agent.read_limits.remote(target)).cpu_allowance_limit == before + 30, 30,
                 what=f"{target}'s new limit on the agent")
        doc = ray.get(db.get.remote("structures", target))
        assert doc["resources"]["cpu"]["current"] == before + 30
        host = ray.get(db.get.remote("structures", sims[1].name))
        cmap = host["resources"]["cpu"]["core_usage_mapping"]
        assert sum(core.get(target, 0) for core in cmap.values()) == before + 30
    finally:
        for n in subscribed:
            ray.get(scaler.desubscribe_container.remote(n), timeout=30)
        for s in sims:
            if ray.get(db.exists.remote("structures", s.name)):
                ray.get(db.delete.remote("structures", s.name))


def test_a_non_synthetic_node_refuses_to_simulate_hosts(stack):
    from sc_actors.errors import Invalid

    with pytest.raises(Exception) as e:
        ray.get(stack.node.simulate_hosts.remote([SimulatedHost("x", cores=4, mem_mib=4096)]), timeout=30)
    assert isinstance(getattr(e.value, "cause", e.value), Invalid)
    assert "not a synthetic node" in str(e.value)
