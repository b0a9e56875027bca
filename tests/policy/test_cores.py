"""Core distributions and core maps (reference §1.2, §4.6, §6, §10.1, §10.3, §10.6)."""
from __future__ import annotations

import copy

import pytest

from sc_actors.policy.cores import allocate_cores, core_distribution, core_order, new_core_map, scale_cpu
from sc_actors.units import parse_cpu_list

TOPOLOGY = {"0": {"0": [0, 4], "1": [1, 5]}, "1": {"0": [2, 6], "1": [3, 7]}}
PP_LL = core_distribution(TOPOLOGY, "Group_PP_LL")


def dante():
    """Host "dante" of §10.3: 8 cores all taken, 0,2 → node0; 1,3 → node1; 4,6 → node2; 5,7 → node3."""
    owners = {"0": "node0", "2": "node0", "1": "node1", "3": "node1",
              "4": "node2", "6": "node2", "5": "node3", "7": "node3"}
    return {core: {"free": 0, name: 100} for core, name in sorted(owners.items())}


# --------------------------------------------------------------------------- distributions (§10.6)


@pytest.mark.parametrize(
    "order, expected",
    [
        ("Group_P&L", "0,4,1,5,2,6,3,7"),  # socket by socket, each core with its sibling
        ("Group_1P_2L", "0,1,4,5,2,3,6,7"),  # socket by socket, physical then logical
        ("Group_PP_LL", "0,1,2,3,4,5,6,7"),  # all physical, then all logical
        ("Spread_P&L", "2,6,0,4,3,7,1,5"),  # core pairs alternating sockets, last socket leads
        ("Spread_PP_LL", "2,0,3,1,6,4,7,5"),  # physical alternating sockets, then logical alike
    ],
)
def test_core_distribution_orders_the_cpus_of_the_topology(order, expected):
    assert ",".join(core_distribution(TOPOLOGY, order)) == expected


def test_an_unknown_core_distribution_is_refused():
    with pytest.raises(ValueError, match="distribution"):
        core_distribution(TOPOLOGY, "Random")


def test_a_spread_order_keeps_cores_the_leading_socket_lacks():
    # NOTE: the original dropped CPU 9 (core id "2" exists only in the smaller socket).
    uneven = {"0": {"0": [0], "1": [1], "2": [9]}, "1": {"0": [2], "1": [3], "5": [4], "6": [5]}}
    assert sorted(core_distribution(uneven, "Spread_P&L"), key=int) == ["0", "1", "2", "3", "4", "5", "9"]


def test_new_core_map_has_every_core_free():
    assert new_core_map(3) == {"0": {"free": 100}, "1": {"free": 100}, "2": {"free": 100}}


@pytest.mark.parametrize(
    "text, expected",
    [
        ("1-3", ["1", "2", "3"]),
        ("0-2,5", ["0", "1", "2", "5"]),
        ("1-3,5,4", ["1", "2", "3", "5", "4"]),  # order kept
        ("1-2,4-6,9", ["1", "2", "4", "5", "6", "9"]),
    ],
)
def test_cpu_lists_expand_ranges_and_keep_their_order(text, expected):
    assert parse_cpu_list(text) == expected  # §10.1 test_get_cpu_list


# --------------------------------------------------------------------------- scale_cpu on "dante" (§4.6, §10.3)


def test_a_scale_up_on_a_full_host_grants_nothing():
    result = scale_cpu(dante(), "node0", 40, PP_LL)
    assert (result.shares, result.cpu_num, result.host_free_delta) == (0, "0,2", 0)
    assert result.core_map == dante()


def test_a_scale_down_frees_whole_cores_first():
    result = scale_cpu(dante(), "node1", -150, PP_LL)
    # reverse order [3, 1], equal shares: core 3 gives 100, then core 1 gives 50
    assert (result.cpu_num, result.held, result.shares) == ("1", 50, -150)
    assert result.host_free_delta == 150  # host free 0 → 150
    assert result.core_map["3"] == {"free": 100}
    assert result.core_map["1"] == {"free": 50, "node1": 50}


def test_a_scale_up_prefers_a_completely_free_core_to_a_half_free_one():
    freed = scale_cpu(dante(), "node1", -150, PP_LL).core_map
    result = scale_cpu(freed, "node0", 40, PP_LL)
    assert (result.cpu_num, result.held) == ("0,2,3", 240)  # 200 + 40; core 3 (free 100) before core 1 (free 50)
    assert result.host_free_delta == -40  # host free 150 → 110
    assert result.core_map["3"] == {"free": 60, "node0": 40}
    assert result.core_map["1"] == {"free": 50, "node1": 50}


def test_releasing_more_shares_than_held_is_an_error():
    freed = scale_cpu(dante(), "node1", -150, PP_LL).core_map
    with pytest.raises(ValueError, match="holds 50"):
        scale_cpu(freed, "node1", -60, PP_LL)  # 50 − 60 < 0


def test_scale_cpu_leaves_its_input_untouched():
    before = dante()
    kept = copy.deepcopy(before)
    scale_cpu(before, "node1", -150, PP_LL)
    assert before == kept


def test_a_scale_up_fills_the_cores_already_used_first():
    core_map = {"0": {"free": 100}, "1": {"free": 50, "c": 50}, "2": {"free": 100}}
    result = scale_cpu(core_map, "c", 30, PP_LL)
    assert result.core_map["1"] == {"free": 20, "c": 80}  # 50 + 30 on core 1, core 0 untouched
    assert result.cpu_num == "1"


def test_a_scale_up_spills_over_to_partially_free_cores_last():
    core_map = {"0": {"free": 30, "x": 70}, "1": {"free": 100}, "2": {"free": 20, "c": 80}}
    result = scale_cpu(core_map, "c", 140, PP_LL)
    # 20 on core 2 (used), 100 on core 1 (free), 20 of the 30 on core 0 (partial)
    assert (result.shares, result.cpu_num) == (140, "0,1,2")
    assert result.core_map["0"] == {"free": 10, "x": 70, "c": 20}


def test_a_scale_up_grants_only_what_is_free():
    core_map = {"0": {"free": 30, "x": 70}, "1": {"free": 0, "c": 100}}
    result = scale_cpu(core_map, "c", 50, PP_LL)
    assert (result.shares, result.host_free_delta, result.held) == (30, -30, 130)


def test_a_scale_down_takes_from_the_least_used_cores_in_reverse_order():
    core_map = {"0": {"free": 0, "c": 100}, "1": {"free": 70, "c": 30}, "2": {"free": 0, "c": 100}}
    result = scale_cpu(core_map, "c", -50, PP_LL)
    # reverse order [2, 1, 0] sorted by shares: [1 (30), 2 (100), 0 (100)] → 30 from 1, 20 from 2
    assert result.cpu_num == "0,2"
    assert result.core_map["1"] == {"free": 100}
    assert result.core_map["2"] == {"free": 20, "c": 80}


def test_a_zero_scaling_changes_nothing():
    result = scale_cpu(dante(), "node0", 0, PP_LL)
    assert (result.shares, result.cpu_num, result.core_map) == (0, "0,2", dante())


def test_a_core_order_lists_the_cores_the_distribution_lacks_last_in_numeric_order():
    core_map = {"10": {"free": 100}, "3": {"free": 100}, "1": {"free": 100}, "0": {"free": 100}}
    assert core_order(core_map, ["1", "0", "7"]) == ("1", "0", "3", "10")  # 7 is not a core of the map


@pytest.mark.parametrize("container, amount", [
    pytest.param("node1", -150, id="scale-down"),
    pytest.param("node0", 0, id="zero"),
    pytest.param("c", 30, id="scale-up on a full host"),
])
def test_scaling_with_the_core_order_is_scaling_with_its_distribution(container, amount):
    order = core_order(dante(), PP_LL)
    assert scale_cpu(dante(), container, amount, order) == scale_cpu(dante(), container, amount, PP_LL)


def test_a_scale_up_with_a_core_order_of_other_cores_still_walks_every_core():
    order = core_order({"0": {"free": 100}, "1": {"free": 100}, "2": {"free": 100}}, PP_LL)
    grown = {**{c: {"free": 100} for c in order}, "3": {"free": 100}}  # a fourth core since
    result = scale_cpu(grown, "c", 400, order)
    # Trusted as it is, the order would hand out 3 cores (300 shares); ordered again, all 4.
    assert (result.shares, result.cpu_num) == (400, "0,1,2,3")


# --------------------------------------------------------------------------- subscription (§1.2, §6)


def test_a_new_container_takes_free_cores_first():
    result = allocate_cores(new_core_map(4), "host0-cont0", 140, PP_LL)
    assert result.core_map["0"] == {"free": 0, "host0-cont0": 100}
    assert result.core_map["1"] == {"free": 60, "host0-cont0": 40}  # 140 − 100 = 40
    assert (result.cpu_num, result.host_free_delta) == ("0,1", -140)  # host free 400 → 260


def test_a_new_container_then_takes_the_cores_with_most_free_shares():
    core_map = {"0": {"free": 30, "a": 70}, "1": {"free": 70, "b": 30}, "2": {"free": 100}}
    result = allocate_cores(core_map, "c", 150, PP_LL)
    assert result.cpu_num == "1,2"  # 100 on core 2, then 50 of core 1's 70 (more free than core 0's 30)
    assert result.core_map["1"] == {"free": 20, "b": 30, "c": 50}


def test_a_new_container_that_does_not_fit_is_refused():
    with pytest.raises(ValueError, match="free"):
        allocate_cores(dante(), "node4", 10, PP_LL)


def test_a_container_cannot_be_allocated_twice():
    placed = allocate_cores(new_core_map(2), "node0", 10, PP_LL).core_map
    with pytest.raises(ValueError, match="already"):
        allocate_cores(placed, "node0", 10, PP_LL)
