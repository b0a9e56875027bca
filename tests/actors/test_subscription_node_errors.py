"""A node that does not answer during a subscription is 503 (`Unavailable`), never 400, and nothing changes.

The Scaler runs here on fakes of its StateDB and node handles (no Ray): each test
makes one call of the subscription's path (listing the node's containers, writing
the limits) time out, fail as a dead actor, or be refused by the node.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable, Optional

import pytest
import ray.exceptions

from sc_actors import scaler as scaler_module
from sc_actors.backends.base import LimitRefused
from sc_actors.errors import Invalid, Unavailable
from sc_actors.scaler import Scaler
from tests.builders import host
from tests.containers import container_doc

HOST = "h0"


class _Method:
    """`handle.method` of a fake actor: `.remote(*args)` gives an awaitable, as Ray's does."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            out = self.fn(*args, **kwargs)
            return await out if asyncio.iscoroutine(out) else out

        return call()


class _FakeStateDB:
    def __init__(self, host_doc: dict) -> None:
        self.docs = {("structures", HOST): host_doc, ("services", "scaler"): {"name": "scaler", "config": {}}}
        self.transactions: list[Any] = []
        self.get = _Method(lambda coll, name: self.docs[(coll, name)])
        self.exists = _Method(lambda coll, name: (coll, name) in self.docs)
        self.transact = _Method(lambda **kw: self.transactions.append(kw))
        self.heartbeat = _Method(lambda service: None)


class _FakeNode:
    def __init__(self, listing: Callable[[], Any], apply: Callable[..., Any]) -> None:
        self.list_containers = _Method(lambda host=None: listing())  # the Scaler names the host it asks about
        self.apply = _Method(apply)


class _FakeHandles:
    def __init__(self, db: _FakeStateDB, node: _FakeNode) -> None:
        self.statedb = db
        self._node = node
        self.forgotten: list[str] = []

    def node(self, name: str) -> _FakeNode:
        return self._node

    def forget_node(self, name: str) -> None:
        self.forgotten.append(name)

    def serve(self, host: str, agent: Optional[str]) -> None:
        """Which node serves a host: always this one here."""


async def _hang(*args: Any) -> None:
    await asyncio.sleep(3600)


def _dead(*args: Any) -> None:
    raise ray.exceptions.RayActorError()


def _refuse(*args: Any) -> None:
    # What Ray hands back when the node's backend refused: a task error whose cause is ours.
    raise ray.exceptions.RayTaskError("apply", "traceback", LimitRefused("cpu 150 above max 100"))


def _subscribe(monkeypatch: pytest.MonkeyPatch, listing: Callable[[], Any],
               apply: Optional[Callable[..., Any]] = None) -> tuple[BaseException, _FakeStateDB, _FakeHandles]:
    monkeypatch.setattr(scaler_module, "APPLY_TIMEOUT_S", 0.05)
    db = _FakeStateDB(host(HOST, cores=4, mem=4096).model_dump(mode="json", exclude_none=True))
    node = _FakeNode(listing, apply or (lambda *a: None))

    async def run() -> tuple[BaseException, _FakeHandles]:
        s = Scaler()
        handles = _FakeHandles(db, node)
        s._handles = handles  # type: ignore[assignment]  # the fakes stand in for Ray's handles
        try:
            with pytest.raises(Exception) as e:
                await s.subscribe_container(container_doc("c0", HOST, cpu=(25, 150, 200), mem=(64, 256, 512)))
            return e.value, handles
        finally:
            s._task.cancel()

    err, handles = asyncio.run(run())
    return err, db, handles


@pytest.mark.parametrize(
    "listing, apply, words",
    [
        pytest.param(_hang, None, "did not answer within", id="listing-times-out"),
        pytest.param(_dead, None, "did not answer", id="listing-dead-node"),
        pytest.param(lambda: ["c0"], _hang, "did not answer within", id="write-times-out"),
        pytest.param(lambda: ["c0"], _dead, "did not answer", id="write-dead-node"),
    ],
)
def test_a_node_that_does_not_answer_makes_the_subscription_unavailable_and_changes_nothing(
        monkeypatch, listing, apply, words):
    err, db, _ = _subscribe(monkeypatch, listing, apply)
    assert isinstance(err, Unavailable), repr(err)
    assert err.status == 503
    assert words in str(err) and f"host {HOST!r}" in str(err)
    assert db.transactions == []


def test_a_dead_node_is_looked_up_again_next_time():
    # Its handle is dropped, so a ContainerScaler placed again under the same name is found.
    with pytest.MonkeyPatch.context() as mp:
        _, _, handles = _subscribe(mp, _dead)
    assert handles.forgotten == [HOST]


def test_a_node_that_refuses_the_limits_makes_the_subscription_invalid_and_changes_nothing(monkeypatch):
    err, db, _ = _subscribe(monkeypatch, lambda: ["c0"], _refuse)
    assert isinstance(err, Invalid) and err.status == 400, repr(err)
    assert "node refused the limits: cpu 150 above max 100" in str(err)
    assert db.transactions == []


def test_a_container_its_node_does_not_list_is_not_found():
    with pytest.MonkeyPatch.context() as mp:
        err, db, _ = _subscribe(mp, lambda: ["other"])
    assert err.status == 404 and "not found on host" in str(err)
    assert db.transactions == []
