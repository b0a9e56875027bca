"""The health checks (reference §7.5, issue 18) and the rule that can never fire (issue 14 item 3)."""
from __future__ import annotations

from typing import Any

import pytest

from sc_actors.defaults import default_rules
from sc_actors.model import Container, Host, Rule
from sc_actors.policy.health import (
    EventNeed,
    JournalState,
    ResourceRange,
    ServiceBeat,
    Snapshot,
    check,
    events_needed,
    events_per_window,
    hosts_without_node,
    limits_out_of_range,
    missing_containers,
    overcommitted_hosts,
    rules_that_cannot_fire,
    stale_checkpoint,
    stale_services,
)
from sc_actors.settings import GuardianSettings

NOW = 1_000_000.0


def _request_rule(name: str, logic: dict[str, Any], resource: str = "cpu") -> Rule:
    return Rule(name=name, resource=resource, rule=logic, generates="requests", action={"requests": [name]},
                active=True, events_to_remove=1, rescale_policy="fit_to_usage", rescale_type="down")


def _events(up: tuple[str, int], down: tuple[str, int]) -> dict[str, Any]:
    return {"and": [{up[0]: [{"var": "events.scale.up"}, up[1]]}, {down[0]: [{"var": "events.scale.down"}, down[1]]}]}


def _rule(rules: list[Rule], name: str) -> Rule:
    return next(r for r in rules if r.name == name)


def _guardian(window_s: float, timeout_s: float, **kw: Any) -> GuardianSettings:
    return GuardianSettings(WINDOW_TIMELAPSE=window_s, EVENT_TIMEOUT=timeout_s, **kw)


# --------------------------------------------------------------------------- events a rule needs


@pytest.mark.parametrize("logic, need", [
    pytest.param(_events((">=", 2), ("<=", 2)), EventNeed(2, 0, 2), id="CpuRescaleUp's logic: 2 up"),
    pytest.param(_events(("<=", 0), (">=", 6)), EventNeed(0, 6, 6), id="CpuRescaleDown's logic: 6 down"),
    pytest.param(_events((">=", 1), ("<=", 6)), EventNeed(1, 0, 1), id="one event is enough"),
    pytest.param({"==": [{"var": "events.scale.down"}, 3]}, EventNeed(0, 3, 3), id="exactly 3 down"),
    # 2 up and 1 down may come in the same 2 windows (from two event rules): a lower bound.
    pytest.param({"and": [{">=": [{"var": "events.scale.up"}, 2]}, {">=": [{"var": "events.scale.down"}, 1]}]},
                 EventNeed(2, 1, 2), id="up and down together"),
    pytest.param(_events((">=", 2), ("<", 0)), None, id="never holds: down < 0"),
])
def test_events_needed_is_read_from_the_rules_json_logic(logic, need):
    assert events_needed(_request_rule("AnyName", logic)) == need


def test_events_needed_follows_the_logic_not_the_name():
    # A rule named like the shipped CpuRescaleDown (6 events) but asking for one.
    assert events_needed(_request_rule("CpuRescaleDown", _events(("<=", 0), (">=", 1)))) == EventNeed(0, 1, 1)


def test_two_event_rules_of_one_direction_halve_the_windows():
    rules = default_rules()
    extra = Rule(name="cpu_dropped_lower_2", resource="cpu", rule={">=": [1, 0]}, generates="events",
                 action={"events": {"scale": {"down": 1}}}, active=True)
    rate = events_per_window([*rules, extra], "cpu")
    assert rate == (1, 2)
    # 6 down events at 2 a window: 3 windows.
    assert events_needed(_rule(rules, "CpuRescaleDown"), rate) == EventNeed(0, 6, 3)


# --------------------------------------------------------------------------- a rule that can never fire


def test_the_shipped_rules_can_all_fire_with_our_defaults():
    assert rules_that_cannot_fire(default_rules(), GuardianSettings()) == []


def test_a_rule_that_can_never_fire_is_named_with_its_events_and_the_setting_to_change():
    problems = rules_that_cannot_fire(default_rules(), _guardian(1, 4))
    by_rule = {p.subject: p.message for p in problems}
    # CpuRescaleDown: 6 down events, 6 windows of 1 s end (6 − 1) × 1 = 5 s apart ≥ 4 s.
    message = by_rule["CpuRescaleDown"]
    assert "needs 6 down cpu events" in message
    assert "EVENT_TIMEOUT 4 s" in message
    assert "`sc service set guardian EVENT_TIMEOUT 6`" in message
    assert "WINDOW_TIMELAPSE to at most 0.66" in message  # 4 / 6 = 0.666…, rounded down
    # 2 up events span 1 s: CpuRescaleUp fires.
    assert "CpuRescaleUp" not in by_rule


@pytest.mark.parametrize("window_s, timeout_s, down, fires", [
    pytest.param(0.4, 4, 8, True, id="ours: 8 events span 2.8 s < 4 s"),
    pytest.param(1, 4, 6, False, id="issue 14: 6 events span 5 s >= 4 s"),
    pytest.param(1, 5, 6, False, id="5 s == 5 s: windows are never shorter than 1 s, so never"),
    pytest.param(1, 5.5, 6, True, id="5 s < 5.5 s"),
    pytest.param(10, 4, 1, True, id="one event fires in its own window, whatever the window"),
    pytest.param(10, 4, 2, False, id="2 events span 10 s >= 4 s"),
    pytest.param(10, 120, 6, True, id="the original's shipped profile: 50 s < 120 s"),
])
def test_a_rule_fires_iff_its_windows_end_within_the_event_timeout(window_s, timeout_s, down, fires):
    rules = [*[r for r in default_rules() if r.generates == "events"],
             _request_rule("Down", _events(("<=", 0), (">=", down)))]
    problems = rules_that_cannot_fire(rules, _guardian(window_s, timeout_s))
    assert (problems == []) == fires


def test_a_rule_without_an_active_event_rule_for_its_events_can_never_fire():
    rules = default_rules()
    _rule(rules, "cpu_dropped_lower").active = False
    problems = {p.subject: p.message for p in rules_that_cannot_fire(rules, GuardianSettings())}
    assert "no active event rule makes cpu down events" in problems["CpuRescaleDown"]
    assert "`sc rule activate cpu_dropped_lower`" in problems["CpuRescaleDown"]


def test_rules_of_a_resource_that_is_not_guarded_and_inactive_rules_are_not_reported():
    rules = default_rules()
    # Disk_readRescaleDown needs 6 events: it could not fire either, but disk_read is not guardable here.
    assert [p.subject for p in rules_that_cannot_fire(rules, _guardian(1, 4, GUARDABLE_RESOURCES=["cpu"]))] \
        == ["CpuRescaleDown"]
    _rule(rules, "CpuRescaleDown").active = False
    assert rules_that_cannot_fire(rules, _guardian(1, 4, GUARDABLE_RESOURCES=["cpu"])) == []


def test_a_rule_whose_logic_never_holds_is_reported():
    rule = _request_rule("Broken", _events((">=", 2), ("<", 0)))
    [problem] = rules_that_cannot_fire([*default_rules(), rule], GuardianSettings()) or [None]
    assert problem is not None and problem.subject == "Broken" and "holds for no count" in problem.message


# --------------------------------------------------------------------------- heartbeats


def test_an_old_heartbeat_is_reported_with_what_to_do():
    beats = [ServiceBeat("scaler", NOW - 100), ServiceBeat("structures_snapshoter", NOW - 1, {"POLLING_FREQUENCY": 5})]
    [p] = stale_services(beats, NOW, NOW - 1000, windows_expected=True)
    # Scaler: beats every 5 s even idle; 3 × 5 + 10 = 25 s allowed, 100 s old.
    assert p.subject == "scaler" and "last heartbeat 100 s ago" in p.message and "ray list actors" in p.message


@pytest.mark.parametrize("beat, up_s, windows_expected, stale", [
    pytest.param(ServiceBeat("guardian", NOW - 60), 1000, False, False, id="guardian idle: no window to evaluate"),
    # 10 windows of 0.4 s + 10 s = 14 s allowed.
    pytest.param(ServiceBeat("guardian", NOW - 60), 1000, True, True, id="guardian silent while containers run"),
    pytest.param(ServiceBeat("guardian", NOW - 5), 1000, True, False, id="guardian beating"),
    pytest.param(ServiceBeat("scaler", 0.0), 5, True, False, id="never beat, StateDB up 5 s"),
    pytest.param(ServiceBeat("scaler", 0.0), 100, True, True, id="never beat, StateDB up 100 s"),
    # 3 × 60 + 10 = 190 s allowed with a 60-s period.
    pytest.param(ServiceBeat("structures_snapshoter", NOW - 100, {"POLLING_FREQUENCY": 60}), 1000, True, False,
                 id="snapshoter with a long period"),
    pytest.param(ServiceBeat("refeeder", NOW - 1000), 1000, True, False, id="refeeder lives in the StateDB"),
])
def test_heartbeat_ages_follow_each_services_period(beat, up_s, windows_expected, stale):
    assert bool(stale_services([beat], NOW, NOW - up_s, windows_expected)) == stale


# --------------------------------------------------------------------------- hosts, containers, limits


def _host(name: str, cpu_max: float = 200, mem_max: float = 1024, **extra: Any) -> Host:
    return Host.model_validate({"name": name, "subtype": "host", **extra,
                                "resources": {"cpu": {"max": cpu_max, "free": 0}, "mem": {"max": mem_max, "free": 0}}})


def _container(name: str, host: str = "h0", cpu: float = 100, mem: float = 256, **extra: Any) -> Container:
    return Container.model_validate({"name": name, "host": host, **extra, "resources": {
        "cpu": {"min": 10, "current": cpu, "max": 400}, "mem": {"min": 64, "current": mem, "max": 2048}}})


def test_a_host_without_a_live_node_is_reported_with_how_to_bring_it_back():
    hosts = [_host("h0"), _host("gone", reachable=False, unreachable_reason="its node died", unreachable_since=NOW),
             _host("stale")]
    problems = hosts_without_node(hosts, live=frozenset({"h0"}))
    assert [p.subject for p in problems] == ["gone", "stale"]
    assert "its node died" in problems[0].message and "sc_host=gone" in problems[0].message
    assert "no live Ray node carries the label sc_host=stale" in problems[1].message
    # Live nodes unknown: only the flag counts.
    assert [p.subject for p in hosts_without_node(hosts, live=None)] == ["gone"]


def test_a_missing_container_is_reported_with_when_and_when_it_is_released():
    containers = [_container("c0"), _container("c1", missing_since=NOW - 20)]
    [p] = missing_containers(containers, NOW, grace_s=60)
    # 60 s grace − 20 s gone = released in 40 s.
    assert p.subject == "c1"
    assert "cgroup gone since" in p.message and "(20 s ago)" in p.message and "released in 40 s" in p.message
    assert "`sc container desubscribe c1`" in p.message


def test_a_limit_outside_min_max_is_reported():
    ranges = [ResourceRange("app", "application", "cpu", 300, 50, 200),
              ResourceRange("u", "user", "mem", 32, 64, 4096),
              ResourceRange("c0", "container", "cpu", 100, 10, 400),
              ResourceRange("empty", "application", "cpu", None, 50, 200)]
    problems = limits_out_of_range(ranges)
    assert [p.subject for p in problems] == ["app", "u"]
    assert "current 300 (Σ of its containers) is above its max 200" in problems[0].message
    assert "`sc structure set app cpu max 300`" in problems[0].message
    assert "below its min 64" in problems[1].message and "`sc user set u mem min 32`" in problems[1].message


def test_a_host_whose_containers_hold_more_than_its_max_is_reported():
    containers = [_container("c0", cpu=150), _container("c1", cpu=100), _container("c2", host="h1", cpu=400)]
    [p] = overcommitted_hosts([_host("h0", cpu_max=200), _host("h1", cpu_max=400)], containers)
    # h0: 150 + 100 = 250 > 200; h1: 400 = 400 is fine.
    assert p.subject == "h0" and "hold 250 cpu shares" in p.message and "c0 150, c1 100" in p.message
    assert "`sc structure set h0 cpu max 250`" in p.message


# --------------------------------------------------------------------------- the journal


@pytest.mark.parametrize("journal, stale", [
    pytest.param(JournalState(0, 0, 900, 900, 60), False, id="nothing written since the checkpoint"),
    pytest.param(JournalState(3, 900, 900, 880, 60), False, id="idle: last write 20 s after the checkpoint"),
    # Written 10 s ago, checkpointed 200 s ago: a write came 190 s after it, 130 s after it was due.
    pytest.param(JournalState(500, 90_000, 200, 10, 60), True, id="written long after a due checkpoint"),
])
def test_a_journal_is_stale_only_when_a_checkpoint_was_due_and_did_not_happen(journal, stale):
    problems = stale_checkpoint(journal)
    assert bool(problems) == stale
    if stale:
        assert "not checkpointed for 200 s" in problems[0].message and "every 60 s" in problems[0].message


# --------------------------------------------------------------------------- all together


def _snapshot(**kw: Any) -> Snapshot:
    base: dict[str, Any] = dict(
        now=NOW, rules=default_rules(), guardian=GuardianSettings(),
        services=[ServiceBeat(n, NOW - 1) for n in ("guardian", "scaler", "structures_snapshoter",
                                                    "database_snapshoter", "refeeder")],
        statedb_started=NOW - 3600, hosts=[_host("h0")], live_hosts=frozenset({"h0"}),
        containers=[_container("c0")], ranges=[ResourceRange("c0", "container", "cpu", 100, 10, 400)],
        journal=JournalState(1, 100, 10, 5, 60), missing_grace_s=60)
    base.update(kw)
    return Snapshot(**base)


def test_a_healthy_stack_has_no_problem():
    assert check(_snapshot()) == []


def test_check_reports_every_kind_of_problem_once():
    problems = check(_snapshot(
        guardian=_guardian(1, 4, GUARDABLE_RESOURCES=["cpu"]),
        services=[ServiceBeat("scaler", NOW - 600)],
        hosts=[_host("h0", cpu_max=100), _host("ghost")],
        containers=[_container("c0", cpu=150, missing_since=NOW - 5)],
        ranges=[ResourceRange("app", "application", "cpu", 300, 50, 200)],
        journal=JournalState(500, 90_000, 200, 10, 60)))
    assert [(p.kind, p.subject) for p in problems] == [
        ("rule", "CpuRescaleDown"), ("heartbeat", "scaler"), ("host", "ghost"), ("container", "c0"),
        ("limit", "app"), ("host", "h0"), ("journal", "statedb")]
