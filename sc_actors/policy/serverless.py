"""One Guardian window for one structure, as one pure call (reference §3.2 step 1–7).

`evaluate_window` takes the structure, its limits, the rules, the window's usage and
the structure's pending events, and returns everything the Guardian must do: the new
upper/lower, the events of this window, the events still pending, and the requests.
No clock, no I/O: `now` comes in, the caller keeps the events.

The work that depends only on the documents is split off so a caller evaluating
thousands of structures per window does it once per document change, not per
window: `prepare` parses nothing but computes the limit chain and the JSON-logic
data parts of one structure, `RuleSet.of` groups the rules. `evaluate_prepared`
is the per-window rest; `evaluate_window` is both in one call.
"""
from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Optional, Union

from ..model import Application, Container, Event, JsonObject, Limits, Request, ResourceName, Rule, User, is_resource
from ..settings import GuardianSettings
from .events import (
    action_scale,
    event_data_of_parts,
    events_of,
    fire_event_rules,
    reduce_events,
    remove_events,
    split_events,
)
from .jsonlogic import evaluate
from .limits import adjust_limits
from .requests import Throttling, match_rules_and_events
from .vectorized import Compiled, compile_rule, fired_rules

Structure = Union[Container, Application, User]
"""What the Guardian evaluates: a container, or an application or user (their sums)."""


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


@dataclass(frozen=True)
class RuleSet:
    """The active rules, split by what they generate, in their original order."""

    event_rules: tuple[Rule, ...]
    request_rules: tuple[Rule, ...]
    compiled: tuple[Optional[Compiled], ...] = ()
    """`compile_rule` of each event rule (None: evaluated by the JSON-logic engine)."""

    @classmethod
    def of(cls, rules: Sequence[Rule]) -> "RuleSet":
        active = [r for r in rules if r.active]
        events = tuple(r for r in active if r.generates == "events")
        return cls(events, tuple(r for r in active if r.generates == "requests"),
                   tuple(compile_rule(r.rule) for r in events))


@dataclass(frozen=True)
class Prepared:
    """One structure with what every window reuses until its documents change."""

    structure: Structure
    limits: Limits | None
    """The limits with upper/lower already following `current` (§3.4)."""
    guarded: tuple[ResourceName, ...]
    bounds: dict[str, tuple[float, float]]
    """(upper, lower) per guarded resource, as the limit chain computes them."""
    parts: dict[str, tuple[JsonObject, JsonObject]]
    """Per guarded resource: the structure's and the limits' JSON-logic data (no usage)."""
    skipped: str = ""


def guarded_resources(structure: Structure, limits: Limits | None, guardable: Sequence[str]) -> list[ResourceName]:
    """Resources the Guardian scales: guardable, guarded, and with limits."""
    if limits is None:
        return []
    out: list[ResourceName] = []
    for res in guardable:
        r = structure.resources.get(res) if is_resource(res) else None
        if r is not None and r.guard and res in limits.resources and r.current is not None and r.max is not None:
            out.append(res)
    return out


def prepare(structure: Structure, limits: Limits | None, guardable: Sequence[str]) -> Prepared:
    """The per-document part of a window: guarded resources, limit chain, rule data parts."""
    if not structure.guard:
        return Prepared(structure, limits, (), {}, {}, skipped="structure not guarded")
    guarded = guarded_resources(structure, limits, guardable)
    if not guarded or limits is None:
        return Prepared(structure, limits, (), {}, {}, skipped="no guarded resource with limits")
    # The limit chain first, so events compare usage with fresh boundaries (§3.4).
    new_resources = dict(limits.resources)
    bounds: dict[str, tuple[float, float]] = {}
    parts: dict[str, tuple[JsonObject, JsonObject]] = {}
    for res in guarded:
        r = structure.resources[res]
        fixed = adjust_limits(r, limits.resources[res], res)
        new_resources[res] = fixed
        assert fixed.upper is not None and fixed.lower is not None  # adjust_limits sets both
        bounds[res] = (fixed.upper, fixed.lower)
        parts[res] = (r.model_dump(exclude_none=True), fixed.model_dump(exclude_none=True))
    new_limits = limits.model_copy(update={"resources": new_resources})
    return Prepared(structure, new_limits, tuple(guarded), bounds, parts)


def evaluate_window(
    structure: Structure,
    limits: Limits | None,
    rules: Sequence[Rule],
    usages: Mapping[str, Optional[float]],
    events: list[Event],
    now: float,
    settings: GuardianSettings,
) -> GuardianStep:
    return evaluate_prepared(prepare(structure, limits, settings.guardable_resources), RuleSet.of(rules),
                             usages, events, now, settings)


def window_usages(prepared: Prepared, usages: Mapping[str, Optional[float]]) -> dict[str, float]:
    """The window's usage of the guarded resources (a negative or missing one is no data)."""
    return {r: u for r, u in usages.items() if r in prepared.parts and u is not None and u >= 0}


def fire_window(
    prepared: Sequence[Prepared], rules: RuleSet, usages: Sequence[Mapping[str, Optional[float]]]
) -> list[Optional[list[Rule]]]:
    """The event rules that hold for each structure of one window, all structures at once.

    Pass each result as `fired` to `evaluate_prepared`: the same events as evaluating
    each structure alone, for a fraction of the cost (`policy.vectorized`). None for a
    structure whose data the JSON-logic engine fails on (evaluated alone, it raises).
    """
    live = [i for i, p in enumerate(prepared) if not p.skipped]
    fired = fired_rules(rules.event_rules, rules.compiled or [compile_rule(r.rule) for r in rules.event_rules],
                        [prepared[i].parts for i in live], [window_usages(prepared[i], usages[i]) for i in live])
    out: list[Optional[list[Rule]]] = [[] for _ in prepared]
    for i, f in zip(live, fired):
        out[i] = f
    return out


def evaluate_prepared(
    prepared: Prepared,
    rules: RuleSet,
    usages: Mapping[str, Optional[float]],
    events: list[Event],
    now: float,
    settings: GuardianSettings,
    fired: Optional[Sequence[Rule]] = None,
) -> GuardianStep:
    """One window of a prepared structure; `fired` are its event rules that hold, when
    `fire_window` found them already (else they are evaluated here)."""
    if prepared.skipped:
        return GuardianStep(pending_events=events, skipped=prepared.skipped)
    structure = prepared.structure
    throttling: dict[str, Throttling] = {
        r: Throttling(float(usages.get(f"{r}_throttled") or 0.0), float(usages.get(f"{r}_held_back") or 0.0),
                      measured=True)
        for r in prepared.guarded if f"{r}_throttled" in usages or f"{r}_held_back" in usages}
    usages = window_usages(prepared, usages)
    if not usages:
        return GuardianStep(pending_events=events, skipped="no usage in this window")

    if fired is None:
        new_events = _fired_events(prepared, rules, usages, now)
    elif fired:
        new_events = events_of(structure.name, fired, now,
                               {r.resource: structure.resources[r.resource].current for r in fired},
                               usages)
    else:
        new_events = []
    if not new_events and not events:
        return GuardianStep(bounds=prepared.bounds)
    currents = {res: structure.resources[res].current for res in prepared.guarded}
    # NOTE: an event compares usage with boundaries derived from `current`; once a
    # scaling changed `current`, the older events of that resource say nothing
    # about the new limits and are dropped (the original kept them until the
    # timeout, so leftover underuse events could block the next scale-up).
    events = [e for e in events if getattr(e, "current", None) in (None, currents.get(e.resource))]
    valid, _expired = split_events(events + new_events, now, settings.event_timeout_s)
    reduced = reduce_events(valid)
    requests: list[Request] = []
    to_remove: dict[str, int] = {}
    if reduced and any(r.resource in reduced and evaluate(r.rule, reduced[r.resource]) for r in rules.request_rules):
        assert prepared.limits is not None  # a structure `prepare` did not skip has limits
        requests, to_remove = match_rules_and_events(structure, rules.request_rules, reduced,
                                                     prepared.limits, usages, now, throttling,
                                                     _down_peaks(valid))
    pending = remove_events(valid, to_remove) if to_remove else valid
    return GuardianStep(
        bounds=prepared.bounds,
        new_events=new_events,
        pending_events=pending,
        requests=requests,
        removed_events=to_remove,
    )


def _down_peaks(events: Sequence[Event]) -> dict[str, float]:
    """Per resource, the highest usage of its pending scale-down events (windows below lower)."""
    peaks: dict[str, float] = {}
    for e in events:
        u = getattr(e, "usage", None)
        if isinstance(u, (int, float)) and action_scale(e.action).get("down"):
            peaks[e.resource] = max(peaks.get(e.resource, u), u)
    return peaks


def _fired_events(prepared: Prepared, rules: RuleSet, usages: dict[str, float], now: float) -> list[Event]:
    """The window's events, as `match_usages_and_limits` finds them, from the prepared parts (§3.5)."""
    data = event_data_of_parts(prepared.parts, usages)
    if not data:
        return []
    currents: dict[str, Optional[float]] = {res: prepared.structure.resources[res].current
                                            for res in prepared.guarded if res in data}
    return fire_event_rules(prepared.structure.name, rules.event_rules, data, now, currents, usages)
