"""Request bodies of the Orchestrator API, with the original's shapes (reference §6).

Documents themselves are the one model (`sc_actors.model`); these only wrap them
the way the original's routes expect (`{"container": …, "limits": …}`,
`{"value": …}`) and carry the examples shown at /docs. Numbers the original's
scripts send as strings (`{"value": "10"}`) are accepted, as pydantic's lax
mode turns "10" into 10.
"""
from __future__ import annotations

from typing import Annotated, Any, ClassVar, Literal, Optional, Union

from fastapi import Path
from pydantic import AfterValidator, BaseModel, ConfigDict, Field, model_validator
from pydantic.config import JsonDict

from sc_actors.model import (
    NAME_PATTERN,
    AppState,
    Application,
    BoundaryType,
    Container,
    Host,
    LimitResource,
    ResourceName,
    User,
    check_name,
)

RESERVED_NAMES = ("container", "host", "apps", "clusters")
"""Path words of the original's routes: a structure so named could not be addressed."""


def _not_reserved(name: str) -> str:
    check_name(name)
    if name in RESERVED_NAMES:
        raise ValueError(f"{name!r} is reserved by the API's routes")
    return name


PathName = Annotated[
    str,
    Path(pattern=NAME_PATTERN, max_length=128, description="a structure, rule, service or user name",
         examples=["host0-cont0"]),
    AfterValidator(check_name),
]
NewName = Annotated[
    str,
    Path(pattern=NAME_PATTERN, max_length=128, description="name of the structure to create", examples=["host0-cont0"]),
    AfterValidator(_not_reserved),
]


class _Body(BaseModel):
    model_config = ConfigDict(extra="forbid")


class _Wrapping(_Body):
    """A body `{"<_wraps>": document, …}` that also accepts the bare document, as the
    original's scripts send it."""

    _wraps: ClassVar[str]

    @model_validator(mode="before")
    @classmethod
    def _bare(cls, data: Any) -> Any:
        if isinstance(data, dict) and cls._wraps not in data and "name" in data:
            return {cls._wraps: data}
        return data


class NumberValue(_Body):
    """`{"value": N}`: a non-negative number up to 10⁹ (strings like "200" accepted)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": 200}, {"value": "4096"}]})
    # NOTE: 10⁹ shares or MiB is far beyond any host; a larger value is a typo or an attack.
    value: float = Field(..., ge=0, le=1e9, allow_inf_nan=False)


class IntValue(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": 75}]})
    value: int = Field(..., ge=-(10**9), le=10**9)


class BoundaryValue(_Body):
    """`{"value": 0..100}`: the boundary, a percentage (reference §1.3)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": 10}, {"value": "25"}]})
    value: int = Field(..., ge=0, le=100)


class BoundaryTypeValue(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": "percentage_of_max"}]})
    value: BoundaryType


class PolicyValue(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"value": "fit_to_usage"}]})
    value: Literal["amount", "proportional", "fit_to_usage", "modelling", "fixed-ratio"]


class EventsRequired(_Body):
    """How many events of one type a request rule needs (reference §6)."""

    model_config = ConfigDict(extra="forbid",
                              json_schema_extra={"examples": [{"value": "2", "event_type": "up"}]})
    value: int = Field(..., ge=0, le=10**6)
    event_type: Literal["up", "down"]


class ServiceValue(BaseModel):
    """`{"value": X}` for one key of a service's config; strings are coerced (reference §6)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "examples": [{"value": "true"}, {"value": "10"}, {"value": "0.5"}, {"value": ["cpu", "mem"]},
                     {"value": "container"}]})
    value: Union[bool, int, float, str, list[Any]]


class GuardResources(_Body):
    """`{"resources": [...]}` (a single name is accepted, as in the original)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"resources": ["cpu", "mem"]}]})
    resources: Union[list[ResourceName], ResourceName]

    def names(self) -> list[str]:
        return [self.resources] if isinstance(self.resources, str) else list(dict.fromkeys(self.resources))


MIN_BOUNDARY = 1
"""Smallest boundary the API stores: 0 % leaves a margin of one share or one MiB, a band
no real usage stays in, so the container is always scaling (the original accepted 0..100)."""


class LimitsBody(_Body):
    """The `limits` part of a subscription: boundary and boundary_type per resource."""

    model_config = ConfigDict(extra="allow")
    resources: dict[ResourceName, LimitResource] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _boundary_at_least_one(self) -> "LimitsBody":
        for res, lim in self.resources.items():
            if lim.boundary < MIN_BOUNDARY:
                raise ValueError(f"resources.{res}.boundary: {lim.boundary} leaves a margin of 1 between "
                                 f"current, upper and lower: give {MIN_BOUNDARY}..100 (a percentage)")
        return self


_CONTAINER_EXAMPLE: JsonDict = {
    "container": {
        "name": "host0-cont0",
        "resources": {
            "cpu": {"max": 200, "current": 200, "min": 20, "guard": False},
            "mem": {"max": 6144, "current": 6144, "min": 512, "guard": False},
        },
        "host_rescaler_ip": "host0",
        "host_rescaler_port": "8000",
        "host": "host0",
        "guard": False,
        "subtype": "container",
    },
    "limits": {"resources": {"cpu": {"boundary": 10, "boundary_type": "percentage_of_max"},
                             "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}}},
}


class ContainerSubscription(_Wrapping):
    """Body of `PUT /structure/container/<name>`; a bare container document also works."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_CONTAINER_EXAMPLE]})
    _wraps: ClassVar[str] = "container"
    container: Container
    limits: Optional[LimitsBody] = None


_HOST_EXAMPLE: JsonDict = {
    "name": "host0",
    "host": "host0",
    "subtype": "host",
    "host_rescaler_ip": "host0",
    "host_rescaler_port": "8000",
    "resources": {"cpu": {"max": 400, "free": 400}, "mem": {"max": 8192, "free": 8192}},
}


class HostSubscription(Host):
    """Body of `PUT /structure/host/<name>`, flat as in the original."""

    model_config = ConfigDict(extra="allow", json_schema_extra={"examples": [_HOST_EXAMPLE]})

    @model_validator(mode="after")
    def _free_within_max(self) -> "HostSubscription":
        for res, r in self.resources.items():
            if r.free > r.max:
                raise ValueError(f"resources.{res}: free {r.free:g} > max {r.max:g}")
        return self


_APP_EXAMPLE: JsonDict = {
    "app": {
        "name": "app1",
        "resources": {"cpu": {"max": 1600, "min": 20, "guard": False, "weight": 1},
                      "mem": {"max": 24576, "min": 512, "guard": False, "weight": 1}},
        "guard": False,
        "subtype": "application",
        "install_script": "", "install_files": "", "runtime_files": "", "output_dir": "",
        "start_script": "", "stop_script": "", "framework": "",
    },
    "limits": {"resources": {"cpu": {"boundary": 5, "boundary_type": "percentage_of_max"},
                             "mem": {"boundary": 5, "boundary_type": "percentage_of_max"}}},
}


class AppSubscription(_Body):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_APP_EXAMPLE]})
    app: Application
    limits: Optional[LimitsBody] = None


_USER_EXAMPLE: JsonDict = {"user": {"name": "user0", "subtype": "user", "balancing_method": "pair_swapping",
                          "resources": {"cpu": {"max": 2000, "min": 100}, "mem": {"max": 8192, "min": 1024}}}}


class UserSubscription(_Wrapping):
    """Body of `PUT /user/<name>`; a bare user document also works (as `subscribe_user.sh` sends)."""

    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [_USER_EXAMPLE]})
    _wraps: ClassVar[str] = "user"
    user: User

    @model_validator(mode="after")
    def _cpu_mem(self) -> "UserSubscription":
        missing = {"cpu", "mem"} - set(self.user.resources)
        if missing:
            raise ValueError(f"user resources {sorted(missing)} are mandatory")
        return self


__all__ = [
    "AppState",
    "AppSubscription",
    "BoundaryTypeValue",
    "BoundaryValue",
    "ContainerSubscription",
    "EventsRequired",
    "GuardResources",
    "HostSubscription",
    "IntValue",
    "LimitsBody",
    "MIN_BOUNDARY",
    "NewName",
    "NumberValue",
    "PathName",
    "PolicyValue",
    "ServiceValue",
    "UserSubscription",
]
