"""The Scaler's lane per serving node (issue 16), on a real `State` behind a fake StateDB handle, without Ray.

Two hosts served by one agent (a simulated host's `agent`) share one lane: their requests
are read in one view, written in one `apply_many` and recorded in one call; a refused write
puts back only its host's batch. tests/faults/test_batch_write.py runs the put-back on the
session's Ray stack.
"""
from __future__ import annotations

import asyncio
import time
from typing import Any, Callable, Optional

import pytest

from sc_actors import scaler as scaler_module
from sc_actors.model import Applied, Host, Request
from sc_actors.policy.subscription import subscribe
from sc_actors.scaler import Scaler
from sc_actors.store import operations as ops
from sc_actors.store import views
from sc_actors.store.state import State
from tests.builders import container, host

AGENT = "a0"


class _Method:
    """`handle.method` of a fake actor: `.remote(*args)` gives an awaitable, as Ray's does."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any, **kwargs: Any) -> Any:
        async def call() -> Any:
            return self.fn(*args, **kwargs)

        return call()


class _DB:
    """The StateDB's calls the Scaler makes, on a real `State`; each call counted."""

    def __init__(self, state: State) -> None:
        self.calls: list[str] = []

        def counted(name: str, fn: Callable[..., Any]) -> _Method:
            def call(*args: Any) -> Any:
                self.calls.append(name)
                return fn(*args)
            return _Method(call)

        self.scaler_view = counted("scaler_view", lambda names: views.scaler_view(state, names))
        self.container_hosts = counted("container_hosts", lambda names: views.container_hosts(state, names))
        self.record_scaling = counted("record_scaling", lambda currents, hosts, entries, maxes=None:
                                      ops.record_scaling(state, currents, hosts, entries, maxes))
        self.log_requests = counted("log_requests", state.requests.extend)
        self.get = _Method(lambda collection, name: state.docs.get(collection, name) or {})
        self.heartbeat = _Method(lambda name: None)


class _Agent:
    """One node agent serving every host; refuses the writes of the containers in `refuse`."""

    def __init__(self, refuse: tuple[str, ...] = ()) -> None:
        self.many: list[list[str]] = []
        self.one: list[str] = []

        def write(name: str) -> Applied:
            if name in refuse:
                return Applied(name=name, ok=False, error=f"{name} is gone")
            return Applied(name=name, ok=True)

        def apply_one(name: str, change: Any, bounds: Any) -> Applied:
            self.one.append(name)
            applied = write(name)
            if not applied.ok:
                raise RuntimeError(applied.error)
            return applied

        self.apply_many = _Method(lambda items: self.many.append([n for n, _, _ in items]) or [
            write(n) for n, _, _ in items])
        self.apply = _Method(apply_one)


class _Handles:
    def __init__(self, db: _DB, agent: _Agent) -> None:
        self.statedb = db
        self.agent = agent

    def node(self, host: str) -> _Agent:
        return self.agent

    def forget_node(self, host: str) -> None:
        pass

    def serve_hosts(self, docs: Any) -> None:
        pass


@pytest.fixture
def state(tmp_path):
    s = State.open(tmp_path, fsync=False)
    for h in ("h0", "h1"):
        s.put("structures", {**host(h, cores=4).model_dump(mode="json", exclude_none=True), "agent": AGENT})
    for name, h in (("c0", "h0"), ("c1", "h1"), ("c2", "h0")):
        # Subscribed as the Scaler subscribes: its 50 shares and 256 MiB taken from its host.
        placed = subscribe(container(name, cpu=(25, 50, 200), mem=(64, 256, 512), host=h),
                           Host.model_validate(s.docs.get("structures", h)), ["0", "1", "2", "3"])
        assert placed.container is not None and placed.host is not None
        s.put("structures", placed.container.model_dump(mode="json", exclude_none=True))
        s.put("structures", placed.host.model_dump(mode="json", exclude_none=True))
    yield s
    s.docs.close()


def _free(state: State, h: str) -> float:
    return float(state.docs.get("structures", h)["resources"]["cpu"]["free"])


def _run(state: State, agent: _Agent, *batches: list[str],
         before: Optional[Callable[[Scaler], None]] = None) -> tuple[Scaler, _DB]:
    """Each batch (of container names asking for 10 more CPU shares) dispatched and applied in turn."""
    db = _DB(state)

    async def run() -> Scaler:
        s = Scaler()
        s._task.cancel()
        s._handles = _Handles(db, agent)  # type: ignore[assignment]  # the fakes stand in for Ray's handles
        s._serve_hosts([state.docs.get("structures", h) for h in ("h0", "h1")])  # as a first view would
        for names in batches:
            if before is not None:
                before(s)
            await s._dispatch([Request(resource="cpu", amount=10, structure=n, action="CpuRescaleUp",
                                       timestamp=time.time()) for n in names])
            await asyncio.gather(*s._lanes.values())
        return s

    return asyncio.run(run()), db


def test_the_hosts_of_one_agent_share_a_lane_one_view_one_write_and_one_record(state):
    agent = _Agent()
    s, db = _run(state, agent, ["c0", "c1", "c2"])
    assert list(s._lanes) == [AGENT]
    assert sorted(agent.many[0]) == ["c0", "c1", "c2"] and len(agent.many) == 1
    assert db.calls == ["container_hosts", "scaler_view", "record_scaling"]
    assert [_free(state, h) for h in ("h0", "h1")] == [400 - 50 - 50 - 20, 400 - 50 - 10]  # two +10 on h0, one on h1
    assert sorted(e["outcome"] for e in state.requests) == ["applied"] * 3
    assert s.batches == {"written": 2}  # one batch per host


def test_a_refused_write_puts_back_only_its_hosts_batch_and_applies_it_one_by_one(state):
    agent = _Agent(refuse=("c2",))
    s, _ = _run(state, agent, ["c0", "c1", "c2"])
    # The batch, then h0's put-back (c0 and c2), then h0's requests one at a time (c2's
    # refused again, and put back again).
    assert [sorted(w) for w in agent.many] == [["c0", "c1", "c2"], ["c0", "c2"], ["c2"]]
    assert agent.one == ["c0", "c2"]
    outcome = {e["structure"]: e["outcome"] for e in state.requests}
    assert outcome == {"c0": "applied", "c1": "applied", "c2": "failed"}
    assert [_free(state, h) for h in ("h0", "h1")] == [400 - 100 - 10, 400 - 50 - 10]  # c1's write stood
    assert s.batches == {"written": 1, "put_back": 1}


def test_a_lone_refused_request_of_a_host_fails_without_a_second_write(state):
    agent = _Agent(refuse=("c1",))
    s, _ = _run(state, agent, ["c0", "c1"])
    assert [sorted(w) for w in agent.many] == [["c0", "c1"], ["c1"]]  # the batch, then c1 put back
    assert agent.one == []
    failed = [e for e in state.requests if e["outcome"] == "failed"]
    assert [(e["structure"], e["reason"]) for e in failed] == [("c1", "c1 is gone")]
    assert _free(state, "h1") == 400 - 50


def test_a_host_recorded_here_is_not_parsed_again_but_one_changed_elsewhere_is(state, monkeypatch):
    parsed: list[str] = []

    class _Counted(Host):
        @classmethod
        def model_validate(cls, obj: Any, *args: Any, **kwargs: Any) -> Host:  # type: ignore[override]
            parsed.append(obj["name"])
            return Host.model_validate(obj, *args, **kwargs)

    monkeypatch.setattr(scaler_module, "Host", _Counted)
    agent = _Agent()
    marks: list[int] = []

    def before(s: Scaler) -> None:
        marks.append(len(parsed))
        if len(marks) == 3:  # someone else changes h1's document
            doc = state.docs.get("structures", "h1")
            state.put("structures", {**doc, "resources": {**doc["resources"], "mem": {**doc["resources"]["mem"],
                                                                                      "free": 1000.0}}})

    _run(state, agent, ["c0", "c1"], ["c2", "c1"], ["c0", "c1"], before=before)
    marks.append(len(parsed))
    assert [sorted(parsed[a:b]) for a, b in zip(marks, marks[1:])] == [["h0", "h1"], [], ["h1"]]
    assert _free(state, "h0") == 400 - 100 - 30 and _free(state, "h1") == 400 - 50 - 30
