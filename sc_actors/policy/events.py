"""Events: usage compared with the limit chain, one window at a time (reference §1.5, §3.5, §10.2).

Each event rule that holds on a window's data yields one event ("CpuBottleneck",
"CpuUnderuse", ...). Events live for `EVENT_TIMEOUT`; their up/down counts are what
the request rules read. The caller keeps the events between windows.
"""
from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping
from typing import Optional

from typing_extensions import TypedDict

from ..model import Event, JsonObject, JsonValue, Limits, Resource, Rule, is_resource
from .jsonlogic import evaluate

NO_DATA = -1
"""The original's "no metric data" usage value (reference §1.8)."""


def scale_count(scale: Mapping[str, JsonValue], direction: str) -> float:
    """The number under `direction` ("up" or "down") of a `{"up": U, "down": D}`; 0 when
    missing, null or not a number."""
    value = scale.get(direction)
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else 0


def action_scale(action: Mapping[str, JsonValue]) -> Mapping[str, JsonValue]:
    """`action["events"]["scale"]` of an event rule's action ({} where a level is missing)."""
    events = action.get("events")
    scale = events.get("scale") if isinstance(events, dict) else None
    return scale if isinstance(scale, dict) else {}


def event_name(resource: str, scale: JsonValue) -> str:
    """`Resource.title()` + "Bottleneck" or "Underuse" for an events action (§1.5, §10.2 #4).

    `scale` is `{"scale": {"up": U, "down": D}}`. Bottleneck iff U > D, so a tie gives
    Underuse; ValueError without a "scale" key or when neither count is positive.
    """
    counts = scale.get("scale") if isinstance(scale, dict) else None
    if not isinstance(counts, dict):
        raise ValueError(f"an events action needs a 'scale' key, got {scale!r}")
    up, down = scale_count(counts, "up"), scale_count(counts, "down")
    if up <= 0 and down <= 0:
        raise ValueError(f"an events action needs a positive 'up' or 'down' count, got {dict(counts)!r}")
    return resource.title() + ("Bottleneck" if up > down else "Underuse")


def has_usage(usages: Mapping[str, Optional[float]], resource: str) -> bool:
    usage = usages.get(resource)
    return usage is not None and usage != NO_DATA


def event_data(
    usages: Mapping[str, Optional[float]],
    limits: Limits,
    resources: Mapping[str, Resource],
    guarded_resources: Iterable[str],
) -> JsonObject:
    """The JSON-logic data of the event rules of one structure (§1.4, §3.5).

    `{"<res>": {"limits": {"<res>": {...}}, "structure": {"<res>": {... , "usage": u}}}}`
    for every guarded resource that has usage, so a rule of one resource can read
    another's (the energy rule reads `cpu.*`).
    """
    parts = {}
    for res in guarded_resources:
        resource = resources.get(res)
        if resource is None:
            continue
        limit = limits.resources.get(res) if is_resource(res) else None
        parts[res] = (resource.model_dump(exclude_none=True),
                      limit.model_dump(exclude_none=True) if limit is not None else {})
    return event_data_of_parts(parts, usages)


def event_data_of_parts(
    parts: Mapping[str, tuple[JsonObject, JsonObject]], usages: Mapping[str, Optional[float]]
) -> JsonObject:
    """`event_data` from each resource's (structure part, limits part), dumped beforehand."""
    data: JsonObject = {}
    for res, (structure_part, limits_part) in parts.items():
        if has_usage(usages, res):
            data[res] = {"limits": {res: limits_part}, "structure": {res: {**structure_part, "usage": usages[res]}}}
    return data


def fire_event_rules(
    structure_name: str,
    rules: Iterable[Rule],
    data: JsonObject,
    now: float,
    currents: Optional[Mapping[str, Optional[float]]] = None,
    usages: Optional[Mapping[str, Optional[float]]] = None,
) -> list[Event]:
    """One event per active event rule whose resource is in `data` and whose JSON-logic holds.

    With `currents` (`usages`), each event records the `current` it was measured
    against (the window's usage).
    """
    fired = [rule for rule in rules if rule.active and rule.generates == "events" and rule.resource in data
             and evaluate(rule.rule, data)]
    return events_of(structure_name, fired, now, currents, usages)


class _Measured(TypedDict, total=False):
    """Extra fields of an event: the `current` and `usage` it was measured against."""

    current: Optional[float]
    usage: Optional[float]


def events_of(
    structure_name: str, fired: Iterable[Rule], now: float, currents: Optional[Mapping[str, Optional[float]]] = None,
    usages: Optional[Mapping[str, Optional[float]]] = None,
) -> list[Event]:
    """The events of event rules found to hold (see `fire_event_rules`)."""
    events = []
    for rule in fired:
        res = rule.resource
        fields: _Measured = {"current": currents.get(res)} if currents is not None else {}
        if usages is not None:
            fields["usage"] = usages.get(res)
        # Built without validation: every field is typed by construction.
        events.append(Event.model_construct(name=event_name(res, rule.action.get("events", {})), resource=res,
                                            structure=structure_name, action=rule.action, timestamp=now, **fields))
    return events


def match_usages_and_limits(
    structure_name: str,
    rules: Iterable[Rule],
    usages: Mapping[str, Optional[float]],
    limits: Limits,
    resources: Mapping[str, Resource],
    guarded_resources: Iterable[str],
    now: float,
) -> list[Event]:
    """One event per event rule that fires on this window (§3.5, §10.2 #14).

    A rule fires iff its resource is guarded and has usage, the rule is active and
    generates events, the structure's resource has `guard` set, and its JSON-logic holds.
    """
    guarded = [res for res in guarded_resources if (r := resources.get(res)) is not None and r.guard]
    return fire_event_rules(structure_name, rules, event_data(usages, limits, resources, guarded), now)


def split_events(events: Iterable[Event], now: float, timeout_s: float) -> tuple[list[Event], list[Event]]:
    """(valid, expired): an event expires when `timestamp < now − timeout_s` (§3.2 step 7b, §10.2 #5)."""
    valid: list[Event] = []
    expired: list[Event] = []
    for event in events:
        (expired if event.timestamp < now - timeout_s else valid).append(event)
    return valid, expired


def reduce_events(events: Iterable[Event]) -> dict[str, JsonObject]:
    """Sum the up and down counts per resource (§3.2 step 7c, §10.2 #6).

    Returns `{"<res>": {"events": {"scale": {"up": U, "down": D}}}}`, the data of the
    request rules.
    """
    sums: dict[str, tuple[float, float]] = {}
    for event in events:
        scale = action_scale(event.action)
        up, down = sums.get(event.resource, (0, 0))
        sums[event.resource] = (up + scale_count(scale, "up"), down + scale_count(scale, "down"))
    return {res: {"events": {"scale": {"up": up, "down": down}}} for res, (up, down) in sums.items()}


def remove_events(
    events: Iterable[Event], to_remove: Mapping[str, int], structure: Optional[str] = None
) -> list[Event]:
    """The events left after removing the oldest N of each name (§3.2 step 7c).

    `to_remove` maps an event name to N. Only events of `structure` are removed when
    it is given (else the list is taken to be one structure's). NOTE: the original
    removed whichever N its database returned first; we remove the oldest.
    """
    events = list(events)
    doomed: set[int] = set()
    by_name: dict[str, list[int]] = defaultdict(list)
    for i, event in enumerate(events):
        if structure is None or event.structure == structure:
            by_name[event.name].append(i)
    for name, count in to_remove.items():
        oldest = sorted(by_name.get(name, []), key=lambda i: events[i].timestamp)
        doomed.update(oldest[: max(count, 0)])
    return [e for i, e in enumerate(events) if i not in doomed]
