"""The adaptive profile: margins of the current limit with a floor, limits fitted to the demand.

Each expected number has its arithmetic beside it. The original's semantics are pinned
by the other policy tests, which run the same `default_rules()` on percentage_of_max
limits: the adaptive rules never serve those.
"""
from __future__ import annotations

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sc_actors.defaults import adaptive_rules, default_rules, upgrade_rules
from sc_actors.policy.limits import adjust_limits, margin
from sc_actors.policy.requests import Throttling, demand, fit_to_demand_policy, fit_to_demand_target
from sc_actors.policy.serverless import evaluate_window
from sc_actors.profiles import PROFILES, profile_documents, subscription_limits
from sc_actors.settings import GuardianSettings
from tests.builders import POM, container, limit, limits, resource

AD = "adaptive"
SETTINGS = GuardianSettings(WINDOW_TIMELAPSE=0.4, EVENT_TIMEOUT=4, GUARDABLE_RESOURCES=["cpu", "mem"])


@pytest.mark.parametrize(
    "boundary, current, res, expected",
    [
        pytest.param(5, 120, "cpu", 6, id="5% of 120"),  # int(120 × 0.05) = 6
        pytest.param(5, 30, "cpu", 2, id="cpu floor"),  # int(1.5) = 1 < floor 2
        pytest.param(10, 600, "mem", 60, id="10% of 600 MiB"),  # int(60.0) = 60
        pytest.param(10, 200, "mem", 32, id="mem floor"),  # int(20.0) = 20 < floor 32
        pytest.param(5, 30, "disk_read", 1, id="other resources: floor 1"),  # int(1.5) = 1
    ],
)
def test_an_adaptive_margin_is_a_percentage_of_current_with_a_floor(boundary, current, res, expected):
    assert margin(boundary, AD, 200, current, res) == expected


def test_the_limit_chain_of_an_adaptive_boundary_follows_current():
    fixed = adjust_limits(resource(10, 120, 200), limit(5, AD), "cpu")
    assert (fixed.upper, fixed.lower) == (114, 108)  # m = 6: 120 − 6, 120 − 12


@pytest.mark.parametrize(
    "usage, periods, held_back, expected",
    [
        pytest.param(100, 0.0, 0.0, 100.0, id="unthrottled: the usage"),
        pytest.param(30.7, 1.0, 63.8, 94.5, id="a busy loop under 30 (measured)"),  # max(30.7 + 63.8, 30.7 × 1.5)
        pytest.param(100, 1.0, 0.0, 150.0, id="throttled periods, no held-back time"),  # 100 × (1 + 1 / 2)
        pytest.param(100, 0.5, 10.0, 125.0, id="bursty: the periods say more"),  # max(110, 100 × 1.25)
        pytest.param(100, 3.0, 0.0, 150.0, id="a ratio above 1 is 1"),
    ],
)
def test_demand_is_usage_seen_through_throttling(usage, periods, held_back, expected):
    assert demand(usage, Throttling(periods, held_back)) == pytest.approx(expected)


@pytest.mark.parametrize(
    "demand_, boundary, btype, res, expected",
    [
        pytest.param(100, 5, AD, "cpu", 109, id="adaptive 5%"),  # 100 / (1 − 0.075) = 108.1 → 109
        pytest.param(20, 5, AD, "cpu", 23, id="adaptive at the floor"),  # max(21.6, 20 + 1.5 × 2) = 23
        pytest.param(500, 10, AD, "mem", 589, id="adaptive mem"),  # 500 / 0.85 = 588.2 → 589
        pytest.param(100, 10, POM, "cpu", 130, id="% of max"),  # 100 + 1.5 × 20 = 130
    ],
)
def test_fit_to_demand_puts_the_demand_in_the_middle_of_the_new_band(demand_, boundary, btype, res, expected):
    target = fit_to_demand_target(demand_, boundary, btype, 200, res)
    assert target == expected
    if btype == AD:
        # The new limit's own chain: usage 1.5 margins under it, between lower and upper.
        m = margin(boundary, btype, 200, target, res)
        assert target - 2 * m <= demand_ <= target - m


def test_a_throttled_container_is_raised_to_its_demand_in_one_step():
    rule = next(r for r in adaptive_rules() if r.name == "CpuFitUp")
    # usage 89 at current 90, held back 60: demand 149; 149 / 0.925 = 161.1 → 162; +72.
    assert fit_to_demand_policy(rule, resource(10, 90, 400), limit(5, AD), 89, Throttling(1.0, 60.0), "cpu") == 72
    # no measurement, just above upper (86): 88 / 0.925 = 95.1 → 96: +6, a small step.
    assert fit_to_demand_policy(rule, resource(10, 90, 400), limit(5, AD), 88, Throttling(), "cpu") == 6


def test_a_fit_never_scales_against_its_rules_direction():
    up = next(r for r in adaptive_rules() if r.name == "CpuFitUp")
    down = next(r for r in adaptive_rules() if r.name == "CpuFitDown")
    res, lim = resource(10, 100, 400), limit(5, AD)
    assert fit_to_demand_policy(up, res, lim, 50, Throttling(), "cpu") == 0  # 50 / 0.925 → 55: would be −45
    assert fit_to_demand_policy(down, res, lim, 99, Throttling(1.0, 60.0), "cpu") == 0  # would be +72
    assert fit_to_demand_policy(down, res, lim, 50, Throttling(), "cpu") == -45  # ceil(54.05) = 55; 55 − 100


def _step(c, lim, usages, events=(), now=100.0):
    return evaluate_window(c, lim, default_rules(), usages, list(events), now, SETTINGS)


def test_one_window_above_upper_raises_an_adaptive_container_at_once():
    c = container("c0", cpu=(10, 90, 400))
    # m = int(4.5) = 4; upper 86, lower 82. Usage 90 = the limit, throttled in 3 of 4 periods, 40 held back.
    s = _step(c, limits("c0", cpu=(5, AD)), {"cpu": 90.0, "cpu_throttled": 0.75, "cpu_held_back": 40.0})
    assert s.bounds["cpu"] == (86, 82)
    # demand max(90 + 40, 90 × 1.375 = 123.75) = 130; 130 / 0.925 = 140.5 → 141; +51. The original's need 2 events.
    assert [(r.rule, r.amount) for r in s.requests] == [("CpuFitUp", 51)]
    assert s.removed_events == {"CpuBottleneck": 1} and s.pending_events == []


def test_two_windows_below_lower_fit_an_adaptive_container_to_its_usage():
    c = container("c0", cpu=(10, 100, 400))
    lim = limits("c0", cpu=(5, AD))
    s1 = _step(c, lim, {"cpu": 40.0}, now=1.0)
    assert s1.requests == []
    s2 = _step(c, lim, {"cpu": 40.0}, s1.pending_events, now=1.4)
    # 40 / 0.925 = 43.2 → 44; 44 − 100 = −56.
    assert [(r.rule, r.amount) for r in s2.requests] == [("CpuFitDown", -56)]


@pytest.mark.parametrize("usage, amount", [(88.5, None), (87.0, -5), (40.0, -56)])
def test_a_fit_down_under_its_deadband_is_not_made_and_its_events_go(usage, amount):
    c = container("c0", cpu=(10, 100, 400))
    lim = limits("c0", cpu=(5, AD))  # band [90, 95]
    s1 = _step(c, lim, {"cpu": usage}, now=1.0)
    s2 = _step(c, lim, {"cpu": usage}, s1.pending_events, now=1.4)
    # 88.5 / 0.925 = 95.7 → 96: a cut of 4, under 5 % of 100; 87 / 0.925 = 94.1 → 95: 5, made.
    assert [(r.rule, r.amount) for r in s2.requests] == ([] if amount is None else [("CpuFitDown", amount)])
    assert s2.removed_events == {"CpuUnderuse": 2} and s2.pending_events == []


def test_a_statedb_with_the_adaptive_rules_from_before_the_deadband_gets_it_and_keeps_a_users_own():
    stored = {r.name: r.model_dump(exclude={"deadband"}) for r in default_rules()}
    upgraded = upgrade_rules(stored)
    assert [(r.name, r.deadband) for r in upgraded] == [("CpuFitDown", 5.0)]
    assert upgraded[0].model_dump(exclude={"deadband"}) == stored["CpuFitDown"]
    assert upgrade_rules({**stored, "CpuFitDown": {**stored["CpuFitDown"], "deadband": None}}) == []


def test_the_original_rules_alone_serve_percentage_of_max_limits():
    c = container("c0", cpu=(50, 140, 200))
    lim = limits("c0", cpu=(10, POM))
    s1 = _step(c, lim, {"cpu": 130.0, "cpu_throttled": 1.0}, now=1.0)
    assert s1.requests == []  # CpuFitUp would fire on one event; it does not serve % of max
    s2 = _step(c, lim, {"cpu": 130.0}, s1.pending_events, now=1.4)
    assert [(r.rule, r.amount) for r in s2.requests] == [("CpuRescaleUp", 60)]  # 140 + 75 > 200 → 60


def test_a_resource_without_usage_in_a_window_does_not_stop_the_others():
    c = container("c0", cpu=(10, 100, 400), mem=(64, 1000, 4096))
    lim = limits("c0", cpu=(5, AD), mem=(10, AD))
    events = _step(c, lim, {"cpu": 30.0, "mem": 990.0}, now=1.0).pending_events  # cpu under, mem over
    # cpu has no reading now: its events wait, mem is still raised.
    s = _step(c, lim, {"mem": 990.0}, events, now=1.4)
    # mem m = 100: upper 900; 990 / 0.85 = 1164.7 → 1165: +165, and MemFitUp's least step is 256.
    assert [(r.rule, r.amount_requested) for r in s.requests] == [("MemFitUp", 256)]
    assert any(e.resource == "cpu" for e in s.pending_events)


def test_subscription_limits_come_from_the_profile_key_by_key():
    assert subscription_limits("adaptive", None) == PROFILES["adaptive"]
    got = subscription_limits("adaptive", {"cpu": {"boundary": 8}})
    assert got["cpu"] == {"boundary": 8, "boundary_type": AD} and got["mem"] == PROFILES["adaptive"]["mem"]
    # Another boundary type starts from the model's defaults: the original's 10 %.
    assert subscription_limits("adaptive", {"cpu": {"boundary_type": POM}})["cpu"] == {"boundary_type": POM}
    assert subscription_limits("original", None)["cpu"] == {"boundary": 10, "boundary_type": POM}
    with pytest.raises(ValueError, match="unknown profile"):
        subscription_limits("fast", None)


def test_applying_a_profile_rewrites_boundaries_and_names_it_for_the_scaler():
    services = [{"name": "scaler", "config": {"PROFILE": "adaptive"}}, {"name": "guardian", "config": {}}]
    lims = [{"name": "a", "resources": {"cpu": {"boundary": 5, "boundary_type": AD, "upper": 1, "lower": 0}}},
            {"name": "b", "resources": {"cpu": {"boundary": 10, "boundary_type": POM}}}]
    puts = profile_documents("original", "original", services, lims)
    docs = {(c, d["name"]): d for c, d in puts}
    assert docs[("services", "scaler")]["config"]["PROFILE"] == "original"
    assert docs[("services", "guardian")]["config"]["WINDOW_TIMELAPSE"] == 10
    assert docs[("limits", "a")]["resources"]["cpu"]["boundary_type"] == POM
    assert ("limits", "b") not in docs  # already the original's: not rewritten
    assert profile_documents("original", None, [{"name": "scaler", "config": {"PROFILE": "original"}}], lims[1:]) == []


def test_an_older_statedb_gets_the_adaptive_rules_and_keeps_its_own_edits():
    stored = {r.name: r.model_dump(exclude={"boundary_types"}) for r in default_rules()
              if r.name not in {a.name for a in adaptive_rules()}}
    stored["CpuRescaleUp"]["amount"] = 50  # a user's edit
    upgraded = {r.name: r for r in upgrade_rules(stored)}
    assert {"CpuFitUp", "CpuFitDown", "MemFitUp", "MemFitDown"} <= set(upgraded)
    assert upgraded["CpuRescaleUp"].amount == 50
    assert upgraded["CpuRescaleUp"].boundary_types == ["percentage_of_max", "percentage_of_current"]
    assert upgrade_rules({**stored, **{r.name: r.model_dump() for r in upgraded.values()}}) == []


def test_a_scale_down_fits_the_highest_of_the_underuse_windows_it_consumes():
    c = container("c0", cpu=(10, 100, 400))
    lim = limits("c0", cpu=(5, AD))
    events = _step(c, lim, {"cpu": 60.0}, [], now=1.0).pending_events
    s = _step(c, lim, {"cpu": 40.0}, events, now=1.4)
    # The windows saw 60, 40 (both below lower 90): 60 / 0.925 = 64.9 → 65; 65 − 100 = −35.
    assert [(r.rule, r.amount, r.usage) for r in s.requests] == [("CpuFitDown", -35, 60.0)]


def test_a_window_above_upper_that_the_quota_did_not_hold_back_raises_nothing():
    rule = next(r for r in adaptive_rules() if r.name == "CpuFitUp")
    res, lim = resource(10, 90, 400), limit(5, AD)  # upper 86, one core
    # Measured and not throttled: the limit cost the container nothing (a spike met by the burst).
    assert fit_to_demand_policy(rule, res, lim, 88, Throttling(0.0, 0.0, measured=True), "cpu") == 0
    # Measured and throttled: max(88 + 3, 88 × (1 + 0.25 / 2) = 99) = 99; / 0.925 = 107.03 → 108; +18.
    assert fit_to_demand_policy(rule, res, lim, 88, Throttling(0.25, 3.0, measured=True), "cpu") == 18
    # Through the window: the event is consumed, no request is made.
    c = container("c0", cpu=(10, 90, 400))
    s = _step(c, limits("c0", cpu=(5, AD)), {"cpu": 88.0, "cpu_throttled": 0.0, "cpu_held_back": 0.0})
    assert s.requests == [] and s.removed_events == {"CpuBottleneck": 1} and s.pending_events == []


@settings(max_examples=300, deadline=None)
@given(
    cpu=st.tuples(st.integers(0, 100), st.integers(0, 400), st.integers(1, 400)).map(sorted),
    usages=st.lists(st.tuples(st.floats(0, 500), st.floats(0, 1), st.floats(0, 300)), min_size=1, max_size=8),
    boundary=st.integers(1, 50),
)
def test_adaptive_requests_stay_within_min_max_and_keep_their_direction(cpu, usages, boundary):
    lo, cur, hi = cpu
    assume(hi > 0 and lo <= cur <= hi)
    c = container("c0", cpu=(lo, cur, hi))
    lim = limits("c0", cpu=(boundary, AD))
    events: list = []
    for i, (u, periods, held) in enumerate(usages):
        s = _step(c, lim, {"cpu": u, "cpu_throttled": periods, "cpu_held_back": held}, events, now=1.0 + 0.4 * i)
        events = s.pending_events
        for r in s.requests:
            assert lo <= cur + r.amount <= hi, (r.rule, r.amount)
            assert (r.amount > 0) == (r.rule == "CpuFitUp"), (r.rule, r.amount)


def test_a_rule_removes_the_events_of_its_own_direction():
    c = container("c0", cpu=(10, 90, 400))
    lim = limits("c0", cpu=(5, AD))
    events = _step(c, lim, {"cpu": 40.0}, [], now=1.0).pending_events  # one window below lower 82
    # One above upper, unthrottled: CpuFitUp holds (up 1, down 1) and raises nothing; the
    # original named the removed events by the majority (a tie: Underuse), and left the
    # Bottleneck to block CpuFitDown (up ≤ 0) until it expired. Ours removes the Bottleneck.
    s = _step(c, lim, {"cpu": 88.0, "cpu_throttled": 0.0, "cpu_held_back": 0.0}, events, now=1.4)
    assert s.requests == [] and s.removed_events == {"CpuBottleneck": 1}
    assert [e.name for e in s.pending_events] == ["CpuUnderuse"]
    s = _step(c, lim, {"cpu": 40.0}, s.pending_events, now=1.8)
    assert [r.rule for r in s.requests] == ["CpuFitDown"]  # the second underuse window fits at once


@pytest.mark.parametrize("usage, current, full", [
    (98, 100, True),  # 98 ≥ 0.97 × 100: one core, full
    (96, 100, False),  # 96 < 97
    (98, 105, False),  # ⌈105 / 100⌉ = 2 cores: 98 < 194
    (195, 200, True),  # 195 ≥ 194
    (0, 0, False),
])
def test_a_cpuset_is_full_when_usage_fills_its_cores(usage, current, full):
    from sc_actors.policy.requests import cpuset_full

    assert cpuset_full(usage, current) is full


def test_a_container_that_fills_its_cores_is_raised_though_the_quota_never_throttled_it():
    rule = next(r for r in adaptive_rules() if r.name == "CpuFitUp")
    # Two busy threads on the one core of a limit of 100: usage 99, 0 throttled (sysbench, measured).
    # Taken as held back in every period: 99 × 1.5 = 148.5; / 0.925 = 160.5 → 161; +61.
    got = fit_to_demand_policy(rule, resource(10, 100, 400), limit(5, AD), 99, Throttling(0.0, 0.0, True), "cpu")
    assert got == 61
    # Memory has no cpuset: the same numbers are only usage.
    mem_rule = next(r for r in adaptive_rules() if r.name == "MemFitUp")
    assert fit_to_demand_policy(mem_rule, resource(64, 100, 4000), limit(10, AD), 99, Throttling(), "mem") == 256


def test_memory_is_not_scaled_down_in_a_window_where_usage_has_risen():
    c = container("c0", mem=(64, 256, 1024))
    lim = limits("c0", mem=(10, AD))  # m = max(25, 32) = 32: upper 224, lower 192
    events = []
    for i in range(4):  # idle: four windows under lower
        events = _step(c, lim, {"mem": 10.0}, events, now=1.0 + 0.4 * i).pending_events
    # The fill has begun: 213 MiB, above lower. The fifth underuse window never comes from it,
    # and the four earlier ones do not cut the limit under a growing redis (the OOM seen in a trial).
    s = _step(c, lim, {"mem": 213.0}, events, now=2.6)
    assert s.requests == []
    # Idle again: the fifth window under lower fits at once: max(11.8, 10 + 48) = 58 → −198,
    # trimmed so lower stays at min: 192 − 198 = −6 < 64 → −198 + 70 = −128.
    s = _step(c, lim, {"mem": 10.0}, s.pending_events, now=3.0)
    assert [(r.rule, r.amount_requested, r.amount) for r in s.requests] == [("MemFitDown", -198, -128)]
