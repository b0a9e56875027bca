"""The original's value coercion and the events_required fix, as pure functions (no Ray)."""
from __future__ import annotations

import pytest

from serve.values import coerce_service_value, set_events_required, trigger_direction
from sc_actors.defaults import default_rules


@pytest.mark.parametrize(
    "key, sent, stored",
    [
        pytest.param("ACTIVE", "true", True, id="true-is-a-bool"),
        pytest.param("DEBUG", "false", False, id="false-is-a-bool"),
        pytest.param("WINDOW_TIMELAPSE", "10", 10, id="integer-string"),
        pytest.param("WINDOW_TIMELAPSE", "0.5", 0.5, id="fraction-as-in-the-original"),
        pytest.param("WINDOW_TIMELAPSE", "1.5", 1.5, id="float-above-one-unlike-the-original"),
        pytest.param("EVENT_TIMEOUT", "2.0", 2, id="integral-float-is-an-int"),
        pytest.param("GUARDABLE_RESOURCES", ["cpu", "mem"], ["cpu", "mem"], id="list-kept"),
        pytest.param("STRUCTURE_GUARDED", "container", "container", id="str-key-kept"),
        pytest.param("POWER_MODEL", "10", "10", id="str-key-not-coerced"),
        pytest.param("WINDOW_DELAY", 3, 3, id="json-number-kept"),
        pytest.param("ACTIVE", True, True, id="json-bool-kept"),
    ],
)
def test_service_values_are_coerced_like_the_original(key, sent, stored):
    got = coerce_service_value(key, sent)
    assert got == stored and type(got) is type(stored)


@pytest.mark.parametrize("sent", ["abc", "", "nan", "inf", {"a": 1}, None])
def test_service_values_that_are_no_number_or_boolean_are_refused(sent):
    with pytest.raises(ValueError):
        coerce_service_value("WINDOW_TIMELAPSE", sent)


def _rule(name):
    return next(r for r in default_rules() if r.name == name).model_dump(exclude_none=True)


@pytest.mark.parametrize(
    "name, direction",
    [("CpuRescaleUp", "up"), ("CpuRescaleDown", "down"), ("MemRescaleUp", "up"), ("MemRescaleDown", "down"),
     pytest.param("EnergyRescaleUp", "down", id="energy-polarity-inverted")],
)
def test_the_trigger_direction_is_the_event_type_with_a_lower_bound(name, direction):
    assert trigger_direction(_rule(name)) == direction


def test_editing_the_non_trigger_events_leaves_events_to_remove_alone():
    # conf/Orchestrator/set_rules_config.sh: MemRescaleUp up 2, then down 6 (reference §11.4).
    rule = _rule("MemRescaleUp")
    changes = set_events_required(rule, "up", 2)
    assert changes["events_to_remove"] == 2
    rule.update(changes)
    changes = set_events_required(rule, "down", 6)
    assert "events_to_remove" not in changes
    assert changes["rule"]["and"][1] == {"<=": [{"var": "events.scale.down"}, 6]}
    assert changes["rule"]["and"][0] == {">=": [{"var": "events.scale.up"}, 2]}


def test_editing_the_trigger_events_of_a_down_rule_moves_events_to_remove():
    changes = set_events_required(_rule("CpuRescaleDown"), "down", 4)
    assert changes["events_to_remove"] == 4
    assert {">=": [{"var": "events.scale.down"}, 4]} in changes["rule"]["and"]


def test_an_event_rule_has_no_events_required():
    with pytest.raises(ValueError, match="not a request rule"):
        set_events_required(_rule("cpu_exceeded_upper"), "up", 2)
