"""The limit chain of a guarded resource: margin, upper and lower (reference §3.3, §3.4, §10.2).

At steady state `upper = current - m` and `lower = current - 2m`, where the margin `m` is
`boundary` percent of `max` or of `current`. The Guardian recomputes the chain every
window, so the boundaries follow each scaling once the new `current` is known.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Optional

from ..model import LimitResource, Resource

UNSET = "n/a"
"""What the original prints (and `try_get_value` returns) for a missing value."""

NO_DATA = -1
"""The original's "no metric data" usage value."""


ADAPTIVE_MARGIN_FLOOR: dict[str, int] = {"cpu": 2, "mem": 32}
"""Smallest margin of an `adaptive` boundary: cpu shares, mem MiB (1 for other resources).

Below it the band around usage is narrower than a window's noise: at 20 shares a
5 % margin would be 1 share, and every noisy window would cross a boundary."""


def margin(boundary: float, boundary_type: str, max_: Optional[float], current: Optional[float],
           resource: str = "") -> int:
    """`max(int(ref * boundary / 100), floor)`, ref = max or current by `boundary_type` (§3.3).

    The original's types have floor 1: 10 % of max 200 → 20; 10 % of current 150 → 15;
    0 % → 1. `adaptive` is a percentage of current with `ADAPTIVE_MARGIN_FLOOR` of the
    `resource`: 5 % of current 120 cpu → 6; 5 % of current 30 cpu → int(1.5) = 1 → floor 2.
    """
    refs = {"percentage_of_max": ("max", max_), "percentage_of_current": ("current", current),
            "adaptive": ("current", current)}
    if boundary_type not in refs:
        raise ValueError(f"unknown boundary_type {boundary_type!r}")
    label, ref = refs[boundary_type]
    if ref is None:
        raise ValueError(f"a boundary of type {boundary_type} needs the resource's {label}")
    floor = ADAPTIVE_MARGIN_FLOOR.get(resource, 1) if boundary_type == "adaptive" else 1
    return max(int(ref * boundary / 100), floor)


def limit_chain(current: float, margin: int) -> tuple[int, int]:
    """(upper, lower) = (current − m, current − 2m) (§3.4)."""
    upper = int(current - margin)
    return upper, int(upper - margin)


def resource_margin(resource: Resource, limit: LimitResource, name: str = "") -> int:
    """The margin of resource `name` from its limits document (§3.3)."""
    return margin(limit.boundary, limit.boundary_type, resource.max, resource.current, name)


def check_invalid_values(value1: Any, label1: str, value2: Any, label2: str) -> None:
    """ValueError if value1 > value2 (§10.2 #1): `label1` must not exceed `label2`."""
    if value1 > value2:
        raise ValueError(f"value for '{label1}': {value1} is greater than value for '{label2}': {value2}")


def check_unset_values(value: Any, label: str, resource: str) -> None:
    """ValueError if `value` is unset ("n/a" or None) (§10.2 #2)."""
    if value is None or value == UNSET:
        raise ValueError(f"value for '{label}' is not set in resource '{resource}'")


def try_get_value(doc: Any, key: str) -> Any:
    """doc[key], or "n/a" when absent or None (§10.2 #3). Works on dicts and documents."""
    if isinstance(doc, Mapping):
        value = doc.get(key)
    else:
        value = getattr(doc, key, None)
    return UNSET if value is None else value


def check_invalid_state(resource: Resource, limit: LimitResource, name: str = "resource") -> None:
    """ValueError unless the limit chain of one resource is valid (§3.4, §10.2 #13).

    Every value must be set; current ≤ max; upper ≤ current; lower ≤ upper;
    0 ≤ boundary ≤ 100; and current − margin == upper exactly. As in the original,
    the distance between lower and upper and lower ≥ min are not checked here.
    """
    values = {
        "max": resource.max,
        "current": resource.current,
        "upper": limit.upper,
        "lower": limit.lower,
        "min": resource.min,
    }
    for label, value in values.items():
        check_unset_values(value, label, name)
    max_, current, upper, lower = (int(v) for k in ("max", "current", "upper", "lower") if (v := values[k]) is not None)
    check_invalid_values(current, "current", max_, "max")
    check_invalid_values(upper, "upper", current, "current")
    check_invalid_values(lower, "lower", upper, "upper")
    if not 0 <= limit.boundary <= 100:
        raise ValueError(f"boundary {limit.boundary} of {name} is not a percentage in [0, 100]")
    expected = current - resource_margin(resource, limit, name)
    if upper < expected:
        raise ValueError(f"upper {upper} of {name} is too far from current {current} (expected {expected})")
    if upper > expected:
        raise ValueError(f"upper {upper} of {name} is too close to current {current} (expected {expected})")


def adjust_limits(resource: Resource, limit: LimitResource, name: str = "") -> LimitResource:
    """A copy of `limit` whose upper and lower follow `current` (§3.4).

    `current` is clamped to `max` for the computation only (the original's in-memory
    clamp). NOTE: unlike the original, which only repaired a wrong upper, the whole
    chain is recomputed, so a lower that is too close to or too far from upper is fixed too.
    """
    if resource.current is None or resource.max is None:
        raise ValueError("the limit chain needs the resource's current and max")
    current = min(resource.current, resource.max)
    m = margin(limit.boundary, limit.boundary_type, resource.max, current, name)
    upper, lower = limit_chain(current, m)
    return limit.model_copy(update={"upper": upper, "lower": lower})


def _fmt(value: Any) -> str:
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    return str(value)


def _usage_str(usage: Optional[float]) -> str:
    if usage is None or usage == NO_DATA:
        return UNSET
    return f"{usage:.2f}"


def resource_summary(
    resource_name: str,
    resource: Optional[Resource],
    limit: Optional[LimitResource],
    usage: Optional[float] | Mapping[str, float],
) -> str:
    """The Guardian's debug summary "max,current,upper,usage,lower,min" (§3.2, §10.2 #7).

    `usage` is the resource's usage, or the structure's usage dict (looked up by
    `resource_name`); it prints with two decimals, "n/a" when missing or −1.
    """
    if isinstance(usage, Mapping):
        usage = usage.get(resource_name)
    fields = [
        try_get_value(resource, "max"),
        try_get_value(resource, "current"),
        try_get_value(limit, "upper"),
        _usage_str(usage),
        try_get_value(limit, "lower"),
        try_get_value(resource, "min"),
    ]
    return ",".join(_fmt(v) for v in fields)
