"""Planning container requests against the host (reference §4.5, §4.6, §10.3) and our safety rules."""
from __future__ import annotations

import pytest

from sc_actors.policy.cores import core_distribution
from sc_actors.policy.planning import check_container_request, mem_floor, plan_container_request
from tests.builders import container, host, physical, request

# --------------------------------------------------------------------------- check_container_request (§4.5)

C = container("c0", cpu=(50, 200, 300))  # min 50, max 300; the physical current is passed apart


@pytest.mark.parametrize(
    "req, current, free, expected",
    [
        pytest.param(request(amount=75), 200, 100, 75, id="+75 fits"),  # 275 ≤ 300, 75 ≤ free 100
        pytest.param(request(amount=75), 200, 30, 30, id="+75 with 30 free"),  # host free caps: 30
        pytest.param(request(amount=150), 200, 100, 100, id="+150 capped by max"),  # 350 > 300 → 300 − 200 = 100
        pytest.param(request(amount=-200), 200, 100, -150, id="-200 capped by min"),  # 0 < 50 → 50 − 200 = −150
        pytest.param(request(amount=-100, field="max"), 200, 100, -100, id="max -100"),  # min(100, 300 − 50) = 100
        pytest.param(request(amount=-50), 40, 100, 10, id="current under min"),  # −10 < 50 → 50 − 40 = +10
        pytest.param(request(amount=75), 200, 0, 0, id="no free at all"),  # free 0 → nothing
    ],
)
def test_check_container_request_keeps_within_bounds_and_host_free(req, current, free, expected):
    assert check_container_request(req, C, current, free) == expected


def test_a_max_scale_up_is_reduced_to_the_current_the_host_can_reach():
    c = container("c0", cpu=(50, 200, 200))
    # new max 250 needs current 200 → 250 (+50); only 20 free → max 220, amount 20
    assert check_container_request(request(amount=50, field="max"), c, 200, 20) == 20


def test_a_max_scale_down_never_goes_under_min():
    c = container("c0", cpu=(50, 60, 100))
    assert check_container_request(request(amount=-80, field="max"), c, 60, 0) == -50  # min(80, 100 − 50) = 50


# --------------------------------------------------------------------------- the "dante" host (§4.6, §10.3)

TOPOLOGY = {"0": {"0": [0, 4], "1": [1, 5]}, "1": {"0": [2, 6], "1": [3, 7]}}
PP_LL = core_distribution(TOPOLOGY, "Group_PP_LL")


def dante_host():
    owners = {"0": "node0", "2": "node0", "1": "node1", "3": "node1",
              "4": "node2", "6": "node2", "5": "node3", "7": "node3"}
    core_map = {core: {"free": 0, name: 100} for core, name in sorted(owners.items())}
    return host("dante", core_map=core_map, mem=(30000, 16384))  # cpu max 800, free 0


def node(name):
    return container(name, cpu=(10, 200, 250), host="dante")


def plan(req, c, h, phys, usage=None, margin=0.0):
    return plan_container_request(req, c, h, phys, usage, margin, PP_LL)


def test_a_scale_up_on_a_full_host_is_refused():
    p = plan(request("node0", amount=40), node("node0"), dante_host(), physical(200, "0,2"))
    assert (p.outcome, p.granted, p.change) == ("refused", 0, None)
    assert "0 shares free" in p.reason


def test_dante_scale_down_then_up_as_the_original_test():
    h = dante_host()
    down = plan(request("node1", amount=-150), node("node1"), h, physical(200, "1,3"))
    assert down.outcome == "applied"
    assert (down.change.cpu_num, down.change.cpu_allowance_limit) == ("1", 50)  # 200 − 150 = 50; core 3 freed
    assert down.host.resources["cpu"].free == 150  # 0 + 150
    assert down.host_deltas == {"cpu": 150}
    up = plan(request("node0", amount=40), node("node0"), down.host, physical(200, "0,2"))
    assert up.outcome == "applied"
    assert (up.change.cpu_num, up.change.cpu_allowance_limit) == ("0,2,3", 240)  # free core 3 before half-free 1
    assert up.host.resources["cpu"].free == 110  # 150 − 40
    assert h.resources["cpu"].free == 0  # the input host is untouched


def test_dante_scale_up_beyond_max_is_trimmed():
    # The old test expected an error; HEAD's planner (and ours) trims to max: 250 − 240 = 10.
    h = plan(request("node1", amount=-150), node("node1"), dante_host(), physical(200, "1,3")).host
    h = plan(request("node0", amount=40), node("node0"), h, physical(200, "0,2")).host
    p = plan(request("node0", amount=40), node("node0"), h, physical(240, "0,2,3"))
    assert (p.outcome, p.granted, p.new_current) == ("trimmed", 10, 250)
    assert "max 250" in p.reason


def test_dante_scale_down_below_min_is_trimmed():
    # The old test expected an error for 50 − 60 < 0; the planner keeps min 10: 10 − 50 = −40.
    h = plan(request("node1", amount=-150), node("node1"), dante_host(), physical(200, "1,3")).host
    p = plan(request("node1", amount=-60), node("node1"), h, physical(50, "1"))
    assert (p.outcome, p.granted, p.new_current, p.change.cpu_num) == ("trimmed", -40, 10, "1")


def test_a_core_map_that_disagrees_with_the_node_refuses_the_scale_down():
    # The node says 200 shares, the map gives node1 only 100 (core 3 lost): releasing 150 is impossible.
    h = dante_host()
    h.resources["cpu"].core_usage_mapping["3"] = {"free": 100}
    h.resources["cpu"].free = 100
    p = plan(request("node1", amount=-150), node("node1"), h, physical(200, "1,3"))
    assert p.outcome == "refused" and "core map" in p.reason


# --------------------------------------------------------------------------- the plan, cpu


def test_an_applied_cpu_plan_writes_limit_and_cpuset():
    c = container("c0", cpu=(50, 100, 300))
    h = host("h0", cores=4, core_map={"0": {"free": 0, "c0": 100}, "1": {"free": 100}, "2": {"free": 100},
                                      "3": {"free": 100}})
    p = plan(request(amount=75), c, h, physical(100, "0"))
    assert (p.outcome, p.reason, p.granted, p.new_current) == ("applied", "", 75, 175)  # 100 + 75
    assert (p.change.cpu_allowance_limit, p.change.cpu_num, p.change.mem_limit) == (175, "0,1", None)
    assert p.core_map["1"] == {"free": 25, "c0": 75}
    assert p.amount == p.granted


def test_a_container_above_max_is_brought_back_to_max():
    # physical 350 > max 300: a +10 becomes 300 − 350 = −50, within [min, max] again.
    c = container("c0", cpu=(50, 300, 300))
    h = host("h0", core_map={"0": {"free": 0, "c0": 100}, "1": {"free": 0, "c0": 100},
                             "2": {"free": 0, "c0": 100}, "3": {"free": 50, "c0": 50}})
    p = plan(request(amount=10), c, h, physical(350, "0,1,2,3"))
    assert (p.outcome, p.granted, p.new_current) == ("trimmed", -50, 300)


def test_a_scale_up_that_cannot_reach_min_is_refused():
    # physical 40 < min 50; −50 becomes +10 (50 − 40) but only 5 free: 45 would still be under min.
    c = container("c0", cpu=(50, 50, 300))
    h = host("h0", core_map={"0": {"free": 5, "c0": 40, "x": 55}})
    p = plan(request(amount=-50), c, h, physical(40, "0"))
    assert p.outcome == "refused" and "min 50" in p.reason


def test_an_unlimited_cpu_limit_is_refused():
    p = plan(request(amount=10), container("c0"), host("h0"), physical(-1, ""))
    assert p.outcome == "refused" and "unlimited" in p.reason


@pytest.mark.parametrize(
    "req, c, h, words",
    [
        pytest.param(request("c0", "disk_read", 10), container("c0"), host("h0"), "only cpu and mem",
                     id="unsupported resource"),
        pytest.param(request("c1", amount=10), container("c0"), host("h0"), "for c1", id="other container"),
        pytest.param(request(amount=10), container("c0", host="h1"), host("h0"), "lives on h1", id="other host"),
    ],
)
def test_a_request_that_does_not_match_its_container_is_refused(req, c, h, words):
    p = plan(req, c, h, physical(100, "0"))
    assert p.outcome == "refused" and words in p.reason


# --------------------------------------------------------------------------- the plan, field "max"


def test_a_max_request_moves_current_to_the_new_max():
    # (max 200, free 20) max +50: the current can only reach 220, so the max becomes 220 (+20).
    c = container("c0", cpu=(50, 200, 200))
    h = host("h0", core_map={"0": {"free": 0, "c0": 100}, "1": {"free": 0, "c0": 100}, "2": {"free": 20, "x": 80}})
    p = plan(request(amount=50, field="max"), c, h, physical(200, "0,1"))
    assert (p.outcome, p.granted, p.new_max, p.new_current) == ("trimmed", 20, 220, 220)
    assert p.change.cpu_allowance_limit == 220


def test_a_max_scale_down_above_current_writes_nothing_on_the_node():
    c = container("c0", cpu=(50, 200, 300))
    p = plan(request(amount=-100, field="max"), c, host("h0"), physical(200, "0,1"))
    assert (p.outcome, p.granted, p.new_max, p.change) == ("applied", -100, 200, None)  # 300 − 100 = 200 = current


# --------------------------------------------------------------------------- the plan, memory

MEM_C = container("c0", mem=(256, 4096, 8192))


def mem_plan(amount, usage=None, margin=0.0, free=16384):
    return plan(request(resource="mem", amount=amount), MEM_C, host("h0", mem=(16384, free)),
                physical(200, "0,1", mem=4096), usage, margin)


def test_a_memory_scale_up_gets_at_most_the_host_free_memory():
    p = mem_plan(2000, free=1000)
    assert (p.outcome, p.granted, p.change.mem_limit) == ("trimmed", 1000, 5096)  # 4096 + 1000
    assert p.host.resources["mem"].free == 0  # 1000 − 1000
    assert "1000 MiB free" in p.reason


def test_a_memory_scale_down_stops_at_usage_plus_margin():
    p = mem_plan(-3000, usage=2000, margin=409)
    # floor 2000 + 409 = 2409; 4096 − 3000 = 1096 < 2409 → 2409 − 4096 = −1687
    assert (p.outcome, p.granted, p.change.mem_limit) == ("trimmed", -1687, 2409)
    assert p.host.resources["mem"].free == 16384 + 1687


def test_a_memory_scale_down_with_nothing_above_the_floor_is_refused():
    p = mem_plan(-100, usage=4000, margin=409)  # floor 4409 > current 4096
    assert p.outcome == "refused" and "usage 4000 + margin 409 = 4409 MiB" in p.reason


def test_a_memory_scale_down_without_usage_is_bounded_by_min():
    p = mem_plan(-4000)  # 4096 − 4000 = 96 < min 256 → 256 − 4096 = −3840
    assert (p.outcome, p.granted, p.change.mem_limit) == ("trimmed", -3840, 256)


def test_the_memory_floor_is_never_under_64_mib():
    assert mem_floor(None, 0) == 64
    assert mem_floor(10, 20) == 64  # 10 + 20 = 30 < 64
    assert mem_floor(1000, 100) == 1100


def test_a_memory_plan_touches_no_core():
    p = mem_plan(100)
    assert (p.outcome, p.core_map, p.change.cpu_num) == ("applied", None, None)


# --------------------------------------------------------------------------- the original's "-1" CPU (§5.2, §11.4)


def test_a_cpu_limit_never_goes_under_one_share():
    # NOTE: the original wrote limit 0 as quota −1 (unlimited), and "-1" as −1000; we never
    # write a CPU limit under 1 share. min 0: 10 − 50 → 1 − 10 = −9.
    c = container("c0", cpu=(0, 10, 100))
    h = host("h0", core_map={"0": {"free": 90, "c0": 10}})
    p = plan(request(amount=-50), c, h, physical(10, "0"))
    assert (p.outcome, p.granted, p.change.cpu_allowance_limit, p.change.cpu_num) == ("trimmed", -9, 1, "0")
