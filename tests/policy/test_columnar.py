"""A host's window over columns decides exactly what one container at a time decides.

`fire_host` finds the rules that fire; the containers where one fires, events are pending
or boundaries moved are the only ones evaluated. Hypothesis runs random hosts through several windows, both ways, with the
shipped rules and with random ones, and compares every window's events, requests,
pending events and boundaries: a container left out must be one whose evaluation
would have changed nothing.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sc_actors.columns import HostWindow
from sc_actors.defaults import default_rules
from sc_actors.model import Rule
from sc_actors.policy.columnar import HostColumns, fire_host, usage_of
from sc_actors.policy.serverless import RuleSet, evaluate_prepared, prepare
from sc_actors.settings import GuardianSettings
from tests.builders import container, limits

POM = "percentage_of_max"


@st.composite
def hosts(draw):
    n = draw(st.integers(1, 12))
    prepared = []
    for i in range(n):
        cpu_max = draw(st.sampled_from((100, 200, 400)))
        cpu_cur = draw(st.integers(10, cpu_max))
        mem_cur = draw(st.integers(64, 4096))
        guard_mem = draw(st.booleans())
        c = container(f"c{i}", cpu=(10, cpu_cur, cpu_max), mem=(64, mem_cur, 4096), guard=True)
        c.resources["mem"].guard = guard_mem
        lim = limits(f"c{i}", cpu=(draw(st.sampled_from((5, 10, 20))), POM), mem=(10, POM))
        prepared.append(prepare(c, lim if draw(st.integers(0, 9)) else None, ("cpu", "mem")))
    windows = draw(st.lists(st.lists(st.tuples(st.floats(0, 450), st.floats(0, 5000)), min_size=n, max_size=n),
                            min_size=1, max_size=8))
    skip = draw(st.lists(st.integers(0, n - 1), max_size=2))  # containers not reported in some window
    return prepared, windows, set(skip)


def _rules_with_random():
    extra = st.lists(st.builds(
        lambda i, res, op, k: Rule(name=f"x{i}", resource=res, generates="events", action={"events": {"scale": {"up": 1}}},
                                   rule={op: [{"var": f"{res}.structure.{res}.usage"}, k]}),
        st.integers(0, 99), st.sampled_from(("cpu", "mem")), st.sampled_from((">", "<", ">=")), st.integers(0, 500)),
        max_size=2, unique_by=lambda r: r.name)
    return extra.map(lambda xs: default_rules() + xs)


@settings(max_examples=120, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts(), _rules_with_random(), st.sampled_from((1.5, 2.0, 3.0, 100.0)))
def test_columns_decide_what_each_container_decides(host, rules, timeout):
    prepared, windows, skip = host
    ruleset = RuleSet.of(rules)
    cfg = GuardianSettings(EVENT_TIMEOUT=timeout)  # short ones: events expire within the windows
    names = tuple(p.structure.name for p in prepared)
    ref_events: dict[str, list] = {}
    col_events: dict[str, list] = {}
    stored = {n: None for n in names}  # bounds compared once after (re)preparing: every container dirty at first
    dirty = set(names)
    for k, values in enumerate(windows):
        now = 1000.0 + k
        keep = [i for i in range(len(names)) if not (k % 2 and i in skip)]
        w = HostWindow.of("h0", now - 1, now, [names[i] for i in keep],
                          [values[i][0] for i in keep], [values[i][1] for i in keep])
        hc = HostColumns.build(w.names, [prepared[i] for i in keep], ruleset)
        # One container at a time, as before.
        ref = {}
        for j, i in enumerate(keep):
            name = names[i]
            step = evaluate_prepared(prepared[i], ruleset, usage_of(w, j), ref_events.get(name, []), now, cfg)
            ref_events[name] = step.pending_events
            ref[name] = step
        # Over columns.
        fired = fire_host(hc, ruleset, w)
        chosen = [i for i, n in enumerate(hc.names)
                  if hc.prepared[i] is not None and (i in fired or col_events.get(n) or n in dirty)]
        got = {}
        for j in chosen:
            name = hc.names[j]
            step = evaluate_prepared(hc.prepared[j], ruleset, usage_of(w, j), col_events.get(name, []), now, cfg,
                                     fired=fired.get(j, []))
            col_events[name] = step.pending_events
            got[name] = step
            dirty.discard(name)
        for name, step in ref.items():
            if name in got:
                g = got[name]
                assert [e.model_dump() for e in g.new_events] == [e.model_dump() for e in step.new_events]
                assert [r.model_dump() for r in g.requests] == [r.model_dump() for r in step.requests]
                assert g.bounds == step.bounds
            else:
                # Left out: evaluating it would have fired nothing, asked nothing, moved no boundary.
                assert not step.new_events and not step.requests, name
                assert step.bounds == (stored[name] or {}), name
            assert [e.model_dump() for e in col_events.get(name, [])] == [e.model_dump() for e in ref_events[name]]
            if step.bounds:
                stored[name] = step.bounds


def test_series_columns_follow_an_update():
    a = prepare(container("a", cpu=(10, 100, 200)), limits("a", cpu=(10, POM), mem=(10, POM)), ("cpu", "mem"))
    b = prepare(container("b", cpu=(10, 150, 200)), limits("b", cpu=(10, POM), mem=(10, POM)), ("cpu", "mem"))
    hc = HostColumns.build(("a", "b"), [a, None], RuleSet.of(default_rules()))
    assert hc.series["cpu.current"][0] == 100 and math.isnan(hc.series["cpu.current"][1])
    assert hc.series["cpu.upper"][0] == a.bounds["cpu"][0]
    hc.update(1, b)
    assert hc.series["cpu.current"][1] == 150 and hc.guards["cpu"].tolist() == [True, True]
    hc.update(0, None)
    assert math.isnan(hc.series["cpu.current"][0]) and hc.guards["cpu"].tolist() == [False, True]


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(hosts(), hosts(), _rules_with_random(), st.data())
def test_columns_updated_in_place_are_the_columns_built_from_the_new_documents(old, new, rules, data):
    """`update_many` on some containers, then `concat` of two hosts: column for column what
    `build` makes of the same documents."""
    ruleset = RuleSet.of(rules)
    before, after = old[0], new[0]
    n = min(len(before), len(after))
    names = tuple(f"c{i}" for i in range(n))
    changed = sorted(data.draw(st.sets(st.integers(0, n - 1))))
    now = [after[i] if i in changed else before[i] for i in range(n)]
    hc = HostColumns.build(names, before[:n], ruleset)
    hc.update_many([(i, after[i]) for i in changed])
    other = HostColumns.build(tuple(f"d{i}" for i in range(len(after))), after, ruleset)
    for got, want in ((hc, HostColumns.build(names, now, ruleset)),
                      (HostColumns.concat([hc, other]),
                       HostColumns.build(names + other.names, now + list(after), ruleset))):
        assert got.names == want.names and got.prepared == want.prepared
        for kind in ("guards", "fixed", "series", "boundary_types"):
            g, w = getattr(got, kind), getattr(want, kind)
            assert g.keys() == w.keys(), kind
            for k in g:
                assert g[k].dtype == w[k].dtype, (kind, k)
                same = (g[k] == w[k]) | ((g[k] != g[k]) & (w[k] != w[k]))  # NaN equals NaN here
                assert same.all(), (kind, k, g[k], w[k])


def test_a_quiet_host_decides_nothing():
    """Usage between every container's boundaries and no pending events: nobody is evaluated."""
    ps = [prepare(container(f"c{i}", cpu=(10, 100, 200)), limits(f"c{i}", cpu=(10, POM), mem=(10, POM)),
                  ("cpu", "mem")) for i in range(50)]
    ruleset = RuleSet.of(default_rules())
    hc = HostColumns.build(tuple(p.structure.name for p in ps), ps, ruleset)
    upper, lower = ps[0].bounds["cpu"]
    mem_u, mem_l = ps[0].bounds["mem"]
    w = HostWindow.of("h0", 0, 1, hc.names, np.full(50, (upper + lower) / 2), np.full(50, (mem_u + mem_l) / 2))
    fired = fire_host(hc, ruleset, w)
    assert fired == {}
    w2 = HostWindow.of("h0", 1, 2, hc.names, np.r_[np.full(49, (upper + lower) / 2), upper + 1],
                       np.full(50, (mem_u + mem_l) / 2))
    fired = fire_host(hc, ruleset, w2)
    assert list(fired) == [49]
    assert [r.name for r in fired[49] or []] == ["cpu_exceeded_upper"]
