"""Requests from event counts, dedup and order (reference §1.6, §3.6, §3.7, §4.2, §4.5, §10.1, §10.2)."""
from __future__ import annotations

import pytest

from sc_actors.policy.events import reduce_events
from sc_actors.policy.requests import (
    Throttling,
    RESCALE_POLICIES,
    adjust_amount,
    filter_requests,
    fit_to_usage_amount,
    match_rules_and_events,
    request_name,
    sort_requests,
)
from tests.builders import (
    POC,
    POM,
    application,
    container,
    event,
    limit,
    limits,
    reduced,
    request,
    request_rule,
    resource,
    shipped_rules,
)

NOW = 2_000.0

# --------------------------------------------------------------------------- names (§1.6, §10.1)


@pytest.mark.parametrize("res", ["cpu", "mem"])
def test_request_name_is_the_resource_title_and_the_direction(res):
    assert request_name(100, res) == res.title() + "RescaleUp"
    assert request_name(-100, res) == res.title() + "RescaleDown"


@pytest.mark.parametrize("bad", [None, "bogus", 0, 0.0, True, float("nan")])
def test_request_name_refuses_zero_none_and_non_numbers(bad):
    with pytest.raises(ValueError):
        request_name(bad, "cpu")


# --------------------------------------------------------------------------- policies (§3.6, §10.2 #8, #11)


@pytest.mark.parametrize(
    "current, margin, usage, expected",
    [
        pytest.param(2000, 500, 700, -550, id="2000/500/700"),  # 700 + max(500 // 2, 1) + 500 = 1450; 1450 − 2000
        pytest.param(200, 20, 50, -120, id="200/20/50"),  # 50 + 10 + 20 = 80; 80 − 200 = −120
        pytest.param(200, 1, 50, -148, id="200/1/50"),  # 50 + max(1 // 2, 1) + 1 = 52; 52 − 200 = −148
    ],
)
def test_fit_to_usage_places_usage_between_new_limits(current, margin, usage, expected):
    assert fit_to_usage_amount(current, margin, usage) == expected


def test_the_four_rescale_policies_share_one_signature():
    assert set(RESCALE_POLICIES) == {"amount", "proportional", "fit_to_usage", "fit_to_demand"}
    rule = request_rule("Prop", policy="proportional", amount=100)
    res, lim = resource(50, 140, 200), limit(10, POM, 120, 100)  # m = 20
    assert [RESCALE_POLICIES[p](rule, res, lim, 130, Throttling(), "cpu")
            for p in ("amount", "proportional", "fit_to_usage", "fit_to_demand")] == [
        100,  # the rule's amount
        50,  # (130 − 120) / (140 − 120) = 0.5; 0.5 × 100 = 50
        20,  # 130 + max(20 // 2, 1) + 20 = 160; 160 − 140 = 20
        100,  # fit_to_demand, % of max: 130 + 1.5 × 20 = 160 → +20, but this up rule's amount 100 is its least step
    ]


@pytest.mark.parametrize("policy", ["proportional", "fit_to_usage"])
def test_usage_based_policies_need_the_usage(policy):
    rule = request_rule("R", policy=policy, rescale_type="down", amount=100)
    with pytest.raises(ValueError, match="usage"):
        RESCALE_POLICIES[policy](rule, resource(50, 140, 200), limit(10, POM, 120, 100), None)


@pytest.mark.parametrize(
    "amount, expected",
    [
        pytest.param(70, 70, id="+70 fits"),  # 200 + 70 = 270 ≤ 400
        pytest.param(100, 100, id="+100 fits"),  # 300 ≤ 400
        pytest.param(250, 200, id="+250 capped by max"),  # 450 > 400 → 250 − 50 = 200
        pytest.param(260, 200, id="+260 capped by max"),  # 460 > 400 → 260 − 60 = 200
        pytest.param(-10, -10, id="-10 fits"),  # lower 100 − 10 = 90 ≥ 50
        pytest.param(-50, -50, id="-50 reaches min exactly"),  # lower 100 − 50 = 50, not < 50
        pytest.param(-60, -50, id="-60 capped by min"),  # 100 − 60 = 40 < 50 → −60 + 10 = −50
        pytest.param(-100, -50, id="-100 capped by min"),  # 100 − 100 = 0 < 50 → −100 + 50 = −50
    ],
)
def test_adjust_amount_keeps_lower_above_min_and_current_under_max(amount, expected):
    res, lim = resource(50, 200, 400), limit(upper=150, lower=100)
    assert adjust_amount(amount, res, lim) == expected


def test_adjust_amount_never_passes_max_nor_turns_a_request_around():
    # A chain already under min (current 0, lower −4): the original's trim added min − new_lower
    # = 0 − (−4) = 4 to a request of 0, and to +3, past max 1. Ours: 0 stays 0, +3 → +1.
    res, lim = resource(0, 0, 1), limit(upper=-2, lower=-4)
    assert adjust_amount(0, res, lim) == 0
    assert adjust_amount(3, res, lim) == 1  # 0 + 1 = max
    # A scale-down on a chain under min is not turned into a scale-up: −5 → 0, no request.
    assert adjust_amount(-5, resource(10, 12, 100), limit(upper=8, lower=4)) == 0  # 4 − 5 < 10 → −5 + 11 = +6 → 0


def test_adjust_amount_on_a_small_container():
    assert adjust_amount(10, resource(5, 20, 40), limit(upper=15, lower=10)) == 10  # 30 ≤ 40; 20 ≥ 5


# --------------------------------------------------------------------------- §3.7 with the shipped rules

C0 = container("c0", cpu=(50, 140, 200))
C0_LIMITS = limits("c0", cpu=(10, POM, 120, 100))  # m = int(200 × 10 / 100) = 20
CPU_REQUEST_RULES = shipped_rules("CpuRescaleUp", "CpuRescaleDown")


def cpu_requests(counts, usage, structure=C0, lim=C0_LIMITS, rules=CPU_REQUEST_RULES):
    return match_rules_and_events(structure, rules, counts, lim, {"cpu": usage}, NOW)


def test_scale_up_of_75_is_trimmed_by_max():
    requests, to_remove = cpu_requests(reduced(up=2), 130)
    (r,) = requests
    assert r.amount == 60  # 140 + 75 = 215 > max 200 → 75 − 15 = 60
    assert to_remove == {"CpuBottleneck": 2}
    assert (r.action, r.resource, r.structure, r.field, r.priority, r.timestamp) == (
        "CpuRescaleUp", "cpu", "c0", "current", 0, NOW,
    )
    assert (r.structure_type, r.host, r.host_rescaler_ip, r.host_rescaler_port) == ("container", "h0", "h0", "8000")
    assert (r.rule, r.usage, r.amount_requested) == ("CpuRescaleUp", 130, 75)


def test_mixed_counts_activate_no_rule():
    # CpuRescaleUp needs down ≤ 2, CpuRescaleDown needs up ≤ 0.
    assert cpu_requests(reduced(up=2, down=3), 130) == ([], {})


@pytest.mark.parametrize(
    "usage, expected",
    [
        pytest.param(40, -50, id="usage 40"),  # 40 + 10 + 20 = 70 → −70; lower 100 − 70 = 30 < 50 → −70 + 20 = −50
        pytest.param(80, -30, id="usage 80"),  # 80 + 10 + 20 = 110 → −30; lower 100 − 30 = 70 ≥ 50
    ],
)
def test_scale_down_fits_the_limit_to_the_usage(usage, expected):
    (r,), to_remove = cpu_requests(reduced(down=6), usage)
    assert (r.action, r.amount) == ("CpuRescaleDown", expected)
    assert to_remove == {"CpuUnderuse": 6}


def test_scale_up_near_max_gets_what_is_left():
    c = container("c0", cpu=(50, 180, 200))
    lim = limits("c0", cpu=(10, POM, 160, 140))
    (r,), _ = cpu_requests(reduced(up=2), 170, structure=c, lim=lim)
    assert r.amount == 20  # 180 + 75 = 255 > 200 → 75 − 55 = 20


@pytest.mark.parametrize(
    "usage, expected",
    [
        pytest.param(125, 25, id="usage 125"),  # (125 − 120) / (140 − 120) = 0.25 → 25
        pytest.param(130, 50, id="usage 130"),  # 10 / 20 = 0.5 → 50
        pytest.param(140, 60, id="usage 140"),  # 20 / 20 = 1.0 → 100; 240 > 200 → 100 − 40 = 60
        pytest.param(150, 60, id="usage 150"),  # 30 / 20 = 1.5 capped to 1 → 100 → 60
    ],
)
def test_proportional_scales_the_amount_by_how_far_usage_passed_upper(usage, expected):
    rule = request_rule("CpuRescaleUp", policy="proportional", amount=100)
    (r,), _ = cpu_requests(reduced(up=2), usage, rules=[rule])
    assert r.amount == expected


def test_events_are_removed_even_when_the_trimmed_amount_is_zero():
    at_max = container("c0", cpu=(50, 200, 200))
    lim = limits("c0", cpu=(10, POM, 180, 160))
    requests, to_remove = cpu_requests(reduced(up=2), 195, structure=at_max, lim=lim)
    assert requests == []  # 200 + 75 = 275 > 200 → 75 − 75 = 0: no request
    assert to_remove == {"CpuBottleneck": 2}


def test_an_inactive_request_rule_is_ignored():
    rules = [r.model_copy(update={"active": False}) for r in CPU_REQUEST_RULES]
    assert cpu_requests(reduced(up=2), 130, rules=rules) == ([], {})


def test_a_resource_without_events_activates_nothing():
    assert cpu_requests(reduced("mem", up=2), 130) == ([], {})


def test_an_application_request_has_no_host_fields():
    app = application("app1", cpu=(50, 140, 200), containers=["c0"])
    (r,), _ = cpu_requests(reduced(up=2), 130, structure=app)
    assert (r.structure, r.structure_type, r.host, r.amount) == ("app1", "application", None, 60)


def test_a_structure_without_current_cannot_be_scaled():
    app = application("app1", cpu=(50, None, 200))
    with pytest.raises(ValueError, match="current"):
        cpu_requests(reduced(up=2), 130, structure=app)


# --------------------------------------------------------------------------- §10.2 #15 with the test documents' rules

TEST_DOC_RULES = [
    request_rule("CpuRescaleDown", "cpu", ("==", 0), (">=", 8), policy="fit_to_usage", rescale_type="down", remove=8),
    request_rule("MemRescaleDown", "mem", ("==", 0), (">=", 8), policy="fit_to_usage", rescale_type="down", remove=8),
    request_rule("CpuRescaleUp", "cpu", (">=", 2), ("<=", 2), amount=75, remove=2),
    request_rule("MemRescaleUp", "mem", (">=", 2), ("<=", 2), amount=3072, remove=2),
]
NODE0 = container("node0", cpu=(50, 140, 200), mem=(512, 3072, 10240))
NODE0_LIMITS = limits("node0", cpu=(10, POM, 120, 80), mem=(10, POC, 2048, 1024))


@pytest.mark.parametrize(
    "res, delta, n_events, direction, expected_remove, expected_amount",
    [
        # m = 20; usage 80 − 50 = 30: 30 + 10 + 20 = 60 − 140 = −80; lower 80 − 80 = 0 < 50 → −80 + 50 = −30
        pytest.param("cpu", -50, 8, "down", {"CpuUnderuse": 8}, -30, id="CpuRescaleDown"),
        # m = int(3072 × 0.1) = 307; usage 1024 − 50 = 974: 974 + 153 + 307 = 1434 − 3072 = −1638;
        # lower 1024 − 1638 = −614 < 512 → −1638 + 1126 = −512
        pytest.param("mem", -50, 8, "down", {"MemUnderuse": 8}, -512, id="MemRescaleDown"),
        # usage 80 + 100 = 180; 140 + 75 = 215 > 200 → 75 − 15 = 60
        pytest.param("cpu", 100, 2, "up", {"CpuBottleneck": 2}, 60, id="CpuRescaleUp"),
        # usage 1024 + 2034 = 3058; 3072 + 3072 = 6144 ≤ 10240 → 3072
        pytest.param("mem", 2034, 2, "up", {"MemBottleneck": 2}, 3072, id="MemRescaleUp"),
    ],
)
def test_match_rules_and_events_as_the_original_test(res, delta, n_events, direction, expected_remove, expected_amount):
    usage = NODE0_LIMITS.resources[res].lower + delta
    events = [event("node0", res, **{direction: 1}, timestamp=NOW) for _ in range(n_events)]
    requests, to_remove = match_rules_and_events(
        NODE0, TEST_DOC_RULES, reduce_events(events), NODE0_LIMITS, {res: usage}, NOW
    )
    assert to_remove == expected_remove
    assert [r.amount for r in requests] == [expected_amount]


# --------------------------------------------------------------------------- §10.2 integration test, policy only


def guardian_window(usage, pending, now):
    """One Guardian window with the policy functions, as the original's serverless() chains them."""
    from sc_actors.policy.events import match_usages_and_limits, remove_events, split_events

    rules = shipped_rules("cpu_exceeded_upper", "cpu_dropped_lower", "CpuRescaleUp", "CpuRescaleDown")
    new = match_usages_and_limits("c0", rules, {"cpu": usage}, C0_LIMITS, C0.resources, ["cpu"], now)
    valid, _ = split_events(pending + new, now, 100)
    requests, to_remove = match_rules_and_events(C0, rules, reduce_events(valid), C0_LIMITS, {"cpu": usage}, now)
    return new, requests, remove_events(valid, to_remove)


def test_two_windows_above_upper_make_one_scale_up_and_consume_their_events():
    new, requests, pending = guardian_window(150, [], NOW)
    assert ([e.name for e in new], requests, len(pending)) == (["CpuBottleneck"], [], 1)  # 1 up < 2 needed
    new, requests, pending = guardian_window(150, pending, NOW + 10)
    assert [r.action for r in requests] == ["CpuRescaleUp"]  # 2 up ≥ 2, 0 down ≤ 2
    assert pending == []  # both CpuBottleneck events removed


def test_usage_between_the_limits_makes_neither_events_nor_requests():
    assert guardian_window(110, [], NOW) == ([], [], [])


# --------------------------------------------------------------------------- Scaler: dedup (§4.2)


def test_filter_keeps_the_newer_of_two_requests_with_the_same_key():
    older, newer = request("c0", amount=75, timestamp=NOW - 5), request("c0", amount=75, timestamp=NOW - 1)
    kept, purged = filter_requests([older, newer], NOW, 60)
    assert (kept, purged) == ([newer], [older])


def test_filter_keeps_requests_with_different_actions():
    up, down = request("c0", amount=75, timestamp=NOW - 1), request("c0", amount=-30, timestamp=NOW - 1)
    kept, purged = filter_requests([up, down], NOW, 60)
    assert (kept, purged) == ([up, down], [])


def test_filter_purges_a_request_older_than_the_timeout():
    stale = request("c0", timestamp=NOW - 100)  # NOW − 100 < NOW − 60
    assert filter_requests([stale], NOW, 60) == ([], [stale])


def test_filter_keeps_the_higher_priority_swap_even_if_older():
    high = request("c2", amount=20, pair="c3", priority=2, timestamp=NOW - 10)
    low = request("c2", amount=20, pair="c3", priority=0, timestamp=NOW - 2)
    kept, purged = filter_requests([high, low], NOW, 60)
    assert (kept, purged) == ([high], [low])


def test_a_swap_and_a_system_request_do_not_collide():
    swap, plain = request("c2", amount=20, pair="c3", timestamp=NOW), request("c2", amount=20, timestamp=NOW)
    kept, _ = filter_requests([swap, plain], NOW, 60)
    assert kept == [swap, plain]


# --------------------------------------------------------------------------- Scaler: order (§4.5 step 1)


def test_sort_puts_scale_downs_first_then_max_then_priority():
    cur_down = request("a", amount=-10)  # class 3
    max_down = request("b", amount=-10, field="max")  # class 2
    max_up = request("c", amount=10, field="max")  # class 1
    cur_up_p2 = request("d", amount=10, priority=2)  # class 0, priority 2
    cur_up_p0 = request("e", amount=10, priority=0)  # class 0, priority 0
    shuffled = [cur_up_p0, max_up, cur_up_p2, cur_down, max_down]
    assert sort_requests(shuffled) == [cur_down, max_down, max_up, cur_up_p2, cur_up_p0]


def test_sort_keeps_the_arrival_order_of_equals():
    first, second = request("a", amount=10, timestamp=1), request("b", amount=10, timestamp=2)
    assert sort_requests([first, second]) == [first, second]
