"""The StateDB's per-consumer views on a plain `State`: what each consumer gets, without Ray."""
from __future__ import annotations

from typing import Any

from sc_actors.store import operations as ops
from sc_actors.store import views
from tests.builders import POM, application, container, host, limits


def _doc(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def _two_nodes(state) -> None:
    """h0 with c0, h1 with c1, their limits, app1 = [c0, c1], user u0 owning app1."""
    for h in ("h0", "h1"):
        state.put("structures", _doc(host(h)))
    state.put("structures", _doc(container("c0", cpu=(25, 120, 400), host="h0")))
    state.put("structures", _doc(container("c1", cpu=(25, 80, 400), host="h1")))
    for c in ("c0", "c1"):
        state.put("limits", _doc(limits(c, cpu=(10, POM, 110, 60))))
    state.put("structures", _doc(application("app1", cpu=(20, 100, 1600), containers=["c0", "c1"])))
    state.put("users", {"name": "u0", "clusters": ["app1"], "resources": {"cpu": {"min": 10, "max": 4000}}})


def _window(state, clock, **cpu: float) -> None:
    """One window of usage for these containers, ending now."""
    ops.guardian_report(state, {n: {"cpu": u, "mem": 100.0} for n, u in cpu.items()}, {}, [], clock())


# --------------------------------------------------------------------------- Guardian


def test_a_guardian_of_another_instance_gets_everything(state):
    _two_nodes(state)
    changes = views.guardian_changes(state, ["c0", "c1"], since=10**9, need=[], instance="an older one")
    assert changes["instance"] == state.instance
    assert changes["seq"] == state.docs.seq
    assert set(changes["structures"]) == {"c0", "c1"}
    assert changes["limits"]["c0"]["resources"]["cpu"]["upper"] == 110
    assert {r["name"] for r in changes["rules"]} == {r["name"] for r in state.docs.values("rules")}
    assert changes["config"] == state.config("guardian")


def test_a_guardian_up_to_date_gets_only_what_changed_after_its_seq(state):
    _two_nodes(state)
    seen = state.docs.seq
    nothing = views.guardian_changes(state, ["c0", "c1"], since=seen, need=[], instance=state.instance)
    assert (nothing["structures"], nothing["limits"], nothing["gone"]) == ({}, {}, [])
    assert nothing["rules"] is None and nothing["config"] is None

    state.patch("limits", "c1", {"resources.cpu.boundary": 20})
    state.patch("services", "guardian", {"config.EVENT_TIMEOUT": 8})
    changes = views.guardian_changes(state, ["c0", "c1"], since=seen, need=[], instance=state.instance)
    assert set(changes["structures"]) == {"c1"}
    assert changes["limits"]["c1"]["resources"]["cpu"]["boundary"] == 20
    assert changes["config"]["EVENT_TIMEOUT"] == 8
    assert changes["rules"] is None


def test_a_guardian_is_not_told_of_the_bounds_it_wrote_but_of_any_write_after(state):
    _two_nodes(state)
    seen = state.docs.seq
    ops.guardian_report(state, {}, {"c0": {"cpu": (100, 90)}}, [], 1.0)
    assert state.docs.get("limits", "c0")["resources"]["cpu"]["upper"] == 100
    quiet = views.guardian_changes(state, ["c0", "c1"], since=seen, need=[], instance=state.instance)
    assert quiet["structures"] == {} and quiet["limits"] == {}
    state.patch("limits", "c0", {"resources.cpu.boundary": 20})  # a user's write after the report
    told = views.guardian_changes(state, ["c0", "c1"], since=seen, need=[], instance=state.instance)
    assert set(told["limits"]) == {"c0"} and told["limits"]["c0"]["resources"]["cpu"]["boundary"] == 20
    assert set(views.guardian_changes(state, ["c0"], since=-1, need=[], instance=state.instance)["limits"]) == {"c0"}


def test_a_guardian_gets_what_it_needs_and_hears_what_is_gone(state):
    _two_nodes(state)
    seen = state.docs.seq
    state.delete("structures", "c1")
    changes = views.guardian_changes(state, ["c0", "c1", "h0"], since=seen, need=["c0"], instance=state.instance)
    assert set(changes["structures"]) == {"c0"}  # asked for, though unchanged
    assert changes["gone"] == ["c1", "h0"]  # deleted, and a host is no container


def test_the_group_guardian_view_holds_the_applications_anchored_at_the_host_with_their_sums(state, clock):
    _two_nodes(state)
    _window(state, clock, c0=90.0, c1=10.5)
    at_h0 = views.group_guardian_view(state, "h0")
    assert [d["name"] for d in at_h0["structures"]] == ["app1"]  # anchored at its first container's host
    assert at_h0["usages"]["app1"]["cpu"] == 100.5  # 90 + 10.5
    assert at_h0["structures"][0]["resources"]["cpu"]["current"] == 200  # 120 + 80
    assert at_h0["limits"] == {"app1": None}
    assert views.group_guardian_view(state, "h1")["structures"] == []
    users = views.group_guardian_view(state, "h0", "user")
    assert users["usages"] == {"u0": {"cpu": 100.5}}  # the user has no mem resource: no mem sum


def test_an_old_window_gives_no_sum(state, clock):
    _two_nodes(state)
    _window(state, clock, c0=90.0, c1=10.5)
    clock.t += 3600  # no node pushed for an hour
    view = views.group_guardian_view(state, "h0")
    assert view["usages"] == {"app1": {}}


# --------------------------------------------------------------------------- Scaler, ReBalancer


def test_the_scaler_view_holds_the_containers_their_hosts_limits_and_usage(state, clock):
    _two_nodes(state)
    _window(state, clock, c0=90.0)
    view = views.scaler_view(state, ["c0", "nobody"])
    assert set(view["structures"]) == {"c0"}
    assert set(view["hosts"]) == {"h0"}
    assert view["limits"]["c0"]["name"] == "c0"
    assert view["usages"] == {"c0": {"cpu": 90.0, "mem": 100.0}}
    assert view["config"] == state.config("scaler")


def test_the_group_scaler_view_reaches_a_users_applications_and_their_containers(state, clock):
    _two_nodes(state)
    _window(state, clock, c0=90.0, c1=10.5)
    view = views.group_scaler_view(state, ["u0"])
    assert set(view["structures"]) == {"app1", "c0", "c1"}
    assert view["structures"]["app1"]["resources"]["cpu"]["usage"] == 100.5
    assert view["users"]["u0"]["resources"]["cpu"]["current"] == 200
    assert set(view["hosts"]) == {"h0", "h1"}
    assert set(view["limits"]) == set(view["usages"]) == {"c0", "c1"}


def test_the_rebalancer_view_is_the_group_view_of_what_is_anchored_at_its_host(state):
    _two_nodes(state)
    view = views.rebalancer_view(state, "h0")
    assert (view["applications"], view["user_names"]) == (["app1"], ["u0"])
    assert set(view["structures"]) == {"app1", "c0", "c1"}
    assert set(view["rules"]) == {r["name"] for r in state.docs.values("rules")}
    assert view["config"] == state.config("rebalancer")
    assert views.rebalancer_view(state, "h1")["applications"] == []


# --------------------------------------------------------------------------- snapshoters, health


def test_the_timeseries_snapshot_has_the_windows_values_and_limits(state, clock):
    _two_nodes(state)
    _window(state, clock, c0=90.0, c1=10.5)
    snap = views.timeseries_snapshot(state, "h0", ["c0"], ["guardian"])
    by_name = {s["name"]: s for s in snap["structures"]}
    assert set(by_name) == {"c0", "app1"}
    assert by_name["c0"]["resources"]["cpu"] == {"current": 120, "max": 400, "min": 25, "usage": 90.0}
    assert by_name["c0"]["limits"]["cpu"] == {"upper": 110, "lower": 60, "boundary": 10}
    assert by_name["app1"]["resources"]["cpu"]["usage"] == 100.5
    assert snap["users"] == [{"name": "u0", "resources": {
        "cpu": {"current": 200, "max": 4000, "min": 10, "usage": 100.5}}}]
    assert snap["services"] == {"guardian": state.config("guardian")}
    assert views.timeseries_snapshot(state, None, [], None) == {"structures": [], "users": [], "services": {}}


def test_drift_leaves_out_a_container_written_after_the_read(state):
    _two_nodes(state)
    since = state.docs.seq
    state.patch("structures", "c1", {"resources.cpu.current": 90})
    out = views.drift(state, {"c0": {"cpu": 100.0}, "c1": {"cpu": 100.0}, "h0": {"cpu": 1.0}}, since)
    assert out == [{"structure": "c0", "host": "h0", "resource": "cpu", "recorded": 120, "real": 100.0}]
    assert "structures_snapshoter" in state.heartbeats


def test_the_health_view_carries_heartbeats_sums_and_the_journal(state, clock):
    _two_nodes(state)
    state.beat("scaler")
    view = views.health_view(state)
    assert view["now"] == clock()
    services = {s["name"]: s for s in view["services"]}
    assert services["scaler"]["heartbeat"] == clock()
    assert services["refeeder"]["heartbeat"] == clock()  # it lives in the StateDB
    users = {u["name"]: u for u in view["users"]}
    assert users["u0"]["resources"]["cpu"]["current"] == 200
    assert view["journal"]["state_dir"] == str(state.docs.dir)
    assert view["journal"]["records"] == state.docs.journal.records_since_reset > 0


def test_host_marks_give_each_hosts_reachability_and_agent_and_nothing_else(state):
    _two_nodes(state)
    state.put("structures", {**_doc(host("sim-1")), "agent": "h0"})
    state.patch("structures", "h1", {"reachable": False})
    assert views.host_marks(state) == {"h0": {"reachable": True, "agent": None},
                                       "h1": {"reachable": False, "agent": None},
                                       "sim-1": {"reachable": True, "agent": "h0"}}
