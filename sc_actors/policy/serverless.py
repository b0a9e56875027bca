"""One Guardian window for one structure, as one pure call (reference §3.2 step 1–7).

`evaluate_window` takes the structure, its limits, the rules, the window's usage and
the structure's pending events, and returns everything the Guardian must do: the new
upper/lower, the events of this window, the events still pending, and the requests.
No clock, no I/O: `now` comes in, the caller keeps the events.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..model import Application, Container, Event, Limits, Request, Rule
from ..settings import GuardianSettings
from .events import match_usages_and_limits, reduce_events, remove_events, split_events
from .limits import adjust_limits
from .requests import match_rules_and_events


@dataclass(frozen=True)
class GuardianStep:
    bounds: dict[str, tuple[float, float]] = field(default_factory=dict)
    """New (upper, lower) per guarded resource."""
    new_events: list[Event] = field(default_factory=list)
    pending_events: list[Event] = field(default_factory=list)
    """Events still valid after this window, for the next one."""
    requests: list[Request] = field(default_factory=list)
    removed_events: dict[str, int] = field(default_factory=dict)
    skipped: str = ""
    """Why nothing was evaluated ("" when evaluated)."""


def guarded_resources(structure: Union[Container, Application], limits: Limits | None, settings: GuardianSettings) -> list[str]:
    """Resources the Guardian scales: guardable, guarded, and with limits."""
    if limits is None:
        return []
    out = []
    for res in settings.guardable_resources:
        r = structure.resources.get(res)  # type: ignore[call-overload]
        if r is not None and r.guard and res in limits.resources and r.current is not None and r.max is not None:
            out.append(res)
    return out


def evaluate_window(
    structure: Union[Container, Application],
    limits: Limits | None,
    rules: list[Rule],
    usages: dict[str, float],
    events: list[Event],
    now: float,
    settings: GuardianSettings,
) -> GuardianStep:
    if not structure.guard:
        return GuardianStep(pending_events=events, skipped="structure not guarded")
    guarded = guarded_resources(structure, limits, settings)
    if not guarded or limits is None:
        return GuardianStep(pending_events=events, skipped="no guarded resource with limits")
    usages = {r: u for r, u in usages.items() if r in guarded and u is not None and u >= 0}
    if not usages:
        return GuardianStep(pending_events=events, skipped="no usage in this window")

    # The limit chain first, so events compare usage with fresh boundaries (§3.4).
    # A shallow copy: adjust_limits returns new LimitResource objects, nothing is mutated.
    new_limits = limits.model_copy(update={"resources": dict(limits.resources)})
    bounds = {}
    for res in guarded:
        fixed = adjust_limits(structure.resources[res], new_limits.resources[res])  # type: ignore[index]
        new_limits.resources[res] = fixed  # type: ignore[index]
        bounds[res] = (fixed.upper, fixed.lower)

    new_events = match_usages_and_limits(
        structure.name, rules, usages, new_limits, structure.resources, guarded, now  # type: ignore[arg-type]
    )
    currents = {res: structure.resources[res].current for res in guarded}  # type: ignore[index]
    for e in new_events:
        e.current = currents.get(e.resource)  # type: ignore[attr-defined]
    # NOTE: an event compares usage with boundaries derived from `current`; once a
    # scaling changed `current`, the older events of that resource say nothing
    # about the new limits and are dropped (the original kept them until the
    # timeout, so leftover underuse events could block the next scale-up).
    events = [e for e in events if getattr(e, "current", None) in (None, currents.get(e.resource))]
    valid, _expired = split_events(list(events) + new_events, now, settings.event_timeout_s)
    reduced = reduce_events(valid)
    requests, to_remove = ([], {})
    if reduced:
        requests, to_remove = match_rules_and_events(structure, rules, reduced, new_limits, usages, now)
    pending = remove_events(valid, to_remove) if to_remove else valid
    return GuardianStep(
        bounds=bounds,
        new_events=new_events,
        pending_events=pending,
        requests=requests,
        removed_events=to_remove,
    )
