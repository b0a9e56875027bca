"""How much of a container request a host can grant, and what to write (reference §4.5, §4.6).

`check_container_request` is the original ContainerPlanner's check: the amount against
the container's [min, max] and the host's free resources. `plan_container_request`
adds the execution step (cores for CPU, the memory limit) and our safety rules, applied
last (STYLE §6.3): the limit stays within [min, max], the host is never over-committed,
memory never goes below usage + margin on a scale-down, nor below 64 MiB.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal, Optional, Union

from ..model import Container, ContainerLimits, Host, LimitChange, Request, Resource
from ..units import MEM_MIN_MIB, SHARES_PER_CORE
from .cores import CoreMap, scale_cpu

Outcome = Literal["applied", "trimmed", "refused"]
SCALED_RESOURCES = ("cpu", "mem")
CPU_MIN_SHARES = 1
"""A CPU limit is never written under 1 share: 0 would mean "unlimited" to the original
NodeRescaler (reference §5.2) and would leave the container an empty cpuset."""
_EPS = 1e-6
_UNIT = {"cpu": "shares", "mem": "MiB"}


@dataclass(frozen=True)
class Plan:
    """What the Scaler does for one container request."""

    outcome: Outcome
    reason: str
    """Why it was trimmed or refused, for the decision log ("" when applied as asked)."""
    granted: float
    """Amount granted on the request's field (0 when refused)."""
    change: Optional[LimitChange]
    """The limits to write on the node; None when nothing is written."""
    new_current: float
    """The container's limit after the change."""
    host: Host
    """The host document after the change (the input host when refused)."""
    new_max: Optional[float] = None
    """The container's new max, for `field == "max"` requests."""
    host_deltas: dict[str, float] = field(default_factory=dict)
    """Change of the host's `free` per resource."""
    core_map: Optional[CoreMap] = None
    """The host's new core map (CPU requests)."""

    @property
    def amount(self) -> float:
        return self.granted


# --------------------------------------------------------------------------- the original's check


def bound_current_amount(amount: int, min_: float, max_: float, current: float) -> int:
    """Keep `current + amount` within [min, max] (§4.5, field "current").

    Below min the amount becomes `min − current` (a scale-up if current was already
    below min); above max, `max − current`.
    """
    target = current + amount
    if target < min_:
        return math.ceil(min_ - current)
    if target > max_:
        return math.floor(max_ - current)
    return amount


def cap_by_host(amount: int, host_free: float) -> int:
    """A scale-up gets at most what the host has free (§4.5); nothing when it has none."""
    if amount <= 0:
        return amount
    return min(amount, max(math.floor(host_free), 0))


def lowest_limit(resource_name: str, resource: Resource) -> float:
    """The container's `min`, raised to 1 share for CPU and 64 MiB for memory."""
    assert resource.min is not None
    floor = CPU_MIN_SHARES if resource_name == "cpu" else MEM_MIN_MIB if resource_name == "mem" else 0
    return max(resource.min, floor)


def _max_amount(amount: int, resource: Resource, lowest: float, current: float, host_free: float) -> int:
    """Amount on `max`; the container's current follows the new max (§4.5, field "max")."""
    assert resource.max is not None
    if amount < 0:
        room = resource.max - lowest
        if room <= 0:
            return 0
        new_max = resource.max - min(-amount, room)
    else:
        new_max = resource.max + amount
    for_current = new_max - current
    if for_current > 0:
        # A max whose current cannot reach it (host short) is reduced to the reached current.
        new_max = min(new_max, current + cap_by_host(math.ceil(for_current), host_free))
    return int(new_max - resource.max)


def _bounded_resource(container: Container, resource: str) -> Resource:
    r = container.resource(resource)
    if r is None or r.min is None or r.max is None:
        raise ValueError(f"{container.name} has no {resource} min and max")
    return r


def check_container_request(request: Request, container: Container, physical_current: float, host_free: float) -> int:
    """The amount the host and the container's bounds allow (§4.5 ContainerPlanner).

    E.g. host cpu free 100, container min 50, max 300, current 200: +75 → 75; with 30
    free → 30; +150 → 100 (max caps); −200 → −150 (min caps); current 40 < min 50,
    −50 → +10.
    """
    resource = _bounded_resource(container, request.resource)
    lowest = lowest_limit(request.resource, resource)
    if request.field == "max":
        return _max_amount(request.amount, resource, lowest, physical_current, host_free)
    assert resource.max is not None  # _bounded_resource
    amount = bound_current_amount(request.amount, lowest, resource.max, physical_current)
    return cap_by_host(amount, host_free)


# --------------------------------------------------------------------------- the plan


def mem_floor(mem_usage_mib: Optional[float], mem_margin_mib: float) -> float:
    """The lowest memory limit a scale-down may set: usage + margin, and never under 64 MiB."""
    if mem_usage_mib is None:
        return float(MEM_MIN_MIB)
    return max(float(MEM_MIN_MIB), mem_usage_mib + mem_margin_mib)


def _physical_current(resource: str, physical: ContainerLimits) -> Optional[float]:
    value = physical.cpu_allowance_limit if resource == "cpu" else physical.mem_limit
    return value if value > 0 else None


def _host_free(resource: str, host: Host) -> float:
    hr = host.resources[resource]
    if resource == "cpu" and hr.core_usage_mapping is not None:
        cores_free = sum(entry.get("free", 0.0) for entry in hr.core_usage_mapping.values())
        return min(hr.free, cores_free)
    return hr.free


def _precheck(request: Request, container: Container, host: Host) -> str:
    if request.resource not in SCALED_RESOURCES:
        return f"only {' and '.join(SCALED_RESOURCES)} are scaled, not {request.resource}"
    if request.structure != container.name:
        return f"the request is for {request.structure}, not {container.name}"
    if container.host != host.name:
        return f"{container.name} lives on {container.host}, not on {host.name}"
    if request.resource not in host.resources:
        return f"host {host.name} has no {request.resource} accounting"
    if request.amount == 0:
        return "the request asks for 0"
    try:
        _bounded_resource(container, request.resource)
    except ValueError as e:
        return str(e)
    return ""


@dataclass
class _Draft:
    """A plan being worked out: the change of the container's limit, and why it shrank."""

    current: float
    delta: float = 0.0
    reasons: list[str] = field(default_factory=list)
    core_map: Optional[CoreMap] = None
    cpu_num: Optional[str] = None


def _bound_step(request: Request, resource: Resource, draft: _Draft, free: float, host: str) -> None:
    """The container's [min, max] and the host's free resources (§4.5)."""
    assert resource.min is not None and resource.max is not None
    unit = _UNIT[request.resource]
    lowest = lowest_limit(request.resource, resource)
    if request.field == "max":
        new_max = resource.max + _max_amount(request.amount, resource, lowest, draft.current, free)
        if new_max - resource.max != request.amount:
            draft.reasons.append(
                f"max kept at or above min {lowest:g}"
                if request.amount < 0
                else f"max cut to the current reachable with {max(free, 0):g} {unit} free on {host}"
            )
        draft.delta = new_max - draft.current
        return
    bounded = bound_current_amount(request.amount, lowest, resource.max, draft.current)
    if bounded != request.amount:
        draft.reasons.append(f"kept within [min {lowest:g}, max {resource.max:g}] from {draft.current:g}")
    capped = cap_by_host(bounded, free)
    if capped != bounded:
        draft.reasons.append(f"host {host} has {max(free, 0):g} {unit} free")
    draft.delta = float(capped)


def _mem_floor_step(draft: _Draft, usage: Optional[float], margin_mib: float) -> None:
    """A memory scale-down stops at usage + margin, never under 64 MiB."""
    floor = mem_floor(usage, margin_mib)
    if draft.delta >= 0 or draft.current + draft.delta >= floor:
        return
    what = f"usage {usage:g} + margin {margin_mib:g}" if usage is not None else "the minimum"
    draft.reasons.append(f"memory kept at {what} = {floor:g} MiB")
    draft.delta = min(math.ceil(floor - draft.current), 0)


def _cpu_step(draft: _Draft, host: Host, container: str, distribution: Sequence[str]) -> None:
    """Shares moved core by core (§4.6); ValueError when the core map disagrees with the node."""
    if draft.delta == 0:
        return
    core_map = host.resources["cpu"].core_usage_mapping or {}
    scaling = scale_cpu(core_map, container, draft.delta, distribution)
    if scaling.shares != draft.delta:
        draft.reasons.append(f"the cores of {host.name} had only {scaling.shares:g} free shares")
    draft.delta, draft.core_map, draft.cpu_num = scaling.shares, scaling.core_map, scaling.cpu_num


def _core_map_violation(core_map: CoreMap, before: Optional[CoreMap] = None) -> str:
    """"" when every core adds up to 100 shares, none negative; with `before`, only the
    cores whose entry the change replaced are checked (a change copies what it touches)."""
    for core, entry in core_map.items():
        if before is not None and entry is before.get(core):
            continue
        if any(v < -_EPS for v in entry.values()) or abs(sum(entry.values()) - SHARES_PER_CORE) > _EPS:
            return f"core {core} would not add up to {SHARES_PER_CORE} shares: {entry}"
    return ""


def _safety_violation(
    request: Request, resource: Resource, host: Host, draft: _Draft, new_max: Optional[float], floor: float
) -> str:
    """The last check before a write (STYLE §6.3); "" when the plan is safe."""
    assert resource.min is not None and resource.max is not None
    new_current = draft.current + draft.delta
    top = resource.max if new_max is None else new_max
    lowest = lowest_limit(request.resource, resource)
    if not lowest - _EPS <= new_current <= top + _EPS:
        return f"{request.resource} limit {new_current:g} would leave [min {lowest:g}, max {top:g}]"
    free = host.resources[request.resource].free
    if free - draft.delta < -_EPS:
        return f"host {host.name} would be over-committed: {free:g} free, {draft.delta:g} needed"
    if request.resource == "mem" and new_current < MEM_MIN_MIB:
        return f"memory limit {new_current:g} MiB is under {MEM_MIN_MIB} MiB"
    if request.resource == "mem" and draft.delta < 0 and new_current < floor - _EPS:
        return f"memory limit {new_current:g} MiB is under usage + margin = {floor:g} MiB"
    before = host.resources["cpu"].core_usage_mapping if request.resource == "cpu" else None
    return _core_map_violation(draft.core_map, before) if draft.core_map is not None else ""


def _host_after(host: Host, resource: str, draft: _Draft) -> Host:
    """The host after the draft: only the changed resource is copied (a core map can be
    thousands of cores; the planner never mutates one, it builds a new map)."""
    old = host.resources[resource]
    update: dict[str, Union[float, CoreMap]] = {"free": old.free - draft.delta}
    if draft.core_map is not None:
        update["core_usage_mapping"] = draft.core_map
    return host.model_copy(update={"resources": {**host.resources, resource: old.model_copy(update=update)}})


def _change(resource: str, draft: _Draft) -> Optional[LimitChange]:
    if draft.delta == 0:
        return None
    new_current = draft.current + draft.delta
    if resource == "cpu":
        return LimitChange(cpu_allowance_limit=new_current, cpu_num=draft.cpu_num)
    return LimitChange(mem_limit=new_current)


def _refused(reason: str, current: float, host: Host) -> Plan:
    return Plan(outcome="refused", reason=reason, granted=0, change=None, new_current=current, host=host)


def _draft(
    request: Request,
    container: Container,
    host: Host,
    current: float,
    mem_usage_mib: Optional[float],
    mem_margin_mib: float,
    distribution: Sequence[str],
) -> _Draft:
    """Bounds and host capacity, then the memory floor or the cores."""
    draft = _Draft(current=current)
    resource = _bounded_resource(container, request.resource)
    _bound_step(request, resource, draft, _host_free(request.resource, host), host.name)
    if request.resource == "mem":
        _mem_floor_step(draft, mem_usage_mib, mem_margin_mib)
    else:
        _cpu_step(draft, host, container.name, distribution)
    return draft


def plan_container_request(
    request: Request,
    container: Container,
    host: Host,
    physical: ContainerLimits,
    mem_usage_mib: Optional[float],
    mem_margin_mib: float,
    distribution: Sequence[str],
) -> Plan:
    """Plan one container request: bounds, host capacity, memory floor, cores, then safety.

    `physical` are the limits on the node now (the base of the change); `mem_usage_mib`
    may be None when unknown (then only the 64 MiB floor holds); `distribution` is the
    host's core order (§4.6). A request is "applied" when granted in full, "trimmed"
    when granted in part, "refused" when nothing can (or may) be written.
    """
    res = request.resource
    problem = _precheck(request, container, host)
    current = None if problem else _physical_current(res, physical)
    if current is None:
        raw = physical.cpu_allowance_limit if res == "cpu" else physical.mem_limit
        return _refused(problem or f"{container.name}'s {res} limit is unlimited or unknown", raw, host)
    try:
        draft = _draft(request, container, host, current, mem_usage_mib, mem_margin_mib, distribution)
    except ValueError as e:
        return _refused(f"the core map of {host.name} disagrees with the node: {e}", current, host)
    resource = _bounded_resource(container, res)
    assert resource.max is not None  # _bounded_resource
    new_current = current + draft.delta
    # A max request takes the current along: the new max is where the current got to.
    new_max = new_current if request.field == "max" else None
    granted = new_current - resource.max if new_max is not None else draft.delta
    if granted == 0 and draft.delta == 0:
        return _refused("nothing to grant: " + ("; ".join(draft.reasons) or "no change"), current, host)
    floor = mem_floor(mem_usage_mib, mem_margin_mib) if res == "mem" else 0.0
    violation = _safety_violation(request, resource, host, draft, new_max, floor)
    if violation:
        return _refused("; ".join([*draft.reasons, violation]), current, host)
    return Plan(
        outcome="applied" if granted == request.amount else "trimmed",
        reason="; ".join(draft.reasons),
        granted=granted,
        change=_change(res, draft),
        new_current=new_current,
        host=_host_after(host, res, draft),
        new_max=new_max,
        host_deltas={res: -draft.delta},
        core_map=draft.core_map,
    )
