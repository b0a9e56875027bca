"""The StateDB's multi-document writes on a plain `State`: a refused call changes nothing, without Ray."""
from __future__ import annotations

import copy
from typing import Any, Callable

import pytest

from sc_actors.errors import Conflict, NotFound
from sc_actors.store import operations as ops
from tests.builders import application, container, host


def _doc(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def _setup(state) -> None:
    """h0 with c0 and c1 (cpu max 400 each), app1 = [c0] and app2 (cpu max 1600), user u0 (cpu max 4000)."""
    state.put("structures", _doc(host("h0")))
    for c in ("c0", "c1"):
        state.put("structures", _doc(container(c, cpu=(25, 100, 400), host="h0")))
    state.put("structures", _doc(application("app1", cpu=(20, 100, 1600), containers=["c0"])))
    state.put("structures", _doc(application("app2", cpu=(20, 100, 1600))))
    state.put("users", {"name": "u0", "resources": {"cpu": {"min": 10, "max": 4000}}})


def _snapshot(state) -> tuple[int, dict[str, Any]]:
    return state.docs.seq, copy.deepcopy(state.docs.docs)


def _refused(state, error: type[Exception], match: str, call: Callable[[], Any]) -> None:
    """`call()` raises `error` (its message matching), and no document nor the seq changed."""
    before = _snapshot(state)
    with pytest.raises(error, match=match):
        call()
    assert _snapshot(state) == before


# --------------------------------------------------------------------------- links


def test_a_container_joins_an_application_with_its_alloc_ratio(state):
    _setup(state)
    stored = ops.link_container_to_app(state, "c1", "app2")
    assert stored["containers"] == ["c1"]
    assert state.docs.get("structures", "c1")["resources"]["cpu"]["alloc_ratio"] == 0.25  # 400 / 1600


def test_a_container_in_another_application_is_a_conflict_and_nothing_changes(state):
    _setup(state)
    _refused(state, Conflict, "already in application 'app1'", lambda: ops.link_container_to_app(state, "c0", "app2"))


def test_an_application_of_another_user_is_a_conflict_and_nothing_changes(state):
    _setup(state)
    state.put("users", {"name": "u1", "resources": {"cpu": {"min": 10, "max": 4000}}})
    u0 = ops.link_app_to_user(state, "u0", "app1")
    assert u0["clusters"] == ["app1"]
    assert state.docs.get("structures", "app1")["user"] == "u0"
    assert state.docs.get("structures", "app1")["resources"]["cpu"]["alloc_ratio"] == 0.4  # 1600 / 4000
    _refused(state, Conflict, "already belongs to user 'u0'", lambda: ops.link_app_to_user(state, "u1", "app1"))


def test_unlinking_what_is_not_linked_is_not_found_and_nothing_changes(state):
    _setup(state)
    _refused(state, NotFound, "is not in application", lambda: ops.unlink_container_from_app(state, "c1", "app1"))
    _refused(state, NotFound, "does not belong to user", lambda: ops.unlink_app_from_user(state, "u0", "app1"))


def test_unlinking_and_deleting_a_user_clear_both_sides(state):
    _setup(state)
    ops.link_app_to_user(state, "u0", "app1")
    ops.link_app_to_user(state, "u0", "app2")
    assert ops.unlink_app_from_user(state, "u0", "app1")["clusters"] == ["app2"]
    assert "user" not in state.docs.get("structures", "app1")
    ops.delete_user(state, "u0")
    assert state.docs.get("users", "u0") is None
    assert "user" not in state.docs.get("structures", "app2")


# --------------------------------------------------------------------------- deletions, creation


def test_a_host_with_containers_is_not_deleted_and_nothing_changes(state):
    _setup(state)
    _refused(state, Conflict, r"still has containers \['c0', 'c1'\]", lambda: ops.delete_structure(state, "h0", "host"))


def test_a_deleted_application_leaves_its_users_clusters(state):
    _setup(state)
    ops.link_app_to_user(state, "u0", "app1")
    ops.delete_structure(state, "app1", "application")
    assert state.docs.get("structures", "app1") is None
    assert state.docs.get("users", "u0")["clusters"] == []


def test_a_taken_name_is_not_created_again(state):
    _setup(state)
    _refused(state, Conflict, "already exists", lambda: ops.create_with_limits(state, _doc(container("c0")), None))
    ops.create_with_limits(state, _doc(container("c2", host="h0")), {"resources": {"cpu": {"boundary": 10}}})
    assert state.docs.get("limits", "c2")["name"] == "c2"


# --------------------------------------------------------------------------- Scaler, snapshoter


def test_record_scaling_sets_absolute_values_so_a_retry_changes_nothing_more(state):
    _setup(state)
    entry = {"structure": "c0", "outcome": "applied"}
    ops.record_scaling(state, {"c0": {"cpu": 150}}, {"h0": {"mem": {"free": 1000}}}, [entry])
    once = _snapshot(state)[1]
    ops.record_scaling(state, {"c0": {"cpu": 150}}, {"h0": {"mem": {"free": 1000}}}, [entry])
    assert _snapshot(state)[1] == once
    assert once["structures"]["c0"]["resources"]["cpu"]["current"] == 150
    assert once["structures"]["h0"]["resources"]["mem"]["free"] == 1000
    assert list(state.requests) == [entry, entry]


def test_a_request_across_shards_is_committed_by_its_record_or_aborted_by_an_owner_first(state, clock):
    _setup(state)
    # Recorded by its coordinator: an owner asking later keeps its part.
    ops.record_scaling(state, {}, {}, [{"structure": "app1", "outcome": "applied", "tx": "t1"}])
    assert ops.decide_tx(state, "t1", since=clock()) == "committed"
    # Asked first: aborted for good, and the coordinator's late record is refused and changes nothing.
    assert ops.decide_tx(state, "t2", since=clock()) == "aborted"
    before = _snapshot(state)
    with pytest.raises(Conflict, match="t2"):
        ops.record_scaling(state, {"c0": {"cpu": 150}}, {}, [{"structure": "app1", "outcome": "applied", "tx": "t2"}])
    assert _snapshot(state) == before and ops.decide_tx(state, "t2", since=clock()) == "aborted"
    # A part older than this StateDB: its fate is not known here (the owner keeps it).
    assert ops.decide_tx(state, "t3", since=state.started - 1) == "unknown"
    assert "t3" not in state.transactions


def test_a_container_its_node_stops_listing_goes_missing_and_comes_back(state, clock):
    _setup(state)
    ops.guardian_report(state, {"c1": {"cpu": 50.0, "mem": 10.0}}, {}, [], clock())
    assert ops.containers_seen(state, {"h0": ["c0"]}, 30.0) == {"c1": clock()}
    assert state.docs.get("structures", "c1")["missing_since"] == clock()
    assert "c1" not in state.usages  # it measures nothing any more
    clock.t += 5
    assert ops.containers_seen(state, {"h0": ["c0"]}, 30.0) == {"c1": clock() - 5}  # since when, not now
    assert ops.containers_seen(state, {"h0": ["c0", "c1"]}, 30.0) == {}
    assert "missing_since" not in state.docs.get("structures", "c1")
    assert [e["action"] for e in state.requests] == ["ContainerMissing", "ContainerBack"]


# --------------------------------------------------------------------------- Membership


def test_ensure_host_creates_a_missing_host_reachable(state):
    result = ops.ensure_host(state, _doc(host("h9")), "node-9")
    assert result == {"created": True, "mismatch": None}
    doc = state.docs.get("structures", "h9")
    assert (doc["reachable"], doc["node_id"]) == (True, "node-9")


def test_ensure_host_keeps_an_existing_hosts_accounting_and_reports_a_capacity_mismatch(state):
    state.put("structures", _doc(host("h0", cores=4, mem=16384)))
    ops.set_host_reachable(state, "h0", False, "node gone")
    result = ops.ensure_host(state, _doc(host("h0", cores=8, mem=16384)), "node-0")
    assert result == {"created": False, "mismatch": "cpu max is 400 shares in the StateDB, 800 on the node"}
    doc = state.docs.get("structures", "h0")
    assert doc["resources"]["cpu"]["max"] == 400  # kept, only reported
    assert doc["reachable"] is True and "unreachable_reason" not in doc


def test_ensure_host_refuses_a_name_that_is_no_host(state):
    _setup(state)
    _refused(state, Conflict, "not a host", lambda: ops.ensure_host(state, _doc(host("c0"))))


def test_set_host_reachable_says_whether_it_changed(state, clock):
    _setup(state)
    assert ops.set_host_reachable(state, "h0", False, "node gone") is True
    doc = state.docs.get("structures", "h0")
    assert (doc["reachable"], doc["unreachable_reason"], doc["unreachable_since"]) == (False, "node gone", clock())
    assert ops.set_host_reachable(state, "h0", False, "again") is False
    assert ops.set_host_reachable(state, "c0", False) is False  # not a host: left alone
    assert ops.set_host_reachable(state, "h0", True) is True
    assert "unreachable_since" not in state.docs.get("structures", "h0")


def _last_record(state) -> list[dict[str, Any]]:
    from sc_actors.store.journal import read_records

    return list(read_records(state.docs.journal.path))[-1][1]


def test_record_scaling_journals_only_the_fields_that_changed_and_a_reopen_gives_the_same_documents(state, tmp_path):
    _setup(state)
    core_map = copy.deepcopy(state.docs.get("structures", "h0")["resources"]["cpu"]["core_usage_mapping"])
    core_map["0"] = {"free": 50.0, "c0": 50.0}
    seq = ops.record_scaling(state, {"c0": {"cpu": 150, "mem": state.docs.get("structures", "c0")["resources"]["mem"]["current"]}},
                             {"h0": {"cpu": {"free": 350.0, "core_usage_mapping": core_map}}}, [])
    # c0's mem current was already that: only its cpu current; the host's free and core map.
    assert sorted((op["op"], op["name"], tuple(tuple(p) for p, _ in op["set"])) for op in _last_record(state)) == [
        ("patch", "c0", (("resources", "cpu", "current"),)),
        ("patch", "h0", (("resources", "cpu", "free"), ("resources", "cpu", "core_usage_mapping")))]
    # Nothing changed: nothing written, the same seq.
    assert ops.record_scaling(state, {"c0": {"cpu": 150}}, {"h0": {"cpu": {"free": 350.0}}}, []) == seq
    from sc_actors.store.state import State

    written = copy.deepcopy(state.docs.docs)
    state.docs.close()
    again = State.open(tmp_path, fsync=False)
    assert again.docs.docs == written and again.docs.seq == seq
    again.docs.close()


def test_guardian_bounds_journal_upper_and_lower_only_and_keep_an_edit_of_boundary(state):
    _setup(state)
    state.put("limits", {"name": "c0", "resources": {"cpu": {"boundary": 10, "upper": 100.0, "lower": 50.0}}})
    ops.guardian_report(state, {}, {"c0": {"cpu": (120.0, 60.0)}, "nosuch": {"cpu": (1.0, 0.0)}}, [], 1.0)
    (op,) = _last_record(state)
    assert op == {"op": "patch", "c": "limits", "name": "c0",
                  "set": [[["resources", "cpu", "upper"], 120.0], [["resources", "cpu", "lower"], 60.0]]}
    assert state.docs.get("limits", "c0")["resources"]["cpu"] == {
        "boundary": 10, "boundary_type": "percentage_of_max", "upper": 120.0, "lower": 60.0}
