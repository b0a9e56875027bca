"""The ReBalancer's decisions (reference §7.4, §4.8 slices), with our fixes pinned where §11.4 marks bugs."""
from __future__ import annotations

import pytest

from sc_actors.defaults import default_rules
from sc_actors.policy.rebalancing import (
    Member,
    Swap,
    assign_slices,
    donor_slices,
    is_donor,
    is_receiver,
    match_swaps,
    pair_swapping,
    round_requests,
    split_roles,
    stolen_amount,
    weight_shares,
)
from sc_actors.settings import RebalancerSettings
from tests.builders import application, container


def m(name: str, current: float, usage: float, max_: float = 300, min_: float = 10, key: str = "", weight: float = 1.0):
    return Member(name, max_, min_, current, usage, key, weight)


# --------------------------------------------------------------------------- roles (thresholds, DIFF 0.40)


@pytest.mark.parametrize(
    "member, donor, receiver",
    [
        pytest.param(m("c", 100, 10), True, False, id="slack 90"),  # 100 − 10 = 90 > 0.4 × 100 = 40: donor
        pytest.param(m("c", 100, 98), False, True, id="pinned"),  # 100 − 98 = 2 < 40: receiver
        pytest.param(m("c", 100, 60), False, False, id="exactly at DIFF"),  # 100 − 60 = 40: neither
        pytest.param(m("c", 100, 130), False, True, id="demand above limit"),  # −30 < 40: receiver
    ],
)
def test_a_container_gives_when_it_has_slack_and_receives_near_its_limit(member, donor, receiver):
    assert is_donor("container", member, 0.4) is donor
    assert is_receiver("container", member, 0.4) is receiver


def test_an_idle_container_far_under_its_max_is_a_donor_unlike_the_original():
    idle = m("c", 100, 0, max_=300)
    # the original's test: (max − current) < DIFF × max → 300 − 100 = 200 < 120 is false: never a donor
    assert not (idle.max - idle.current) < 0.4 * idle.max
    # ours reads usage: 100 − 0 = 100 > 40
    assert is_donor("container", idle, 0.4)


@pytest.mark.parametrize(
    "member, donor, receiver",
    [
        pytest.param(m("a", 0, 100, max_=400), True, False, id="app uses a quarter"),  # 400 − 100 = 300 > 160
        pytest.param(m("a", 0, 300, max_=400), False, True, id="app near max"),  # 400 − 300 = 100 < 160
    ],
)
def test_applications_and_users_compare_usage_with_max(member, donor, receiver):
    assert is_donor("application", member, 0.4) is donor
    assert is_receiver("application", member, 0.4) is receiver


def _rules(active: bool) -> dict[str, dict]:
    return {r.name: {**r.model_dump(), "active": active} for r in default_rules()
            if r.name in ("cpu_usage_low", "cpu_usage_high")}


def test_the_rules_policy_finds_the_shipped_rules_when_they_are_active():
    members = [m("c0", 100, 10), m("c1", 100, 100)]
    # cpu_usage_low: current − min = 90 ≥ 25 and usage/current = 0.1 < 0.4 → c0 donor
    # cpu_usage_high: max − current = 200 ≥ 25 and usage/current = 1.0 > 0.7 → c1 receiver
    donors, receivers = split_roles(members, "container", "rules", 0.4, _rules(True))
    assert [d.name for d in donors] == ["c0"] and [r.name for r in receivers] == ["c1"]
    # the original looked up `container_cpu_usage_low`, never shipped: nothing matched (§11.4);
    # an inactive rule is not used either
    assert split_roles(members, "container", "rules", 0.4, _rules(False)) == ([], [])


# --------------------------------------------------------------------------- amounts


@pytest.mark.parametrize(
    "member, fieldname, stopped, expected",
    [
        pytest.param(m("c", 200, 40, min_=50), "current", False, 60, id="current"),  # 0.4 × (200 − max(50, 40)) = 60
        pytest.param(m("c", 200, 120, min_=50), "current", False, 32, id="current, usage above min"),  # 0.4 × 80
        pytest.param(m("c", 100, 150), "current", False, 0, id="no slack gives nothing"),  # 0.4 × (100 − 150) < 0 → 0
        pytest.param(m("a", 0, 100, max_=400, min_=50), "max", False, 120, id="max"),  # 0.4 × (400 − 100) = 120
        pytest.param(m("a", 0, 0, max_=400, min_=50), "max", True, 400, id="stopped app gives all"),  # 1.0 × (400 − 0)
        pytest.param(m("a", 0, 51.5, max_=52, min_=50), "max", False, 1, id="raised to 1"),  # 0.4 × 0.5 = 0.2 < 1 ≤ 52 − 50
    ],
)
def test_a_donor_gives_the_stolen_percentage_of_its_slack(member, fieldname, stopped, expected):
    assert stolen_amount(member, fieldname, 0.4, stopped) == pytest.approx(expected)


def test_slices_are_of_five_shares_sorted_ascending_per_key():
    # 0.4 × (100 − max(10, 10)) = 36 → [5] × 7 + [1], sorted ascending
    assert donor_slices([m("c0", 100, 10)], "current", 0.4) == {"": [("c0", 1)] + [("c0", 5)] * 7}


def test_receivers_take_the_largest_slice_round_robin_lowest_current_first():
    slices = {"": [("c0", 1)] + [("c0", 5)] * 7}
    given = assign_slices([m("c2", 100, 98), m("c1", 90, 90)], slices, "current")
    # c1 (current 90) first: c1 5, c2 5, c1 5, c2 5, c1 5, c2 5, c1 5, c2 1 → c1 20, c2 16
    assert [(r, a) for _, _, r, a in given] == [("c1", 5), ("c2", 5)] * 3 + [("c1", 5), ("c2", 1)]


def test_a_receiver_never_goes_above_its_max():
    given = assign_slices([m("c1", 290, 290)], {"": [("c0", 5)] * 4}, "current")
    assert [a for *_, a in given] == [5, 5]  # room 300 − 290 = 10: two slices, then it is full


def test_net_amounts_are_matched_into_as_few_swaps_as_possible():
    given = [("", "d0", "r0", 5), ("", "d1", "r0", 5), ("", "d0", "r1", 5), ("", "d0", "r0", 5)]
    # nets: d0 −15, d1 −5, r0 +15, r1 +5 → d0→r0 15, d1→r1 5
    assert match_swaps(given) == [Swap("d0", "r0", 15), Swap("d1", "r1", 5)]


def test_one_application_round_keeps_the_total():
    members = [m("c0", 100, 10), m("c1", 100, 100), m("c2", 100, 98)]
    b = pair_swapping(members, "container")
    # c0 gives 0.4 × (100 − 10) = 36: c1 20, c2 16 (round robin above)
    assert b.donors == ["c0"] and b.receivers == ["c1", "c2"]
    assert b.swaps == [Swap("c0", "c1", 20), Swap("c0", "c2", 16)]


def test_at_host_scope_slices_stay_on_their_host():
    members = [m("c0", 100, 10, key="h0"), m("c1", 100, 100, key="h1"), m("c2", 100, 100, key="h0")]
    # c0's 36 can only go to c2 (same host h0); c1 on h1 has no donor
    assert pair_swapping(members, "container").swaps == [Swap("c0", "c2", 36)]


# --------------------------------------------------------------------------- weights


def test_weights_share_the_consuming_total_by_weight_capped_at_max():
    members = [m("c0", 100, 100, max_=180, weight=4), m("c1", 100, 90, weight=1), m("c2", 100, 95, weight=1),
               m("c3", 100, 10, weight=9)]
    # c3 does not consume (10 / 100 < 1 − 0.4). Total 300: c0 4/6 × 300 = 200 > max 180 → 180;
    # 120 left for c1, c2 by 1:1 → 60 each. Changes +80, −40, −40 (Σ 0)
    assert weight_shares(members, 0.4) == {"c0": 80, "c1": -40, "c2": -40}


# --------------------------------------------------------------------------- one round, as requests


def test_a_round_makes_one_request_per_swap_on_the_receiver_with_the_donor_as_pair():
    cs = {n: container(n, cpu=(10, 100, 300)) for n in ("c0", "c1", "c2")}
    app = application("app", cpu=(30, 300, 300), containers=list(cs))
    usages = {"c0": {"cpu": 10.0}, "c1": {"cpu": 100.0, "cpu_throttled": 1.0, "cpu_held_back": 80.0}, "c2": {"cpu": 98.0}}
    reqs, decisions = round_requests(RebalancerSettings(ACTIVE=True), [app], cs, usages, {}, 1000.0)
    assert [(r.pair_structure, r.structure, r.amount, r.field, r.priority) for r in reqs] == \
        [("c0", "c1", 20, "current", 2), ("c0", "c2", 16, "current", 2)]
    assert reqs[0].usage == 180  # demand read through throttling: 100 + 80 held back
    assert sum(s.amount for s in decisions["app"].swaps) == 36


def test_an_application_with_a_container_without_a_window_is_not_balanced():
    cs = {n: container(n, cpu=(10, 100, 300)) for n in ("c0", "c1")}
    app = application("app", cpu=(20, 200, 200), containers=list(cs))
    reqs, _ = round_requests(RebalancerSettings(ACTIVE=True), [app], cs, {"c0": {"cpu": 10.0}}, {}, 1000.0)
    assert reqs == []  # c1 has no usage: no honest view of who has slack


def test_a_users_applications_swap_max_from_the_one_with_room_to_the_one_near_it():
    from sc_actors.model import User

    a0 = application("a0", cpu=(20, 100, 400))
    a1 = application("a1", cpu=(20, 350, 400))
    a0.resources["cpu"].usage, a1.resources["cpu"].usage = 100, 350  # the Refeeder's sums
    user = User(name="u", resources={"cpu": {"min": 0, "max": 800}, "mem": {"min": 0, "max": 1024}},
                clusters=["a0", "a1"])
    settings = RebalancerSettings(ACTIVE=True, STRUCTURES_BALANCED=["application"])
    reqs, decisions = round_requests(settings, [], {}, {}, {}, 1000.0, [user], {"a0": a0, "a1": a1})
    # a0: 400 − 100 = 300 > 0.4 × 400 = 160 → donor; a1: 400 − 350 = 50 < 160 → receiver
    # a0 gives 0.4 × (400 − max(20, 100)) = 120, all to a1 (no cap on max)
    assert decisions["u"].swaps == [Swap("a0", "a1", 120)]
    assert [(r.structure, r.pair_structure, r.field, r.structure_type) for r in reqs] == \
        [("a1", "a0", "max", "application")]
