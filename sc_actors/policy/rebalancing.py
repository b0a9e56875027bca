"""ReBalancer: which siblings give CPU, which receive, and the swaps between them (reference §7.4).

It moves a resource between the containers of one application (or of one host), and
between the applications of one user, without changing the parent's total: every
amount one structure gives, another receives. The decision, on plain data:

1. roles — policy `thresholds` (`DIFF_PERCENTAGE`) or `rules` (JSON-logic rules
   `<level>_<res>_usage_low` / `_usage_high`, else the shipped `<res>_usage_low` /
   `_usage_high`); a structure can be a donor or a receiver, not both;
2. what each donor gives — `STOLEN_PERCENTAGE` of its slack, cut in slices of 5 shares
   (1 for energy) per key (the host for containers at host scope, one key otherwise);
3. slices to receivers — each receiver, lowest priority first (containers: `current`;
   applications: `1 − usage/max`), takes the largest slice left, round robin, never
   beyond its `max`;
4. swaps — per key, donors and receivers matched greedily by their largest net amounts,
   so as few swaps as possible: each becomes one request on the receiver with the donor
   as `pair_structure`, applied by the Scaler as a pair, all or nothing.

`BALANCING_METHOD` `weights` (containers at host scope) shares the total `current` of
the containers that consume (`usage / current ≥ 1 − DIFF`) in proportion to their
`weight`, capped at `max`, the cap's excess shared again.

Differences from the original, on purpose (§11.4 lists the bugs):
- a container is a donor when it has slack, `current − usage > DIFF × current`. The
  original's test, `max − current < DIFF × max`, reads no usage: an idle container far
  under its max never gave, a busy one at its max did;
- the `rules` policy finds the shipped rules (`cpu_usage_low`/`cpu_usage_high`) when
  the level's own are missing; the original only looked up level-prefixed names that
  were never shipped, so the policy matched nothing; an inactive rule is not used;
- `weights`: "consuming" is `usage / current ≥ 1 − DIFF` for every resource (the original
  wrote `current / usage < 1 − DIFF` for CPU, true only above the limit, and the
  inverse for disk);
- a slice never takes a receiver above its `max`, and the Scaler applies a swap only
  whole (the original could lower the donor and fail the receiver: shares were lost).
"""
from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from ..model import (
    Application,
    Container,
    Document,
    JsonObject,
    Request,
    Resource,
    ResourceName,
    ScaledField,
    StructureKind,
    User,
)
from ..settings import RebalancerSettings
from .jsonlogic import evaluate
from .propagation import ENERGY_SLICE, SLICE, split_amount_in_slices
from .requests import Throttling, demand

Role = Literal["donor", "receiver"]
Level = Literal["container", "application", "user"]


@dataclass(frozen=True)
class Member:
    """One structure taking part in a rebalance, with the resource's values."""

    name: str
    max: float
    min: float
    current: float
    usage: float
    key: str = ""
    """Slices move only between members of one key (the host at host scope)."""
    weight: float = 1.0


@dataclass(frozen=True)
class Swap:
    """`amount` of the donated field goes from `donor` to `receiver`."""

    donor: str
    receiver: str
    amount: int


@dataclass
class Balance:
    """The roles found and the swaps decided, for the decision log."""

    donors: list[str] = field(default_factory=list)
    receivers: list[str] = field(default_factory=list)
    swaps: list[Swap] = field(default_factory=list)
    changes: dict[str, int] = field(default_factory=dict)
    """`weights` only: the change of each member's `current` (Σ = 0)."""


# --------------------------------------------------------------------------- roles


def donated_field(level: Level, resource: str = "cpu") -> ScaledField:
    """Containers give `current` (energy: `max`); applications and users give `max`."""
    return "current" if level == "container" and resource != "energy" else "max"


def is_donor(level: Level, m: Member, diff: float) -> bool:
    if level == "container":
        return (m.current - m.usage) > diff * m.current
    return (m.max - m.usage) > diff * m.max


def is_receiver(level: Level, m: Member, diff: float) -> bool:
    if level == "container":
        return (m.current - m.usage) < diff * m.current
    return (m.max - m.usage) < diff * m.max


def rule_data(m: Member, resource: str = "cpu") -> JsonObject:
    """The JSON-logic data of the original's rules policy."""
    values: JsonObject = {"max": m.max, "current": m.current, "usage": m.usage, "min": m.min}
    return {resource: {"structure": {resource: values}}}


def role_rule(rules: Mapping[str, Document], level: Level, resource: str, role: Role) -> Optional[Document]:
    """The active rule of a role: `<level>_<res>_usage_low|high`, else the shipped `<res>_usage_low|high`."""
    suffix = "usage_low" if role == "donor" else "usage_high"
    for name in (f"{level}_{resource}_{suffix}", f"{resource}_{suffix}"):
        rule = rules.get(name)
        if rule is not None:
            return rule if rule.get("active") else None
    return None


def split_roles(
    members: Sequence[Member],
    level: Level,
    policy: str,
    diff: float,
    rules: Mapping[str, Document] | None = None,
    resource: str = "cpu",
) -> tuple[list[Member], list[Member]]:
    """(donors, receivers). A member that would be both is neither: it has nothing to spare."""
    if policy == "rules":
        low, high = (role_rule(rules or {}, level, resource, r) for r in ("donor", "receiver"))
        donor: Callable[[Member], bool] = lambda m: low is not None and evaluate(low["rule"], rule_data(m, resource))
        receiver: Callable[[Member], bool] = lambda m: high is not None and evaluate(high["rule"], rule_data(m, resource))
    else:
        donor = lambda m: is_donor(level, m, diff)  # noqa: E731
        receiver = lambda m: is_receiver(level, m, diff)  # noqa: E731
    donors, receivers = [], []
    for m in members:
        d, r = donor(m), receiver(m)
        if d and not r:
            donors.append(m)
        elif r and not d:
            receivers.append(m)
    return donors, receivers


# --------------------------------------------------------------------------- amounts


def stolen_amount(m: Member, fieldname: str, stolen: float, stopped: bool = False) -> float:
    """What a donor gives (§7.4).

    `current`: STOLEN × (current − max(min, usage)), never negative.
    `max`: STOLEN × (max − max(lower, usage)) with lower = min while running (usage > 0)
    else 0; a stopped application gives all (lower 0, fraction 1); raised to 1 when
    under 1 and max − lower ≥ 1, so no residue is left.
    """
    if fieldname == "current":
        return max(stolen * (m.current - max(m.min, m.usage)), 0.0)
    lower = m.min if m.usage > 0 else 0.0
    if stopped:
        lower, stolen = 0.0, 1.0
    amount = max(stolen * (m.max - max(lower, m.usage)), 0.0)
    if amount < 1 <= (m.max - lower):
        amount = 1.0
    return amount


def donor_slices(
    donors: Sequence[Member], fieldname: str, stolen: float, resource: str = "cpu",
    stopped: frozenset[str] = frozenset(),
) -> dict[str, list[tuple[str, int]]]:
    """Per key, (donor, slice) sorted ascending by slice (§7.4)."""
    size = ENERGY_SLICE if resource == "energy" else SLICE
    out: dict[str, list[tuple[str, int]]] = {}
    for d in donors:
        amount = int(stolen_amount(d, fieldname, stolen, d.name in stopped))
        if amount <= 0:
            continue
        out.setdefault(d.key, []).extend((d.name, s) for s in split_amount_in_slices(amount, size))
    return {k: sorted(v, key=lambda s: s[1]) for k, v in out.items()}


def receiver_priority(m: Member, fieldname: str) -> float:
    """Lowest first: containers by `current`, applications and users by `1 − usage / max`."""
    if fieldname == "current":
        return m.current
    return 1 - m.usage / m.max if m.max else 1.0


def assign_slices(
    receivers: Sequence[Member], slices: Mapping[str, list[tuple[str, int]]], fieldname: str,
) -> list[tuple[str, str, str, int]]:
    """(key, donor, receiver, amount) for every slice given: round robin over the receivers
    (lowest priority first), each taking the largest slice of its key left, trimmed to its room."""
    left = {k: list(v) for k, v in slices.items()}
    room = {r.name: r.max - r.current if fieldname == "current" else math.inf for r in receivers}
    order = sorted(receivers, key=lambda r: (receiver_priority(r, fieldname), r.name))
    given: list[tuple[str, str, str, int]] = []
    progress = True
    while progress:
        progress = False
        for r in order:
            pool = left.get(r.key)
            if not pool or room[r.name] < 1:
                continue
            donor, amount = pool.pop()  # the largest left
            amount = int(min(amount, room[r.name]))
            room[r.name] -= amount
            given.append((r.key, donor, r.name, amount))
            progress = True
    return given


def match_swaps(given: Sequence[tuple[str, str, str, int]]) -> list[Swap]:
    """Per key, the net amounts matched greedily, largest donor with largest receiver."""
    nets: dict[str, dict[str, int]] = {}
    for key, donor, receiver, amount in given:
        per = nets.setdefault(key, {})
        per[donor] = per.get(donor, 0) - amount
        per[receiver] = per.get(receiver, 0) + amount
    return [s for key in sorted(nets) for s in _greedy(nets[key])]


def _greedy(net: Mapping[str, int]) -> list[Swap]:
    """Largest giver with largest taker, until one side is done; ties by name."""
    def order(pairs: list[list[Any]]) -> list[list[Any]]:
        return sorted((p for p in pairs if p[0] > 0), key=lambda p: (-p[0], p[1]))

    give = order([[-v, n] for n, v in net.items() if v < 0])
    take = order([[v, n] for n, v in net.items() if v > 0])
    swaps = []
    while give and take:
        amount = min(give[0][0], take[0][0])
        swaps.append(Swap(give[0][1], take[0][1], amount))
        give[0][0] -= amount
        take[0][0] -= amount
        give, take = order(give), order(take)
    return swaps


def pair_swapping(
    members: Sequence[Member],
    level: Level,
    policy: str = "thresholds",
    diff: float = 0.4,
    stolen: float = 0.4,
    rules: Mapping[str, Document] | None = None,
    resource: str = "cpu",
    stopped: frozenset[str] = frozenset(),
) -> Balance:
    """The swaps of one group of siblings (one application's containers, one host's, one user's applications)."""
    donors, receivers = split_roles(members, level, policy, diff, rules, resource)
    out = Balance(donors=[d.name for d in donors], receivers=[r.name for r in receivers])
    if not donors or not receivers:
        return out
    fieldname = donated_field(level, resource)
    slices = donor_slices(donors, fieldname, stolen, resource, stopped)
    slices = {k: v for k, v in slices.items() if any(r.key == k for r in receivers)}
    out.swaps = match_swaps(assign_slices(receivers, slices, fieldname))
    return out


# --------------------------------------------------------------------------- weights


def consuming(m: Member, diff: float) -> bool:
    """Uses most of its limit: usage / current ≥ 1 − DIFF."""
    return m.current > 0 and m.usage / m.current >= 1 - diff


def weight_shares(members: Sequence[Member], diff: float = 0.4) -> dict[str, int]:
    """Change of `current` per consuming member: Σ current shared by weight, capped at max (§7.4).

    Members over their cap get the cap; what they leave is shared again among the
    others by weight, until no one is over. Integer shares, Σ of the changes = 0 (the
    rounding remainder goes to the heaviest uncapped member).
    """
    part = [m for m in members if consuming(m, diff) and m.weight > 0]
    if len(part) < 2:
        return {}
    total = sum(m.current for m in part)
    alloc: dict[str, float] = {}
    free = list(part)
    left = total
    while free:
        weights = sum(m.weight for m in free)
        over = [m for m in free if left * m.weight / weights > m.max]
        if not over:
            for m in free:
                alloc[m.name] = left * m.weight / weights
            break
        for m in over:
            alloc[m.name] = m.max
            left -= m.max
            free.remove(m)
    ints = {n: math.floor(v) for n, v in alloc.items()}
    rest = int(round(total - sum(ints.values())))
    if rest and free:
        heavy = max(free, key=lambda m: (m.weight, m.name)).name
        ints[heavy] += rest
    by_name = {m.name: m for m in part}
    return {n: v - int(by_name[n].current) for n, v in ints.items() if v != int(by_name[n].current)}


# --------------------------------------------------------------------------- one round


def window_demand(usage: Mapping[str, float], resource: str = "cpu") -> Optional[float]:
    """The window's usage read through throttling, as the Guardian reads it (None: no window).

    A receiver pinned at its limit shows the limit as usage; its demand shows how far
    beyond it wants to go.
    """
    if resource not in usage:
        return None
    t = Throttling(float(usage.get(f"{resource}_throttled") or 0.0), float(usage.get(f"{resource}_held_back") or 0.0))
    return demand(float(usage[resource]), t)


def swap_request(swap: Swap, structure_type: StructureKind, fieldname: ScaledField, now: float,
                 usage: Optional[float], resource: ResourceName = "cpu") -> Request:
    """ONE request on the receiver, the donor as `pair_structure`, priority 2 (§7.4)."""
    return Request(
        resource=resource, amount=swap.amount, priority=2, structure=swap.receiver, action="CpuRescaleUp",
        field=fieldname, timestamp=now, structure_type=structure_type, pair_structure=swap.donor,
        rule="ReBalancer", usage=usage, amount_requested=swap.amount,
    )


def _member(name: str, r: Resource, usage: float, key: str, weight: Optional[float] = None) -> Optional[Member]:
    if r.max is None or r.current is None:
        return None
    return Member(name, float(r.max), float(r.min or 0), float(r.current), usage, key,
                  float(weight if weight is not None else (getattr(r, "weight", None) or 1.0)))


def application_members(
    app: Application, containers: Mapping[str, Container], usages: Mapping[str, Mapping[str, float]],
    scope: str = "application", resource: str = "cpu",
) -> Optional[list[Member]]:
    """The members of one application's container round; None when it is not balanced.

    Skipped (§7.4): `rebalance` false, one container or none, a container not
    subscribed or without a window (no honest view of who has slack).
    """
    if (app.model_extra or {}).get("rebalance") is False or len(app.containers) <= 1:
        return None
    members = []
    for name in app.containers:
        c = containers.get(name)
        u = window_demand(usages.get(name, {}), resource)
        if c is None or u is None or resource not in c.resources:
            return None
        m = _member(name, c.resources[resource], u, c.host if scope == "host" else "")
        if m is None:
            return None
        members.append(m)
    return members


def user_members(user: User, apps: Mapping[str, Application], resource: str = "cpu") -> Optional[list[Member]]:
    """A user's applications with their `max` and the Refeeder's usage; None when one has no sum."""
    members = []
    for name in user.clusters:
        a = apps.get(name)
        r = a.resource(resource) if a is not None else None
        if r is None or r.max is None or r.usage is None:
            return None
        members.append(Member(name, float(r.max), float(r.min or 0), float(r.current or 0), float(r.usage)))
    return members if len(members) > 1 else None


def round_requests(
    settings: RebalancerSettings,
    apps: Sequence[Application],
    containers: Mapping[str, Container],
    usages: Mapping[str, Mapping[str, float]],
    rules: Mapping[str, Document],
    now: float,
    users: Sequence[User] = (),
    all_apps: Mapping[str, Application] | None = None,
) -> tuple[list[Request], dict[str, Balance]]:
    """Every swap of one round: users' applications first, then each application's containers.

    Order as in the original (users → applications → containers); requests of the
    upper level change only `max` of applications, which the container level does not
    read, so nothing needs simulating in between.
    """
    requests: list[Request] = []
    decisions: dict[str, Balance] = {}
    diff, stolen, policy = settings.diff_percentage, settings.stolen_percentage, settings.balancing_policy
    if "application" in settings.structures_balanced or settings.rebalance_users:
        for user in users:
            members = user_members(user, all_apps or {a.name: a for a in apps})
            if members is None:
                continue
            stopped = frozenset(a for a in user.clusters if (all_apps or {}).get(a) is not None
                                and (all_apps or {})[a].state == "stopped")
            b = pair_swapping(members, "application", policy, diff, stolen, rules, stopped=stopped)
            decisions[user.name] = b
            use = {m.name: m.usage for m in members}
            requests += [swap_request(s, "application", "max", now, use[s.receiver]) for s in b.swaps]
    if "container" not in settings.structures_balanced:
        return requests, decisions
    groups: list[tuple[str, list[Member]]] = []
    for app in apps:
        if settings.only_running and app.state != "running":
            continue
        members = application_members(app, containers, usages, settings.containers_scope)
        if members is not None:
            groups.append((app.name, members))
    for name, members in groups:
        if settings.balancing_method == "weights":
            changes = weight_shares(members, diff)
            b = Balance(changes=changes, swaps=_weight_swaps(changes))
        else:
            b = pair_swapping(members, "container", policy, diff, stolen, rules)
        decisions[name] = b
        use = {m.name: m.usage for m in members}
        requests += [swap_request(s, "container", "current", now, use[s.receiver]) for s in b.swaps]
    return requests, decisions


def _weight_swaps(changes: Mapping[str, int]) -> list[Swap]:
    """The weight method's changes (Σ = 0) as pair swaps, so the parent's total never moves,
    even between two writes (the original sent one unpaired request per container)."""
    return _greedy(dict(changes))
