"""Builders of model documents for tests, in place of dict literals (STYLE §1, §6.13).

Resources are given as `(min, current, max)` triples, limits as `(boundary, type)` or
`(boundary, type, upper, lower)`. Pass `unchecked=True` to build a document the model
would refuse (e.g. current above max), as the original's data sometimes is.
"""
from __future__ import annotations

from typing import Any, Iterable, Optional, Union

from sc_actors.defaults import default_rules
from sc_actors.model import (
    Application,
    Container,
    ContainerLimits,
    Event,
    Host,
    HostResource,
    LimitResource,
    Limits,
    Request,
    Resource,
    Rule,
)

Triple = tuple[float, float, float]
"""(min, current, max)."""
LimitSpec = Union[LimitResource, tuple[Any, ...]]

POM = "percentage_of_max"
POC = "percentage_of_current"


# --------------------------------------------------------------------------- structures


def resource(
    min_: Optional[float] = 50,
    current: Optional[float] = 140,
    max_: Optional[float] = 200,
    *,
    usage: Optional[float] = None,
    guard: bool = True,
    unchecked: bool = False,
) -> Resource:
    fields = {"min": min_, "current": current, "max": max_, "usage": usage, "guard": guard, "weight": None}
    return Resource.model_construct(**fields) if unchecked else Resource(**fields)


def _resources(specs: dict[str, Optional[Triple]], guard: bool, unchecked: bool) -> dict[str, Resource]:
    return {
        name: resource(*spec, guard=guard, unchecked=unchecked) for name, spec in specs.items() if spec is not None
    }


def container(
    name: str = "c0",
    cpu: Triple = (50, 140, 200),
    mem: Triple = (256, 4096, 8192),
    host: str = "h0",
    *,
    guard: bool = True,
    unchecked: bool = False,
    **more: Triple,
) -> Container:
    """A container; extra resources by keyword, e.g. `energy=(0, 20, 50)`."""
    fields = dict(
        name=name,
        host=host,
        host_rescaler_ip=host,
        host_rescaler_port="8000",
        guard=guard,
        resources=_resources({"cpu": cpu, "mem": mem, **more}, guard, unchecked),
    )
    return Container.model_construct(**fields) if unchecked else Container(**fields)


def application(
    name: str = "app0",
    cpu: Triple = (20, 400, 1600),
    mem: Triple = (512, 8192, 24576),
    containers: Iterable[str] = (),
    *,
    state: str = "running",
    guard: bool = True,
    unchecked: bool = False,
) -> Application:
    fields = dict(
        name=name,
        guard=guard,
        state=state,
        containers=list(containers),
        resources=_resources({"cpu": cpu, "mem": mem}, guard, unchecked),
    )
    return Application.model_construct(**fields) if unchecked else Application(**fields)


def host(
    name: str = "h0",
    cores: int = 4,
    mem: Union[float, tuple[float, float]] = 16384,
    *,
    core_map: Optional[dict[str, dict[str, float]]] = None,
    cpu_free: Optional[float] = None,
) -> Host:
    """A host with `cores` free cores, or with the given `core_map` (its free shares summed).

    `mem` is the max, or `(max, free)`.
    """
    mem_max, mem_free = mem if isinstance(mem, tuple) else (mem, mem)
    if core_map is None:
        core_map = {str(i): {"free": 100} for i in range(cores)}
    free = sum(entry.get("free", 0) for entry in core_map.values()) if cpu_free is None else cpu_free
    return Host(
        name=name,
        host=name,
        host_rescaler_ip=name,
        host_rescaler_port="8000",
        resources={
            "cpu": HostResource(max=100 * len(core_map), free=free, core_usage_mapping=core_map),
            "mem": HostResource(max=mem_max, free=mem_free),
        },
    )


def physical(cpu: float = 200, cpu_num: str = "0,1", mem: float = 4096) -> ContainerLimits:
    """A container's limits as its node reads them."""
    return ContainerLimits(cpu_allowance_limit=cpu, cpu_num=cpu_num, mem_limit=mem)


# --------------------------------------------------------------------------- limits


def limit(
    boundary: int = 10, boundary_type: str = POM, upper: Optional[float] = None, lower: Optional[float] = None
) -> LimitResource:
    return LimitResource(boundary=boundary, boundary_type=boundary_type, upper=upper, lower=lower)


def limits(name: str = "c0", **resources: LimitSpec) -> Limits:
    """E.g. `limits(cpu=(10, POM, 120, 100))`, `limits(mem=(25, POC))`."""
    return Limits(
        name=name,
        resources={r: spec if isinstance(spec, LimitResource) else limit(*spec) for r, spec in resources.items()},
    )


# --------------------------------------------------------------------------- rules, events, requests


def shipped_rules(*names: str) -> list[Rule]:
    """The shipped rules (`sc_actors.defaults`), all of them or those named."""
    rules = default_rules()
    if not names:
        return rules
    by_name = {r.name: r for r in rules}
    return [by_name[n] for n in names]


def request_rule(
    name: str,
    resource: str = "cpu",
    up: tuple[str, int] = (">=", 2),
    down: tuple[str, int] = ("<=", 2),
    *,
    policy: str = "amount",
    rescale_type: str = "up",
    remove: int = 2,
    amount: Optional[int] = None,
) -> Rule:
    """A request rule on the event counts: `and` of an up and a down comparison."""
    return Rule(
        name=name,
        resource=resource,
        rule={
            "and": [
                {up[0]: [{"var": "events.scale.up"}, up[1]]},
                {down[0]: [{"var": "events.scale.down"}, down[1]]},
            ]
        },
        generates="requests",
        action={"requests": [name]},
        active=True,
        events_to_remove=remove,
        amount=amount,
        rescale_policy=policy,
        rescale_type=rescale_type,
    )


def event(
    structure: str = "c0",
    resource: str = "cpu",
    *,
    up: int = 0,
    down: int = 0,
    timestamp: float = 0.0,
    name: Optional[str] = None,
) -> Event:
    scale = {k: v for k, v in (("up", up), ("down", down)) if v}
    default_name = resource.title() + ("Bottleneck" if up > down else "Underuse")
    return Event(
        name=name or default_name,
        resource=resource,
        structure=structure,
        action={"events": {"scale": scale}},
        timestamp=timestamp,
    )


def reduced(resource: str = "cpu", up: int = 0, down: int = 0) -> dict[str, dict[str, Any]]:
    """Reduced event counts, as `reduce_events` returns them."""
    return {resource: {"events": {"scale": {"up": up, "down": down}}}}


def request(
    structure: str = "c0",
    resource: str = "cpu",
    amount: int = 75,
    *,
    field: str = "current",
    priority: int = 0,
    timestamp: float = 0.0,
    pair: Optional[str] = None,
    host: Optional[str] = "h0",
    action: Optional[str] = None,
) -> Request:
    return Request(
        resource=resource,
        amount=amount,
        priority=priority,
        structure=structure,
        action=action or resource.title() + ("RescaleUp" if amount > 0 else "RescaleDown"),
        field=field,
        timestamp=timestamp,
        host=host,
        pair_structure=pair,
    )
