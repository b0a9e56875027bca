"""The window-wide event rules fire exactly the events the one-container path fires.

`fired_rules` evaluates rules on numpy columns and hands rows it cannot do exactly to
the JSON-logic engine. Hypothesis compares it with `fire_event_rules` per container
on random windows, for the shipped rules and for random rules, inside and outside
the compiled subset.
"""
from __future__ import annotations

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sc_actors.defaults import default_rules
from sc_actors.model import Rule
from sc_actors.policy.events import event_data_of_parts, events_of, fire_event_rules
from sc_actors.policy.vectorized import compile_rule, fired_rules

RESOURCES = ("cpu", "mem", "energy")
FIELDS = {"structure": ("max", "min", "current", "usage", "guard"), "limits": ("upper", "lower", "boundary")}
EVENT_RULES = [r for r in default_rules() if r.generates == "events"]

numbers = st.one_of(st.integers(-5, 300), st.floats(-5, 300, allow_nan=False, width=32))
field_values = st.one_of(numbers, numbers, numbers, st.none(), st.booleans(), st.just("n/a"))


@st.composite
def containers(draw):
    parts, usage = {}, {}
    for res in RESOURCES:
        if draw(st.booleans()):
            structure = {f: v for f in FIELDS["structure"] if f != "usage" and (v := draw(field_values)) is not None}
            limits = {f: v for f in FIELDS["limits"] if (v := draw(field_values)) is not None}
            parts[res] = (structure, limits)
        u = draw(st.one_of(st.none(), st.just(-1), numbers))
        if u is not None:
            usage[res] = u
    return parts, usage


def variables():
    return st.builds(lambda r, k, f: {"var": f"{r}.{k}.{r}.{f}"}, st.sampled_from(RESOURCES),
                     st.sampled_from(("structure", "limits")), st.sampled_from(("max", "current", "usage", "upper",
                                                                                 "lower", "min", "guard")))


def expressions():
    leaves = st.one_of(variables(), numbers, st.just({"var": "cpu.structure.mem.usage"}))
    num = st.recursive(leaves, lambda kids: st.builds(lambda op, a, b: {op: [a, b]},
                                                      st.sampled_from(("+", "-", "*", "/")), kids, kids), max_leaves=4)
    cmp = st.builds(lambda op, a, b: {op: [a, b]}, st.sampled_from(("<", "<=", ">", ">=", "==", "!=")), num, num)
    return st.recursive(cmp, lambda kids: st.one_of(
        st.builds(lambda op, xs: {op: xs}, st.sampled_from(("and", "or")), st.lists(kids, min_size=1, max_size=3)),
        st.builds(lambda x: {"!": [x]}, kids),
        st.builds(lambda c, a, b: {"if": [c, a, b]}, kids, kids, kids),  # outside the subset: the engine's
    ), max_leaves=5)


def random_rules():
    # Each rule's action is its own (up = i + 1), so the events tell which rule fired.
    return st.lists(st.builds(lambda i, res, rule: Rule(name=f"r{i}", resource=res, rule=rule, generates="events",
                                                        action={"events": {"scale": {"up": i + 1}}}),
                              st.integers(0, 99), st.sampled_from(RESOURCES), expressions()), min_size=1, max_size=4)


def _key(events):
    return [(e.name, e.resource, str(e.action)) for e in events]


def _one_by_one(rules, parts, usages):
    out = []
    for p, u in zip(parts, usages):
        try:
            out.append(_key(fire_event_rules("c", rules, event_data_of_parts(p, u), 0.0)))
        except ValueError:  # the engine fails on this data (e.g. "n/a" compared with a number)
            out.append("error")
    return out


def _window(rules, parts, usages):
    fired = fired_rules(rules, [compile_rule(r.rule) for r in rules], parts, usages)
    # None: left to the one-container path, which must then fail on it.
    return ["error" if f is None else _key(events_of("c", f, 0.0)) for f in fired]


def test_every_shipped_event_rule_compiles_to_numpy():
    assert all(compile_rule(r.rule) is not None for r in EVENT_RULES), [
        r.name for r in EVENT_RULES if compile_rule(r.rule) is None]


def test_a_rule_outside_the_subset_does_not_compile():
    assert compile_rule({"if": [{">": [{"var": "a"}, 1]}, True, False]}) is None
    assert compile_rule({"/": [{"var": "a"}, 2]}) is None
    assert compile_rule({"var": "a"}) is None  # a number, not a condition


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(window=st.lists(containers(), min_size=1, max_size=12))
def test_shipped_rules_fire_the_same_events_on_a_whole_window_as_one_container_at_a_time(window):
    parts, usages = [p for p, _ in window], [u for _, u in window]
    assert _window(EVENT_RULES, parts, usages) == _one_by_one(EVENT_RULES, parts, usages)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(rules=random_rules(), window=st.lists(containers(), min_size=1, max_size=8))
def test_random_rules_fire_the_same_events_on_a_whole_window_as_one_container_at_a_time(rules, window):
    parts, usages = [p for p, _ in window], [u for _, u in window]
    assert _window(rules, parts, usages) == _one_by_one(rules, parts, usages)
