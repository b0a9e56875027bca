"""Typed read-models of the StateDB: what each consumer gets in one call, and the log entries.

Each view is one function of the `State` (no Ray), returning a TypedDict whose keys are
exactly what the StateDB has always sent, so the consumers (Guardian, Scaler, ReBalancer,
snapshoters, Membership, `GET /health`) read the same dicts as before, now with types.
Stored documents inside a view are `model.Document`; a service's `config` is free-form
JSON (the original's upper-case keys) and stays `dict[str, Any]`.
"""
from __future__ import annotations

from typing import Any, Literal, Optional

from typing_extensions import TypedDict

from ..model import Document

Usage = dict[str, float]
"""One structure's usage of its last window, per resource (cpu in shares, mem in MiB)."""

Bound = tuple[float, float]
"""(upper, lower) of one resource, as the Guardian reports them."""


# --------------------------------------------------------------------------- status


class Status(TypedDict):
    """`StateDB.ping`: the journal's state and this actor's life."""

    seq: int
    replayed: int
    journal_bytes: int
    checkpoint_age_s: float
    started: float
    pid: int


# --------------------------------------------------------------------------- log entries


class EventEntry(TypedDict):
    """One event of the Guardian (`model.Event` dumped), kept in the volatile event log."""

    type: Literal["event"]
    name: str
    resource: str
    structure: str
    action: dict[str, Any]  # a rule's JSON action, free-form as the original's
    timestamp: float


class RequestEntry(TypedDict, total=False):
    """One entry of the decision log: a request (`model.Request` dumped) and what became of it,
    or a container's own life (`ContainerMissing`, `ContainerBack`, `ContainerReleased`)."""

    type: Literal["request"]
    resource: str
    amount: int
    priority: int
    structure: str
    action: str
    field: Literal["current", "max"]
    timestamp: float
    structure_type: str
    host: Optional[str]
    host_rescaler_ip: str
    host_rescaler_port: str
    pair_structure: str
    rule: str
    usage: float
    window_end: float
    amount_requested: int
    outcome: str
    reason: str
    applied_at: float
    amount_applied: float
    new_current: float
    new_max: float
    swap_with: str


# --------------------------------------------------------------------------- Guardian


class GuardianChanges(TypedDict):
    """`StateDB.guardian_changes`: what one Guardian window needs that the Guardian does not hold.

    `rules` and `config` are None when not written since the Guardian's `since`.
    """

    instance: str
    seq: int
    structures: dict[str, Document]
    limits: dict[str, Optional[Document]]
    gone: list[str]
    rules: Optional[list[Document]]
    config: Optional[dict[str, Any]]  # the guardian service's free-form config


class GroupGuardianView(TypedDict):
    """`StateDB.group_guardian_view`: applications (or users) anchored at a host, with their sums."""

    structures: list[Document]
    limits: dict[str, Optional[Document]]
    usages: dict[str, Usage]


# --------------------------------------------------------------------------- Scaler, ReBalancer


class ScalerView(TypedDict):
    """`StateDB.scaler_view`: containers, their hosts, limits and latest usage, the Scaler's config."""

    structures: dict[str, Document]
    hosts: dict[str, Document]
    limits: dict[str, Optional[Document]]
    usages: dict[str, Usage]
    config: dict[str, Any]  # the scaler service's free-form config


class GroupScalerView(TypedDict):
    """`StateDB.group_scaler_view`: applications (with sums) and their containers, users, hosts."""

    structures: dict[str, Document]
    users: dict[str, Document]
    hosts: dict[str, Document]
    limits: dict[str, Optional[Document]]
    usages: dict[str, Usage]


class RebalancerView(GroupScalerView):
    """`StateDB.rebalancer_view`: the group scaler view of what is anchored at a host, plus the
    ReBalancer's config and the rules by name."""

    applications: list[str]
    user_names: list[str]
    config: dict[str, Any]  # the rebalancer service's free-form config
    rules: dict[str, Document]


HostFields = dict[str, float | dict[str, dict[str, float]]]
"""New accounting fields of one host resource (`max`, `free`, `core_usage_mapping`...)."""


# --------------------------------------------------------------------------- snapshoters


SeriesFields = dict[str, Optional[float]]
"""Field → value of one resource in a time-series snapshot (None when the document has none)."""


class SeriesEntry(TypedDict):
    """One container or application in `TimeseriesSnapshot.structures`."""

    name: str
    subtype: str
    resources: dict[str, SeriesFields]
    limits: dict[str, SeriesFields]


class UserSeries(TypedDict):
    """One user in `TimeseriesSnapshot.users`: its resources with the Refeeder's sums."""

    name: str
    resources: dict[str, SeriesFields]


class TimeseriesSnapshot(TypedDict):
    """`StateDB.timeseries_snapshot`: one consistent snapshot for the DatabaseSnapshoter (§7.2)."""

    structures: list[SeriesEntry]
    users: list[UserSeries]
    services: dict[str, dict[str, Any]]  # service name → its free-form config


class Drift(TypedDict):
    """One entry of `StateDB.drift`: a container whose real limit differs from its `current`."""

    structure: str
    host: Optional[str]
    resource: str
    recorded: Optional[float]
    real: float


# --------------------------------------------------------------------------- health, membership


class JournalHealth(TypedDict):
    """The journal's part of `HealthView` (the fields of `policy.health.JournalState`)."""

    records: int
    size_bytes: int
    checkpoint_age_s: float
    written_age_s: float
    checkpoint_every_s: float
    state_dir: str


class HealthView(TypedDict):
    """`StateDB.health_view`: what `policy.health.check` looks at; the API adds the live nodes."""

    now: float
    started: float
    structures: list[Document]
    users: list[Document]
    rules: list[Document]
    services: list[Document]
    snapshoter_config: dict[str, Any]  # the structures_snapshoter's free-form config
    journal: JournalHealth


class HostEnsured(TypedDict):
    """`StateDB.ensure_host`: whether the host structure was created, and a capacity mismatch."""

    created: bool
    mismatch: Optional[str]


__all__ = [
    "Bound", "Drift", "EventEntry", "GroupGuardianView", "GroupScalerView", "GuardianChanges", "HealthView",
    "HostEnsured", "HostFields", "JournalHealth", "RebalancerView", "RequestEntry", "ScalerView",
    "SeriesEntry", "SeriesFields", "Status", "TimeseriesSnapshot", "Usage", "UserSeries",
]
