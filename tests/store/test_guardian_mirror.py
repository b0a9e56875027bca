"""The Guardian's mirror follows the StateDB: what changed, what went, and a restart.

Both are the real classes, in one process: the StateDB's methods are called through
a shim that gives them Ray's `.remote(...)` shape, so no Ray is needed.
"""
from __future__ import annotations

import asyncio
from typing import Any

from sc_actors.columns import HostWindow
from sc_actors.guardian import Guardian
from sc_actors.policy.event_columns import HostEvents
from sc_actors.statedb import StateDB


class _Remote:
    """`db.method.remote(*args)` → an awaitable of `db.method(*args)`, as with an actor handle."""

    def __init__(self, target: Any) -> None:
        self._target = target

    def __getattr__(self, name: str) -> Any:
        method = getattr(self._target, name)

        class _M:
            @staticmethod
            def remote(*args: Any, **kw: Any) -> Any:
                async def call() -> Any:
                    return method(*args, **kw)
                return call()

        return _M


def _container(name: str, current: float) -> dict[str, Any]:
    return {"name": name, "host": "h0", "subtype": "container", "guard": True,
            "resources": {"cpu": {"min": 10, "current": current, "max": 200, "guard": True},
                          "mem": {"min": 64, "current": 256, "max": 1024, "guard": False}}}


def _db(tmp_path, names=("c0", "c1")) -> StateDB:
    db = StateDB(str(tmp_path), fsync=False)
    for n in names:
        db.put("structures", _container(n, 100))
        db.put("limits", {"name": n, "resources": {"cpu": {"boundary": 10}, "mem": {"boundary": 10}}})
    return db


def _refresh(g: Guardian, db: Any, names: list[str]) -> None:
    asyncio.run(g._refresh(_Remote(db), [HostWindow.of("h0", 0, 1, names, [0.0] * len(names), [0.0] * len(names))]))


def test_the_mirror_re_prepares_only_what_the_statedb_changed(tmp_path):
    db, g = _db(tmp_path), Guardian()
    _refresh(g, db, ["c0", "c1"])
    first = dict(g._prepared)
    # m = 10 % of max 200 = 20: upper = 100 − 20 = 80, lower = 60.
    assert first["c0"].bounds == {"cpu": (80, 60)}
    db.patch("structures", "c1", {"resources.cpu.current": 150})
    _refresh(g, db, ["c0", "c1"])
    assert g._prepared["c0"] is first["c0"]  # unchanged: the same prepared object
    assert g._prepared["c1"].bounds == {"cpu": (130, 110)}  # 150 − 20, 150 − 40


def test_the_guardians_own_boundaries_prepare_nothing_again_but_an_edit_of_them_does(tmp_path):
    db, g = _db(tmp_path), Guardian()
    _refresh(g, db, ["c0", "c1"])
    first = dict(g._prepared)
    g._stored_bounds["c0"]["cpu"] = (80, 60)  # as the Guardian records what it reports
    db.guardian_report({}, {"c0": {"cpu": (80, 60)}}, [], 1.0)
    _refresh(g, db, ["c0", "c1"])
    assert g._prepared["c0"] is first["c0"]  # its limits changed only by the bounds it wrote
    db.patch("limits", "c0", {"resources.cpu.upper": 95})  # someone else's edit of upper
    _refresh(g, db, ["c0", "c1"])
    assert g._prepared["c0"] is not first["c0"] and "c0" in g._dirty  # prepared again, bounds compared again


def test_a_container_no_longer_in_the_statedb_leaves_the_mirror_with_its_events(tmp_path):
    db, g = _db(tmp_path), Guardian()
    _refresh(g, db, ["c0", "c1"])
    g.events["c1"] = ["an event"]  # type: ignore[list-item]
    db.delete("structures", "c1")
    _refresh(g, db, ["c0", "c1"])
    assert set(g._prepared) == {"c0"} and "c1" not in g.events


def test_a_restarted_statedb_makes_the_guardian_fetch_everything_again(tmp_path):
    db, g = _db(tmp_path), Guardian()
    _refresh(g, db, ["c0", "c1"])
    # Written after the Guardian's last look, then checkpointed: the restarted StateDB
    # loads it from the checkpoint, with no write seq the Guardian could compare.
    db.patch("limits", "c0", {"resources.cpu.boundary": 20})
    db.checkpoint()
    db.store.close()
    restarted = StateDB(str(tmp_path), fsync=False)  # same state dir, a new instance
    assert ("limits", "c0") not in restarted.store.last_write_seq
    _refresh(g, restarted, ["c0", "c1"])
    assert g._instance == restarted.instance
    assert g._prepared["c0"].bounds == {"cpu": (60, 20)}  # m = 20 % of 200 = 40


def test_a_changed_set_of_guardable_resources_re_prepares_every_container(tmp_path):
    db, g = _db(tmp_path), Guardian()
    _refresh(g, db, ["c0", "c1"])
    assert g._prepared["c0"].guarded == ("cpu",)
    db.patch("structures", "c0", {"resources.mem.guard": True})
    db.patch("services", "guardian", {"config.GUARDABLE_RESOURCES": ["mem"]})
    _refresh(g, db, ["c0", "c1"])
    assert g._prepared["c0"].guarded == ("mem",) and g._prepared["c1"].guarded == ()


class _Actors:
    """The Guardian's handles: the StateDB in process; the Scaler takes nothing; no peer is deployed."""

    def __init__(self, db: StateDB) -> None:
        self.statedb = _Remote(db)

    def get(self, name: str) -> Any:
        from sc_actors.handles import Unavailable
        if name.startswith("scaler"):
            return _Remote(self)
        raise Unavailable(f"{name} is not deployed here")

    def submit(self, requests: Any) -> None:
        return None


def test_a_host_whose_window_fails_holds_up_neither_the_others_nor_its_own_next_window(tmp_path, monkeypatch):
    db = _db(tmp_path, ())
    for n, host in (("a0", "h0"), ("b0", "h1")):
        db.put("structures", {**_container(n, 100), "host": host})
        db.put("limits", {"name": n, "resources": {"cpu": {"boundary": 10}, "mem": {"boundary": 10}}})
    g = Guardian()
    g._actors = _Actors(db)  # type: ignore[assignment]
    real_step = HostEvents.step
    broken = {"h0"}

    def step(he: HostEvents, *args: Any, **kw: Any) -> None:
        if "a0" in he.names and "h0" in broken:
            raise RuntimeError("a bug in one host's event step")  # joined with h1's or alone
        real_step(he, *args, **kw)

    monkeypatch.setattr(HostEvents, "step", step)

    def windows(t: float) -> None:
        asyncio.run(g._evaluate([HostWindow.of("h0", t - 1, t, ("a0",), [50.0], [100.0]),
                                 HostWindow.of("h1", t - 1, t, ("b0",), [50.0], [100.0])]))

    def upper(name: str) -> Any:
        return db.get("limits", name)["resources"]["cpu"].get("upper")

    windows(1.0)
    # The joined window failed; alone, h1's went through and h0's did not.
    assert upper("b0") == 80 and upper("a0") is None
    assert "h0" not in g._events and "h0" not in g._hosts and g._alone == {"h0"}  # nothing of h0's kept
    windows(2.0)
    assert upper("a0") is None and "h1" in g._events  # h0 alone fails again; h1 goes on alone
    broken.clear()
    windows(3.0)
    assert upper("a0") == 80 and not g._alone  # h0's next window is evaluated from scratch
    windows(4.0)
    assert g._group_of == {"h0": "h0 h1", "h1": "h0 h1"}  # then joined again


def test_windows_of_hosts_stepped_together_decide_what_each_stepped_alone_decides(tmp_path):
    """The joined step is the per-host step over more rows: the same boundaries, events and
    requests, window after window, as each host's window evaluated in a batch of its own."""
    hosts = {"h0": ["a0", "a1", "a2"], "h1": ["b0", "b1"], "h2": ["c0"]}
    # Per container, its CPU usage window after window: above upper (80), below lower (60), between.
    usage = {"a0": [95] * 8, "a1": [30] * 8, "a2": [70, 95, 95, 30, 30, 30, 30, 30, 30],
             "b0": [30, 30, 95, 95, 95, 70, 70, 70], "b1": [70] * 8, "c0": [95, 30] * 4}
    runs = []
    for mode in ("joined", "alone"):
        db = StateDB(str(tmp_path / mode), fsync=False)
        for host, names in hosts.items():
            for n in names:
                db.put("structures", {**_container(n, 100), "host": host})
                db.put("limits", {"name": n, "resources": {"cpu": {"boundary": 10}, "mem": {"boundary": 10}}})
        g, submitted = Guardian(), []
        g._actors = _Actors(db)  # type: ignore[assignment]
        g._submit = lambda scaler, requests: submitted.extend(requests)  # type: ignore[method-assign]
        seen = []
        for k in range(8):
            t = 10.0 + k
            windows = [HostWindow.of(h, t - 1, t, names, [float(usage[n][k]) for n in names], [100.0] * len(names))
                       for h, names in hosts.items()]
            if mode == "joined":
                asyncio.run(g._evaluate(windows))
            else:
                for w in windows:
                    asyncio.run(g._evaluate([w]))
            pending = {n: [(e.name, e.resource, e.timestamp) for e in he.events(i)]
                       for he in g._events.values() for i, n in enumerate(he.names)}
            seen.append((sorted((r.structure, r.resource, r.action, r.amount) for r in submitted),
                         {n: db.get("limits", n)["resources"]["cpu"].get("upper") for ns in hosts.values() for n in ns},
                         pending))
            submitted.clear()
        runs.append((seen, dict(g._group_of)))
    (joined, groups), (alone, singles) = runs
    assert groups == {h: "h0 h1 h2" for h in hosts} and singles == {h: h for h in hosts}
    assert any(s[0] for s in joined)  # requests were made
    assert joined == alone


def test_a_node_whose_hosts_change_keeps_the_pending_events_of_those_it_had(tmp_path):
    db = _db(tmp_path, ())
    for n, host in (("a0", "h0"), ("b0", "h1"), ("c0", "h2")):
        db.put("structures", {**_container(n, 100), "host": host})
        db.put("limits", {"name": n, "resources": {"cpu": {"boundary": 10}, "mem": {"boundary": 10}}})
    g = Guardian()
    g._actors = _Actors(db)  # type: ignore[assignment]
    g._submit = lambda scaler, requests: None  # type: ignore[method-assign]

    def pending(name: str) -> int:
        return sum(len(he.events(he.index[name])) for he in g._events.values() if name in he.index)

    # a0 under lower (60): one CpuUnderuse event a window, none asks for anything yet.
    asyncio.run(g._evaluate([HostWindow.of("h0", 0, 1, ("a0",), [30.0], [100.0]),
                             HostWindow.of("h1", 0, 1, ("b0",), [70.0], [100.0])]))
    assert pending("a0") == 1 and set(g._events) == {"h0 h1"}
    asyncio.run(g._evaluate([HostWindow.of(h, 1, 2, (n,), [u], [100.0])
                             for h, n, u in (("h0", "a0", 30.0), ("h1", "b0", 70.0), ("h2", "c0", 70.0))]))
    assert pending("a0") == 2 and set(g._events) == {"h0 h1 h2"}  # carried into the new group, the old one gone
