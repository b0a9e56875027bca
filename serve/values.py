"""Pure edits the Orchestrator makes to documents: value coercion and rule rewrites.

Reference §6: `PUT /service/<name>/<KEY>` coerces the strings the original's shell
scripts send (`{"value": "true"}`, `{"value": "10"}`), and
`PUT /rule/<name>/events_required` rewrites one constant of a request rule. Both
are plain functions on plain data, so they are tested without Ray or HTTP.
"""
from __future__ import annotations

import copy
import math
from typing import Any

from sc_actors.model import Document
from sc_actors.settings import STR_KEYS

_PASS_THROUGH = ("container", "application")
"""Strings the original passes unchanged for any key (`set_to_container.sh`)."""


def coerce_service_value(key: str, value: Any) -> Any:
    """The value stored for `config[key]`, from what a client sent (reference §6).

    As the original: a list is kept; for keys in STR_KEYS a string is kept;
    `"true"`/`"false"` become booleans; a numeric string becomes a number. Unlike
    the original, `"1.5"` becomes 1.5 (our windows are sub-second; the original
    accepted floats only in (0, 1) and answered 400 to "1.5"), and JSON numbers and
    booleans are accepted as they are. Anything else raises ValueError.
    """
    if isinstance(value, list):
        return value
    if isinstance(value, bool):
        return value
    if isinstance(value, (int, float)):
        if isinstance(value, float) and not math.isfinite(value):
            raise ValueError(f"{key}: {value!r} is not a finite number")
        return value
    if not isinstance(value, str):
        raise ValueError(f"{key}: value must be a string, a number, a boolean or a list")
    if key in STR_KEYS:
        return value
    if value in ("true", "false"):
        return value == "true"
    if value in _PASS_THROUGH:
        return value
    try:
        return int(value)
    except ValueError:
        pass
    try:
        f = float(value)
    except ValueError:
        raise ValueError(f"bad content: {key} = {value!r} is neither a boolean nor a number") from None
    if not math.isfinite(f):
        raise ValueError(f"bad content: {key} = {value!r} is not a finite number")
    return int(f) if f.is_integer() else f


def _event_clauses(rule: object) -> list[tuple[int, str, str]]:
    """(index, operator, event type) of each `and` clause on `events.scale.<type>` of a
    JSON-logic rule (free-form JSON: anything else has none)."""
    out: list[tuple[int, str, str]] = []
    clauses = rule.get("and") if isinstance(rule, dict) else None
    if not isinstance(clauses, list):
        return out
    for i, clause in enumerate(clauses):
        if not isinstance(clause, dict) or len(clause) != 1:
            continue
        (op, args), = clause.items()
        if (
            isinstance(args, list)
            and len(args) == 2
            and isinstance(args[0], dict)
            and isinstance(args[0].get("var"), str)
            and args[0]["var"].startswith("events.scale.")
        ):
            out.append((i, op, args[0]["var"].rsplit(".", 1)[1]))
    return out


def trigger_direction(rule_doc: Document) -> str | None:
    """The event type whose count fires a request rule: the one compared with `>=`/`>`.

    `CpuRescaleUp` (up >= 2, down <= 2) → "up"; `CpuRescaleDown` (up <= 0, down >= 6)
    → "down"; `EnergyRescaleUp` (up <= 1, down >= 3) → "down" (the energy polarity
    is inverted, reference §1.4). If the rule does not tell, its `rescale_type`.
    """
    lower_bounded = {t for _, op, t in _event_clauses(rule_doc.get("rule", {})) if op in (">=", ">")}
    if len(lower_bounded) == 1:
        return lower_bounded.pop()
    return rule_doc.get("rescale_type")


def set_events_required(rule_doc: Document, event_type: str, value: int) -> dict[str, Any]:
    """The changes (a StateDB patch: field → JSON value) that make `rule_doc` require
    `value` events of `event_type`.

    Rewrites the constant of the first `and` clause on `events.scale.<event_type>`
    (as the original). `events_to_remove` follows only when `event_type` is the
    rule's trigger direction: the original set it from whichever type was edited,
    so `MemRescaleUp up 2` then `down 6` left MemRescaleUp removing 6 events while
    requiring 2 (reference §11.4). Raises ValueError if the rule has no such clause.
    """
    if rule_doc.get("generates") != "requests" or rule_doc.get("rescale_type") not in ("up", "down"):
        raise ValueError(f"rule {rule_doc.get('name')!r} is not a request rule")
    clauses = [c for c in _event_clauses(rule_doc.get("rule", {})) if c[2] == event_type]
    if not clauses:
        raise ValueError(f"rule {rule_doc.get('name')!r} has no condition on events.scale.{event_type}")
    index, op, _ = clauses[0]
    new_rule = copy.deepcopy(rule_doc["rule"])
    new_rule["and"][index][op][1] = value
    changes = {"rule": new_rule}
    if event_type == trigger_direction(rule_doc):
        changes["events_to_remove"] = value
    return changes


def check_rule_amount(rule_doc: Document) -> None:
    """Refuse an `amount` whose sign contradicts the rule's `rescale_type`.

    A scale-up rule asks for more (`amount` > 0), a scale-down rule for less
    (`amount` < 0, or none when its policy computes the amount itself, as
    `fit_to_usage` does). Decided by `rescale_type` alone, so a rule or policy
    added later is checked the same way. The original stored any integer: −5 on
    `CpuRescaleUp` made a scale-up rule scale down. Raises ValueError.
    """
    if rule_doc.get("generates") != "requests":
        return
    amount, rtype, name = rule_doc.get("amount"), rule_doc.get("rescale_type"), rule_doc.get("name")
    if amount is None:
        return
    if rtype == "up" and not amount > 0:
        raise ValueError(f"rule {name!r} scales up: its amount must be > 0, got {amount!r}")
    if rtype == "down" and not amount < 0:
        raise ValueError(f"rule {name!r} scales down: its amount must be < 0, got {amount!r}")


def clamp_host_to_node(doc: Document, cores: int, mem_mib: float) -> list[str]:
    """Cut a host subscription's cpu and mem to what its Ray node has; the warnings.

    `doc` is changed in place: `max` becomes at most cores × 100 shares and the node's
    MiB, `free` at most the new `max`. A host stored with more than its node has
    would get phantom cores that the Scaler places containers on and the node then
    refuses to write (the original stored whatever the script said).
    """
    warnings = []
    for res, have, unit, what in (("cpu", cores * 100, "shares", f"{cores} cores"),
                                  ("mem", mem_mib, "MiB", f"{mem_mib:g} MiB")):
        r = doc.get("resources", {}).get(res)
        if not isinstance(r, dict) or r.get("max") is None or r["max"] <= have:
            continue
        warnings.append(f"{res} max {r['max']:g} {unit} cut to {have:g}: the Ray node of host "
                        f"{doc.get('name')!r} has {what}")
        r["max"] = have
        r["free"] = min(r.get("free", have), have)
    return warnings
