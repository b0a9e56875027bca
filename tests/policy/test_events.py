"""Events from usage and limits (reference §1.5, §3.5, §3.7, §10.2 #4, #5, #6, #14)."""
from __future__ import annotations

import pytest

from sc_actors.policy.events import (
    action_scale,
    event_data,
    event_name,
    match_usages_and_limits,
    reduce_events,
    remove_events,
    scale_count,
    split_events,
)
from tests.builders import POM, container, event, limits, shipped_rules

NOW = 1_000.0

# §3.7: cpu max 200, min 50, current 140; 10 % of max → m = 20; upper 120, lower 100.
C0 = container("c0", cpu=(50, 140, 200))
C0_LIMITS = limits("c0", cpu=(10, POM, 120, 100))
CPU_RULES = shipped_rules("cpu_exceeded_upper", "cpu_dropped_lower")


def names(events):
    return [e.name for e in events]


def cpu_events(usage, structure=C0, lim=C0_LIMITS, guarded=("cpu",), rules=CPU_RULES):
    return match_usages_and_limits(
        structure.name, rules, {"cpu": usage}, lim, structure.resources, list(guarded), NOW
    )


# --------------------------------------------------------------------------- names (§1.5, §10.2 #4)


@pytest.mark.parametrize("res", ["cpu", "mem", "disk", "net"])
def test_event_name_is_the_resource_title_and_the_direction(res):
    assert event_name(res, {"scale": {"down": 5}}) == res.title() + "Underuse"
    assert event_name(res, {"scale": {"up": 2}}) == res.title() + "Bottleneck"


@pytest.mark.parametrize(
    "scale, expected",
    [
        pytest.param({"up": 3, "down": 2}, "CpuBottleneck", id="more up"),
        pytest.param({"up": 2, "down": 2}, "CpuUnderuse", id="a tie is underuse"),
        pytest.param({"up": 1, "down": 4}, "CpuUnderuse", id="more down"),
    ],
)
def test_event_name_with_both_counts_is_bottleneck_only_when_up_wins(scale, expected):
    assert event_name("cpu", {"scale": scale}) == expected


@pytest.mark.parametrize(
    "bad",
    [{"bogus": 1}, {"scale": {"bogus": 1}}, {"scale": {"up": 0, "down": 0}}, {"scale": {"up": -1}}, "scale"],
)
def test_event_name_refuses_an_action_without_a_positive_count(bad):
    with pytest.raises(ValueError):
        event_name("cpu", bad)


def test_disk_read_names_title_case_every_word_as_the_original():
    # str.title() as in the original's utils: "disk_read" → "Disk_Read".
    assert event_name("disk_read", {"scale": {"up": 1}}) == "Disk_ReadBottleneck"


# --------------------------------------------------------------------------- matching (§3.5, §3.7, §10.2 #14)


def test_usage_between_the_limits_makes_no_event():
    assert cpu_events(110) == []  # lower 100 ≤ 110 ≤ upper 120


def test_usage_above_upper_makes_one_bottleneck_event():
    (e,) = cpu_events(130)  # 130 > upper 120, upper 120 < max 200, current 140 < max 200
    assert (e.name, e.resource, e.structure, e.timestamp) == ("CpuBottleneck", "cpu", "c0", NOW)
    assert e.action == {"events": {"scale": {"up": 1}}}


def test_usage_under_lower_makes_one_underuse_event():
    (e,) = cpu_events(90)  # 90 < lower 100, lower 100 > min 50
    assert e.name == "CpuUnderuse"
    assert e.action == {"events": {"scale": {"down": 1}}}


def test_zero_usage_is_underuse_unlike_the_original():
    # NOTE: corrected behaviour. The original's cpu_dropped_lower needs usage > 0, so an
    # idle container (usage 0) made no event; our shipped rules use usage >= 0 (defaults.py).
    assert names(cpu_events(0)) == ["CpuUnderuse"]


MEM = container("node0", mem=(256, 4096, 8192))
MEM_LIMITS = limits("node0", mem=(10, POM, 2048, 1024))
MEM_RULES = shipped_rules("mem_exceeded_upper", "mem_dropped_lower")


@pytest.mark.parametrize(
    "usage, expected",
    [
        pytest.param(1536, [], id="between 1024 and 2048"),
        pytest.param(924, ["MemUnderuse"], id="under lower 1024"),
        pytest.param(2148, ["MemBottleneck"], id="above upper 2048"),
    ],
)
def test_memory_usage_against_the_memory_limits(usage, expected):
    found = match_usages_and_limits("node0", MEM_RULES, {"mem": usage}, MEM_LIMITS, MEM.resources, ["mem"], NOW)
    assert names(found) == expected


def test_an_unguarded_resource_makes_no_event():
    unguarded = container("c0", cpu=(50, 140, 200), guard=False)
    assert cpu_events(130, structure=unguarded) == []


def test_a_resource_outside_the_guarded_list_makes_no_event():
    assert cpu_events(130, guarded=()) == []


@pytest.mark.parametrize("usage", [None, -1], ids=["missing", "no data"])
def test_a_resource_without_usage_makes_no_event(usage):
    assert cpu_events(usage) == []


def test_an_inactive_rule_makes_no_event():
    rule = CPU_RULES[0].model_copy(update={"active": False})
    assert cpu_events(130, rules=[rule]) == []


def test_request_rules_never_make_events():
    assert cpu_events(130, rules=shipped_rules("CpuRescaleUp", "CpuRescaleDown")) == []


def test_one_event_per_firing_rule_and_window():
    twice = CPU_RULES + [CPU_RULES[0].model_copy(update={"name": "cpu_exceeded_upper_2"})]
    assert names(cpu_events(130, rules=twice)) == ["CpuBottleneck", "CpuBottleneck"]


def test_event_data_holds_every_guarded_resource_with_usage():
    c = container("c0", cpu=(50, 140, 200), energy=(0, 20, 50))
    lim = limits("c0", cpu=(10, POM, 120, 100), energy=(10, POM, 15, 10))
    data = event_data({"cpu": 130, "energy": 12, "mem": 100}, lim, c.resources, ["cpu", "energy"])
    assert set(data) == {"cpu", "energy"}
    assert data["cpu"]["structure"]["cpu"]["usage"] == 130
    assert data["cpu"]["limits"]["cpu"]["upper"] == 120
    assert data["energy"]["structure"]["energy"]["current"] == 20


def test_a_rule_of_one_resource_can_read_another_resource():
    c = container("c0", cpu=(50, 140, 200), energy=(0, 20, 50))
    lim = limits("c0", cpu=(10, POM, 120, 100), energy=(10, POM, 15, 10))
    rules = shipped_rules("energy_dropped_lower_and_cpu_exceeded_upper")
    # energy usage 12 < energy upper 15 and cpu usage 130 > cpu upper 120
    found = match_usages_and_limits("c0", rules, {"cpu": 130, "energy": 12}, lim, c.resources, ["cpu", "energy"], NOW)
    assert names(found) == ["EnergyUnderuse"]


# --------------------------------------------------------------------------- timeout, reduce, remove (§10.2 #5, #6)


def test_events_older_than_the_timeout_expire():
    fresh = [event(up=1, timestamp=NOW) for _ in range(5)]
    old = [event(up=1, timestamp=NOW - 24) for _ in range(5)]
    valid, expired = split_events(fresh + old, NOW, 20)  # NOW − 24 < NOW − 20
    assert (len(valid), len(expired)) == (5, 5)
    assert valid == fresh and expired == old


def test_an_event_exactly_at_the_timeout_is_still_valid():
    valid, expired = split_events([event(up=1, timestamp=NOW - 20)], NOW, 20)  # not < NOW − 20
    assert (len(valid), len(expired)) == (1, 0)


def test_reduce_sums_up_and_down_counts_per_resource():
    ups = [event(up=n) for n in range(1, 5)]  # 1 + 2 + 3 + 4 = 10
    downs = [event(down=n) for n in range(2, 6)]  # 2 + 3 + 4 + 5 = 14
    assert reduce_events(ups + downs) == {"cpu": {"events": {"scale": {"up": 10, "down": 14}}}}


def test_reduce_keeps_resources_apart():
    reduced = reduce_events([event(up=1), event("c0", "mem", down=1)])
    assert reduced == {
        "cpu": {"events": {"scale": {"up": 1, "down": 0}}},
        "mem": {"events": {"scale": {"up": 0, "down": 1}}},
    }


def test_reduce_counts_a_missing_or_non_numeric_count_as_zero():
    # An action is free-form JSON: a count that is absent, null or not a number adds nothing.
    odd = [event(up=2), event(), event(name="CpuBottleneck").model_copy(
        update={"action": {"events": {"scale": {"up": None, "down": "3"}}}})]
    assert reduce_events(odd) == {"cpu": {"events": {"scale": {"up": 2, "down": 0}}}}
    assert (action_scale({"events": [1]}), action_scale({})) == ({}, {})
    assert (scale_count({"up": 2.5}, "up"), scale_count({"up": True}, "up")) == (2.5, 0)


def test_remove_events_removes_the_oldest_of_each_name_unlike_the_original():
    # NOTE: corrected behaviour. The original deleted the first N its database returned.
    ups = [event(up=1, timestamp=t) for t in (30, 10, 20, 40)]
    downs = [event(down=1, timestamp=t) for t in (5, 1)]
    left = remove_events(ups + downs, {"CpuBottleneck": 2, "CpuUnderuse": 1})
    assert sorted(e.timestamp for e in left if e.name == "CpuBottleneck") == [30, 40]  # 10 and 20 were oldest
    assert [e.timestamp for e in left if e.name == "CpuUnderuse"] == [5]  # 1 was oldest


def test_remove_events_touches_only_the_given_structure():
    mixed = [event("c0", up=1, timestamp=1), event("c1", up=1, timestamp=0)]
    left = remove_events(mixed, {"CpuBottleneck": 1}, structure="c0")
    assert [e.structure for e in left] == ["c1"]


def test_removing_more_events_than_exist_removes_them_all():
    assert remove_events([event(up=1)], {"CpuBottleneck": 5, "MemUnderuse": 2}) == []
