"""Applications and users: their sums, and their requests split over containers (reference §4.5, §4.8, §7.3).

The Refeeder's sums: an application's `usage` and `current` are the sums over its
containers, a user's the sums over its applications. An application request (the
ApplicationPlanner) is bounded by the application's own limits, split over its
containers by the §4.8 propagation (slices of 5 shares to the container that needs
them most), and each part is planned against its host with `plan_container_request`:
all parts or none. A user request (the UserPlanner) is first split over the user's
applications, then each application part as above.

NOTE: HEAD's ApplicationPlanner only accepts `max` and so fails on every request the
Guardian sends in application mode (reference §3.8, §11.4); here `current` and `max`
both work. A part that would take a container past its `max` goes to the others (the
2022 Scaler's "within container min/max"), so a split is the §4.8 one whenever every
container has room.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Optional, Union

from typing_extensions import TypedDict, Unpack

from ..model import Application, Container, ContainerLimits, Host, Request, Resource, ScaledField, StructureKind, User
from .planning import Outcome, Plan, plan_container_request
from .propagation import (
    ENERGY_SLICE,
    SLICE,
    assign_splits,
    container_candidates,
    container_priority,
    field_value,
    propagate_application_request,
)
from .requests import request_name

Sums = dict[str, dict[str, Optional[float]]]
"""resource → {"usage": Σ or None, "current": Σ or None}."""


# --------------------------------------------------------------------------- the Refeeder's sums


def _add(total: Optional[float], value: Optional[float]) -> Optional[float]:
    return None if total is None or value is None else total + value


def application_sums(
    containers: Sequence[Container], usages: Mapping[str, Optional[Mapping[str, float]]], resources: Iterable[str]
) -> Sums:
    """Σ usage and Σ current of the containers, per resource (reference §7.3).

    A sum is None when any container lacks the value (no fresh usage window, no such
    resource): a partial sum would look like underuse. No containers: both None.
    """
    out: Sums = {}
    for res in resources:
        usage: Optional[float] = 0.0 if containers else None
        current: Optional[float] = 0.0 if containers else None
        for c in containers:
            r = c.resource(res)
            u = (usages.get(c.name) or {}).get(res)
            usage = _add(usage, u)
            current = _add(current, r.current if r is not None else None)
        out[res] = {"usage": usage, "current": current}
    return out


def user_sums(apps: Sequence[Sums], resources: Iterable[str]) -> Sums:
    """Σ over the user's applications that have containers (their sums are not None)."""
    out: Sums = {}
    for res in resources:
        parts = [a.get(res, {}) for a in apps]
        parts = [p for p in parts if p.get("current") is not None]
        usage: Optional[float] = 0.0 if parts else None
        current: Optional[float] = 0.0 if parts else None
        for p in parts:
            usage = _add(usage, p.get("usage"))
            current = _add(current, p.get("current"))
        out[res] = {"usage": usage, "current": current}
    return out


# --------------------------------------------------------------------------- splitting


def group_lower_limit(resource: Resource, running: bool) -> float:
    """`max(min, 1)` for a running application or user, else 0 (§4.5)."""
    return max(resource.min or 0, 1) if running else 0.0


def bound_group_amount(amount: int, resource: Resource, fieldname: ScaledField, running: bool) -> int:
    """The amount the group's own limits allow (§4.5 ApplicationPlanner, UserPlanner).

    A scale-down stops at the lower limit (`lower − value`; 0 when already below); a
    scale-up of `current` stops at `max`. E.g. current 150, min 20, running: −200 → −130.
    """
    value = field_value(resource, fieldname)
    if value is None:
        return 0
    if amount < 0:
        room = value - group_lower_limit(resource, running)
        return -min(-amount, math.floor(room)) if room > 0 else 0
    if fieldname == "current" and resource.max is not None:
        return max(min(amount, math.floor(resource.max - value)), 0)
    return amount


def _room(c: Container, resource: str, fieldname: ScaledField) -> float:
    r = c.resource(resource)
    if r is None or fieldname != "current" or r.max is None or r.current is None:
        return math.inf
    return max(r.max - r.current, 0.0)


def split_application_amount(amount: int, containers: Sequence[Container], usages: Mapping[str, Optional[float]],
                             resource: str = "cpu", fieldname: ScaledField = "current") -> dict[str, int]:
    """`propagate_application_request`, with what a container cannot take given to the others.

    When every container has room for its part this is exactly the §4.8 split. Else
    each part is cut at the container's room (`max − current`) and the rest is split
    again, by the same priorities, over the containers that still have room.
    """
    split = propagate_application_request(amount, containers, usages, resource, fieldname)
    if amount <= 0:
        return split
    slice_amount = ENERGY_SLICE if resource == "energy" else SLICE
    room = {c.name: _room(c, resource, fieldname) for c in containers}
    total: dict[str, int] = {}
    remaining = amount
    while split:
        capped = {n: int(min(a, room[n] - total.get(n, 0))) for n, a in split.items()}
        for n, a in capped.items():
            total[n] = total.get(n, 0) + a
        remaining -= sum(capped.values())
        if capped == split or remaining <= 0:
            break
        # The containers with room left, each from its value plus what it already took.
        with_room = [c for c in containers if room[c.name] - total.get(c.name, 0) >= 1]
        candidates = [replace(k, base=k.base + total.get(k.name, 0))
                      for k in container_candidates(remaining, with_room, usages, resource, fieldname)]
        split = assign_splits(remaining, candidates, slice_amount)
    return {n: a for n, a in total.items() if a}


@dataclass(frozen=True)
class AppCandidate:
    """An application of a user that may receive (or give up) slices."""

    name: str
    base: float
    lower: float
    usage: float
    running: bool


def app_priority(value: float, app: AppCandidate) -> tuple[int, float]:
    """A running application ranks as a container (§4.8); a stopped one is class 4."""
    if not app.running:
        return 4, value
    return container_priority(value, app.lower, app.usage)


def _assign(
    amount: int, candidates: Iterable[AppCandidate], priority: Callable[[float, AppCandidate], tuple[int, float]],
    slice_amount: int,
) -> dict[str, int]:
    """`assign_splits` with another priority: lowest first for scale-ups, highest for scale-downs."""
    live = list(candidates)
    alloc = {c.name: 0 for c in live}
    pieces = [slice_amount] * (abs(amount) // slice_amount) + ([abs(amount) % slice_amount] if abs(amount) % slice_amount else [])
    sign = -1 if amount < 0 else 1
    while pieces and live:
        piece = sign * pieces.pop(0)

        def rank(c: AppCandidate) -> tuple[int, float]:
            return priority(c.base + alloc[c.name], c)

        best = min(live, key=rank) if amount > 0 else max(live, key=rank)
        value = best.base + alloc[best.name]
        if amount < 0:
            take = max(piece, -math.floor(value - best.lower))
            if take == 0:
                # Less than one share above its lower limit: it can give nothing more.
                live.remove(best)
                pieces.insert(0, -piece)
                continue
            if take != piece:
                pieces.insert(0, -(piece - take))
            piece = take
        alloc[best.name] += piece
        if amount < 0 and best.base + alloc[best.name] <= best.lower:
            live.remove(best)
    return {n: a for n, a in alloc.items() if a}


def split_user_amount(amount: int, apps: Sequence[Application], resource: str = "cpu",
                      fieldname: ScaledField = "current") -> dict[str, int]:
    """A user's amount over its applications (§4.8 "User → apps").

    Applications whose "has containers" differs from "is running" are left out; a
    stopped one has lower limit 0 and priority class 4. For `current` only
    applications with containers can take a part (an empty one has no current).
    """
    candidates = []
    for app in apps:
        r = app.resource(resource)
        running = app.state == "running"
        if r is None or bool(app.containers) != running:
            continue
        if fieldname == "current" and not app.containers:
            continue
        value = field_value(r, fieldname)
        if value is None or (running and r.usage is None):
            continue
        lower = group_lower_limit(r, running)
        if amount < 0 and value <= lower:
            continue
        candidates.append(AppCandidate(app.name, value, lower, r.usage or 0.0, running))
    return _assign(amount, candidates, app_priority, ENERGY_SLICE if resource == "energy" else SLICE)


# --------------------------------------------------------------------------- planning


@dataclass(frozen=True)
class Placement:
    """What the planner knows of the containers: documents, hosts and their limits now."""

    containers: Mapping[str, Container]
    """Name → container, with `current` as the accounting holds it now."""
    hosts: Mapping[str, Host]
    physical: Mapping[str, ContainerLimits]
    """Name → the limits on its node now (the base of each change)."""
    usages: Mapping[str, Mapping[str, float]] = field(default_factory=dict)
    """Name → resource → usage of the last window."""
    mem_margins: Mapping[str, float] = field(default_factory=dict)
    distributions: Mapping[str, Sequence[str]] = field(default_factory=dict)
    """Host → its core order (§4.6)."""


@dataclass(frozen=True)
class Part:
    """One container's share of a group request, and its plan."""

    request: Request
    plan: Plan


@dataclass(frozen=True)
class GroupPlan:
    """What the Scaler does for one application or user request: every part, or nothing."""

    outcome: Outcome
    reason: str
    amount: int
    """The group's amount after its own limits."""
    granted: float
    """Σ granted over the parts (0 when refused)."""
    split: dict[str, int]
    """Container → amount asked of it (the §4.8 split)."""
    parts: tuple[Part, ...] = ()
    hosts: dict[str, Host] = field(default_factory=dict)
    """Hosts after every part (only the changed ones)."""
    usages: dict[str, Optional[float]] = field(default_factory=dict)
    """Container → the usage the split was computed from."""
    bases: dict[str, float] = field(default_factory=dict)
    """Container → its value of the field before the split."""
    app_split: dict[str, int] = field(default_factory=dict)
    """For a user request: application → amount."""
    new_max: dict[str, float] = field(default_factory=dict)
    """For `max` requests: application or user → its new max."""


class _SplitInfo(TypedDict, total=False):
    """What a refused or granted group plan tells of its split (`GroupPlan` fields)."""

    usages: dict[str, Optional[float]]
    bases: dict[str, float]
    app_split: dict[str, int]


def _refused(reason: str, amount: int = 0, **kw: Unpack[_SplitInfo]) -> GroupPlan:
    return GroupPlan(outcome="refused", reason=reason, amount=amount, granted=0, split={}, **kw)


def _part_request(parent: Request, name: str, amount: int, container: Container,
                  structure_type: StructureKind) -> Request:
    return Request(
        resource=parent.resource,
        amount=amount,
        priority=parent.priority,
        structure=name,
        action=request_name(amount, parent.resource),
        field=parent.field,
        timestamp=parent.timestamp,
        structure_type=structure_type,
        host=container.host,
        rule=parent.rule,
        window_end=parent.window_end,
    )


def plan_application_request(
    request: Request, app: Application, placement: Placement, hosts: Optional[Mapping[str, Host]] = None
) -> GroupPlan:
    """Bound, split over the containers (§4.8), plan each part against its host; all or nothing.

    `app` carries its `current` and `usage` (the Refeeder's sums). `hosts` overrides
    `placement.hosts` (a user request plans its applications one after the other).
    """
    res = request.resource
    working = dict(hosts if hosts is not None else placement.hosts)
    r = app.resources.get(res)
    if r is None or field_value(r, request.field) is None:
        return _refused(f"application {app.name} has no {res} {request.field}")
    missing = [n for n in app.containers if n not in placement.containers]
    if missing:
        return _refused(f"containers {missing} of {app.name} are not subscribed")
    if not app.containers:
        return _refused(f"application {app.name} has no containers")
    amount = bound_group_amount(request.amount, r, request.field, app.state == "running")
    if amount == 0:
        return _refused(f"nothing to grant within the limits of {app.name}")
    members = [placement.containers[n] for n in app.containers]
    usages = {n: (placement.usages.get(n) or {}).get(res) for n in app.containers}
    bases = {c.name: float(field_value(c.resources[res], request.field) or 0) for c in members
             if res in c.resources}
    split = split_application_amount(amount, members, usages, res, request.field)
    info: _SplitInfo = {"usages": usages, "bases": bases}
    if not split:
        return _refused("no container can take a part (no usage, or all at their limits)", amount, **info)
    parts = []
    changed: dict[str, Host] = {}
    for c in members:
        part_amount = split.get(c.name)
        if not part_amount:
            continue
        host = working.get(c.host)
        if host is None or not host.reachable:
            return _refused(f"{c.name}: host {c.host} is unknown or unreachable; no part applied", amount,
                            **info)
        sub = _part_request(request, c.name, part_amount, c, "container")
        plan = plan_container_request(
            sub, c, host, placement.physical[c.name], (placement.usages.get(c.name) or {}).get("mem"),
            placement.mem_margins.get(c.name, 0.0), placement.distributions.get(c.host, ()),
        )
        if plan.outcome == "refused":
            return _refused(f"{c.name}: {plan.reason}; no part applied", amount, **info)
        working[c.host] = changed[c.host] = plan.host
        parts.append(Part(sub, plan))
    granted = sum(p.plan.granted for p in parts)
    new_max = {app.name: r.max + granted} if request.field == "max" and r.max is not None else {}
    trimmed = [f"{p.request.structure}: {p.plan.reason}" for p in parts if p.plan.outcome == "trimmed"]
    placed = sum(split.values())
    if placed != amount:
        # The containers' room (max − current) took less than the group's amount.
        trimmed.insert(0, f"only {placed} of {amount} fits in the containers of {app.name}")
    if amount != request.amount:
        trimmed.insert(0, f"bounded to {amount} by the limits of {app.name}")
    return GroupPlan(
        outcome="applied" if granted == request.amount else "trimmed",
        reason="; ".join(trimmed),
        amount=amount,
        granted=granted,
        split=split,
        parts=tuple(parts),
        hosts=changed,
        new_max=new_max,
        **info,
    )


def plan_user_request(
    request: Request, user: User, apps: Mapping[str, Application], placement: Placement
) -> GroupPlan:
    """Split over the user's applications, then each part as an application request (§4.5 UserPlanner)."""
    res = request.resource
    r = user.resources.get(res)
    if r is None or field_value(r, request.field) is None:
        return _refused(f"user {user.name} has no {res} {request.field}")
    mine = [apps[a] for a in user.clusters if a in apps]
    running = any(a.state == "running" for a in mine)
    if request.amount < 0 and running and r.min is not None and (field_value(r, request.field) or 0) < r.min:
        return _refused(f"user {user.name} is already under its min with applications running")
    amount = bound_group_amount(request.amount, r, request.field, running)
    if amount == 0:
        return _refused(f"nothing to grant within the limits of user {user.name}")
    app_split = split_user_amount(amount, mine, res, request.field)
    if not app_split:
        return _refused(f"no application of {user.name} can take a part", amount)
    working = dict(placement.hosts)
    changed: dict[str, Host] = {}
    parts: list[Part] = []
    split: dict[str, int] = {}
    usages: dict[str, Optional[float]] = {}
    bases: dict[str, float] = {}
    new_max: dict[str, float] = {}
    for app in mine:
        a_amount = app_split.get(app.name)
        if not a_amount:
            continue
        sub = request.model_copy(update={"structure": app.name, "structure_type": "application", "amount": a_amount,
                                         "action": request_name(a_amount, res)})
        gp = plan_application_request(sub, app, placement, working)
        if gp.outcome == "refused":
            return _refused(f"{app.name}: {gp.reason}", amount, app_split=app_split)
        working.update(gp.hosts)
        changed.update(gp.hosts)
        parts += gp.parts
        split.update(gp.split)
        usages.update(gp.usages)
        bases.update(gp.bases)
        new_max.update(gp.new_max)
    granted = sum(p.plan.granted for p in parts)
    if request.field == "max" and r.max is not None:
        new_max[user.name] = r.max + granted
    return GroupPlan(
        outcome="applied" if granted == request.amount else "trimmed",
        reason="" if granted == request.amount else f"granted {granted:g} of {request.amount}",
        amount=amount, granted=granted, split=split, parts=tuple(parts), hosts=changed, usages=usages,
        bases=bases, app_split=app_split, new_max=new_max,
    )


Group = Union[Application, User]
