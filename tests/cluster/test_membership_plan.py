"""The Membership's plan: from the nodes seen and the hosts known to exact actions. No Ray.

Each case is one tick: Ray's node table, what the actor remembers of each host
(`HostView`), the StateDB's host structures (name → reachable), and the actions
expected in order. Silence limit 3 s throughout.
"""
from __future__ import annotations

import pytest

from sc_actors.model import HostInfo
from sc_actors.policy.membership import (
    EnsureHost,
    Forget,
    HostView,
    Mark,
    Node,
    NodeJoined,
    Observation,
    Ping,
    Place,
    host_document,
    plan,
    plan_placed,
    retry_delay_s,
)

SILENCE_S = 3.0
DEFAULTS = {"backend": "cgroup_v1", "parent": "serverless"}


def node(node_id: str, host: str = "a", alive: bool = True, **labels: str) -> Node:
    return Node(node_id, alive, {"sc_host": host, **labels})


def ready(host: str = "a", node_id: str = "node-a-1", silence_s: float = 0.5, pinging: bool = False,
          ping_error: str = "", scaler_died: bool = False, reason: str = "") -> HostView:
    """A host whose ContainerScaler answered from `node_id` (its only alive node) `silence_s` ago."""
    return HostView(host, node_id=node_id, known_ids=frozenset({node_id}), ready=True, silence_s=silence_s,
                    pinging=pinging, ping_error=ping_error, scaler_died=scaler_died, reason=reason)


CASES = [
    pytest.param(
        [node("node-a-1")], {}, {},
        [NodeJoined("a", frozenset({"node-a-1"})), Place("a", "node-a-1", DEFAULTS)],
        id="a-new-node-gets-a-container-scaler-and-no-mark-until-it-answers",
    ),
    pytest.param(
        [node("node-a-1"), node("node-a-2")], {}, {},
        [NodeJoined("a", frozenset({"node-a-1", "node-a-2"})), Place("a", "node-a-2", DEFAULTS)],
        id="two-alive-nodes-one-host-placed-on-the-newest",
    ),
    pytest.param(
        [node("node-b-1", "b", sc_backend="lxc", sc_cgroup_parent="p2")], {}, {},
        [NodeJoined("b", frozenset({"node-b-1"})), Place("b", "node-b-1", {"backend": "lxc", "parent": "p2"})],
        id="node-labels-override-the-defaults",
    ),
    pytest.param(
        [node("head0001", "h", sc_exclude="1"), Node("plain001")], {}, {},
        [],
        id="excluded-and-unlabelled-nodes-are-left-alone",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready()}, {"a": True},
        [Ping("a")],
        id="ready-and-answering-is-pinged-again",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(pinging=True)}, {"a": True},
        [],
        id="ready-with-a-ping-in-flight-nothing-to-do",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(pinging=True, silence_s=4.25, ping_error="GetTimeoutError: slow")},
        {"a": True},
        # 4.25 s > 3 s silence: unreachable, the ping's error quoted, the document says reachable → written.
        [Mark("a", False, "its ContainerScaler on node node-a-1 has not answered for 4.2 s: "
                              "GetTimeoutError: slow", write=True)],
        id="silent-for-longer-than-silence-s-is-unreachable",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(pinging=True, silence_s=3.0)}, {"a": True},
        [],
        id="silent-for-exactly-silence-s-is-still-reachable",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(silence_s=0.1, reason="its Ray node node-a-0 is dead")}, {"a": False},
        [Ping("a"), Mark("a", True, write=True)],
        id="answering-again-is-reachable-again",
    ),
    pytest.param(
        [node("node-a-1", alive=False)], {"a": ready()}, {"a": True},
        [Forget("a", "node-gone"),
         Mark("a", False, "its Ray node node-a-1 is dead (no alive node has label sc_host=a)", write=True)],
        id="all-nodes-dead-forgets-and-marks-unreachable",
    ),
    pytest.param(
        [node("node-a-1", alive=False)],
        {"a": HostView("a", reason="its Ray node node-a-1 is dead (no alive node has label sc_host=a)")},
        {"a": False},
        [],
        id="still-dead-and-already-marked-nothing-to-do",
    ),
    pytest.param(
        [node("node-a-1", alive=False)], {"a": HostView("a", reason="first reason")}, {"a": True},
        [Mark("a", False, "first reason", write=True)],
        id="the-first-reason-is-kept",
    ),
    pytest.param(
        [node("node-a-1", alive=False), node("node-a-2")], {"a": ready()}, {"a": True},
        [Forget("a", "node-replaced"), NodeJoined("a", frozenset({"node-a-2"})),
         Place("a", "node-a-2", DEFAULTS)],
        id="its-node-died-and-another-carries-the-label",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(scaler_died=True)}, {"a": True},
        [Forget("a", "scaler-died"), Place("a", "node-a-1", DEFAULTS)],
        id="a-container-scaler-killed-for-good-is-placed-again",
    ),
    pytest.param(
        [node("node-a-1")], {"a": HostView("a", known_ids=frozenset({"node-a-1"}), placing=True)}, {},
        [],
        id="a-placement-under-way-is-not-started-twice",
    ),
    pytest.param(
        [node("node-a-1")], {"a": HostView("a", known_ids=frozenset({"node-a-1"}), retry_due=False)}, {},
        [],
        id="a-failed-placement-waits-for-its-back-off",
    ),
    pytest.param(
        [node("node-a-1")], {"a": ready(pinging=True)}, {"a": True, "old": True},
        [Mark("old", False, "no Ray node of this cluster has label sc_host=old", write=True)],
        id="a-host-structure-no-node-carries-is-unreachable",
    ),
    pytest.param(
        [], {"old": HostView("old", reason="no Ray node of this cluster has label sc_host=old")}, {"old": False},
        [],
        id="a-stale-host-already-marked-nothing-to-do",
    ),
    pytest.param(
        [node("node-a-1", alive=False)], {}, {},
        [Mark("a", False, "its Ray node node-a-1 is dead (no alive node has label sc_host=a)", write=False)],
        id="a-dead-host-without-a-structure-is-remembered-not-written",
    ),
]


@pytest.mark.parametrize("nodes, hosts, documents, expected", CASES)
def test_the_plan_of_one_tick(nodes, hosts, documents, expected):
    assert plan(Observation(nodes, hosts, documents), DEFAULTS, SILENCE_S) == expected


def test_the_plan_reads_its_inputs_and_changes_none():
    hosts = {"a": ready()}
    documents = {"a": True}
    plan(Observation([node("node-a-1", alive=False)], hosts, documents), DEFAULTS, SILENCE_S)
    assert hosts == {"a": ready()} and documents == {"a": True}


def test_a_container_scaler_answering_from_an_alive_node_registers_the_host_and_is_ready():
    info = HostInfo(name="a", cores=2, mem_mib=4096, node_id="node-a-2")
    assert plan_placed("a", info, frozenset({"node-a-2"})) == [EnsureHost("a", host_document(info), "node-a-2")]


def test_a_container_scaler_answering_from_a_node_no_longer_alive_counts_for_nothing():
    info = HostInfo(name="a", cores=2, mem_mib=4096, node_id="node-a-1")
    assert plan_placed("a", info, frozenset({"node-a-2"})) == []


@pytest.mark.parametrize("failures, delay_s", [(1, 2.0), (2, 4.0), (4, 16.0), (5, 30.0), (12, 30.0)])
def test_placements_back_off_doubling_up_to_30_s(failures, delay_s):
    # 2**failures s, at most 30: 2**5 = 32 → 30.
    assert retry_delay_s(failures) == delay_s
