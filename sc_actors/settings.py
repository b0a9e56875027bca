"""Settings of every service, with units in the names and the original's keys as aliases.

Service documents in the StateDB keep the original's upper-case keys
(`WINDOW_TIMELAPSE`, `EVENT_TIMEOUT`, …) so the original's scripts work unchanged
(`PUT /service/guardian/WINDOW_TIMELAPSE {"value": "10"}`); the actors read them
through these typed settings. Our defaults are fast (reference §9 explains the
original's 20–45 s reaction); `ORIGINAL_PROFILE` restores the original's timing.
"""
from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field
from typing_extensions import Self

from .model import JsonObject, JsonValue

DAY_S = 86_400
"""Upper bound of every period and timeout, seconds: a larger value is a typo, refused."""

NAMESPACE = "serverless_containers"
"""The fixed Ray namespace of every control-plane actor."""

STATEDB_NAME = "statedb"
GUARDIAN_NAME = "guardian"
SCALER_NAME = "scaler"
STRUCTURES_SNAPSHOTER_NAME = "structures_snapshoter"
DATABASE_SNAPSHOTER_NAME = "database_snapshoter"
REBALANCER_NAME = "rebalancer"
CONTAINER_SCALER_PREFIX = "container-scaler:"
HOST_LABEL = "sc_host"
"""Ray node label naming the controlled host a node is (one ContainerScaler each)."""
HEAD_RESOURCES = {"node:__internal_head__": 0.001}
"""Ray resources that put an actor on the head node: the control plane lives there, never on a
controlled host, whose loss (a cut link) would stall every host's scaling (issue 17)."""
SHARD_HOME_LABEL = "sc_shard_home"
"""Ray node label `sc_shard_home=<i>`: Guardian and Scaler shard i (i ≥ 1) run on that node,
not on the head (`cluster.deploy`): the control plane spread over more machines."""


def container_scaler_name(host: str) -> str:
    return CONTAINER_SCALER_PREFIX + host


SHARDS_FIELD = "shards"
"""Field of the `guardian` service document holding how many Guardian and Scaler shards run:
the one place of that number. `cluster.deploy` writes it; the node agents, the Guardian and
Scaler shards and the API read it (`policy.shards.shards_of`); absent means 1."""
MAX_SHARDS = 64
"""Most shards a deployment may have (each shard is one Guardian and one Scaler actor)."""


def guardian_name(shard: int = 0) -> str:
    """The Guardian shard's actor name: shard 0 keeps the unsharded name `guardian`."""
    return GUARDIAN_NAME if shard == 0 else f"{GUARDIAN_NAME}-{shard}"


def scaler_name(shard: int = 0) -> str:
    """The Scaler shard's actor name: shard 0 (the coordinator of group requests) keeps `scaler`."""
    return SCALER_NAME if shard == 0 else f"{SCALER_NAME}-{shard}"


class _Settings(BaseModel):
    model_config = ConfigDict(populate_by_name=True, extra="ignore")

    active: bool = Field(True, alias="ACTIVE")
    debug: bool = Field(False, alias="DEBUG")

    @classmethod
    def from_config(cls, config: Mapping[str, JsonValue] | None) -> Self:
        """Settings from a service document's `config` (missing keys keep defaults)."""
        return cls.model_validate(config or {})

    def to_config(self) -> JsonObject:
        """The service document's `config`, with the original's keys."""
        return self.model_dump(by_alias=True)


class GuardianSettings(_Settings):
    window_s: float = Field(0.4, gt=0, le=DAY_S, alias="WINDOW_TIMELAPSE")
    """Usage window, seconds; one evaluation per window. Original default 10.
    Two windows make a scale-up (CpuRescaleUp needs 2 events): 0.4 s gives a
    reaction of 0.4–1.2 s, about 0.85 s on average, from the step to the quota."""
    window_delay_s: float = Field(0.0, ge=0, le=DAY_S, alias="WINDOW_DELAY")
    """Artificial delay of the window, seconds. Original 10 (shipped 20); ours 0:
    usage is pushed by the nodes when the window closes, nothing lags behind."""
    event_timeout_s: float = Field(4.0, gt=0, le=DAY_S, alias="EVENT_TIMEOUT")
    """Events older than this are forgotten, seconds. Must reach N·window for the
    rule needing the most events (MemRescaleDown, N = 8: 3.2 s at 0.4 s), as the
    original's SanityChecker demands; short, so a past burst soon stops blocking
    a scale-down."""
    structure_guarded: Literal["container", "application", "user"] = Field(
        "container", alias="STRUCTURE_GUARDED"
    )
    guardable_resources: list[str] = Field(
        default_factory=lambda: ["cpu", "mem"], alias="GUARDABLE_RESOURCES"
    )


class ScalerSettings(_Settings):
    polling_frequency_s: float = Field(5.0, gt=0, le=DAY_S, alias="POLLING_FREQUENCY")
    """Kept for the original's scripts: our Scaler acts on each pushed request at
    once and only uses this period to expire stale requests."""
    request_timeout_s: float = Field(10.0, gt=0, le=DAY_S, alias="REQUEST_TIMEOUT")
    """A request older than this is dropped, seconds (original 60)."""
    check_core_map: bool = Field(True, alias="CHECK_CORE_MAP")
    aligned_polling: bool = Field(False, alias="ALIGNED_POLLING")
    """Apply requests only on clock-aligned ticks of POLLING_FREQUENCY, as the
    original did (for side-by-side benchmarks); false = apply each at once."""
    profile: Literal["adaptive", "original"] = Field("adaptive", alias="PROFILE")
    """The scaling profile whose limits a subscription without its own gets
    (`sc_actors/profiles.py`; set with `sc profile NAME`)."""


class StructuresSnapshoterSettings(_Settings):
    polling_frequency_s: float = Field(5.0, gt=0, le=DAY_S, alias="POLLING_FREQUENCY")
    """How often real limits are read back from every node, seconds."""
    resources_persisted: list[str] = Field(
        default_factory=lambda: ["cpu", "mem"], alias="RESOURCES_PERSISTED"
    )
    structures_persisted: list[str] = Field(
        default_factory=lambda: ["application"], alias="STRUCTURES_PERSISTED"
    )
    missing_grace_period_s: float = Field(60.0, ge=0, le=DAY_S, alias="MISSING_GRACE_PERIOD")
    """How long a subscribed container whose cgroup is gone keeps its host's cores and
    memory, seconds, before it is desubscribed (our addition; 0: at the first look)."""


class DatabaseSnapshoterSettings(_Settings):
    """The time series dataset (reference §7.2; Parquet instead of OpenTSDB)."""

    dataset_dir: str = Field("", alias="DATASET_DIR")
    """Where the Parquet dataset goes; "" = `<StateDB state dir>/timeseries`."""
    flush_rows: int = Field(50_000, gt=0, le=10_000_000, alias="FLUSH_ROWS")
    """Buffered rows that trigger a write (bounds the memory: about 100 bytes a row)."""
    flush_interval_s: float = Field(5.0, gt=0, le=DAY_S, alias="FLUSH_INTERVAL")
    """Longest a row waits in memory before it is written, seconds (lost on a SIGKILL)."""
    compaction_interval_s: float = Field(60.0, gt=0, le=DAY_S, alias="COMPACTION_INTERVAL")
    """How often the files of past hours are merged into one per hour, seconds."""
    retention_days: float = Field(30.0, ge=0, le=36_500, alias="RETENTION_DAYS")
    """Days of series kept; older day partitions are deleted. 0 keeps everything."""
    documents_persisted: list[str] = Field(
        default_factory=lambda: ["limits", "structures", "users", "configs"], alias="DOCUMENTS_PERSISTED"
    )
    services_persisted: list[str] = Field(
        default_factory=lambda: ["guardian", "scaler"], alias="SERVICES_PERSISTED"
    )
    fields_persisted: list[str] = Field(
        default_factory=lambda: ["max", "min", "upper", "lower", "current", "usage", "boundary"],
        alias="FIELDS_PERSISTED",
    )
    polling_frequency_s: float = Field(5.0, gt=0, le=DAY_S, alias="POLLING_FREQUENCY")
    """Kept for the original's scripts: snapshots follow the Guardian's windows (pushed)."""
    series_rows: Literal["changes", "all"] = Field("changes", alias="SERIES_ROWS")
    """`changes`: a container's usage every window, its limits (`current`, `max`, `min`, `upper`,
    `lower`, `boundary`) when they change and every `FULL_ROWS_EVERY` s; `all`: every value every
    window (the original). Readers (`sc history`, `store.timeseries.read`) show both alike."""
    full_rows_every_s: float = Field(60.0, gt=0, le=600, alias="FULL_ROWS_EVERY")
    """Under `changes`, each container's every value at least this often, seconds (at most
    `store.timeseries.LOOKBACK_S`, what a reader looks back to find a window's values)."""


class RefeederSettings(_Settings):
    """Sums of container usage and current into applications and users (reference §7.3)."""

    structures_refeeded: list[str] = Field(
        default_factory=lambda: ["application", "user"], alias="STRUCTURES_REFEEDED"
    )
    generated_metrics: list[str] = Field(default_factory=lambda: ["cpu", "mem"], alias="GENERATED_METRICS")
    max_age_windows: float = Field(3.0, gt=0, le=1000, alias="MAX_AGE_WINDOWS")
    """A container's usage older than this many Guardian windows is missing (its node
    stopped pushing); an application with a missing container has no usage."""


def _only_cpu() -> list[Literal["cpu"]]:
    return ["cpu"]


def _only_containers() -> list[Literal["container", "application"]]:
    return ["container"]


class RebalancerSettings(_Settings):
    """Moves CPU between siblings without changing their parent's total (reference §7.4).

    Ships inactive: it changes what container scope alone would do (`Rebalancer/activate.sh`
    or `sc service activate rebalancer` turns it on). Our default policy is `thresholds`:
    the original's `rules` policy found no rule out of the box (§11.4).
    """

    active: bool = Field(False, alias="ACTIVE")
    window_s: float = Field(1.0, gt=0, le=DAY_S, alias="WINDOW_TIMELAPSE")
    """Shortest time between two rounds of one application or user, seconds (original 30,
    a poll): a round runs on the first pushed window after it, once the last round's
    swaps are applied."""
    window_delay_s: float = Field(0.0, ge=0, le=DAY_S, alias="WINDOW_DELAY")
    """Kept for the original's scripts: usage is pushed, nothing lags (original 10)."""
    diff_percentage: float = Field(0.40, gt=0, lt=1, alias="DIFF_PERCENTAGE")
    stolen_percentage: float = Field(0.40, gt=0, le=1, alias="STOLEN_PERCENTAGE")
    resources_balanced: list[Literal["cpu"]] = Field(default_factory=_only_cpu, alias="RESOURCES_BALANCED")
    structures_balanced: list[Literal["container", "application"]] = Field(
        default_factory=_only_containers, alias="STRUCTURES_BALANCED"
    )
    """`container`: between the containers of an application (or of a host); `application`:
    the `max` of the applications of a user."""
    containers_scope: Literal["application", "host"] = Field("application", alias="CONTAINERS_SCOPE")
    balancing_policy: Literal["rules", "thresholds"] = Field("thresholds", alias="BALANCING_POLICY")
    balancing_method: Literal["pair_swapping", "weights"] = Field("pair_swapping", alias="BALANCING_METHOD")
    compensate: bool = Field(False, alias="COMPENSATE")
    """Kept for the original's config; credit and debt are not tracked."""
    only_running: bool = Field(False, alias="ONLY_RUNNING")
    """Only applications in state `running` are balanced."""
    rebalance_users: bool = Field(False, alias="REBALANCE_USERS")
    """The original's scripts' switch (`activate_user_balancing.sh`): same as listing
    `application` in STRUCTURES_BALANCED."""
    energy_diff_percentage: float = Field(0.40, gt=0, lt=1, alias="ENERGY_DIFF_PERCENTAGE")
    energy_stolen_percentage: float = Field(0.40, gt=0, le=1, alias="ENERGY_STOLEN_PERCENTAGE")
    """Kept for the original's scripts; energy is not balanced here."""


class ContainerScalerSettings(BaseModel):
    """Per-node settings; given by `sc up` / the cluster config, not a service doc."""

    backend: Literal["cgroup_v1", "cgroup_v2", "lxc", "synthetic", "auto"] = "auto"
    cgroup_root: str = "/sys/fs/cgroup"
    """Mount point of the cgroup hierarchy (a temp dir for the fake v2 tree)."""
    parent: str = "serverless"
    """Plain-cgroup containers are `<root>/<controller>/<parent>/<name>`."""
    sample_period_s: float = Field(0.2, gt=0)
    """How often memory usage is sampled, seconds (CPU uses the cumulative counter)."""
    window_s: float = Field(0.4, gt=0)
    """Length of the usage window pushed to the Guardian, seconds (follows the
    Guardian's WINDOW_TIMELAPSE)."""
    cpu_burst_percent: float = Field(100.0, ge=0, le=100)
    """CFS burst written with every CPU quota, percent of it (cgroup v1 `cpu.cfs_burst_us`,
    v2 `cpu.max.burst`, kernel ≥ 5.14): a container may spend quota it left unused in a
    later period, so a spike shorter than the 100 ms period is not throttled, while its
    usage over time stays at the quota. 0 turns it off, as the original had none."""
    synthetic_cores: int = Field(64, gt=0)
    """Cores a simulated node claims (backend "synthetic", scale benchmark only)."""


SETTINGS_BY_SERVICE: dict[str, type[_Settings]] = {
    "guardian": GuardianSettings,
    "scaler": ScalerSettings,
    "structures_snapshoter": StructuresSnapshoterSettings,
    "database_snapshoter": DatabaseSnapshoterSettings,
    "refeeder": RefeederSettings,
    "rebalancer": RebalancerSettings,
}

ORIGINAL_PROFILE: dict[str, JsonObject] = {
    # The original's code defaults (reference §9): window 10 s, delay 10 s, Scaler 5 s.
    "guardian": {"WINDOW_TIMELAPSE": 10, "WINDOW_DELAY": 10, "EVENT_TIMEOUT": 120},
    "scaler": {"POLLING_FREQUENCY": 5, "REQUEST_TIMEOUT": 60, "ALIGNED_POLLING": True},
    "structures_snapshoter": {"POLLING_FREQUENCY": 5},
}

STR_KEYS = frozenset(
    {
        "STRUCTURE_GUARDED",
        "ENERGY_MODEL_NAME",
        "ENERGY_MODEL_RELIABILITY",
        "CONTAINERS_SCOPE",
        "BALANCING_METHOD",
        "BALANCING_POLICY",
        "CONTROL_POLICY",
        "POWER_MODEL",
        "EVENTS_SYSTEM",
        "DATASET_DIR",
        "SERIES_ROWS",
        "PROFILE",
    }
)
"""Keys whose string values the original's `PUT /service/<name>/<KEY>` does not coerce."""
