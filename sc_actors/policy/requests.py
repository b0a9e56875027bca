"""Requests: event counts turned into scaling amounts, then deduplicated and ordered.

Guardian side (reference §1.6, §3.6, §3.7, §10.1, §10.2 #8, #11, #15): a request rule
whose JSON-logic holds on the reduced event counts asks for an amount computed by its
rescale policy, trimmed by `adjust_amount` so a scale-down never brings `lower` under
`min` and a scale-up never passes `max`. Scaler side (§4.2, §4.5 step 1): requests are
deduplicated per (structure, action, field, pair) and ordered scale-downs first.
"""
from __future__ import annotations

import math
import numbers
from collections.abc import Callable, Iterable, Mapping
from typing import NamedTuple, Optional, Union

from typing_extensions import TypedDict

from ..model import Application, Container, JsonObject, LimitResource, Limits, Request, Resource, Rule, User
from .events import event_name
from .jsonlogic import evaluate
from .limits import ADAPTIVE_MARGIN_FLOOR, margin, resource_margin


def request_name(amount: object, resource: str) -> str:
    """`Resource.title()` + "RescaleUp" (amount > 0) or "RescaleDown" (< 0) (§1.6, §10.1).

    ValueError for 0, None or anything that is not a number.
    """
    if isinstance(amount, bool) or not isinstance(amount, numbers.Real) or math.isnan(float(amount)):
        raise ValueError(f"a request amount must be a number, got {amount!r}")
    if float(amount) == 0:
        raise ValueError("a request amount must not be zero")
    return resource.title() + ("RescaleUp" if float(amount) > 0 else "RescaleDown")


# --------------------------------------------------------------------------- rescale policies


class Throttling(NamedTuple):
    """What one window tells of a resource's demand beyond its limit (cpu, from the node)."""

    periods: float = 0.0
    """Share of the window's CFS periods that ran out of quota, 0..1."""
    held_back: float = 0.0
    """Runnable time the quota held back, shares (the kernel's throttled time over the window)."""
    measured: bool = False
    """Whether the node read the counters (False: nothing is known of throttling, e.g. memory)."""

    @property
    def throttled(self) -> bool:
        return self.periods > 0 or self.held_back > 0


NO_THROTTLING = Throttling()


def fit_to_usage_amount(current: float, margin: int, usage: float) -> int:
    """The amount that puts `usage` half-way between the new lower and upper (§3.6).

    `desired = usage + max(int(m / 2), 1) + m`, amount = `int(desired) − current`.
    E.g. (2000, 500, 700): 700 + 250 + 500 = 1450; 1450 − 2000 = −550.
    """
    desired = usage + max(int(margin / 2), 1) + margin
    return int(int(desired) - current)


def _current(resource: Resource) -> float:
    if resource.current is None:
        raise ValueError("the structure's resource has no current value")
    return resource.current


def _usage(usage: Optional[float], policy: str) -> float:
    if usage is None:
        raise ValueError(f"policy {policy} needs the resource's usage")
    return usage


def amount_policy(rule: Rule, resource: Resource, limit: LimitResource, usage: Optional[float],
                  throttling: Throttling = NO_THROTTLING, name: str = "") -> int:
    """The rule's fixed amount (§3.6 `amount`)."""
    if rule.amount is None:
        raise ValueError(f"rule {rule.name} has no amount")
    return int(rule.amount)


def proportional_policy(rule: Rule, resource: Resource, limit: LimitResource, usage: Optional[float],
                        throttling: Throttling = NO_THROTTLING, name: str = "") -> int:
    """`int(min((usage − upper) / (current − upper), 1) × amount)` (§3.6 `proportional`).

    E.g. amount 100, current 140, upper 120, usage 130: (130 − 120) / (140 − 120) = 0.5 → 50.
    """
    if rule.amount is None:
        raise ValueError(f"rule {rule.name} has no amount")
    if limit.upper is None:
        raise ValueError("policy proportional needs the resource's upper limit")
    current, used = _current(resource), _usage(usage, "proportional")
    span = current - limit.upper
    # NOTE: a valid chain has current − upper = margin ≥ 1; a broken one scales fully.
    ratio = 1.0 if span <= 0 else min((used - limit.upper) / span, 1.0)
    return int(ratio * rule.amount)


def fit_to_usage_policy(rule: Rule, resource: Resource, limit: LimitResource, usage: Optional[float],
                        throttling: Throttling = NO_THROTTLING, name: str = "") -> int:
    """`fit_to_usage_amount` with the resource's margin (§3.6 `fit_to_usage`)."""
    return fit_to_usage_amount(
        _current(resource), resource_margin(resource, limit, name), _usage(usage, "fit_to_usage")
    )


CPUSET_FULL = 0.97
"""Usage at this share of the cores a cpu limit's cpuset has counts as held back (`cpuset_full`)."""


def cpuset_full(usage: float, current: float) -> bool:
    """Whether cpu `usage` fills the cores its limit gets: ⌈current / 100⌉ at the least.

    The Scaler gives a container the cores its shares need, so at a limit of 100 it
    runs on one core: two busy threads then use 100, the quota (a whole core) never
    runs out, and throttling shows none of the demand beyond it. Measured with
    `sysbench cpu` on two threads: 99 of 100 shares, 0 s throttled. E.g. usage 98,
    current 100 → full (98 ≥ 0.97 × 100); usage 98, current 105 → 2 cores, not full.
    """
    return current > 0 and usage >= CPUSET_FULL * math.ceil(current / 100) * 100


def demand(usage: float, throttling: Throttling = NO_THROTTLING) -> float:
    """What the container would use unthrottled: max(usage + held_back, usage × (1 + periods / 2)).

    A container pinned at its limit shows only the limit as usage. The time its runnable
    threads waited for the next period is what they would have run: a busy loop under a
    quota of 30 measured here used 30.7 shares and was held back 63.8 → 94.5 (it wants
    100). A load that sleeps between bursts waits less than it would use, so throttled
    periods count too, as half the multiplicative step of Autothrottle's Captain
    (limit × (1 + ratio)): usage 100 throttled in every period, no held-back time → 150.
    Unthrottled → the usage.
    """
    periods = min(max(throttling.periods, 0.0), 1.0)
    return max(usage + max(throttling.held_back, 0.0), usage * (1.0 + periods / 2))


def fit_to_demand_target(demand_: float, boundary: float, boundary_type: str, max_: Optional[float],
                         resource: str = "") -> int:
    """The limit that puts `demand_` half-way between its own lower and upper.

    With margin m of the new limit c, usage sits at c − 1.5 m, the middle of the band
    [c − 2m, c − m]. For `adaptive` (m = max(b·c, floor)) that is the fixed point
    c = max(demand / (1 − 1.5 b), demand + 1.5 floor), rounded up; for the original's
    types, c = demand + 1.5 m with m from max (or from c, as for adaptive).
    E.g. adaptive 5 %, cpu: demand 100 → 100 / 0.925 = 108.1 → 109 (m 5, band [99, 104]);
    demand 20 → max(21.6, 20 + 3) = 23. percentage_of_max 10 %, max 200: 100 + 30 = 130.
    """
    if boundary_type == "percentage_of_max":
        return math.ceil(demand_ + 1.5 * margin(boundary, boundary_type, max_, None))
    b = boundary / 100
    floor = ADAPTIVE_MARGIN_FLOOR.get(resource, 1) if boundary_type == "adaptive" else 1
    if 1.5 * b >= 0.9:
        # No band of 60 % or more of the limit fits below it: as far as max allows.
        return math.ceil(max_ if max_ is not None else demand_ * 10)
    return math.ceil(max(demand_ / (1 - 1.5 * b), demand_ + 1.5 * floor))


def fit_to_demand_policy(rule: Rule, resource: Resource, limit: LimitResource, usage: Optional[float],
                         throttling: Throttling = NO_THROTTLING, name: str = "") -> int:
    """Amount that fits the limit to the window's demand, up or down (our `fit_to_demand`).

    The adaptive profile's one policy for both directions: a scale-up is sized to the
    demand seen through throttling (`demand`), not a fixed step, and a scale-down
    lands at the same place fit_to_usage would with the new limit's own margin.
    A window above `upper` in which the quota held nothing back (measured, not
    throttled: the limit cost it nothing, a spike was met by the burst) raises
    nothing; without a measurement (memory) the usage alone decides.
    A cpu usage that fills the cores of its cpuset (`cpuset_full`) counts as throttled
    in every period: usage × 1.5.
    E.g. current 100, usage 99 held back 60 → demand 159; 159 / 0.925 = 171.9 → 172: +72.
    An up rule with an `amount` steps at least that much (MemFitUp: 256 MiB).
    """
    if name == "cpu" and usage is not None and cpuset_full(usage, _current(resource)):
        # Its cores are full: as held back in every period (the demand may be anything).
        throttling = throttling._replace(periods=1.0, measured=True)
    if rule.rescale_type == "up" and throttling.measured and not throttling.throttled:
        return 0
    target = fit_to_demand_target(demand(_usage(usage, "fit_to_demand"), throttling), limit.boundary,
                                  limit.boundary_type, resource.max, name)
    amount = int(target - _current(resource))
    # NOTE: a rule never scales against its direction (0: no request, its events go).
    if rule.rescale_type != "up":
        return min(amount, 0)
    # An up rule's `amount`, if set, is the smallest step: memory that grows between two
    # windows must find room, since a cgroup v1 container at its limit is OOM-killed.
    return max(amount, int(rule.amount or 0))


def in_deadband(rule: Rule, amount: int, resource: Resource) -> bool:
    """Whether `amount` is under the rule's `deadband`, a percentage of the current limit.
    E.g. deadband 5, current 200: a cut of 9 is not made, one of 10 is."""
    if rule.deadband is None or amount == 0:
        return False
    return abs(amount) < rule.deadband / 100 * _current(resource)


RescalePolicyFn = Callable[[Rule, Resource, LimitResource, Optional[float], Throttling, str], int]

RESCALE_POLICIES: dict[str, RescalePolicyFn] = {
    "amount": amount_policy,
    "proportional": proportional_policy,
    "fit_to_usage": fit_to_usage_policy,
    "fit_to_demand": fit_to_demand_policy,
}
USAGE_POLICIES = frozenset({"proportional", "fit_to_usage", "fit_to_demand"})
"""Policies that need the window's usage of the rule's resource."""
"""A request rule's `rescale_policy` → the function computing its amount (STYLE §6.4)."""


def adjust_amount(amount: int, resource: Resource, limit: LimitResource) -> int:
    """Trim an amount so `lower` stays ≥ `min` and `current` stays ≤ `max` (§3.6, §10.2 #8).

    With expected = current + amount and new_lower = lower + amount: if new_lower < min,
    amount += min − new_lower; elif expected > max, amount −= expected − max.
    E.g. max 400, min 50, current 200, lower 100: −60 → new_lower 40 < 50 → −60 + 10 = −50.
    """
    if resource.min is None or resource.max is None or limit.lower is None:
        raise ValueError("adjust_amount needs min, max and lower")
    if amount == 0:
        return 0
    current = _current(resource)
    expected = current + amount
    new_lower = limit.lower + amount
    trimmed = float(amount)
    if new_lower < resource.min:
        trimmed += resource.min - new_lower
    elif expected > resource.max:
        trimmed -= expected - resource.max
    # NOTE: the original's trim can take a chain that is already below min (current
    # under two margins) past max, or turn a scale-down into a scale-up: the result
    # keeps current in [min, max] and never changes the request's direction.
    trimmed = min(max(trimmed, resource.min - current), resource.max - current)
    return int(max(trimmed, 0) if amount > 0 else min(trimmed, 0))


# --------------------------------------------------------------------------- Guardian: rules → requests


def _rule_activated(rule: Rule, reduced_events: Mapping[str, JsonObject]) -> bool:
    if not rule.active or rule.generates != "requests" or rule.resource not in reduced_events:
        return False
    return evaluate(rule.rule, reduced_events[rule.resource])


class _HostFields(TypedDict, total=False):
    """Where a container request goes (an application's has none)."""

    host: str
    host_rescaler_ip: Optional[str]
    host_rescaler_port: Optional[str]


def _request(
    structure: Union[Container, Application, User],
    rule: Rule,
    amount: int,
    requested: int,
    usage: Optional[float],
    now: float,
) -> Request:
    fields: _HostFields = {}
    if isinstance(structure, Container):
        fields = {
            "host": structure.host,
            "host_rescaler_ip": structure.host_rescaler_ip,
            "host_rescaler_port": structure.host_rescaler_port,
        }
    return Request(
        resource=rule.resource,
        amount=amount,
        priority=0,
        structure=structure.name,
        action=request_name(amount, rule.resource),
        field="current",
        timestamp=now,
        structure_type=structure.subtype,
        rule=rule.name,
        usage=usage,
        amount_requested=requested,
        **fields,
    )


def serves(rule: Rule, limit: Optional[LimitResource]) -> bool:
    """Whether a request rule serves a resource with these limits (`Rule.boundary_types`)."""
    return rule.boundary_types is None or (limit is not None and limit.boundary_type in rule.boundary_types)


def match_rules_and_events(
    structure: Union[Container, Application, User],
    rules: Iterable[Rule],
    reduced_events: Mapping[str, JsonObject],
    limits: Limits,
    usages: Mapping[str, Optional[float]],
    now: float,
    throttling: Optional[Mapping[str, Throttling]] = None,
    down_peaks: Optional[Mapping[str, float]] = None,
) -> tuple[list[Request], dict[str, int]]:
    """Requests of the request rules that hold on the event counts (§3.6, §10.2 #15).

    Returns (requests, events_to_remove). Each activated rule adds its
    `events_to_remove` under the name of its resource's reduced counts, even when its
    trimmed amount is 0 and no request is emitted. A request records the rule, the
    usage and the amount before the trim (`amount_requested`). A rule serves only
    the limits of its `boundary_types`; one whose policy needs a usage that this
    window lacks is left for a later window (its events stay), so a resource without
    a reading never stops the others. A `fit_to_demand` scale-down fits the highest
    usage among this window and the underuse windows it consumes (`down_peaks`), so
    one window of starvation or noise does not set the limit, and only in a window that
    is itself under `lower`.
    """
    requests: list[Request] = []
    to_remove: dict[str, int] = {}
    for rule in rules:
        if not _rule_activated(rule, reduced_events):
            continue
        res = rule.resource
        resource = structure.resources.get(res)
        limit = limits.resources.get(res)
        if resource is None or limit is None:
            raise ValueError(f"{structure.name} has no {res} resource or limits for rule {rule.name}")
        if not serves(rule, limit):
            continue
        policy = RESCALE_POLICIES.get(rule.rescale_policy or "")
        if policy is None:
            raise ValueError(f"rule {rule.name} has an unknown rescale_policy {rule.rescale_policy!r}")
        usage = usages.get(res)
        if usage is None and rule.rescale_policy in USAGE_POLICIES:
            continue
        if rule.rescale_policy == "fit_to_demand" and rule.rescale_type == "down" and usage is not None:
            if limit.lower is not None and usage >= limit.lower:
                # Not under lower now: usage has risen since its underuse windows (memory
                # filling fast), so no scale-down on their word; their events wait.
                continue
            usage = max(usage, (down_peaks or {}).get(res, usage))
        requested = policy(rule, resource, limit, usage, (throttling or {}).get(res, NO_THROTTLING), res)
        amount = adjust_amount(requested, resource, limit)
        if in_deadband(rule, amount, resource):
            amount = 0
        # NOTE: the events removed are of the rule's own direction. The original named them
        # by the majority of the counts, so with up 2, down 2 CpuRescaleUp removed two
        # Underuse events and left the two Bottleneck ones to fire it again next window.
        directions: dict[str, JsonObject] = {"up": {"up": 1}, "down": {"down": 1}}
        direction = directions.get(rule.rescale_type or "")
        name = event_name(res, {"scale": direction} if direction else reduced_events[res]["events"])
        to_remove[name] = to_remove.get(name, 0) + (rule.events_to_remove or 0)
        if amount != 0:
            requests.append(_request(structure, rule, amount, requested, usage, now))
    return requests, to_remove


# --------------------------------------------------------------------------- Scaler: dedup and order


def request_key(request: Request) -> tuple[str, str]:
    """(structure, "<action>_<field>_<pair or 'system'>"): one live request per key (§4.2)."""
    return request.structure, f"{request.action}_{request.field}_{request.pair_structure or 'system'}"


def _supersedes(new: Request, old: Request) -> bool:
    if new.priority != old.priority:
        return new.priority > old.priority
    return new.timestamp > old.timestamp


def filter_requests(
    requests: Iterable[Request], now: float, timeout_s: float
) -> tuple[list[Request], list[Request]]:
    """(kept, purged): drop requests older than the timeout, then one per key (§4.2).

    A request is purged when `timestamp < now − timeout_s`. Of two with the same key,
    the higher priority wins if the priorities differ, else the newer timestamp (the
    first seen on a full tie).
    """
    kept: dict[tuple[str, str], Request] = {}
    purged: list[Request] = []
    for request in requests:
        if request.timestamp < now - timeout_s:
            purged.append(request)
            continue
        key = request_key(request)
        old = kept.get(key)
        if old is None:
            kept[key] = request
        elif _supersedes(request, old):
            purged.append(old)
            kept[key] = request
        else:
            purged.append(request)
    return list(kept.values()), purged


def execution_class(request: Request) -> int:
    """3 = scale-down of current, 2 = scale-down of max, 1 = scale-up of max, 0 = scale-up of current (§4.5)."""
    if request.amount < 0:
        return 3 if request.field == "current" else 2
    return 1 if request.field == "max" else 0


def sort_requests(requests: Iterable[Request]) -> list[Request]:
    """Scale-downs first, so freed resources serve the scale-ups: by (class, priority), descending (§4.5 step 1)."""
    return sorted(requests, key=lambda r: (execution_class(r), r.priority), reverse=True)
