"""JSON-logic wrapper: rule checks, truthiness, compile cache (reference §1.4)."""
from __future__ import annotations

import copy
import time

import pytest

from sc_actors.policy.jsonlogic import check_rule, compiled, evaluate
from tests.builders import shipped_rules


def test_every_shipped_rule_is_valid_json_logic():
    for rule in shipped_rules():
        check_rule(rule.rule)


@pytest.mark.parametrize(
    "bad, words",
    [
        pytest.param({">": [1]}, "at least 2 arguments", id="too few arguments"),
        pytest.param({"frobnicate": [1, 2]}, "unknown operator", id="unknown operator"),
        pytest.param({"a": 1, "b": 2}, "2 keys", id="two keys"),
        pytest.param({"and": [{">": [1]}]}, "/and/0", id="error deep inside"),
        pytest.param([1, 2], "must be an object", id="not an object"),
    ],
)
def test_check_rule_explains_what_is_wrong(bad, words):
    with pytest.raises(ValueError, match="invalid JSON-logic rule|must be an object") as info:
        check_rule(bad)
    assert words in str(info.value)


@pytest.mark.parametrize(
    "value, expected",
    [
        (0, False), (1, True), (0.0, False), (2.5, True),
        ("", False), ("0", True), ("a", True),  # a non-empty string is true, even "0"
        ([], False), ([0], True),
        ({}, False), ({"a": 1}, True),  # an empty object is false, as in the original's Python engine
        (None, False), (False, False), (True, True),
    ],
)
def test_evaluate_uses_json_logic_truthiness(value, expected):
    assert evaluate({"var": "x"}, {"x": value}) is expected


def test_evaluate_reads_nested_variables_of_the_event_data():
    data = {"cpu": {"structure": {"cpu": {"usage": 130}}, "limits": {"cpu": {"upper": 120}}}}
    assert evaluate({">": [{"var": "cpu.structure.cpu.usage"}, {"var": "cpu.limits.cpu.upper"}]}, data)


def test_a_rule_that_fails_on_its_data_raises_a_value_error():
    with pytest.raises(ValueError, match="failed on the data"):
        evaluate({"+": [1, {"var": "x"}]}, {"x": "abc"})


def test_an_invalid_rule_is_refused_at_evaluation_too():
    with pytest.raises(ValueError, match="invalid JSON-logic rule"):
        evaluate({">": [1]}, {})


def test_equal_rules_compile_once():
    rule = shipped_rules("cpu_exceeded_upper")[0].rule
    assert compiled(rule) is compiled(copy.deepcopy(rule))


def test_a_replaced_rule_is_compiled_anew():
    first = {">": [{"var": "x"}, 1]}
    second = {">": [{"var": "x"}, 5]}
    assert evaluate(first, {"x": 3}) and not evaluate(second, {"x": 3})


def test_ten_thousand_evaluations_of_a_cached_rule_are_cheap():
    rule = shipped_rules("cpu_exceeded_upper")[0].rule
    data = {"cpu": {"structure": {"cpu": {"usage": 130, "max": 200, "current": 140}},
                    "limits": {"cpu": {"upper": 120}}}}
    evaluate(rule, data)
    start = time.perf_counter()
    for _ in range(10_000):
        evaluate(rule, data)
    # About 1 µs each on a laptop; the bound leaves room for slow CI machines.
    assert time.perf_counter() - start < 0.25
