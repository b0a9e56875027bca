"""The documents a fresh StateDB starts with: the original's rules and service configs.

Rules are those of the original at HEAD (`conf/StateDatabase/rules.py`, reference §1.4),
plus the adaptive profile's four request rules (`adaptive_rules`), with one deliberate change: the `*_dropped_lower` rules accept `usage >= 0` instead of
`usage > 0`. The original used 0 and −1 as "no metric data"; our nodes push a window
only when they measured it, so 0 is a real, idle reading, and an idle container must
scale down (with `> 0` a container whose process stopped would keep its limit forever).
"""
from __future__ import annotations

from collections.abc import Mapping

from .model import Document, JsonObject, Rule, Service
from .settings import (
    DatabaseSnapshoterSettings,
    GuardianSettings,
    RebalancerSettings,
    RefeederSettings,
    ScalerSettings,
    StructuresSnapshoterSettings,
)


def _var(res: str, part: str, field: str) -> JsonObject:
    return {"var": f"{res}.{part}.{res}.{field}"}


def _exceeded_upper(res: str) -> JsonObject:
    return {
        "and": [
            {">": [_var(res, "structure", "usage"), _var(res, "limits", "upper")]},
            {"<": [_var(res, "limits", "upper"), _var(res, "structure", "max")]},
            {"<": [_var(res, "structure", "current"), _var(res, "structure", "max")]},
        ]
    }


def _dropped_lower(res: str) -> JsonObject:
    return {
        "and": [
            {">=": [_var(res, "structure", "usage"), 0]},
            {"<": [_var(res, "structure", "usage"), _var(res, "limits", "lower")]},
            {">": [_var(res, "limits", "lower"), _var(res, "structure", "min")]},
        ]
    }


def _events(up: tuple[str, int], down: tuple[str, int]) -> JsonObject:
    return {
        "and": [
            {up[0]: [{"var": "events.scale.up"}, up[1]]},
            {down[0]: [{"var": "events.scale.down"}, down[1]]},
        ]
    }


def _event_rule(name: str, res: str, rule: JsonObject, direction: str) -> Rule:
    return Rule(
        name=name,
        resource=res,
        rule=rule,
        generates="events",
        action={"events": {"scale": {direction: 1}}},
        active=True,
    )


ORIGINAL_TYPES = ["percentage_of_max", "percentage_of_current"]
"""The boundary types the original's cpu and mem request rules serve."""


def _request_rule(
    name: str,
    res: str,
    rule: JsonObject,
    policy: str,
    rtype: str,
    remove: int,
    amount: int | None = None,
    boundary_types: list[str] | None = None,
    deadband: float | None = None,
) -> Rule:
    return Rule(
        name=name,
        resource=res,
        rule=rule,
        generates="requests",
        action={"requests": [name]},
        active=True,
        events_to_remove=remove,
        amount=amount,
        rescale_policy=policy,
        rescale_type=rtype,
        boundary_types=boundary_types,
        deadband=deadband,
    )


CPU_FIT_DOWN_DEADBAND = 5.0
"""CpuFitDown cuts no less than 5 % of the current limit: a steady demand's noise (a few
percent) otherwise ratchets the limit down in steps of 2–3 % that a throttled window
raises again, a write and a decision each."""


def adaptive_rules() -> list[Rule]:
    """The adaptive profile's request rules (`sc_actors/profiles.py`), on the same events.

    CpuFitUp: one window above `upper` → fit to the demand seen through throttling.
    CpuFitDown: two windows below `lower` and none above → fit to usage (0.8 s at 0.4 s),
    when that cuts at least 5 % of the current (`CPU_FIT_DOWN_DEADBAND`).
    MemFitUp / MemFitDown: the same, at least +256 MiB up (growing memory must find room
    before the next window: at its limit a cgroup v1 container is OOM-killed), five
    windows down (memory comes down slower).
    """
    fit = "fit_to_demand"
    return [
        _request_rule("CpuFitUp", "cpu", _events((">=", 1), (">=", 0)), fit, "up", 1, boundary_types=["adaptive"]),
        _request_rule("CpuFitDown", "cpu", _events(("<=", 0), (">=", 2)), fit, "down", 2, boundary_types=["adaptive"],
                      deadband=CPU_FIT_DOWN_DEADBAND),
        _request_rule("MemFitUp", "mem", _events((">=", 1), (">=", 0)), fit, "up", 1, 256, ["adaptive"]),
        _request_rule("MemFitDown", "mem", _events(("<=", 0), (">=", 5)), fit, "down", 5, boundary_types=["adaptive"]),
    ]


def default_rules() -> list[Rule]:
    """The original's shipped rules (reference §1.4), as documents."""
    rules: list[Rule] = []
    for res, title in (("cpu", "Cpu"), ("mem", "Mem")):
        rules.append(_event_rule(f"{res}_exceeded_upper", res, _exceeded_upper(res), "up"))
        rules.append(_event_rule(f"{res}_dropped_lower", res, _dropped_lower(res), "down"))
    rules += [
        # CpuRescaleUp: 2 up and at most 2 down events → +75 shares.
        _request_rule("CpuRescaleUp", "cpu", _events((">=", 2), ("<=", 2)), "amount", "up", 2, 75, ORIGINAL_TYPES),
        # CpuRescaleDown: 6 down and no up events → fit the limit to the usage.
        _request_rule("CpuRescaleDown", "cpu", _events(("<=", 0), (">=", 6)), "fit_to_usage", "down", 6,
                      boundary_types=ORIGINAL_TYPES),
        _request_rule("MemRescaleUp", "mem", _events((">=", 2), ("<=", 6)), "amount", "up", 2, 256, ORIGINAL_TYPES),
        _request_rule("MemRescaleDown", "mem", _events(("<=", 0), (">=", 8)), "fit_to_usage", "down", 8,
                      boundary_types=ORIGINAL_TYPES),
    ]
    rules += adaptive_rules()
    for res, title in (("disk_read", "Disk_read"), ("disk_write", "Disk_write")):
        rules.append(_event_rule(f"{res}_exceeded_upper", res, _exceeded_upper(res), "up"))
        rules.append(_event_rule(f"{res}_dropped_lower", res, _dropped_lower(res), "down"))
        rules.append(
            _request_rule(f"{title}RescaleUp", res, _events((">=", 1), ("<=", 6)), "amount", "up", 1, 450)
        )
        rules.append(
            _request_rule(f"{title}RescaleDown", res, _events(("<=", 0), (">=", 6)), "fit_to_usage", "down", 6)
        )
    rules += [
        _event_rule(
            "energy_exceeded_upper",
            "energy",
            {">": [_var("energy", "structure", "usage"), _var("energy", "structure", "max")]},
            "up",
        ),
        _event_rule(
            "energy_dropped_lower_and_cpu_exceeded_upper",
            "energy",
            {
                "and": [
                    {"<": [_var("energy", "structure", "usage"), _var("energy", "limits", "upper")]},
                    {">": [{"var": "cpu.structure.cpu.usage"}, {"var": "cpu.limits.cpu.upper"}]},
                ]
            },
            "down",
        ),
        # NOTE: the energy polarity is inverted in the original (reference §1.4).
        _request_rule("EnergyRescaleUp", "energy", _events(("<=", 1), (">=", 3)), "proportional", "up", 3, 20),
        _request_rule("EnergyRescaleDown", "energy", _events((">=", 4), ("<=", 1)), "proportional", "down", 4, -20),
    ]
    # ReBalancer rules, inactive as shipped.
    rebalancer_rules: tuple[tuple[str, JsonObject], ...] = (
        (
            "cpu_usage_low",
            {
                "and": [
                    {">=": [{"-": [_var("cpu", "structure", "current"), _var("cpu", "structure", "min")]}, 25]},
                    {"<": [{"/": [_var("cpu", "structure", "usage"), _var("cpu", "structure", "current")]}, 0.4]},
                ]
            },
        ),
        (
            "cpu_usage_high",
            {
                "and": [
                    {">=": [{"-": [_var("cpu", "structure", "max"), _var("cpu", "structure", "current")]}, 25]},
                    {">": [{"/": [_var("cpu", "structure", "usage"), _var("cpu", "structure", "current")]}, 0.7]},
                ]
            },
        ),
    )
    for name, rule in rebalancer_rules:
        rules.append(Rule(name=name, resource="cpu", rule=rule, generates="", action={}, active=False))
    return rules


def upgrade_rules(stored: Mapping[str, Document]) -> list[Rule]:
    """Rules to write into a StateDB made before the adaptive profile: its rules, and
    the original's cpu and mem request rules limited to the original's boundary types
    (without that, both sets would serve an adaptive container); or, in one made before
    `deadband`, the adaptive rules' deadband where the stored rule has no such key (a
    user's own value, None too, is kept). [] when up to date."""
    if any(r.name in stored for r in adaptive_rules()):
        return [Rule.model_validate({**doc, "deadband": rule.deadband}) for rule in adaptive_rules()
                if rule.deadband is not None and (doc := stored.get(rule.name)) is not None and "deadband" not in doc]
    out = list(adaptive_rules())
    for rule in default_rules():
        doc = stored.get(rule.name)
        if rule.boundary_types and doc is not None and doc.get("boundary_types") is None:
            out.append(Rule.model_validate({**doc, "boundary_types": rule.boundary_types}))
    return out


def default_services() -> list[Service]:
    """Service documents with our fast defaults; every service starts ACTIVE but the ReBalancer."""
    return [
        Service(name="guardian", config=GuardianSettings().to_config()),
        Service(name="scaler", config=ScalerSettings().to_config()),
        Service(name="structures_snapshoter", config=StructuresSnapshoterSettings().to_config()),
        Service(name="database_snapshoter", config=DatabaseSnapshoterSettings().to_config()),
        Service(name="refeeder", config=RefeederSettings().to_config()),
        Service(name="rebalancer", config=RebalancerSettings().to_config()),
    ]
