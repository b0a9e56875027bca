"""The pending events of one host's containers as arrays (issue 16).

With the adaptive profile's narrow band, an event rule fires in a good part of a
host's windows for most of its containers, and each such container used to be
evaluated one at a time (`evaluate_prepared`) only to append one event to its
pending list. Here a host's pending events are arrays: for each event rule `k`,
each container `i` holds up to `slots` events, each a (timestamp, current, usage)
(NaN timestamp: a free slot). A window then
  1. drops the events measured against another `current` and those expired,
  2. adds the events of the rules that fired (`fire_host`),
  3. sums the up and down counts per resource (`reduce_events`),
all as array operations, and picks the containers on whose counts a request rule
may hold. Only those (and the ones the caller must look at anyway) are evaluated one
at a time, by `evaluate_prepared` on their events as `Event`s (`events`), and their
pending events written back (`put`): the same result as evaluating every container
(the property test in tests/policy/test_event_columns.py compares both ways).

Pure: no Ray, no clock.
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import NamedTuple, Optional

import numpy as np

from ..model import Event, JsonObject, ResourceName, Rule
from .events import action_scale, event_name, scale_count
from .limits import ADAPTIVE_MARGIN_FLOOR
from .serverless import RuleSet
from .vectorized import Compiled, compile_rule

SLOTS = 4
"""Events a container holds per rule at first; a row that fills up grows the arrays."""


@dataclass(frozen=True)
class EventShape:
    """What every event of one event rule is: its name, resource, action and counts."""

    rule: Rule
    name: str
    resource: ResourceName
    up: float
    down: float


def shapes_of(rules: RuleSet) -> tuple[EventShape, ...]:
    out = []
    for r in rules.event_rules:
        scale = action_scale(r.action)
        out.append(EventShape(r, event_name(r.resource, r.action.get("events", {})), r.resource,
                              scale_count(scale, "up"), scale_count(scale, "down")))
    return tuple(out)


class Counts(NamedTuple):
    """A resource's pending events per container, as the request rules count them."""

    has: np.ndarray
    up: np.ndarray
    down: np.ndarray
    down_peak: np.ndarray
    """The highest usage among its down events (NaN: none with a usage): `_down_peaks`."""


class FitInputs(NamedTuple):
    """Per resource, each container's window usage, `current`, `lower` and `boundary`
    (NaN where there is none), which a fit-down's amount reads."""

    usages: Mapping[str, np.ndarray]
    currents: Mapping[str, np.ndarray]
    lowers: Mapping[str, np.ndarray]
    boundaries: Mapping[str, np.ndarray]


@dataclass(frozen=True)
class GateRule:
    """A request rule as the gate sees it: its counts program (None: not compiled), the
    limits it serves, and, for a CPU fit-up, the event it removes when the window shows
    no throttling (then it asks for nothing: `fit_to_demand_policy`)."""

    resource: str
    program: Optional[Compiled]
    boundary_types: Optional[frozenset[str]]
    idle_up: str
    remove: int
    deadband_down: str = ""
    """For a CPU fit-down with a `deadband`: the event it removes where its cut would be
    under the deadband (then it asks for nothing: `in_deadband`), done in arrays."""
    deadband: float = 0.0


@dataclass(frozen=True)
class RequestGate:
    """The request rules over the arrays of a host's event counts (`may_request`)."""

    rules: tuple[GateRule, ...]

    @classmethod
    def of(cls, rules: RuleSet) -> "RequestGate":
        out = []
        for r in rules.request_rules:
            idle = r.resource == "cpu" and r.rescale_policy == "fit_to_demand" and r.rescale_type == "up"
            banded = (r.resource == "cpu" and r.rescale_policy == "fit_to_demand" and r.rescale_type == "down"
                      and bool(r.deadband))
            out.append(GateRule(r.resource, compile_rule(r.rule),
                                None if r.boundary_types is None else frozenset(r.boundary_types),
                                event_name(r.resource, {"scale": {"up": 1}}) if idle else "", r.events_to_remove or 0,
                                event_name(r.resource, {"scale": {"down": 1}}) if banded else "",
                                float(r.deadband or 0.0)))
        return cls(tuple(out))


class HostEvents:
    """The pending events of the containers `names` of one host, per event rule (`shapes`)."""

    def __init__(self, names: tuple[str, ...], shapes: tuple[EventShape, ...], slots: int = SLOTS) -> None:
        self.names = names
        self.index = {n: i for i, n in enumerate(names)}
        self.shapes = shapes
        shape = (len(shapes), len(names), slots)
        self.ts = np.full(shape, math.nan)
        self.current = np.full(shape, math.nan)
        self.usage = np.full(shape, math.nan)

    # ------------------------------------------------------------------ one container

    def events(self, i: int) -> list[Event]:
        """Container `i`'s pending events, oldest first (same time: in rule order)."""
        k_idx, s_idx = np.nonzero(~np.isnan(self.ts[:, i, :]))
        order = sorted(zip(self.ts[k_idx, i, s_idx].tolist(), k_idx.tolist(), s_idx.tolist()))
        name = self.names[i]
        out = []
        for t, k, s in order:
            shape = self.shapes[k]
            cur, use = float(self.current[k, i, s]), float(self.usage[k, i, s])
            out.append(Event.model_construct(name=shape.name, resource=shape.resource, structure=name,
                                             action=shape.rule.action, timestamp=t,
                                             current=None if math.isnan(cur) else cur,
                                             usage=None if math.isnan(use) else use))
        return out

    def put(self, i: int, events: Sequence[Event]) -> bool:
        """Container `i`'s pending events are now `events`; False (and none kept) if one
        is of no rule of this host's (the rules changed since it fired)."""
        self.clear(i)
        for e in events:
            k = self._rule_of(e)
            if k is None:
                self.clear(i)
                return False
            cur, use = getattr(e, "current", None), getattr(e, "usage", None)
            self._add(k, np.array([i]), e.timestamp, np.array([math.nan if cur is None else cur]),
                      np.array([math.nan if use is None else use]))
        return True

    def clear(self, i: int) -> None:
        self.ts[:, i, :] = math.nan
        self.current[:, i, :] = math.nan
        self.usage[:, i, :] = math.nan

    def pending(self, i: int) -> int:
        return int(np.count_nonzero(~np.isnan(self.ts[:, i, :])))

    def total(self) -> int:
        return int(np.count_nonzero(~np.isnan(self.ts)))

    def _rule_of(self, e: Event) -> Optional[int]:
        for k, s in enumerate(self.shapes):
            if s.name == e.name and s.resource == e.resource and s.rule.action == e.action:
                return k
        return None

    # ------------------------------------------------------------------ the whole host

    def copy(self) -> "HostEvents":
        out = HostEvents((), self.shapes, 0)
        out.names, out.index = self.names, self.index
        out.ts, out.current, out.usage = self.ts.copy(), self.current.copy(), self.usage.copy()
        return out

    def reshaped(self, names: tuple[str, ...], shapes: tuple[EventShape, ...]) -> "HostEvents":
        """The events of `names` under other rules: those of a rule still there are kept."""
        out = HostEvents(names, shapes)
        for i, n in enumerate(names):
            j = self.index.get(n)
            if j is not None and self.pending(j):
                out.put(i, [e for e in self.events(j) if out._rule_of(e) is not None])
        return out

    def regrid(self, names: tuple[str, ...]) -> "HostEvents":
        """The same events for the containers `names` (a container not here before has none)."""
        out = HostEvents(names, self.shapes, self.ts.shape[2])
        pairs = [(j, self.index[n]) for j, n in enumerate(names) if n in self.index]
        if pairs:
            new, old = (np.array(x) for x in zip(*pairs))
            out.ts[:, new, :] = self.ts[:, old, :]
            out.current[:, new, :] = self.current[:, old, :]
            out.usage[:, new, :] = self.usage[:, old, :]
        return out

    def _add(self, k: int, rows: np.ndarray, t: float, current: np.ndarray, usage: np.ndarray) -> None:
        """One event of rule `k` for each container of `rows`, in a free slot."""
        if rows.size == 0:
            return
        free = np.isnan(self.ts[k, rows, :])
        if not free.any(axis=1).all():
            self._grow()
            free = np.isnan(self.ts[k, rows, :])
        slot = free.argmax(axis=1)
        self.ts[k, rows, slot] = t
        self.current[k, rows, slot] = current
        self.usage[k, rows, slot] = usage

    def _grow(self) -> None:
        extra = np.full(self.ts.shape[:2] + (self.ts.shape[2],), math.nan)
        self.ts = np.concatenate([self.ts, extra], axis=2)
        self.current = np.concatenate([self.current, extra.copy()], axis=2)
        self.usage = np.concatenate([self.usage, extra.copy()], axis=2)

    def step(self, rows: np.ndarray, fired: Mapping[int, Sequence[Rule]], currents: Mapping[str, np.ndarray],
             usages: Mapping[str, np.ndarray], now: float, timeout_s: float) -> None:
        """`evaluate_prepared`'s bookkeeping of pending events for the containers `rows`
        (a bool mask) in a window where they ask for nothing: events measured against
        another `current` go, expired ones go, the fired rules' events come (measured
        against `currents` and `usages`, per resource, NaN: none)."""
        if not rows.any():
            return
        for k, s in enumerate(self.shapes):
            cur = currents.get(s.resource)
            col = cur if cur is not None else np.full(len(self.names), math.nan)
            ts, ec = self.ts[k], self.current[k]
            stale = ~np.isnan(ts) & ~np.isnan(ec) & (ec != col[:, None])
            old = ts < now - timeout_s
            gone = (stale | old) & rows[:, None]
            ts[gone] = math.nan
            ec[gone] = math.nan
            self.usage[k][gone] = math.nan
        by_rule: dict[int, list[int]] = {}
        k_of = {s.rule.name: k for k, s in enumerate(self.shapes)}  # by name: equal rules parsed again are other objects
        for i, rules in fired.items():
            if not rows[i]:
                continue
            for r in rules:
                by_rule.setdefault(k_of[r.name], []).append(i)
        for k, idx in by_rule.items():
            res = self.shapes[k].resource
            ix = np.array(idx)
            cur = currents.get(res)
            use = usages.get(res)
            self._add(k, ix, now, cur[ix] if cur is not None else np.full(ix.size, math.nan),
                      use[ix] if use is not None else np.full(ix.size, math.nan))

    def remove_oldest(self, name: str, counts: np.ndarray) -> None:
        """Remove the `counts[i]` oldest events named `name` of each container `i`
        (`remove_events`: same time, in rule order)."""
        ks = [k for k, s in enumerate(self.shapes) if s.name == name]
        for i in np.flatnonzero(counts > 0).tolist():
            slots = sorted((self.ts[k, i, s], k, s) for k in ks for s in np.flatnonzero(~np.isnan(self.ts[k, i])).tolist())
            for _, k, s in slots[: int(counts[i])]:
                self.ts[k, i, s] = self.current[k, i, s] = self.usage[k, i, s] = math.nan

    def counts(self, now: float, timeout_s: float, currents: Mapping[str, np.ndarray]) -> dict[str, Counts]:
        """Per resource: (has events, up, down, the highest usage of the down events) of
        each container, over the events that would still be pending this window (same
        `current`, not expired). Every rule's arrays at once."""
        out: dict[str, Counts] = {}
        n = len(self.names)
        if not self.shapes:
            return out
        nan = np.full(n, math.nan)
        cols = np.stack([currents.get(s.resource, nan) for s in self.shapes])  # (rules, containers)
        ts, ec = self.ts, self.current
        live = ~np.isnan(ts) & (ts >= now - timeout_s) & (np.isnan(ec) | (ec == cols[:, :, None]))
        c = live.sum(axis=2).astype(float)  # (rules, containers)
        with np.errstate(invalid="ignore"):
            peaks = np.max(np.where(live & ~np.isnan(self.usage), self.usage, -np.inf), axis=2)
        for res in dict.fromkeys(s.resource for s in self.shapes):
            ks = [k for k, s in enumerate(self.shapes) if s.resource == res]
            cr = c[ks]
            up = np.array([self.shapes[k].up for k in ks])
            down = np.array([self.shapes[k].down for k in ks])
            downs = [k for k in ks if self.shapes[k].down]
            peak = peaks[downs].max(axis=0) if downs else np.full(n, -np.inf)
            peak = np.where(np.isinf(peak), math.nan, peak)
            out[res] = Counts((cr > 0).any(axis=0), up @ cr, down @ cr, peak)
        return out


def may_request(gate: RequestGate, counts: Mapping[str, Counts],
                boundary_types: Mapping[str, np.ndarray], cpu_idle: np.ndarray, n: int,
                fit: Optional[FitInputs] = None) -> tuple[np.ndarray, dict[str, np.ndarray]]:
    """Which containers must be evaluated one at a time, and the events the others' rules
    remove (event name → how many, oldest first, per container).

    A request rule acts on a container when it holds on the counts and serves its limits
    (`serves`); one that is not compiled is taken to hold wherever its resource has events.
    A CPU fit-up acting in a window without throttling (`cpu_idle`: measured, nothing held
    back, cores not full) asks for nothing and only removes its events: done here, unless
    another rule acts on the same container. So does a CPU fit-down with a deadband whose
    cut would be under it (`fit`: an adaptive limit, a window without throttling and under
    `lower`). Any other acting rule: one at a time.
    """
    alone = np.zeros(n, bool)
    removes: dict[str, np.ndarray] = {}
    for g in gate.rules:
        c = counts.get(g.resource)
        if c is None:
            continue
        has, up, down, peak = c
        kinds = boundary_types.get(g.resource)
        if g.boundary_types is None:
            serve = np.ones(n, bool)
        elif kinds is None:
            serve = np.zeros(n, bool)
        else:
            serve = np.isin(kinds, list(g.boundary_types))
        if g.program is None or not g.program.variables <= {"events.scale.up", "events.scale.down"}:
            alone |= has & serve
            continue
        with np.errstate(invalid="ignore"):
            acts = has & serve & np.broadcast_to(g.program.holds({"events.scale.up": up, "events.scale.down": down}),
                                                 (n,))
        if g.deadband_down and fit is not None and kinds is not None:
            banded = acts & cpu_idle & _under_deadband(g, fit, kinds, peak)
            alone |= acts & ~banded
            if banded.any() and g.remove:
                removes[g.deadband_down] = removes.get(g.deadband_down, np.zeros(n, int)) + np.where(banded, g.remove, 0)
            continue
        if not g.idle_up:
            alone |= acts
            continue
        alone |= acts & ~cpu_idle
        idle = acts & cpu_idle
        if idle.any() and g.remove:
            removes[g.idle_up] = removes.get(g.idle_up, np.zeros(n, int)) + np.where(idle, g.remove, 0)
    return alone, removes


def _under_deadband(g: GateRule, fit: FitInputs, kinds: np.ndarray, peak: np.ndarray) -> np.ndarray:
    """Where `g`'s fit-down, as `fit_to_demand_policy` sizes it for an adaptive limit in a
    window without throttling, cuts less than its deadband (or nothing): it asks for nothing.
    The target is `fit_to_demand_target`'s adaptive branch over arrays; `adjust_amount` only
    shortens a cut, so a cut under the deadband here is one there too. Where this cannot be
    told here (not adaptive, no usage, not under `lower`): False, one at a time."""
    res = g.resource
    use, cur = fit.usages[res], fit.currents[res]
    lower, b = fit.lowers[res], fit.boundaries[res] / 100
    floor = ADAPTIVE_MARGIN_FLOOR.get(res, 1)
    with np.errstate(invalid="ignore", divide="ignore"):
        u = np.fmax(use, peak)  # the highest of this window and the underuse windows consumed
        target = np.ceil(np.maximum(u / (1 - 1.5 * b), u + 1.5 * floor))
        known = (kinds == "adaptive") & (use < lower) & (1.5 * b < 0.9) & np.isfinite(target) & (cur > 0)
        under: np.ndarray = known & (cur - target < g.deadband / 100 * cur)
        return under


def event_entries(name: str, rules: Sequence[Rule], shapes: Sequence[EventShape], now: float,
                  currents: Mapping[str, np.ndarray], usages: Mapping[str, np.ndarray], i: int) -> list[JsonObject]:
    """The events container `i` (`name`) fired this window, as the StateDB's event log
    holds them (what `Event.model_dump` of `events_of`'s events gives)."""
    by_rule = {s.rule.name: s for s in shapes}
    out: list[JsonObject] = []
    for r in rules:
        s = by_rule[r.name]
        cur, use = currents.get(s.resource), usages.get(s.resource)
        c = float(cur[i]) if cur is not None else math.nan
        u = float(use[i]) if use is not None else math.nan
        out.append({"type": "event", "name": s.name, "resource": s.resource, "structure": name, "action": r.action,
                    "timestamp": now, "current": None if math.isnan(c) else c, "usage": None if math.isnan(u) else u})
    return out
