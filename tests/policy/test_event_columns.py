"""A host's pending events as arrays decide exactly what each container's event list decides.

The Guardian's `_step_host` keeps a host's pending events in `HostEvents` and evaluates
one at a time only the containers on whose counts a request rule may hold (or whose
documents changed). Hypothesis runs random hosts through windows where usage moves,
`current` changes between windows (as a scaling does) and events expire, both ways:
every container through `evaluate_prepared` with its own event list, and the Guardian's
columns. Every window's requests, the events reported, the boundaries that moved and
each container's pending events must be the same. No Ray: the Guardian is built outside
an event loop.
"""
from __future__ import annotations

import math

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from sc_actors.columns import HostWindow
from sc_actors.defaults import default_rules
from sc_actors.guardian import Guardian
from sc_actors.policy.columnar import HostColumns, usage_of
from sc_actors.policy.event_columns import HostEvents, RequestGate, may_request, shapes_of
from sc_actors.policy.serverless import RuleSet, evaluate_prepared, prepare
from sc_actors.settings import GuardianSettings
from tests.builders import container, limits

GUARDED = ("cpu", "mem")


def _prepared(name: str, cpu: tuple[int, int, int], mem_cur: int, boundary: tuple[int, str], guard_mem: bool):
    c = container(name, cpu=cpu, mem=(64, mem_cur, 8192), guard=True)
    c.resources["mem"].guard = guard_mem
    return prepare(c, limits(name, cpu=boundary, mem=(10, boundary[1])), GUARDED)


@st.composite
def runs(draw):
    n = draw(st.integers(1, 10))
    spec = []
    for i in range(n):
        cpu_max = draw(st.sampled_from((200, 400)))
        spec.append((f"c{i}", draw(st.integers(30, 180)), cpu_max, draw(st.integers(300, 4000)),
                     draw(st.sampled_from(((4, "adaptive"), (10, "percentage_of_max"), (20, "percentage_of_current")))),
                     draw(st.booleans())))
    k = draw(st.integers(2, 9))
    # each window: per container a relative CPU usage (of current), a memory usage, and maybe a new current
    # mostly near the band (quiet, or events that pile up without a request), sometimes far
    ratio = st.one_of(st.floats(0.88, 0.97), st.floats(0.88, 0.97), st.floats(0.5, 1.2))
    windows = draw(st.lists(st.lists(st.tuples(ratio, st.floats(0.75, 0.95),
                                               st.one_of(st.none(), st.none(), st.integers(30, 180))),
                                     min_size=n, max_size=n), min_size=k, max_size=k))
    timeout = draw(st.sampled_from((1.5, 3.0, 100.0)))
    return spec, windows, timeout


def _entries(events):
    return [(e["name"], e["structure"], e["timestamp"], e.get("current"), e.get("usage")) for e in events]


def _pending(events):
    return sorted((e.name, e.timestamp, getattr(e, "current", None), getattr(e, "usage", None)) for e in events)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(runs())
def test_the_guardians_event_arrays_decide_what_each_containers_events_decide(run):
    spec, windows, timeout = run
    cfg = GuardianSettings(EVENT_TIMEOUT=timeout)
    g = Guardian()
    g.settings = cfg
    g._parse_rules([r.model_dump() for r in default_rules()])
    currents = {name: cur for name, cur, *_ in spec}
    ref_events: dict[str, list] = {}
    stored: dict[str, dict] = {}
    for k, values in enumerate(windows):
        now = 1000.0 + k
        prepared = [_prepared(name, (10, currents[name], cmax), mem, b, gm) for (name, _, cmax, mem, b, gm) in spec]
        names = tuple(p.structure.name for p in prepared)
        for name, p in zip(names, prepared):
            if g._prepared.get(name) is None or g._prepared[name].structure != p.structure:
                g._prepared[name] = p
                g._dirty.add(name)  # its documents changed: the Guardian prepares it again
        cpu = [v[0] * currents[n] for v, n in zip(values, names)]
        mem = [v[1] * p.structure.resources["mem"].current for v, p in zip(values, prepared)]
        w = HostWindow.of("h0", now - 1, now, names, cpu, mem)
        hc = g._hosts["h0"] = HostColumns.build(names, [g._prepared[n] for n in names], g._ruleset)
        # One container at a time, as before.
        ref_req, ref_new, ref_bounds = [], [], {}
        for i, (name, p) in enumerate(zip(names, prepared)):
            step = evaluate_prepared(p, g._ruleset, usage_of(w, i), ref_events.get(name, []), now, cfg)
            ref_events[name] = step.pending_events
            moved = {res: ul for res, ul in step.bounds.items() if stored.get(name, {}).get(res) != ul}
            if moved:
                ref_bounds[name] = moved
                stored.setdefault(name, {}).update(moved)
            ref_new += [e.model_dump() for e in step.new_events]
            ref_req += [r.model_dump() for r in step.requests]
        # The Guardian's columns.
        bounds, new_events, requests = {}, [], []
        g._step_host(w, hc, bounds, new_events, requests)
        assert sorted(r["structure"] + r["action"] + str(r["amount"]) for r in ref_req) == \
            sorted(r.structure + r.action + str(r.amount) for r in requests)
        assert sorted(_entries(ref_new)) == sorted(_entries(new_events))
        assert bounds == ref_bounds
        he = g._events["h0"]
        for i, name in enumerate(names):
            assert _pending(he.events(i)) == _pending(ref_events[name]), (k, name)
        # A scaling between windows changes some currents.
        for (name, *_), v in zip(spec, values):
            if v[2] is not None:
                currents[name] = v[2]


def test_a_full_row_grows_and_keeps_every_event():
    rules = RuleSet.of(default_rules())
    shapes = shapes_of(rules)
    he = HostEvents(("a", "b"), shapes, slots=2)
    k = next(i for i, s in enumerate(shapes) if s.resource == "cpu" and s.down > 0)
    fired = {0: [shapes[k].rule]}
    cur = {"cpu": np.array([100.0, 100.0]), "mem": np.array([math.nan, math.nan])}
    use = {"cpu": np.array([10.0, 10.0]), "mem": np.array([math.nan, math.nan])}
    for t in range(5):
        he.step(np.array([True, True]), fired, cur, use, 1000.0 + t, 100.0)
    assert he.pending(0) == 5 and he.pending(1) == 0 and he.ts.shape[2] >= 5
    has, up, down, _peak = he.counts(1004.0, 100.0, cur)["cpu"]
    assert has.tolist() == [True, False] and down[0] == 5 * shapes[k].down
    # counts past the timeout: the first two have expired by 1004 with a 2.5-s timeout
    assert he.counts(1004.0, 2.5, cur)["cpu"][2][0] == 3 * shapes[k].down
    # another current: none of them counts
    assert not he.counts(1004.0, 100.0, {"cpu": np.array([90.0, 100.0])})["cpu"][0][0]
    gate = RequestGate.of(rules)
    kinds = {"cpu": np.array(["adaptive", "adaptive"], dtype=object), "mem": np.array([None, None], dtype=object)}
    must, removes = may_request(gate, he.counts(1004.0, 100.0, cur), kinds, np.array([True, True]), 2)
    assert must.tolist() == [True, False] and not removes  # CpuFitDown acts on a: one at a time
    he.remove_oldest(shapes[k].name, np.array([2, 0]))
    assert he.pending(0) == 3 and min(e.timestamp for e in he.events(0)) == 1002.0


def test_regrid_keeps_events_by_name():
    shapes = shapes_of(RuleSet.of(default_rules()))
    he = HostEvents(("a", "b"), shapes)
    cur = {"cpu": np.array([100.0, 50.0])}
    use = {"cpu": np.array([99.0, 49.0])}
    he.step(np.array([True, True]), {0: [shapes[0].rule], 1: [shapes[0].rule]}, cur, use, 1.0, 10.0)
    moved = he.regrid(("c", "b"))
    assert moved.pending(0) == 0 and moved.pending(1) == 1
    assert moved.events(1)[0].usage == 49.0 and moved.events(1)[0].structure == "b"


def test_a_request_rules_edit_keeps_the_event_arrays_stepping_and_their_events():
    """Editing a request rule (CpuRescaleUp's amount) parses every rule again: the event
    rules are equal but other objects, so the host's event arrays are kept, and the rules
    that fire next window are found in them by name (they were looked up by object once,
    and after an edit no window of the host was evaluated again)."""
    g = Guardian()
    g._parse_rules([r.model_dump() for r in default_rules()])
    names = ("a",)
    p = _prepared("a", (10, 100, 400), 1000, (4, "adaptive"), False)
    g._prepared["a"] = p

    def window(now: float, g: Guardian):
        w = HostWindow.of("h0", now - 1, now, names, [99.5], [500.0])  # at its current: CPU up events
        hc = g._hosts["h0"] = HostColumns.build(names, [g._prepared[n] for n in names], g._ruleset)
        bounds, new_events, requests = {}, [], []
        g._step_host(w, hc, bounds, new_events, requests)
        return new_events, requests

    fired, requests = window(1000.0, g)
    assert fired and [r.action for r in requests] == ["CpuRescaleUp"]
    edited = [r.model_dump() for r in default_rules()]
    up = next(r for r in edited if r["name"] == "CpuRescaleUp")
    up["amount"] = up.get("amount", 0) + 7
    assert g._parse_rules(edited)
    kept = g._events["h0"]
    fired2, requests2 = window(1001.0, g)
    assert g._events["h0"] is kept  # the event rules did not change: their arrays stay
    assert fired2 and [(r.action, r.amount) for r in requests2] == [("CpuRescaleUp", requests[0].amount)]
