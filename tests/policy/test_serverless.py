"""One Guardian window as one pure call (reference §3.2, §10.2 integration test)."""
from __future__ import annotations

from sc_actors.defaults import default_rules
from sc_actors.policy.serverless import evaluate_window
from sc_actors.settings import GuardianSettings
from tests.builders import POM, container, limits

SETTINGS = GuardianSettings(WINDOW_TIMELAPSE=0.4, EVENT_TIMEOUT=4, GUARDABLE_RESOURCES=["cpu"])


def _step(c, events, usage, now, lim=None):
    return evaluate_window(c, lim or limits("c0", cpu=(10, POM)), default_rules(), {"cpu": usage}, events, now, SETTINGS)


def test_two_windows_above_upper_make_one_scale_up_and_consume_both_events():
    c = container("c0", cpu=(50, 140, 200))
    # m = 10 % of max 200 = 20: upper = 140 − 20 = 120, lower = 140 − 40 = 100.
    s1 = _step(c, [], 130, now=100.0)
    assert s1.bounds == {"cpu": (120, 100)}
    assert [e.name for e in s1.new_events] == ["CpuBottleneck"] and not s1.requests
    s2 = _step(c, s1.pending_events, 130, now=100.4)
    assert [(r.action, r.amount) for r in s2.requests] == [("CpuRescaleUp", 60)]  # 140 + 75 > 200: trimmed to 60
    assert s2.removed_events == {"CpuBottleneck": 2} and s2.pending_events == []


def test_usage_between_the_boundaries_makes_no_event():
    s = _step(container("c0", cpu=(50, 140, 200)), [], 110, now=1.0)
    assert s.new_events == [] and s.requests == []


def test_an_unguarded_container_is_not_evaluated_and_keeps_its_events():
    c = container("c0", cpu=(50, 140, 200), guard=False)
    s = _step(c, [], 190, now=1.0)
    assert s.skipped and s.new_events == [] and s.bounds == {}


def test_events_from_before_a_scaling_are_dropped_when_current_changes():
    before = container("c0", cpu=(50, 140, 200))
    s1 = _step(before, [], 90, now=1.0)  # below lower 100: one CpuUnderuse at current 140
    assert [e.name for e in s1.new_events] == ["CpuUnderuse"]
    after = container("c0", cpu=(50, 120, 200))  # a scaling moved current to 120
    s2 = _step(after, s1.pending_events, 110, now=1.4)  # upper is now 120 − 20 = 100 < 110
    assert [(e.name, e.current) for e in s2.pending_events] == [("CpuBottleneck", 120)]


def test_events_older_than_the_timeout_are_forgotten():
    c = container("c0", cpu=(50, 140, 200))
    s1 = _step(c, [], 130, now=10.0)
    s2 = _step(c, s1.pending_events, 110, now=10.0 + 4.5)  # EVENT_TIMEOUT 4 s
    assert s2.pending_events == [] and s2.requests == []
