"""Values that contradict what a rule or a limit means are refused (issue 14, item 5).

A scale-up rule with a negative amount scales down; a boundary of 0 % leaves a
margin of one share. The original stored both. Each is refused with 400 and a
message, and the StateDB is the same afterwards (the routes: test_routes_fast.py).
The sign is decided by the rule's `rescale_type`, so the pure check is also run on
rules that are not shipped.
"""
from __future__ import annotations

import pytest

from serve.values import check_rule_amount
from tests.api.test_routes import db_get


def _rule(rtype, amount, policy="amount", name="SomeRule"):
    doc = {"name": name, "generates": "requests", "rescale_type": rtype, "rescale_policy": policy}
    if amount is not None:
        doc["amount"] = amount
    return doc


@pytest.mark.parametrize(
    "doc, ok",
    [
        pytest.param(_rule("up", 75), True, id="up-positive"),
        pytest.param(_rule("up", 0), False, id="up-zero"),
        pytest.param(_rule("up", -5), False, id="up-negative"),
        pytest.param(_rule("down", -20), True, id="down-negative"),
        pytest.param(_rule("down", 20), False, id="down-positive"),
        pytest.param(_rule("down", None, "fit_to_usage"), True, id="down-fit-without-amount"),
        pytest.param(_rule("down", 5, "some_new_fit_policy", name="NewProfileDown"), False,
                     id="down-positive-any-policy"),
        pytest.param({"name": "cpu_exceeded_upper", "generates": "events", "amount": -1}, True,
                     id="event-rules-unchecked"),
    ],
)
def test_a_rule_amount_must_have_the_sign_of_its_rescale_type(doc, ok):
    if ok:
        check_rule_amount(doc)
    else:
        with pytest.raises(ValueError, match=doc["name"]):
            check_rule_amount(doc)


@pytest.mark.ray
def test_sc_rule_amount_passes_a_negative_value_to_the_api_which_refuses_it(api, stack):
    from typer.testing import CliRunner

    import cli

    r = CliRunner().invoke(cli.app, ["--url", api.url, "--token", api.token, "rule", "amount", "CpuRescaleUp", "-5"])
    assert r.exit_code == 1, r.output
    assert "must be > 0" in r.output and "No such option" not in r.output
    assert db_get(stack, "rules", "CpuRescaleUp")["amount"] > 0
