"""One host's Guardian window over columns: which containers have anything to decide.

Most containers of a window have nothing to decide: their usage stays between
their boundaries, so no event rule fires, and they have no pending events; their
boundaries have not moved since the Guardian last reported them. For them
`evaluate_prepared` returns only the boundaries already stored. `HostColumns`
holds, for the containers of one host in the window's order, the values the event
rules read that do not change from window to window (the limits' and structures'
fields of each prepared container), so one window is a few array operations: the
rules' columns (those values, and the window's usage arrays) → the rules that fire
→ the containers with something to decide (with the pending events as arrays too,
`policy.event_columns`), which are the only ones evaluated one at a time. The result is exactly the per-container evaluation's (the property
test compares both on random windows).

Pure: no Ray, no clock.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional

import numpy as np

from ..columns import HostWindow
from ..model import JsonObject, Rule
from .events import event_data_of_parts
from .jsonlogic import evaluate
from .requests import CPUSET_FULL
from .serverless import Prepared, RuleSet
from .vectorized import Compiled

WINDOW_RESOURCES = ("cpu", "mem")
"""The resources a `HostWindow` measures; a rule on another resource never fires from a window."""
SERIES_FIELDS = ("current", "max", "min", "upper", "lower", "boundary")
"""The limit values a window's time series keep, per resource (see `series_columns`)."""


def _number(value: object) -> float:
    """A JSON value as a column's float: NaN when it is no number (the rule's slow path)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


@dataclass
class HostColumns:
    """The prepared containers of one host's window, and their rules' fixed values as columns.

    `prepared[i]` is the container `names[i]` as the Guardian's mirror holds it (None:
    not evaluated, e.g. its documents do not validate). `fixed[path]` is the value at
    `path` ("cpu.limits.cpu.upper") of each container's event data, NaN where it has
    none; `guards[res]` whether each container is evaluated on `res`.
    """

    names: tuple[str, ...]
    prepared: list[Optional[Prepared]]
    paths: frozenset[str]
    guards: dict[str, np.ndarray] = field(default_factory=dict)
    fixed: dict[str, np.ndarray] = field(default_factory=dict)
    series: dict[str, np.ndarray] = field(default_factory=dict)
    """"<res>.<field>" → the limit values the window's time series keep (NaN: none)."""
    boundary_types: dict[str, np.ndarray] = field(default_factory=dict)
    """Per resource, each container's limits' `boundary_type` (None: no limits), an object array."""
    _parsed: Optional[list[tuple[np.ndarray, str, int, str]]] = field(default=None, repr=False, compare=False)

    @classmethod
    def build(cls, names: tuple[str, ...], prepared: Sequence[Optional[Prepared]], rules: RuleSet) -> "HostColumns":
        paths = frozenset(p for c in rules.compiled if c is not None for p in c.variables)
        hc = cls(names, list(prepared), paths)
        n = len(names)
        hc.guards = {res: np.zeros(n, bool) for res in WINDOW_RESOURCES}
        hc.fixed = {p: np.full(n, math.nan) for p in paths if not _is_usage(p)}
        hc.series = {f"{res}.{f}": np.full(n, math.nan) for res in WINDOW_RESOURCES for f in SERIES_FIELDS}
        hc.boundary_types = {res: np.full(n, None, dtype=object) for res in WINDOW_RESOURCES}
        hc.update_many(list(enumerate(prepared)))
        return hc

    @classmethod
    def concat(cls, parts: Sequence["HostColumns"]) -> "HostColumns":
        """Several hosts' columns as one, in order (built with the same rules): the window of a
        node's hosts is then evaluated in one pass of array operations, not one per host."""
        first = parts[0]
        if any(p.paths != first.paths for p in parts):
            raise ValueError("columns built with other rules cannot be joined")

        def joined(get: Callable[["HostColumns"], dict[str, np.ndarray]]) -> dict[str, np.ndarray]:
            return {k: np.concatenate([get(p)[k] for p in parts]) for k in get(first)}

        return cls(tuple(n for p in parts for n in p.names), [x for p in parts for x in p.prepared], first.paths,
                   joined(lambda p: p.guards), joined(lambda p: p.fixed), joined(lambda p: p.series),
                   joined(lambda p: p.boundary_types))

    def update(self, i: int, prepared: Optional[Prepared]) -> None:
        """Container `i`'s documents changed: its values, in place."""
        self.update_many([(i, prepared)])

    def update_many(self, changed: Sequence[tuple[int, Optional[Prepared]]]) -> None:
        """These containers' documents changed: their values, in place, one assignment per column."""
        if not changed:
            return
        idx = np.fromiter((i for i, _ in changed), dtype=np.intp, count=len(changed))
        rows = [self._row(p) for _, p in changed]
        for i, p in changed:
            self.prepared[i] = p
        for res in WINDOW_RESOURCES:
            self.guards[res][idx] = [r[0].get(res, False) for r in rows]
        for key, col in self.series.items():
            col[idx] = [r[1].get(key, math.nan) for r in rows]
        for res, kinds in self.boundary_types.items():
            kinds[idx] = [r[2].get(res) for r in rows]
        for k, (col, *_) in enumerate(self._fixed_paths()):
            col[idx] = [r[3][k] for r in rows]

    def _row(self, p: Optional[Prepared]) -> tuple[dict[str, bool], dict[str, float], dict[str, object], list[float]]:
        """One container's values: guarded resources, series, boundary types, fixed paths (in
        `_fixed_paths` order); what it lacks is not guarded, NaN or None."""
        paths = self._fixed_paths()
        guards: dict[str, bool] = {}
        series: dict[str, float] = {}
        kinds: dict[str, object] = {}
        fixed = [math.nan] * len(paths)
        if p is None:
            return guards, series, kinds, fixed
        for res in WINDOW_RESOURCES:
            r = p.structure.resources.get(res)  # type: ignore[call-overload]
            if r is not None:
                series[f"{res}.current"] = _number(r.current)
                series[f"{res}.max"] = _number(r.max)
                series[f"{res}.min"] = _number(r.min)
            lim = p.limits.resources.get(res) if p.limits is not None else None  # type: ignore[call-overload]
            if lim is not None:
                kinds[res] = lim.boundary_type
                series[f"{res}.upper"] = _number(lim.upper)
                series[f"{res}.lower"] = _number(lim.lower)
                series[f"{res}.boundary"] = _number(lim.boundary)
        if p.skipped:
            return guards, series, kinds, fixed
        for res in WINDOW_RESOURCES:
            guards[res] = res in p.parts
        for k, (_, res, part, name) in enumerate(paths):
            if res in p.parts:  # elsewhere no usage: no data
                fixed[k] = _number(p.parts[res][part].get(name))
        return guards, series, kinds, fixed

    def _fixed_paths(self) -> list[tuple[np.ndarray, str, int, str]]:
        """Each fixed column with where its value is in a container's parts: (column, resource,
        0 for the structure's fields or 1 for the limits', field); parsed once per columns."""
        parsed = self._parsed
        if parsed is None:
            parsed = self._parsed = []
            for path, col in self.fixed.items():
                keys = path.split(".")
                if len(keys) != 4 or keys[0] != keys[2] or keys[1] not in ("structure", "limits"):
                    continue  # no such path in any event data: NaN, the rule's slow path decides
                res, kind, _, name = keys
                if res in WINDOW_RESOURCES:
                    parsed.append((col, res, 0 if kind == "structure" else 1, name))
        return parsed

    def columns(self, window: HostWindow) -> dict[str, np.ndarray]:
        """Every column the compiled rules read, for this window."""
        cols = dict(self.fixed)
        for path in self.paths:
            if _is_usage(path):
                res = path.split(".")[0]
                cols[path] = (np.where(self.guards[res], window.column(res), math.nan)
                              if res in self.guards else np.full(len(self.names), math.nan))
        return cols


def _is_usage(path: str) -> bool:
    keys = path.split(".")
    return len(keys) == 4 and keys[0] == keys[2] and keys[1] == "structure" and keys[3] == "usage"


def usage_of(window: HostWindow, i: int) -> dict[str, float]:
    """Container `i`'s usage as `evaluate_prepared` takes it."""
    return {"cpu": float(window.cpu[i]), "mem": float(window.mem[i]),
            "cpu_throttled": float(window.cpu_throttled[i]), "cpu_held_back": float(window.cpu_held_back[i])}


def fire_host(hc: HostColumns, rules: RuleSet, window: HostWindow) -> dict[int, Optional[list[Rule]]]:
    """The event rules that hold, for each container of the window where any does.

    Sparse: a container absent from the result fires no rule. None for a container
    on whose data the JSON-logic engine fails (evaluated alone, it raises). The same
    rules, in the same order, as `fire_window` finds.
    """
    out: dict[int, Optional[list[Rule]]] = {}
    if not rules.event_rules or not hc.names:
        return out
    cols = hc.columns(window)
    n = len(hc.names)

    def data_of(i: int) -> JsonObject:
        p = hc.prepared[i]
        assert p is not None
        usage = {"cpu": float(window.cpu[i]), "mem": float(window.mem[i])}
        return event_data_of_parts(p.parts, {r: u for r, u in usage.items() if r in p.parts})

    compiled: Sequence[Optional[Compiled]] = rules.compiled
    for rule, program in zip(rules.event_rules, compiled):
        present = hc.guards.get(rule.resource)
        if present is None or not present.any():
            continue  # no container of this window measures that resource
        if program is None:
            exact = np.zeros(n, bool)
            holds = np.zeros(n, bool)
        else:
            exact = np.ones(n, bool)
            for path in program.variables:
                exact &= ~np.isnan(cols[path])
            with np.errstate(invalid="ignore"):
                holds = np.broadcast_to(program.holds(cols), (n,))
        for i in np.flatnonzero(present & exact & holds).tolist():
            found = out.setdefault(i, [])
            if found is not None:
                found.append(rule)
        for i in np.flatnonzero(present & ~exact).tolist():
            if i in out and out[i] is None:
                continue
            try:
                if evaluate(rule.rule, data_of(i)):
                    found = out.setdefault(i, [])
                    assert found is not None
                    found.append(rule)
            except ValueError:
                out[i] = None
    return out


def host_inputs(hc: HostColumns, window: HostWindow
                ) -> tuple[dict[str, np.ndarray], dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Per resource, each container's `current` and usage as its events are measured
    against them (NaN: not guarded, or no usage); which containers a window can
    evaluate at all (prepared, not skipped, with some usage: else `evaluate_prepared`
    leaves their events as they are); and those whose CPU the window shows not
    throttled (measured, nothing held back, its cores not full: `cpuset_full`), where
    a fit-up asks for nothing."""
    n = len(hc.names)
    currents, usages = {}, {}
    usable = np.zeros(n, bool)
    for res in WINDOW_RESOURCES:
        guarded = hc.guards[res]
        currents[res] = np.where(guarded, hc.series[f"{res}.current"], math.nan)
        col = window.column(res)
        with np.errstate(invalid="ignore"):
            ok = guarded & (col >= 0)
        usages[res] = np.where(ok, col, math.nan)
        usable |= ok
    cur, use = currents["cpu"], usages["cpu"]
    with np.errstate(invalid="ignore"):
        full = (cur > 0) & (use >= CPUSET_FULL * np.ceil(cur / 100) * 100)
        idle = ~((window.cpu_throttled > 0) | (window.cpu_held_back > 0)) & ~full & ~np.isnan(use)
    return currents, usages, usable, idle
