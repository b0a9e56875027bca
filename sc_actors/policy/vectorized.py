"""Event rules over a node's whole window at once (reference §3.5), for thousands of containers.

The Guardian evaluates every event rule on every container of a window. Evaluated
one container at a time, the JSON-logic engine is most of a window's cost at
10 000 containers. Here a rule made only of numbers, `var`s, comparisons, `and`,
`or`, `!`, `+`, `-` and `*` is compiled once into numpy operations on columns (one
value per container), so a rule costs a few array operations per window.

The result is exactly `fire_event_rules`'s: a container whose data lacks a variable
the rule reads, or holds a non-number there, is evaluated by the JSON-logic engine,
as is every container for a rule outside that subset (the property tests compare
both on random data and rules).
"""
from __future__ import annotations

import math
import operator
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Optional

import numpy as np

from ..model import JsonObject, JsonValue, Rule
from .events import event_data_of_parts, has_usage
from .jsonlogic import evaluate

Columns = Mapping[str, np.ndarray]
Parts = Mapping[str, tuple[JsonObject, JsonObject]]
"""Per resource: (structure part, limits part) of one container, as `Prepared.parts`."""

_COMPARE: dict[str, Callable[[Any, Any], Any]] = {
    ">": operator.gt, ">=": operator.ge, "<": operator.lt, "<=": operator.le,
    "==": operator.eq, "===": operator.eq, "!=": operator.ne, "!==": operator.ne,
}
_ARITH: dict[str, Callable[[Any, Any], Any]] = {"+": operator.add, "-": operator.sub, "*": operator.mul}


@dataclass(frozen=True)
class Compiled:
    """A rule as numpy operations: `holds(columns)` is one bool per container."""

    holds: Callable[[Columns], np.ndarray]
    variables: frozenset[str]


def compile_rule(rule: JsonValue) -> Optional[Compiled]:
    """The numpy form of a boolean JSON-logic rule, or None outside the supported subset."""
    variables: set[str] = set()
    node = _compile(rule, variables)
    if node is None or node[0] != "bool":
        return None
    return Compiled(node[1], frozenset(variables))


Node = tuple[str, Callable[[Columns], Any]]
"""(kind, fn): kind "num" or "bool", fn a column (or a number) of the containers."""


def _compile(node: JsonValue, variables: set[str]) -> Optional[Node]:
    """(kind, fn): kind "num" or "bool"; None when the node is not in the subset."""
    if isinstance(node, bool) or node is None:
        return None  # JSON-logic truthiness of literals is not worth a special case
    if isinstance(node, (int, float)):
        if not math.isfinite(node):
            return None
        value = float(node)
        return "num", lambda cols: value
    if not isinstance(node, dict) or len(node) != 1:
        return None
    (op, args), = node.items()
    if op == "var":
        path = args[0] if isinstance(args, list) and len(args) == 1 else args
        if not isinstance(path, str) or not path:
            return None
        variables.add(path)
        return "num", lambda cols: cols[path]
    if not isinstance(args, list):
        args = [args]
    kids = [k for a in args if (k := _compile(a, variables)) is not None]
    if len(kids) != len(args):
        return None
    fns = [k[1] for k in kids]
    kinds = {k[0] for k in kids}
    if op in _COMPARE and len(fns) == 2 and kinds == {"num"}:
        cmp, (a, b) = _COMPARE[op], fns
        return "bool", lambda cols: np.asarray(cmp(a(cols), b(cols)))
    if op in _ARITH and len(fns) == 2 and kinds == {"num"}:
        arith, (a, b) = _ARITH[op], fns
        return "num", lambda cols: arith(a(cols), b(cols))
    if op in ("and", "or") and fns and kinds == {"bool"}:
        combine = np.logical_and if op == "and" else np.logical_or

        def both(cols: Columns) -> np.ndarray:
            out: np.ndarray = fns[0](cols)
            for f in fns[1:]:
                out = combine(out, f(cols))
            return out

        return "bool", both
    if op == "!" and len(fns) == 1 and kinds == {"bool"}:
        only = fns[0]
        return "bool", lambda cols: np.logical_not(only(cols))
    return None


def _value(parts: Parts, usages: Mapping[str, float], path: str) -> float:
    """The number at `path` of one container's event data, NaN when absent or not a number."""
    keys = path.split(".")
    if len(keys) != 4 or keys[0] != keys[2] or keys[1] not in ("structure", "limits"):
        return math.nan
    res, kind, _, field = keys
    if res not in parts or not has_usage(usages, res):
        return math.nan
    value: JsonValue
    if kind == "structure" and field == "usage":
        value = usages[res]
    else:
        value = parts[res][0 if kind == "structure" else 1].get(field)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def _column(parts: Sequence[Parts], usages: Sequence[Mapping[str, float]], path: str) -> np.ndarray:
    """`_value` of every container, built in one pass where the values are plain numbers."""
    keys = path.split(".")
    if len(keys) == 4 and keys[0] == keys[2] and keys[1] in ("structure", "limits"):
        res, kind, _, field = keys
        nan = math.nan
        values: list[JsonValue]
        if kind == "structure" and field == "usage":
            values = [u.get(res, nan) if res in p else nan for p, u in zip(parts, usages)]
        else:
            k = 0 if kind == "structure" else 1
            values = [p[res][k].get(field, nan) if res in p and has_usage(u, res) else nan
                      for p, u in zip(parts, usages)]
        if all(type(v) is float or type(v) is int for v in values):
            column = np.array(values, float)
            if kind == "structure" and field == "usage":
                column[column == -1] = nan  # the original's "no data" (has_usage)
            return column
    return np.fromiter((_value(p, u, path) for p, u in zip(parts, usages)), float, len(parts))


def fired_rules(
    rules: Sequence[Rule],
    compiled: Sequence[Optional[Compiled]],
    parts: Sequence[Parts],
    usages: Sequence[Mapping[str, float]],
) -> list[Optional[list[Rule]]]:
    """For each container, the event rules that hold on its window, in rule order.

    `rules` are active event rules and `compiled[k]` is `compile_rule(rules[k].rule)`;
    `parts[i]` and `usages[i]` are container i's prepared parts and usage (the usage
    already filtered to its guarded resources). Same result as `fire_event_rules`
    on each container's `event_data_of_parts`; None for a container on whose data the
    JSON-logic engine fails (its caller evaluates it alone, and finds the error).
    """
    n = len(parts)
    out: list[Optional[list[Rule]]] = [[] for _ in range(n)]
    if n == 0 or not rules:
        return out
    has = {res: np.fromiter((res in p and has_usage(u, res) for p, u in zip(parts, usages)), bool, n)
           for res in {r.resource for r in rules}}
    columns: dict[str, np.ndarray] = {}
    scalar_data: dict[int, JsonObject] = {}

    def data_of(i: int) -> JsonObject:
        if i not in scalar_data:
            scalar_data[i] = event_data_of_parts(parts[i], usages[i])
        return scalar_data[i]

    for rule, program in zip(rules, compiled):
        present = has[rule.resource]
        if not present.any():
            continue  # e.g. a disk rule where no container guards its disk
        if program is None:
            exact = np.zeros(n, bool)
            holds = np.zeros(n, bool)
        else:
            for path in program.variables:
                if path not in columns:
                    columns[path] = _column(parts, usages, path)
            exact = np.ones(n, bool)
            for path in program.variables:
                exact &= ~np.isnan(columns[path])
            with np.errstate(invalid="ignore"):
                holds = np.broadcast_to(program.holds(columns), (n,))
        for i in np.flatnonzero(present & exact & holds):
            if (found := out[i]) is not None:
                found.append(rule)
        for i in np.flatnonzero(present & ~exact):
            if (found := out[i]) is None:
                continue
            try:
                if evaluate(rule.rule, data_of(int(i))):
                    found.append(rule)
            except ValueError:
                out[i] = None
    return out
