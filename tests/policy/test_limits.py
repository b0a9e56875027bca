"""Margin and limit chain (reference §3.3, §3.4, §10.2 #1, #2, #3, #7, #12, #13)."""
from __future__ import annotations

import pytest

from sc_actors.policy.limits import (
    adjust_limits,
    check_invalid_state,
    check_invalid_values,
    check_unset_values,
    limit_chain,
    margin,
    resource_summary,
    try_get_value,
)
from tests.builders import POC, POM, limit, resource

# --------------------------------------------------------------------------- margin (§3.3)


@pytest.mark.parametrize(
    "boundary, boundary_type, max_, current, expected",
    [
        pytest.param(10, POM, 200, 150, 20, id="10% of max 200"),  # int(200 * 10 / 100) = 20
        pytest.param(10, POC, 200, 150, 15, id="10% of current 150"),  # int(150 * 10 / 100) = 15
        pytest.param(0, POM, 200, 150, 1, id="0% is at least 1"),  # max(int(0), 1) = 1
        pytest.param(18, POC, 300, 170, 30, id="18% of current 170"),  # int(170 * 0.18) = int(30.6) = 30
        pytest.param(1, POM, 50, 50, 1, id="rounding down to 0 gives 1"),  # max(int(0.5), 1) = 1
    ],
)
def test_margin_is_a_percentage_of_max_or_current_and_at_least_one(boundary, boundary_type, max_, current, expected):
    assert margin(boundary, boundary_type, max_, current) == expected


def test_margin_refuses_an_unknown_boundary_type():
    with pytest.raises(ValueError, match="boundary_type"):
        margin(10, "absolute", 200, 150)


def test_limit_chain_is_current_minus_one_and_two_margins():
    assert limit_chain(200, 20) == (180, 160)  # 200 − 20 = 180; 180 − 20 = 160


# --------------------------------------------------------------------------- adjust_limits (§3.4)


@pytest.mark.parametrize(
    "res, lim, expected",
    [
        pytest.param(
            resource(50, 200, 200), limit(10, POM), (180, 160), id="max 200 current 200, 10% of max"
        ),  # m = 20: 200 − 20 = 180, 180 − 20 = 160
        pytest.param(
            resource(50, 150, 200), limit(10, POC), (135, 120), id="current 150, 10% of current"
        ),  # m = 15: 150 − 15 = 135, 135 − 15 = 120
        pytest.param(
            resource(50, 250, 200, unchecked=True), limit(10, POM), (180, 160), id="current 250 above max 200"
        ),  # current clamped to 200 for the computation; m = 20 → 180, 160
    ],
)
def test_adjust_limits_puts_upper_and_lower_one_and_two_margins_under_current(res, lim, expected):
    fixed = adjust_limits(res, lim)
    assert (fixed.upper, fixed.lower) == expected


def test_adjust_limits_clamps_current_in_the_computation_only():
    res = resource(50, 250, 200, unchecked=True)
    adjust_limits(res, limit(10, POM))
    assert res.current == 250  # the structure is not touched


def test_adjust_limits_returns_a_copy_and_keeps_the_boundary():
    lim = limit(25, POC, upper=1, lower=0)
    fixed = adjust_limits(resource(256, 4096, 8192), lim)
    assert (lim.upper, lim.lower) == (1, 0)
    assert (fixed.boundary, fixed.boundary_type, fixed.upper, fixed.lower) == (25, POC, 3072, 2048)  # m = 1024


# §10.2 #12 with HEAD's boundaries: cpu 18 % of current 170 → m = 30, mem 25 % of current 4096 → m = 1024.
CPU = resource(50, 170, 300)
MEM = resource(256, 4096, 8192)
CPU_OK = limit(18, POC, upper=140, lower=110)  # 170 − 30 = 140; 140 − 30 = 110
MEM_OK = limit(25, POC, upper=3072, lower=2048)  # 4096 − 1024 = 3072; 3072 − 1024 = 2048


@pytest.mark.parametrize("res, lim", [(CPU, CPU_OK), (MEM, MEM_OK)], ids=["cpu", "mem"])
def test_adjust_limits_accepts_a_valid_state_unchanged(res, lim):
    assert adjust_limits(res, lim) == lim


@pytest.mark.parametrize(
    "res, lim, broken",
    [
        # A wrong upper is repaired, as the original does.
        pytest.param(CPU, CPU_OK, {"upper": 155}, id="cpu upper too close"),  # 170 − 30/2 = 155
        pytest.param(CPU, CPU_OK, {"upper": 110}, id="cpu upper too far"),  # 170 − 2·30 = 110
        pytest.param(MEM, MEM_OK, {"upper": 3584}, id="mem upper too close"),  # 4096 − 1024/2 = 3584
        pytest.param(MEM, MEM_OK, {"upper": 2048}, id="mem upper too far"),  # 4096 − 2·1024 = 2048
        # NOTE: corrected behaviour. A wrong lower is repaired too; HEAD left it alone, since
        # its validity check never looks at the lower↔upper distance (§10.2 #12).
        pytest.param(CPU, CPU_OK, {"lower": 125}, id="cpu lower too close, unlike the original"),  # 140 − 30/2
        pytest.param(CPU, CPU_OK, {"lower": 80}, id="cpu lower too far, unlike the original"),  # 140 − 2·30
        pytest.param(MEM, MEM_OK, {"lower": 2560}, id="mem lower too close, unlike the original"),  # 3072 − 1024/2
        pytest.param(MEM, MEM_OK, {"lower": 1024}, id="mem lower too far, unlike the original"),  # 3072 − 2·1024
    ],
)
def test_adjust_limits_repairs_a_wrong_upper_or_lower(res, lim, broken):
    assert adjust_limits(res, lim.model_copy(update=broken)) == lim


# --------------------------------------------------------------------------- check_invalid_state (§3.4, §10.2 #13)


@pytest.mark.parametrize("res, lim", [(CPU, CPU_OK), (MEM, MEM_OK)], ids=["cpu", "mem"])
def test_a_valid_chain_passes_the_state_check(res, lim):
    assert check_invalid_state(res, lim) is None


@pytest.mark.parametrize("field", ["max", "min", "current"])
def test_an_unset_resource_value_is_an_invalid_state(field):
    values = {"min_": 50, "current": 170, "max_": 300}
    values[{"max": "max_", "min": "min_"}.get(field, field)] = None
    with pytest.raises(ValueError, match=field):
        check_invalid_state(resource(**values, unchecked=True), CPU_OK)


@pytest.mark.parametrize("field", ["upper", "lower"])
def test_an_unset_limit_is_an_invalid_state(field):
    with pytest.raises(ValueError, match=field):
        check_invalid_state(CPU, CPU_OK.model_copy(update={field: None}))


@pytest.mark.parametrize(
    "res, lim, message",
    [
        pytest.param(resource(50, 300, 170, unchecked=True), CPU_OK, "current", id="max and current swapped"),
        pytest.param(resource(50, 140, 300), limit(18, POC, upper=170, lower=110), "upper",
                     id="current and upper swapped"),
        pytest.param(CPU, limit(18, POC, upper=110, lower=140), "lower", id="upper and lower swapped"),
        pytest.param(CPU, limit(18, POC, upper=155, lower=110), "too close", id="upper too close"),  # 170 − 15
        pytest.param(CPU, limit(18, POC, upper=110, lower=80), "too far", id="upper too far"),  # 170 − 60
    ],
)
def test_a_broken_chain_is_an_invalid_state(res, lim, message):
    with pytest.raises(ValueError, match=message):
        check_invalid_state(res, lim)


def test_a_boundary_outside_0_to_100_is_an_invalid_state():
    # The model refuses such a boundary; the check must refuse it too.
    lim = type(CPU_OK).model_construct(boundary=150, boundary_type=POC, upper=140, lower=110)
    with pytest.raises(ValueError, match="boundary"):
        check_invalid_state(CPU, lim)


def test_the_state_check_ignores_the_lower_distance_as_the_original():
    assert check_invalid_state(CPU, CPU_OK.model_copy(update={"lower": 80})) is None


# --------------------------------------------------------------------------- helpers (§10.2 #1, #2, #3, #7)


def test_check_invalid_values_refuses_a_first_value_above_the_second():
    with pytest.raises(ValueError):
        check_invalid_values(20, "label1", 10, "label2")
    assert check_invalid_values(10, "label1", 20, "label2") is None


@pytest.mark.parametrize("value", ["n/a", None])
def test_check_unset_values_refuses_n_a(value):
    with pytest.raises(ValueError):
        check_unset_values(value, "min", "cpu")


def test_try_get_value_gives_n_a_for_a_missing_key():
    assert try_get_value({"KEY": 1}, "KEY") == 1
    assert try_get_value({"KEY": 1}, "NOKEY") == "n/a"
    assert try_get_value(limit(upper=None), "upper") == "n/a"


@pytest.mark.parametrize(
    "name, res, lim, usage, expected",
    [
        pytest.param(
            "cpu", resource(50, 200, 300), limit(upper=140, lower=70), {"cpu": 22.5664364, "mem": 2341.9734},
            "300,200,140,22.57,70,50", id="cpu",
        ),  # usage printed with %.2f: 22.5664364 → 22.57
        pytest.param(
            "mem", resource(256, 2048, 8192), limit(upper=8000, lower=7000), {"cpu": 22.5664364, "mem": 2341.9734},
            "8192,2048,8000,2341.97,7000,256", id="mem",
        ),
        pytest.param("cpu", resource(50, 200, 300), limit(upper=140, lower=70), {}, "300,200,140,n/a,70,50",
                     id="no usage"),
        pytest.param("cpu", resource(50, 200, 300), limit(upper=140, lower=70), -1, "300,200,140,n/a,70,50",
                     id="usage -1"),
        pytest.param("cpu", resource(50, 200, 300), None, 10.0, "300,200,n/a,10.00,n/a,50", id="no limits"),
    ],
)
def test_resource_summary_prints_max_current_upper_usage_lower_min(name, res, lim, usage, expected):
    assert resource_summary(name, res, lim, usage) == expected
