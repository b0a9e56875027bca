"""The Membership actor's executor on fakes: Ray's node table, the StateDB and the ContainerScalers.

No Ray cluster: `ray.nodes` is replaced by a list the test edits, the StateDB by a
recorder, and `start_container_scaler` by a function that returns a fake handle
answering from the node the test says. Each tick is called by the test.
"""
from __future__ import annotations

import asyncio
from typing import Any

import pytest

from sc_actors import membership as membership_module
from sc_actors.membership import Membership


class _Method:
    def __init__(self, fn: Any) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.fn(*args)

        return call()


class FakeStateDB:
    def __init__(self) -> None:
        self.hosts: dict[str, dict[str, Any]] = {}
        self.ensured: list[tuple[str, str]] = []
        self.marked: list[tuple[str, bool, str]] = []
        self.host_marks = _Method(lambda: {n: {"reachable": bool(d.get("reachable", True)), "agent": d.get("agent")}
                                           for n, d in self.hosts.items()})
        self.ensure_host = _Method(self._ensure)
        self.set_host_reachable = _Method(self._set_reachable)

    def _ensure(self, doc: dict[str, Any], node_id: str) -> dict[str, Any]:
        self.ensured.append((doc["name"], node_id))
        created = doc["name"] not in self.hosts
        self.hosts.setdefault(doc["name"], {**doc, "reachable": True})
        return {"created": created}

    def _set_reachable(self, name: str, reachable: bool, reason: str) -> bool:
        self.marked.append((name, reachable, reason))
        self.hosts[name]["reachable"] = reachable
        return True


class FakeCluster:
    """Ray's node table and the node each host's ContainerScaler answers from."""

    def __init__(self) -> None:
        self.nodes: list[dict[str, Any]] = []
        self.answers_from: dict[str, str] = {}
        self.started: list[tuple[str, dict[str, Any]]] = []

    def node(self, node_id: str, host: str, alive: bool = True) -> None:
        self.nodes = [n for n in self.nodes if n["NodeID"] != node_id]
        self.nodes.append({"NodeID": node_id, "Alive": alive, "Labels": {"sc_host": host}})

    def start(self, host: str, settings: dict[str, Any]) -> Any:
        self.started.append((host, dict(settings)))
        handle = type("Handle", (), {})()
        handle.host_info = _Method(lambda: {"name": host, "cores": 2, "mem_mib": 4096,
                                            "node_id": self.answers_from[host]})
        handle.ping = _Method(lambda: {"host": host})
        return handle


@pytest.fixture
def world(monkeypatch: pytest.MonkeyPatch) -> tuple[FakeCluster, FakeStateDB]:
    cluster, db = FakeCluster(), FakeStateDB()
    monkeypatch.setattr(membership_module.ray, "nodes", lambda: [dict(n) for n in cluster.nodes])
    return cluster, db


def _run(world: tuple[FakeCluster, FakeStateDB], steps: Any) -> Any:
    cluster, db = world

    async def main() -> Any:
        m = Membership({"parent": "p"}, {"period_s": 3600.0}, cluster.start)
        await m.stop()  # the test ticks by hand
        m._handles = type("Handles", (), {"statedb": db})()
        return await steps(m)

    return asyncio.run(main())


def test_a_node_joins_is_placed_registered_and_ready(world):
    cluster, db = world
    cluster.node("n1", "a")
    cluster.answers_from["a"] = "n1"

    async def steps(m: Membership) -> Any:
        return await m.reconcile(5), await m.status()

    ready, status = _run(world, steps)
    assert ready == ["a"]
    assert cluster.started == [("a", {"parent": "p"})]
    assert db.ensured == [("a", "n1")]
    assert status["a"]["ready"] and status["a"]["reachable"] and status["a"]["node_id"] == "n1"
    assert db.marked == []  # the document was made reachable: nothing to write


def test_a_dead_node_marks_its_host_unreachable_and_a_new_node_brings_it_back(world):
    cluster, db = world
    cluster.node("n1", "a")
    cluster.answers_from["a"] = "n1"

    async def steps(m: Membership) -> Any:
        await m.reconcile(5)
        cluster.node("n1", "a", alive=False)
        gone = await m.tick()
        status_gone = (await m.status())["a"]
        cluster.node("n2", "a")
        cluster.answers_from["a"] = "n2"
        back = await m.reconcile(5)
        return gone, status_gone, back, (await m.status())["a"]

    gone, status_gone, back, status_back = _run(world, steps)
    reason = "its Ray node n1 is dead (no alive node has label sc_host=a)"
    assert gone == {"a": False}
    assert (status_gone["ready"], status_gone["reachable"], status_gone["reason"]) == (False, False, reason)
    assert back == ["a"] and status_back["node_id"] == "n2" and status_back["reachable"]
    assert db.marked == [("a", False, reason), ("a", True, "")]
    assert db.ensured == [("a", "n1"), ("a", "n2")]


def test_a_host_structure_no_node_carries_is_marked_unreachable_on_the_first_tick(world):
    cluster, db = world
    db.hosts["old"] = {"name": "old", "reachable": True}

    async def steps(m: Membership) -> Any:
        return await m.tick()

    assert _run(world, steps) == {"old": False}
    assert db.marked == [("old", False, "no Ray node of this cluster has label sc_host=old")]
    assert cluster.started == []


def test_a_failed_placement_backs_off_and_does_not_count_ready(world):
    cluster, db = world
    cluster.node("n1", "a")  # no answers_from: host_info raises KeyError

    async def steps(m: Membership) -> Any:
        ready = await m.reconcile(5)
        return ready, (await m.status())["a"], m.hosts["a"].retry_at

    ready, status, retry_at = _run(world, steps)
    assert ready == [] and status["failures"] == 1 and not status["ready"]
    assert len(cluster.started) == 1  # the second tick of reconcile waits for the back-off (2 s)
    assert retry_at > 0
