"""Application and user requests, planned without Ray (reference §4.5, §4.8, §7.3)."""
from __future__ import annotations

import subprocess
import sys

import pytest

from sc_actors.model import User
from sc_actors.policy.applications import (
    Placement,
    application_sums,
    bound_group_amount,
    plan_application_request,
    plan_user_request,
    split_application_amount,
    split_user_amount,
    user_sums,
)
from sc_actors.policy.propagation import propagate_application_request
from tests.builders import application, container, host, physical, request, resource


def _core_map(**holders: tuple[str, float]) -> dict[str, dict[str, float]]:
    """Core → {"free": …, holder: shares}, e.g. `_core_map(**{"0": ("c0", 100)})`."""
    return {core: ({"free": 100 - shares, name: shares} if name else {"free": 100})
            for core, (name, shares) in holders.items()}


def _worked_example(h0_free_cores: int = 2) -> tuple[Placement, dict]:
    """§4.8's verified example: c0 (current 200, usage 190), c1 (200, 50) on h0; c2 (40, 30; min 50) on h1."""
    c0 = container("c0", cpu=(25, 200, 400), host="h0")
    c1 = container("c1", cpu=(25, 200, 400), host="h0")
    c2 = container("c2", cpu=(50, 40, 400), host="h1", unchecked=True)  # under its min, as in §4.8
    h0_map = _core_map(**{"0": ("c0", 100), "1": ("c0", 100), "2": ("c1", 100), "3": ("c1", 100)},
                       **{str(4 + i): ("", 0) for i in range(h0_free_cores)})
    h1_map = _core_map(**{"0": ("c2", 40), "1": ("", 0)})
    placement = Placement(
        containers={c.name: c for c in (c0, c1, c2)},
        hosts={"h0": host("h0", core_map=h0_map), "h1": host("h1", core_map=h1_map)},
        physical={"c0": physical(200, "0,1", 4096), "c1": physical(200, "2,3", 4096), "c2": physical(40, "0", 4096)},
        usages={"c0": {"cpu": 190}, "c1": {"cpu": 50}, "c2": {"cpu": 30}},
        distributions={"h0": [str(i) for i in range(4 + h0_free_cores)], "h1": ["0", "1"]},
    )
    app = application("app1", cpu=(20, 440, 1600), containers=["c0", "c1", "c2"])
    return placement, {"app": app}


def test_an_application_scale_up_is_split_as_in_the_worked_example_and_planned_per_host():
    placement, ctx = _worked_example()
    plan = plan_application_request(request("app1", amount=30, host=None), ctx["app"], placement)
    # §4.8 (verified at HEAD): +30 → c2 gets 15 (under its min first), c0 15 (usage near its limit).
    assert plan.split == {"c2": 15, "c0": 15}
    assert plan.outcome == "applied" and plan.granted == 30
    assert {p.request.structure: p.plan.new_current for p in plan.parts} == {"c0": 215, "c2": 55}
    assert plan.hosts["h0"].resources["cpu"].free == 200 - 15
    assert plan.hosts["h1"].resources["cpu"].free == 160 - 15
    assert plan.usages == {"c0": 190, "c1": 50, "c2": 30}
    assert plan.bases == {"c0": 200, "c1": 200, "c2": 40}


def test_an_application_scale_down_is_split_as_in_the_worked_example():
    placement, ctx = _worked_example()
    plan = plan_application_request(request("app1", amount=-30, host=None), ctx["app"], placement)
    # §4.8: −30 → c1 gives all 30 (largest current − usage margin: 200 − 50 = 150).
    assert plan.split == {"c1": -30}
    assert [p.plan.new_current for p in plan.parts] == [170]
    assert plan.hosts["h0"].resources["cpu"].free == 200 + 30


def test_the_split_is_the_propagation_whenever_every_container_has_room():
    placement, ctx = _worked_example()
    members = list(placement.containers.values())
    usages = {n: u["cpu"] for n, u in placement.usages.items()}
    for amount in (5, 23, 30, 75, -10, -75):
        assert split_application_amount(amount, members, usages) == propagate_application_request(
            amount, members, usages), amount


def test_a_container_at_its_max_passes_its_part_on_to_the_others():
    members = [container("c0", cpu=(25, 200, 200)), container("c1", cpu=(25, 200, 400)),
               container("c2", cpu=(50, 40, 400), unchecked=True)]
    usages = {"c0": 190, "c1": 50, "c2": 30}
    # Propagation alone gives c0 15, but c0 is at its max 200: its 15 go to c2 (55 → (3, 55 − 30 = 25)
    # is still below c1's (3, 200 − 50 = 150)), so c2 takes all 30.
    assert propagate_application_request(30, members, usages) == {"c2": 15, "c0": 15}
    assert split_application_amount(30, members, usages) == {"c2": 30}


def test_a_part_the_host_cannot_grant_refuses_the_whole_application_request():
    placement, ctx = _worked_example(h0_free_cores=0)
    plan = plan_application_request(request("app1", amount=30, host=None), ctx["app"], placement)
    # c0's 15 cannot be had on h0 (no free core), so c2's 15 on h1 is not applied either.
    assert plan.outcome == "refused"
    assert plan.parts == () and plan.hosts == {}
    assert plan.reason.startswith("c0:") and "no part applied" in plan.reason


def test_an_unreachable_host_refuses_the_whole_application_request():
    placement, ctx = _worked_example()
    hosts = dict(placement.hosts)
    hosts["h1"] = hosts["h1"].model_copy(update={"reachable": False})
    plan = plan_application_request(request("app1", amount=30, host=None), ctx["app"],
                                    Placement(**{**placement.__dict__, "hosts": hosts}))
    assert plan.outcome == "refused" and "unreachable" in plan.reason


def test_a_container_without_usage_takes_no_part():
    placement, ctx = _worked_example()
    usages = {**placement.usages, "c2": {}}
    plan = plan_application_request(request("app1", amount=30, host=None), ctx["app"],
                                    Placement(**{**placement.__dict__, "usages": usages}))
    # Without c2, c0 (3, 200 − 190 = 10) takes slices until it passes c1's 150: all 30.
    assert plan.split == {"c0": 30}


@pytest.mark.parametrize(
    "amount, current, min_, max_, running, expected",
    [
        pytest.param(-200, 150, 20, 1600, True, -130, id="down to min when running"),  # 150 − 20
        pytest.param(-200, 150, 20, 1600, False, -150, id="down to 0 when stopped"),  # lower limit 0
        pytest.param(-10, 150, 20, 1600, True, -10, id="small down as asked"),
        pytest.param(75, 150, 20, 160, True, 10, id="up to max"),  # 160 − 150
        pytest.param(75, 160, 20, 160, True, 0, id="at max"),
        pytest.param(-5, 20, 20, 160, True, 0, id="at min"),
    ],
)
def test_the_group_amount_stays_within_the_groups_own_limits(amount, current, min_, max_, running, expected):
    assert bound_group_amount(amount, resource(min_, current, max_), "current", running) == expected


def test_an_application_request_is_bounded_by_the_application_max_before_the_split():
    placement, ctx = _worked_example()
    app = application("app1", cpu=(20, 440, 460), containers=["c0", "c1", "c2"])
    plan = plan_application_request(request("app1", amount=75, host=None), app, placement)
    # Σ current 440, max 460 → at most +20, then split as the propagation splits 20.
    assert plan.amount == 20 and plan.granted == 20 and plan.outcome == "trimmed"
    assert sum(plan.split.values()) == 20
    assert plan.split == propagate_application_request(
        20, list(placement.containers.values()), {n: u["cpu"] for n, u in placement.usages.items()})


# --------------------------------------------------------------------------- the Refeeder's sums


def test_application_sums_add_the_containers_usage_and_current():
    cs = [container("c0", cpu=(25, 200, 400)), container("c1", cpu=(25, 120, 400))]
    sums = application_sums(cs, {"c0": {"cpu": 150.5, "mem": 100}, "c1": {"cpu": 20, "mem": 50}}, ["cpu", "mem"])
    assert sums["cpu"] == {"usage": 170.5, "current": 320}
    assert sums["mem"] == {"usage": 150, "current": 8192}  # 4096 + 4096


def test_application_sums_have_no_usage_when_a_container_has_none():
    cs = [container("c0"), container("c1")]
    sums = application_sums(cs, {"c0": {"cpu": 10}, "c1": None}, ["cpu"])
    # A partial sum would look like underuse.
    assert sums["cpu"] == {"usage": None, "current": 280}


def test_user_sums_add_the_applications_with_containers():
    a = {"cpu": {"usage": 100.0, "current": 300.0}}
    b = {"cpu": {"usage": 20.0, "current": 50.0}}
    empty = {"cpu": {"usage": None, "current": None}}
    assert user_sums([a, b, empty], ["cpu"]) == {"cpu": {"usage": 120.0, "current": 350.0}}


# --------------------------------------------------------------------------- users


def _user_placement() -> tuple[Placement, dict]:
    placement, ctx = _worked_example()
    # app1: c0, c1 (Σ current 400, Σ usage 240); app2: c2 (current 40, usage 30, min 50).
    app1 = application("app1", cpu=(20, 400, 1600), containers=["c0", "c1"])
    app1.resources["cpu"].usage = 240
    app2 = application("app2", cpu=(50, 40, 1600), containers=["c2"], unchecked=True)
    app2.resources["cpu"] = resource(50, 40, 1600, usage=30, unchecked=True)
    stopped = application("app3", cpu=(0, 0, 800), containers=[], state="stopped")
    user = User(name="user0", resources={"cpu": resource(100, 440, 4000)}, clusters=["app1", "app2", "app3"])
    return placement, {"apps": {a.name: a for a in (app1, app2, stopped)}, "user": user}


def test_a_user_scale_up_goes_first_to_the_application_under_its_min():
    placement, ctx = _user_placement()
    # app2 at 40 < min 50 is class 1 (40 / 50 = 0.8); at 50 it is (3, 50 − 30 = 20) < app1's (3, 400 − 240 = 160):
    # all 4 slices of 5 go to app2; the stopped app3 takes no current.
    assert split_user_amount(20, list(ctx["apps"].values())) == {"app2": 20}
    plan = plan_user_request(request("user0", amount=20, host=None), ctx["user"], ctx["apps"], placement)
    assert plan.outcome == "applied" and plan.app_split == {"app2": 20} and plan.split == {"c2": 20}
    assert [p.plan.new_current for p in plan.parts] == [60]


def test_a_user_scale_down_comes_from_the_application_with_most_to_spare_then_its_container():
    placement, ctx = _user_placement()
    plan = plan_user_request(request("user0", amount=-30, host=None), ctx["user"], ctx["apps"], placement)
    # app1 (3, 160) spares more than app2 (1, 0.8); inside app1, c1 (200 − 50 = 150) more than c0 (10).
    assert plan.app_split == {"app1": -30} and plan.split == {"c1": -30}
    assert plan.outcome == "applied" and plan.granted == -30


def test_a_stopped_application_gives_up_max_first_in_a_user_scale_down():
    _, ctx = _user_placement()
    # For `max`, the stopped app3 (no containers) is class 4, the highest: it gives first.
    assert split_user_amount(-10, list(ctx["apps"].values()), fieldname="max") == {"app3": -10}


def test_a_user_under_its_min_with_running_applications_is_not_scaled_down():
    placement, ctx = _user_placement()
    user = ctx["user"].model_copy(deep=True)
    user.resources["cpu"] = resource(500, 440, 4000, unchecked=True)
    plan = plan_user_request(request("user0", amount=-30, host=None), user, ctx["apps"], placement)
    assert plan.outcome == "refused" and "under its min" in plan.reason


def test_the_application_policy_needs_no_ray():
    probe = "import sys, sc_actors.policy.applications; print('ray' in sys.modules or 'pyarrow' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
