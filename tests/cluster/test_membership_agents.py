"""The Membership's plan for hosts served by another host's ContainerScaler (`Host.agent`). No Ray.

A simulated host of the scale benchmark has a host structure and no Ray node: it is
reachable exactly when its agent host is. Each case is one tick, as in
test_membership_plan.py: nodes, remembered hosts, the StateDB's host structures
(name → reachable), their agents (name → agent), and the actions expected in order.
"""
from __future__ import annotations

import pytest

from sc_actors.policy.membership import Forget, HostView, Mark, Node, Observation, Ping, plan

SILENCE_S = 3.0
DEFAULTS = {"backend": "synthetic", "parent": "sim"}


def node(node_id: str, host: str = "a", alive: bool = True) -> Node:
    return Node(node_id, alive, {"sc_host": host})


def ready(host: str = "a", node_id: str = "node-a-1", silence_s: float = 0.5, reason: str = "") -> HostView:
    """A host whose ContainerScaler answered `silence_s` ago, a ping in flight (so none is planned)."""
    return HostView(host, node_id=node_id, known_ids=frozenset({node_id}), ready=True, silence_s=silence_s,
                    pinging=True, reason=reason)


CASES = [
    pytest.param(
        [node("node-a-1")], {"a": ready()}, {"a": True, "s1": True, "s2": True}, {"s1": "a", "s2": "a"},
        [],
        id="agent-answering-its-hosts-stay-reachable-and-nothing-is-written",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready()}, {"a": True, "s1": False}, {"s1": "a"},
        [Mark("s1", True, write=True)],
        id="agent-answering-a-host-marked-unreachable-is-marked-reachable-again",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(silence_s=4.0)}, {"a": True, "s1": True}, {"s1": "a"},
        [Mark("a", False, "its ContainerScaler on node node-a-1 has not answered for 4.0 s", write=True),
         Mark("s1", False, "its agent host a is unreachable: its ContainerScaler on node node-a-1 has not "
                           "answered for 4.0 s", write=True)],
        id="silent-agent-its-hosts-unreachable-with-the-agents-reason",
    ),
    pytest.param(
        [node("node-a-1", alive=False)], {"a": ready()}, {"a": True, "s1": True}, {"s1": "a"},
        [Forget("a", "node-gone"),
         Mark("a", False, "its Ray node node-a-1 is dead (no alive node has label sc_host=a)", write=True),
         Mark("s1", False, "its agent host a is unreachable: its Ray node node-a-1 is dead "
                           "(no alive node has label sc_host=a)", write=True)],
        id="agent-node-dead-its-hosts-unreachable",
    ),
    pytest.param(
        [node("node-a-1")], {"a": HostView("a", known_ids=frozenset({"node-a-1"}), placing=True)},
        {"s1": True}, {"s1": "a"},
        [],
        id="agent-being-placed-its-hosts-left-as-they-are",
    ),
    pytest.param(
        [], {}, {"s1": True}, {"s1": "gone"},
        [Mark("s1", False, "its agent host gone has no Ray node of this cluster (label sc_host=gone)", write=True)],
        id="agent-host-without-any-node-its-hosts-unreachable",
    ),
    pytest.param(
        [], {}, {"old": True, "s1": True}, {"s1": "old"},
        [Mark("old", False, "no Ray node of this cluster has label sc_host=old", write=True),
         Mark("s1", False, "its agent host old is unreachable: no Ray node of this cluster has label "
                           "sc_host=old", write=True)],
        id="agent-of-an-earlier-cluster-its-hosts-unreachable-like-it",
    ),
    pytest.param(
        [], {}, {"s1": True}, {"s1": "s1"},
        [Mark("s1", False, "no Ray node of this cluster has label sc_host=s1", write=True)],
        id="a-host-naming-itself-as-agent-is-an-ordinary-host",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(), "s1": HostView("s1", reason="its agent host a is unreachable: x")},
        {"a": True, "s1": False}, {"s1": "a"},
        [Mark("s1", True, write=True)],
        id="agent-back-its-host-reachable-again-and-its-reason-cleared",
    ),
]


@pytest.mark.parametrize("nodes, hosts, documents, agents, expected", CASES)
def test_the_plan_of_one_tick_for_served_hosts(nodes, hosts, documents, agents, expected):
    actions = plan(Observation(nodes, hosts, documents, agents), DEFAULTS, SILENCE_S)
    assert actions == expected


def test_a_served_host_is_never_placed_nor_pinged():
    """Only the agent's ContainerScaler is placed and pinged: the served host has no node of its own."""
    actions = plan(Observation([node("node-a-1")], {"a": HostView("a", known_ids=frozenset({"node-a-1"}),
                                                                  ready=True, node_id="node-a-1",
                                                                  silence_s=0.1)},
                               {"a": True, "s1": True}, {"s1": "a"}), DEFAULTS, SILENCE_S)
    assert actions == [Ping("a")]
