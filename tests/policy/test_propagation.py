"""Splitting an application's amount over its containers (reference §4.8, §10.6)."""
from __future__ import annotations

import math

import pytest

from sc_actors.policy.propagation import (
    Candidate,
    assign_splits,
    container_priority,
    propagate_application_request,
    split_amount_in_num_slices,
    split_amount_in_slices,
)
from tests.builders import container


@pytest.mark.parametrize(
    "total, size, expected",
    [
        pytest.param(23, 5, [5, 5, 5, 5, 3], id="23 by 5"),  # 4 × 5 + 3
        pytest.param(20, 5, [5, 5, 5, 5], id="20 by 5"),  # 4 × 5, no rest
        pytest.param(3, 5, [3], id="3 by 5"),
        pytest.param(0, 5, [], id="nothing"),
    ],
)
def test_split_amount_in_slices_cuts_slices_and_a_rest(total, size, expected):
    assert split_amount_in_slices(total, size) == expected


def test_split_amount_in_slices_keeps_the_sign_unlike_the_original():
    # NOTE: corrected behaviour. The original computed −23 // 5 and −23 % 5 and returned [2].
    assert split_amount_in_slices(-23, 5) == [-5, -5, -5, -5, -3]


@pytest.mark.parametrize(
    "total, n, expected",
    [
        pytest.param(7, 3, [3, 2, 2], id="7 in 3"),  # 7 = 3 + 2 + 2
        pytest.param(-2, 3, [-1, -1], id="-2 in 3"),  # fewer units than slices: zeros dropped
        pytest.param(6, 3, [2, 2, 2], id="6 in 3"),
    ],
)
def test_split_amount_in_num_slices_spreads_evenly(total, n, expected):
    assert split_amount_in_num_slices(total, n) == expected


@pytest.mark.parametrize("bad", [0, -5])
def test_slices_must_be_positive(bad):
    with pytest.raises(ValueError):
        split_amount_in_slices(10, bad)
    with pytest.raises(ValueError):
        split_amount_in_num_slices(10, bad)


@pytest.mark.parametrize(
    "value, lower, usage, expected",
    [
        pytest.param(40, 50, 30, (1, 0.8), id="under lower"),  # 40 < 50 → (1, 40 / 50)
        pytest.param(100, 50, 150, (2, 50), id="under usage"),  # 100 < 150 → (2, 100 − 50)
        pytest.param(200, 50, 190, (3, 10), id="above usage"),  # (3, 200 − 190)
    ],
)
def test_container_priority_classes(value, lower, usage, expected):
    assert container_priority(value, lower, usage) == expected


def test_container_priority_with_a_zero_lower_limit_is_infinite_under_it():
    assert container_priority(-1, 0, 10) == (1, math.inf)


# §4.8: c0 current 200 usage 190, c1 200/50, c2 40/30 with min 50 (under its min).
APP = [
    container("c0", cpu=(50, 200, 400)),
    container("c1", cpu=(50, 200, 400)),
    container("c2", cpu=(50, 40, 400), unchecked=True),
]
USAGES = {"c0": 190, "c1": 50, "c2": 30}


def test_a_scale_up_goes_first_to_the_container_under_its_min():
    # Slices of 5: c2 (1, 0.8) → 45 (1, 0.9) → 50 (3, 20); then c0 (3, 10) → 205 (3, 15) → 210 (3, 20);
    # then the ties (3, 20) and (3, 25) share the rest: c2 15, c0 15.
    assert propagate_application_request(30, APP, USAGES) == {"c2": 15, "c0": 15}


def test_a_scale_down_goes_to_the_container_with_most_spare():
    # c2 (40 ≤ lower 50) is no candidate; c1 (3, 150) stays ahead of c0 (3, 10) for all 6 slices.
    assert propagate_application_request(-30, APP, USAGES) == {"c1": -30}


def test_containers_without_usage_get_nothing():
    assert propagate_application_request(30, APP, {"c1": 50}) == {"c1": 30}
    assert propagate_application_request(30, APP, {}) == {}


def test_a_scale_down_stops_at_the_lower_limit_unlike_the_original():
    # NOTE: corrected behaviour. 57 − 5 = 52, then the next slice is cut to 52 − 50 = 2; the
    # rest has no candidate. The original gave the whole slice and went to 47, under min.
    small = [container("c0", cpu=(50, 57, 400))]
    assert propagate_application_request(-10, small, {"c0": 0}) == {"c0": -7}


def test_energy_is_split_in_slices_of_one():
    cands = [Candidate("a", base=10, lower=1, usage=10), Candidate("b", base=10, lower=1, usage=12)]
    # b (2, 9) is served before a (3, 0) until it reaches its usage, one watt at a time.
    app = [container("a", cpu=(0, 0, 1), energy=(1, 10, 50)), container("b", cpu=(0, 0, 1), energy=(1, 10, 50))]
    assert propagate_application_request(3, app, {"a": 10, "b": 12}, resource="energy") == {"b": 2, "a": 1}
    assert assign_splits(3, cands, 1) == {"b": 2, "a": 1}


def test_no_candidate_means_no_split():
    assert assign_splits(30, []) == {}


def test_a_scale_down_never_loops_on_a_container_less_than_one_share_above_its_lower_limit():
    from sc_actors.policy.propagation import Candidate, assign_splits

    # 50.5 − 50 = 0.5 share above its lower limit: floor(0.5) = 0 to give.
    assert assign_splits(-10, [Candidate(name="c0", base=50.5, lower=50, usage=10)]) == {}


def test_a_resource_name_read_as_a_str_finds_the_resource_or_none():
    # Settings and URLs give resource names as str: `resource()` narrows them, and a
    # name that is no resource (or one the container lacks) is None, not a KeyError.
    c = container("c0", cpu=(50, 140, 200))
    assert c.resource("cpu") is c.resources["cpu"] and c.resource("cpu").current == 140
    assert (c.resource("disk"), c.resource("gpu")) == (None, None)
