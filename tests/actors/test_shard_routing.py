"""Routing by shard without Ray (issue 16): the count's cache, the Scaler's forwarding, the API's owner.

The Scaler and the API route on fakes of their handles here; tests/actors/test_shards.py
and tests/faults/test_shard_faults.py run the same paths on the session's Ray stack.
"""
from __future__ import annotations

import asyncio
from typing import Any, Callable

import pytest
import ray.exceptions

from sc_actors import shards as shards_module
from sc_actors.errors import Unavailable
from sc_actors.model import Applied, Request
from sc_actors.policy.shards import shard_of
from sc_actors.scaler import Scaler
from sc_actors.shards import ShardCount
from sc_actors.statedb import StateDB
from serve.deps import ActorCaller, InProcess, ScalerApi, ShardRoute


class _Method:
    """`handle.method` of a fake actor: `.remote(*args)` gives an awaitable, as Ray's does."""

    def __init__(self, fn: Callable[..., Any]) -> None:
        self.fn = fn

    def remote(self, *args: Any) -> Any:
        async def call() -> Any:
            return self.fn(*args)
        return call()


class _DB:
    def __init__(self, shards: Any, hosts: dict[str, str]) -> None:
        self.reads = 0
        self.logged: list[dict] = []
        self.shards = shards

        def get(collection: str, name: str) -> dict:
            self.reads += 1
            if isinstance(self.shards, Exception):
                raise self.shards
            return {"name": name, "config": {}, "shards": self.shards}

        self.get = _Method(get)
        self.container_hosts = _Method(lambda names: {n: hosts[n] for n in names if n in hosts})
        self.log_requests = _Method(self.logged.extend)
        self.heartbeat = _Method(lambda name: None)


def _host_of_shard(shard: int, shards: int) -> str:
    return next(h for h in (f"host{i}" for i in range(100)) if shard_of(h, shards) == shard)


# --------------------------------------------------------------------------- the count


def test_the_count_is_one_until_read_then_kept_until_stale():
    db = _DB(3, {})
    now = [0.0]

    async def run() -> list[int]:
        count = ShardCount(lambda: db, refresh_s=5.0, clock=lambda: now[0])
        seen = [count.cached()]          # nothing read yet: 1, and a read starts
        await asyncio.sleep(0)
        await asyncio.sleep(0)
        seen.append(count.cached())      # read: 3
        db.shards = 2
        now[0] = 4.9
        seen.append(await count.read())  # still fresh: 3, not read again
        now[0] = 5.0
        seen.append(await count.read())  # stale: read again, 2
        db.shards = RuntimeError("statedb restarting")
        now[0] = 10.0
        seen.append(await count.read())  # a failed read keeps the last count
        return seen

    assert asyncio.run(run()) == [1, 3, 3, 2, 2]
    assert db.reads == 3


def test_guardian_handles_are_looked_up_again_after_each_read(monkeypatch):
    looked_up: list[str] = []
    monkeypatch.setattr(shards_module, "lookup", lambda name: looked_up.append(name) or f"handle of {name}")
    db = _DB(2, {})
    now = [0.0]
    h1 = _host_of_shard(1, 2)

    async def run() -> list[str]:
        count = ShardCount(lambda: db, refresh_s=5.0, clock=lambda: now[0])
        await count.read()
        got = [count.guardian_for(h1), count.guardian_for(h1)]
        now[0] = 6.0
        await count.read()  # a shard deployed again is a new actor under the same name
        got.append(count.guardian_for(h1))
        return got

    assert asyncio.run(run()) == ["handle of guardian-1"] * 3
    assert looked_up == ["guardian-1", "guardian-1"]


# --------------------------------------------------------------------------- the Scaler forwards


class _Handles:
    def __init__(self, db: _DB, shards: dict[str, Any]) -> None:
        self.statedb = db
        self.shards = shards
        self.forgotten: list[str] = []

    def get(self, name: str) -> Any:
        if name not in self.shards:
            raise Unavailable(f"{name} is not running")
        return self.shards[name]

    def forget(self, name: str) -> None:
        self.forgotten.append(name)


class _Shard:
    def __init__(self, dead: bool = False, died_for_good: bool = False) -> None:
        self.got: list[Any] = []

        def submit(requests: list) -> int:
            if died_for_good:  # killed with no_restart: Ray says so
                raise ray.exceptions.ActorDiedError()
            if dead:  # a call lost otherwise
                raise ray.exceptions.RayActorError()
            self.got.extend(requests)
            return len(requests)

        self.submit = _Method(submit)


def _request(structure: str, structure_type: str = "container") -> dict:
    return {"resource": "cpu", "amount": 10, "structure": structure, "action": "CpuRescaleUp",
            "timestamp": 1.0, "structure_type": structure_type}


def _dispatch(shard: int, db: _DB, handles: _Handles, batch: list[dict]) -> Scaler:
    async def run() -> Scaler:
        s = Scaler(shard)
        s._task.cancel()
        s._handles = handles  # type: ignore[assignment]  # the fakes stand in for Ray's handles
        await s._dispatch([Request.model_validate(r) for r in batch])
        await asyncio.gather(*s._forwards)
        for lane in s._lanes.values():
            lane.cancel()
        return s

    return asyncio.run(run())


def test_a_shard_hands_what_it_does_not_own_to_the_owner_and_what_spans_hosts_to_shard_0():
    h0, h1 = _host_of_shard(0, 2), _host_of_shard(1, 2)
    db = _DB(2, {"c0": h0, "c1": h1})
    owner, coordinator = _Shard(), _Shard()
    s = _dispatch(1, db, _Handles(db, {"scaler": coordinator, "scaler-1": owner}),
                  [_request("c0"), _request("c1"), _request("app", "application")])
    assert [r.structure for r in coordinator.got] == ["c0", "app"]
    assert owner.got == []                    # its own request went to its own lane
    assert list(s._lanes) == [h1]
    assert s.outcomes["forwarded"] == 2 and db.logged == []


def test_a_request_whose_owner_does_not_answer_is_dropped_with_the_reason_in_the_log():
    h0, h1 = _host_of_shard(0, 2), _host_of_shard(1, 2)
    db = _DB(2, {"c0": h0, "c1": h1})
    handles = _Handles(db, {"scaler": _Shard(dead=True)})
    _dispatch(1, db, handles, [_request("c0")])
    [entry] = db.logged
    assert entry["structure"] == "c0" and entry["outcome"] == "dropped"
    assert entry["reason"].startswith(f"scaler shard scaler (owner of host {h0!r}) did not answer")
    assert handles.forgotten == ["scaler"]     # looked up again next time


def test_a_shard_killed_for_good_is_looked_up_again_once_and_the_new_one_takes_the_request():
    h0 = _host_of_shard(0, 2)
    db = _DB(2, {"c0": h0})
    dead, new = _Shard(died_for_good=True), _Shard()

    class _Redeployed(_Handles):
        def get(self, name: str) -> Any:
            return new if "scaler" in self.forgotten else dead

    handles = _Redeployed(db, {})
    _dispatch(1, db, handles, [_request("c0")])
    assert [r.structure for r in new.got] == ["c0"] and db.logged == []
    assert handles.forgotten == ["scaler"]


def test_with_one_shard_nothing_is_forwarded():
    h = _host_of_shard(0, 2)
    db = _DB(1, {"c0": h})
    s = _dispatch(0, db, _Handles(db, {}), [_request("c0"), _request("app", "application")])
    assert sorted(s._lanes) == ["", h] and s.outcomes["forwarded"] == 0 and db.logged == []


# --------------------------------------------------------------------------- the API's owner


class _Recorder:
    def __init__(self, name: str, calls: list) -> None:
        self.name = name
        self.calls = calls

    async def __call__(self, method: str, *args: Any) -> Any:
        self.calls.append((self.name, method))
        return {"name": "x"}

    def alive(self) -> bool:
        return True


@pytest.fixture
def statedb(tmp_path):
    db = StateDB(str(tmp_path), fsync=False)
    db.patch("services", "guardian", {"shards": 3})
    return db


def test_the_api_sends_a_subscription_to_the_owner_of_the_containers_host(statedb):
    route = ShardRoute(handles=None, statedb=InProcess(statedb))  # type: ignore[arg-type]
    hosts = [_host_of_shard(i, 3) for i in range(3)]
    names = [asyncio.run(route.for_host(h)).name for h in hosts]  # type: ignore[attr-defined]
    assert names == ["scaler", "scaler-1", "scaler-2"]


def test_a_desubscription_goes_to_the_owner_and_an_unknown_container_to_shard_0(statedb, monkeypatch):
    h2 = _host_of_shard(2, 3)
    statedb.put("structures", {"name": h2, "subtype": "host", "host": h2, "resources": {
        "cpu": {"max": 400, "free": 300}, "mem": {"max": 8192, "free": 7936}}})
    statedb.put("structures", {"name": "c9", "subtype": "container", "host": h2, "resources": {
        "cpu": {"min": 10, "current": 100, "max": 200}, "mem": {"min": 64, "current": 256, "max": 1024}}})
    calls: list = []
    monkeypatch.setattr(ActorCaller, "__call__", lambda self, method, *a: _Recorder(self.name, calls)(method, *a))
    api = ScalerApi(_Recorder("scaler", calls), ShardRoute(handles=None, statedb=InProcess(statedb)))  # type: ignore[arg-type]
    asyncio.run(api.desubscribe_container("c9"))
    asyncio.run(api.desubscribe_container("nobody"))  # the Scaler answers 404 for it
    asyncio.run(api.subscribe_container({"name": "c10", "host": h2}, None))
    assert calls == [("scaler-2", "desubscribe_container"), ("scaler", "desubscribe_container"),
                     ("scaler-2", "subscribe_container")]


# --------------------------------------------------------------------------- an owner's parts


class _PartDB:
    """The StateDB calls of `apply_part`/`release_part`: one host `h0` with container `c1`."""

    def __init__(self, host_doc: dict, container_doc: dict) -> None:
        self.host_doc, self.container_doc = host_doc, container_doc
        self.records: list[tuple] = []
        self.scaler_view = _Method(lambda names: {
            "structures": {"c1": self.container_doc}, "hosts": {"h0": self.host_doc}, "limits": {}, "usages": {},
            "config": {}})
        self.record_scaling = _Method(lambda currents, hosts, entries, maxes=None: self.records.append(
            (currents, hosts)))
        self.outcome = "aborted"
        self.asked: list[str] = []
        self.decide_tx = _Method(lambda tx, since: self.asked.append(tx) or self.outcome)
        self.held: dict[str, tuple] = {}
        self.hold_part = _Method(lambda txid, owner, at, part: self.held.__setitem__(txid, (owner, at, part)))
        self.part_ended = _Method(lambda txid: self.held.pop(txid, None))
        self.held_parts = _Method(lambda owner: [(t, {"owner": o, "applied_at": at, "part": p})
                                                 for t, (o, at, p) in self.held.items() if o == owner])


class _PartHandles:
    def __init__(self, db: _PartDB) -> None:
        self.statedb = db
        self.writes: list[list] = []
        handles = self

        class _Node:
            apply_many = _Method(lambda items: handles.writes.append(items) or [
                Applied(name=n, ok=True) for n, _, _ in items])

        self._node = _Node()

    def node(self, host: str) -> Any:
        return self._node

    def serve_hosts(self, docs: Any) -> None:
        pass


def _owner_part():
    from sc_actors.model import Container, LimitChange
    from sc_actors.policy.shards import ContainerWrite, HostPart
    from tests.builders import host

    before = host("h0", cores=2)
    after = host("h0", core_map={"0": {"free": 90, "c1": 10}, "1": {"free": 100}})
    c = Container.model_validate({"name": "c1", "host": "h0", "resources": {
        "cpu": {"min": 10, "current": 50, "max": 200}, "mem": {"min": 64, "current": 256, "max": 512}}})
    part = HostPart(host="h0", before=before, after=after, writes=(ContainerWrite(
        name="c1", resource="cpu", before=50.0, change=LimitChange(cpu_allowance_limit=60), bounds=None,
        new_current=60.0),))
    db = _PartDB(before.model_dump(mode="json", exclude_none=True), c.model_dump(mode="json", exclude_none=True))
    return part, db


def _owner_run(steps: Callable[[Scaler], Any]) -> Any:
    async def run() -> Any:
        s = Scaler(1)
        s._task.cancel()
        return await steps(s)
    return asyncio.run(run())


def test_an_owner_applies_a_part_holds_its_host_and_puts_it_back_exactly():
    part, db = _owner_part()
    handles = _PartHandles(db)

    async def steps(s: Scaler) -> tuple:
        s._handles = handles  # type: ignore[assignment]
        applied = await s.apply_part("t1", part)
        locked = s._host_locks["h0"].locked()
        released = await s.release_part("t1", put_back=True)
        return applied, locked, released, s._host_locks["h0"].locked()

    assert _owner_run(steps) == ("", True, True, False)
    # Recorded as planned, then as before: current 60 → 50, core 0's 10 shares given back.
    (cur1, hosts1), (cur2, hosts2) = db.records
    assert cur1 == {"c1": {"cpu": 60.0}} and hosts1["h0"]["cpu"]["core_usage_mapping"]["0"] == {"free": 90, "c1": 10}
    assert cur2 == {"c1": {"cpu": 50.0}} and hosts2["h0"]["cpu"]["free"] == 200
    assert len(handles.writes) == 2  # the limit, then the put-back


def test_a_part_planned_against_other_accounting_is_refused_and_writes_nothing():
    part, db = _owner_part()
    db.container_doc["resources"]["cpu"]["current"] = 70  # applied meanwhile by the host's own lane
    handles = _PartHandles(db)

    async def steps(s: Scaler) -> tuple:
        s._handles = handles  # type: ignore[assignment]
        return await s.apply_part("t1", part), s._host_locks["h0"].locked()

    refused, locked = _owner_run(steps)
    assert "cpu current of 'c1' changed" in refused and not locked
    assert db.records == [] and handles.writes == []


def test_a_part_the_coordinator_gave_up_on_is_put_back_when_it_is_applied():
    part, db = _owner_part()
    handles = _PartHandles(db)

    async def steps(s: Scaler) -> tuple:
        s._handles = handles  # type: ignore[assignment]
        held_before = await s.release_part("t1", put_back=True)  # it had not arrived yet
        return held_before, await s.apply_part("t1", part), s._host_locks["h0"].locked()

    held_before, answer, locked = _owner_run(steps)
    assert held_before is False and answer.startswith("put back") and not locked
    assert [c for c, _ in db.records] == [{"c1": {"cpu": 60.0}}, {"c1": {"cpu": 50.0}}]


@pytest.mark.parametrize("outcome, records, writes", [("aborted", 2, 2), ("committed", 1, 1), ("unknown", 1, 1)])
def test_a_part_its_coordinator_never_ends_is_put_back_unless_the_request_was_recorded(
        monkeypatch, outcome, records, writes):
    """The coordinator died (or hangs) between its parts and its record: after PART_HOLD_S the
    owner asks the StateDB, which says whether the record came first (keep) or not (put back)."""
    from sc_actors import scaler as scaler_module
    monkeypatch.setattr(scaler_module, "PART_HOLD_S", 0.05)
    part, db = _owner_part()
    db.outcome = outcome
    handles = _PartHandles(db)

    async def steps(s: Scaler) -> tuple:
        s._handles = handles  # type: ignore[assignment]
        applied = await s.apply_part("tx1/h0", part)
        held_in_db = set(db.held)
        timer = s._held["tx1/h0"].timer
        await asyncio.wait_for(timer, 5)  # the hold expires: no sleep stands in for it
        return applied, held_in_db, s._host_locks["h0"].locked(), set(db.held)

    applied, held_in_db, locked, held_after = _owner_run(steps)
    assert applied == "" and held_in_db == {"tx1/h0"} and db.asked == ["tx1"]
    assert not locked and held_after == set()
    assert len(db.records) == records and len(handles.writes) == writes
    if outcome == "aborted":
        assert db.records[-1][0] == {"c1": {"cpu": 50.0}}  # current 60 → 50 again


def test_a_shard_started_again_takes_back_the_parts_it_held_and_ends_them_at_their_time(monkeypatch):
    import time

    part, db = _owner_part()
    handles = _PartHandles(db)
    from sc_actors.model import Container, Host

    # As the StateDB kept it for scaler-1, which died 60 s after applying it (its hold ran out).
    db.held["tx9/h0"] = ("scaler-1", time.time() - 60, (part, Host.model_validate(db.host_doc),
                                                         [Container.model_validate(db.container_doc)]))

    async def steps(s: Scaler) -> tuple:
        s._handles = handles  # type: ignore[assignment]
        await s._recover_parts()
        locked = s._host_locks["h0"].locked()
        await asyncio.wait_for(s._held["tx9/h0"].timer, 5)  # held for 10 s from its time: ends at once
        return locked, s._host_locks["h0"].locked()

    locked_while_held, locked_after = _owner_run(steps)
    assert locked_while_held and not locked_after
    assert db.asked == ["tx9"] and db.held == {}
    assert [c for c, _ in db.records] == [{"c1": {"cpu": 50.0}}] and len(handles.writes) == 1  # put back
