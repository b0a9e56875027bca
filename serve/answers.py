"""What the API answers, when it is not a stored document: the routes return these and
`serve.client` reads them.

Standard library and typing_extensions only, so the CLI's client imports it without
pydantic. NOTE: numbers are `int | float`: a stored 50 goes out as 50, not 50.0.
"""
from __future__ import annotations

from typing import Any, Optional, Union

from typing_extensions import TypedDict

Document = dict[str, Any]
"""A stored document as JSON: the same alias as `sc_actors.model.Document`, which the
client cannot import (it would pull in pydantic)."""

Number = Union[int, float]


class Message(TypedDict):
    """`{"message": …}`: what a deletion answers (and every error, `serve.app`)."""

    message: str


class StatusRow(TypedDict):
    """One container and resource of `GET /status`: usage against its limits."""

    container: str
    host: Optional[str]
    resource: str
    guard: bool
    usage: Optional[Number]
    current: Optional[Number]
    upper: Optional[Number]
    lower: Optional[Number]
    min: Optional[Number]
    max: Optional[Number]
    missing_since: Optional[float]


class ServiceState(TypedDict):
    name: str
    active: Optional[bool]
    heartbeat: float


class Status(TypedDict):
    time: float
    containers: list[StatusRow]
    services: list[ServiceState]


class ProblemJson(TypedDict):
    kind: str
    subject: str
    message: str


class ShardBeat(TypedDict):
    """One Guardian or Scaler shard of `GET /health` and its last heartbeat (0: none yet)."""

    name: str
    heartbeat: float


class Health(TypedDict):
    time: float
    ok: bool
    problems: list[ProblemJson]
    shards: list[ShardBeat]
    """Every Guardian and Scaler shard (`guardian`, `guardian-1`, …, `scaler`, …)."""


class ProfileLimit(TypedDict):
    boundary: Number
    boundary_type: str


class Profiles(TypedDict):
    """`GET /profile`: the profile in force, each profile's limits per resource, the timings."""

    profile: str
    profiles: dict[str, dict[str, ProfileLimit]]
    timings: list[str]


class ProfileApplied(TypedDict):
    profile: str
    timing: Optional[str]
    limits_changed: int
    services_changed: list[str]
