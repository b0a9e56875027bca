"""The one document model: structures, limits, rules, events, requests, services.

Names and units are the original's (reference §1): CPU in shares (100 = one core),
memory in MiB, `boundary` an integer percentage, rules in JSON-logic. The API, the
actors, the journal and the Parquet files all carry these same documents.
"""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal, NamedTuple, Optional, Union

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator
from pydantic import JsonValue as JsonValue  # re-exported: the recursive JSON type
from typing_extensions import NotRequired, TypeGuard, TypedDict

RESOURCES = ("cpu", "mem", "disk", "disk_read", "disk_write", "net", "energy")
ResourceName = Literal["cpu", "mem", "disk", "disk_read", "disk_write", "net", "energy"]
GUARDABLE = ("cpu", "mem", "disk_read", "disk_write", "net", "energy")
_RESOURCE_SET = frozenset(RESOURCES)


def is_resource(name: str) -> TypeGuard[ResourceName]:
    """Whether `name` is one of RESOURCES (narrows a str read from settings or a URL)."""
    return name in _RESOURCE_SET


BoundaryType = Literal["percentage_of_max", "percentage_of_current", "adaptive"]
"""How `boundary` makes the margin: percent of max or of current (the original's), or
`adaptive`: percent of current with a floor per resource, served by the fit-to-demand
rules of the adaptive profile (`policy.limits.margin`, `sc_actors/profiles.py`)."""
RescalePolicy = Literal["amount", "proportional", "fit_to_usage", "fit_to_demand"]
RescaleType = Literal["up", "down"]
AppState = Literal["running", "stopped", "hdfs_downloading", "hdfs_uploading"]
StructureKind = Literal["container", "application", "user"]
ScaledField = Literal["current", "max"]
"""The field of a resource a request changes."""

NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
_NAME_RE = re.compile(NAME_PATTERN)


def check_name(name: str) -> str:
    """A structure name that is safe in a path, a URL and a metric label.

    Letters, digits and `._-`, starting with a letter or digit, at most 128
    characters: so no `/`, no `..` component, nothing empty.
    """
    if not isinstance(name, str) or not _NAME_RE.fullmatch(name) or ".." in name:
        raise ValueError(
            f"invalid name {name!r}: use letters, digits and '._-' (no '/', no '..', 1-128 chars)"
        )
    return name


Document = dict[str, Any]
"""A stored document of one collection (structures, limits, rules, services, users) as
JSON: what the StateDB holds, the journal and the checkpoint write, and the API returns.
Every write validates it by its collection's model below (`sc_actors/store`), and
unknown keys of the original's documents are kept, so it stays a JSON object; the
messages between actors that are not stored documents have types of their own."""

JsonObject = dict[str, JsonValue]
"""Free-form JSON that is not a stored document: a JSON-logic rule and the data it reads,
a rule's action, a service's config. `JsonValue` (pydantic's) is the recursive
`None | bool | int | float | str | list[JsonValue] | dict[str, JsonValue]`: a reader
narrows a value (isinstance) before using it as a number or an object."""

Name = Annotated[str, Field(pattern=NAME_PATTERN, max_length=128, examples=["host0-cont0"])]


class _Doc(BaseModel):
    # Unknown keys are kept so documents of the original (disk, energy, legacy
    # fields) round-trip, but every key we use is typed.
    model_config = ConfigDict(extra="allow", validate_assignment=True)


# --------------------------------------------------------------------------- structures


class Resource(_Doc):
    """One resource of a container, application or user (reference §1.2)."""

    max: Optional[float] = Field(None, ge=0)
    min: Optional[float] = Field(None, ge=0)
    current: Optional[float] = Field(None, ge=0)
    usage: Optional[float] = None
    guard: bool = False
    weight: Optional[float] = Field(None, ge=0)

    @model_validator(mode="after")
    def _ordered(self) -> "Resource":
        if self.min is not None and self.max is not None and self.min > self.max:
            raise ValueError(f"min {self.min} > max {self.max}")
        if self.current is not None:
            if self.max is not None and self.current > self.max:
                raise ValueError(f"current {self.current} > max {self.max}")
            if self.min is not None and self.current < self.min:
                raise ValueError(f"current {self.current} < min {self.min}")
        return self


class CoreShares(_Doc):
    """One logical core of a host: `free` shares plus container name → shares."""

    model_config = ConfigDict(extra="allow")
    free: float = 100


class HostResource(_Doc):
    max: float = Field(..., ge=0)
    free: float = Field(..., ge=0)
    core_usage_mapping: Optional[dict[str, dict[str, float]]] = None


class _Structure(_Doc):
    type: Literal["structure"] = "structure"
    name: Name
    guard: bool = False


class Container(_Structure):
    subtype: Literal["container"] = "container"
    host: Name
    host_rescaler_ip: Optional[str] = None
    host_rescaler_port: Optional[str] = None
    resources: dict[ResourceName, Resource]

    def resource(self, name: str) -> Optional[Resource]:
        """The resource `name`; None when absent or `name` is not a resource."""
        return self.resources.get(name) if is_resource(name) else None

    @field_validator("resources")
    @classmethod
    def _cpu_mem(cls, v: dict[str, Resource]) -> dict[str, Resource]:
        missing = {"cpu", "mem"} - set(v)
        if missing:
            raise ValueError(f"resources {sorted(missing)} are mandatory for a container")
        for res in ("cpu", "mem"):
            r = v[res]
            if r.max is None or r.min is None:
                raise ValueError(f"resource {res} needs max and min")
        if v["mem"].min is not None and v["mem"].min < 64:
            raise ValueError("mem min must be at least 64 MiB")
        return v


class Host(_Structure):
    subtype: Literal["host"] = "host"
    host: Optional[str] = None
    host_rescaler_ip: Optional[str] = None
    host_rescaler_port: Optional[str] = None
    resources: dict[str, HostResource]
    reachable: bool = True
    """False while the host's Ray node is gone (our addition, issue 4)."""
    agent: Optional[str] = None
    """The host whose ContainerScaler serves this one (a simulated host of the scale
    benchmark); None: its own (our addition, issue 16)."""

    @model_validator(mode="after")
    def _cpu_map(self) -> "Host":
        cpu = self.resources.get("cpu")
        if cpu is None or "mem" not in self.resources:
            raise ValueError("a host needs cpu and mem resources")
        if cpu.max % 100:
            raise ValueError(f"host cpu max must be a multiple of 100 shares, got {cpu.max}")
        if cpu.core_usage_mapping is None:
            cpu.core_usage_mapping = {str(i): {"free": 100} for i in range(int(cpu.max // 100))}
        return self


class Application(_Structure):
    subtype: Literal["application"] = "application"
    resources: dict[ResourceName, Resource]
    containers: list[Name] = Field(default_factory=list)
    state: AppState = "stopped"
    user: Optional[Name] = None
    install_script: str = ""
    install_files: str = ""
    runtime_files: str = ""
    output_dir: str = ""
    start_script: str = ""
    stop_script: str = ""
    framework: str = ""

    def resource(self, name: str) -> Optional[Resource]:
        """The resource `name`; None when absent or `name` is not a resource."""
        return self.resources.get(name) if is_resource(name) else None


Structure = Annotated[Union[Container, Host, Application], Field(discriminator="subtype")]


class User(_Doc):
    type: Literal["user"] = "user"
    subtype: Literal["user"] = "user"
    name: Name
    balancing_method: str = "pair_swapping"
    resources: dict[ResourceName, Resource]
    clusters: list[Name] = Field(default_factory=list)
    guard: bool = False

    def resource(self, name: str) -> Optional[Resource]:
        """The resource `name`; None when absent or `name` is not a resource."""
        return self.resources.get(name) if is_resource(name) else None


# --------------------------------------------------------------------------- limits


class LimitResource(_Doc):
    """Boundaries of one resource (reference §1.3); upper/lower are the Guardian's."""

    boundary: int = Field(10, ge=0, le=100)
    boundary_type: BoundaryType = "percentage_of_max"
    upper: Optional[float] = None
    lower: Optional[float] = None


class Limits(_Doc):
    type: Literal["limit"] = "limit"
    name: Name
    resources: dict[ResourceName, LimitResource] = Field(default_factory=dict)


# --------------------------------------------------------------------------- rules


class Rule(_Doc):
    """An event or request rule (reference §1.4). `rule` is JSON-logic."""

    type: Literal["rule"] = "rule"
    name: Name
    resource: ResourceName
    rule: JsonObject
    generates: Literal["events", "requests", ""]
    action: JsonObject = Field(default_factory=dict)
    active: bool = True
    events_to_remove: Optional[int] = Field(None, ge=0)
    amount: Optional[int] = None
    rescale_policy: Optional[RescalePolicy] = None
    rescale_type: Optional[RescaleType] = None
    boundary_types: Optional[list[BoundaryType]] = None
    """Our addition: a request rule serves only resources whose limits have one of these
    boundary types (None: every type), so the original's rules and the adaptive
    profile's live side by side, each container served by the set its limits ask for."""
    deadband: Optional[float] = Field(None, ge=0, le=50)
    """Our addition: a request of this rule for less than this percentage of the current
    limit is not made, its events go as for an amount of 0: a change too small to be worth
    a write (VPA ignores changes under 10 %). The adaptive profile's CpuFitDown: 5."""

    @model_validator(mode="after")
    def _request_fields(self) -> "Rule":
        if self.generates == "requests":
            if self.rescale_policy is None or self.rescale_type is None:
                raise ValueError("a request rule needs rescale_policy and rescale_type")
            if self.rescale_policy in ("amount", "proportional") and self.amount is None:
                raise ValueError(f"policy {self.rescale_policy} needs an amount")
            if self.rescale_policy == "fit_to_usage" and self.rescale_type != "down":
                raise ValueError("fit_to_usage is a scale-down policy")
        return self


# --------------------------------------------------------------------------- events, requests


class Event(_Doc):
    type: Literal["event"] = "event"
    name: str
    resource: ResourceName
    structure: Name
    action: JsonObject
    timestamp: float


class Request(_Doc):
    """A scaling request (reference §1.6), plus where it came from (our addition)."""

    type: Literal["request"] = "request"
    resource: ResourceName
    amount: int
    priority: int = 0
    structure: Name
    action: str
    field: ScaledField = "current"
    timestamp: float
    structure_type: StructureKind = "container"
    host: Optional[str] = None
    host_rescaler_ip: Optional[str] = None
    host_rescaler_port: Optional[str] = None
    pair_structure: Optional[str] = None
    # Our additions: the decision log of issue 8, filled by the Guardian.
    rule: Optional[str] = None
    usage: Optional[float] = None
    window_end: Optional[float] = None
    amount_requested: Optional[int] = None


# --------------------------------------------------------------------------- services


class Service(_Doc):
    type: Literal["service"] = "service"
    name: Name
    heartbeat: float = 0.0
    heartbeat_human: str = ""
    config: JsonObject = Field(default_factory=dict)


# --------------------------------------------------------------------------- node side


class ContainerLimits(BaseModel):
    """Limits as a node reads them from the cgroup files (NodeRescaler GET, §5.1).

    `cpu_allowance_limit` in shares (−1 unlimited), `cpu_num` the cpuset list,
    `mem_limit` in MiB (−1 unlimited).
    """

    cpu_allowance_limit: float = -1
    cpu_num: str = ""
    mem_limit: float = -1

    @property
    def effective_num_cpus(self) -> int:
        from .units import parse_cpu_list

        return len(parse_cpu_list(self.cpu_num)) if self.cpu_num else 0

    @property
    def effective_cpu_limit(self) -> float:
        n = self.effective_num_cpus * 100
        if self.cpu_allowance_limit == -1:
            return n
        return min(self.cpu_allowance_limit, n) if n else self.cpu_allowance_limit

    def as_original(self) -> dict[str, JsonObject]:
        """The NodeRescaler's answer shape, for the original's users."""
        return {
            "cpu": {
                "cpu_allowance_limit": self.cpu_allowance_limit,
                "cpu_num": self.cpu_num,
                "effective_num_cpus": self.effective_num_cpus,
                "effective_cpu_limit": self.effective_cpu_limit,
            },
            "mem": {"mem_limit": self.mem_limit, "unit": "unlimited" if self.mem_limit == -1 else "M"},
        }


class LimitChange(BaseModel):
    """What the Scaler asks a node to write. Absent fields are left as they are."""

    cpu_allowance_limit: Optional[float] = None
    cpu_num: Optional[str] = None
    mem_limit: Optional[float] = None


class Bounds(BaseModel):
    """[min, max] per resource that a node checks every write against."""

    cpu: tuple[float, float] = (0, float("inf"))
    mem: tuple[float, float] = (64, float("inf"))


class ContainerUsage(TypedDict):
    """Average usage over one window: cpu in shares, mem in MiB (no page cache).

    Usage pinned at the limit hides the demand; two throttling signals show it:
    `cpu_throttled`, the share of the window's CFS periods in which the container ran
    out of quota (0..1; 0 without a quota), and `cpu_held_back`, the runnable time the
    quota held back, in shares (the kernel's throttled time, summed over CPUs). A typed
    dict, not a model: a node's batch holds thousands, validated as plain dicts in one
    pass and used as they are.
    """

    cpu: float
    mem: float
    cpu_throttled: NotRequired[float]
    cpu_held_back: NotRequired[float]


class UsageBatch(BaseModel):
    """One window of usage for every container of one node, pushed as one message."""

    host: str
    window_start: float
    window_end: float
    usages: dict[str, ContainerUsage]


class HostInfo(BaseModel):
    """What a node tells about itself when its ContainerScaler starts."""

    name: str
    cores: int
    mem_mib: int
    topology: dict[str, dict[str, list[int]]] = Field(default_factory=dict)
    node_id: str = ""
    backend: str = ""


class Applied(BaseModel):
    """What a node did with one container's write (`ContainerScaler.apply`, `apply_many`).

    `ok` with the `limits` read back after the write, or not `ok` with the `error`
    that refused it (nothing of that container was written).
    """

    model_config = ConfigDict(frozen=True)

    name: str
    ok: bool
    error: str = ""
    limits: Optional[ContainerLimits] = None


class Written(NamedTuple):
    """What a node did with one write of a batch (`ContainerScaler.apply_many`): `ok`, or not
    with the `error` that refused it (nothing of that container written). `Applied` without the
    limits read back: a batch's writer needs only the outcome, and a tuple costs Ray a fraction
    of a pydantic object to send."""

    name: str
    ok: bool
    error: str = ""
