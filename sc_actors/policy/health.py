"""Health: what is wrong with a running stack, one problem per line, each naming its fix (reference §7.5).

The original's SanityChecker flagged request rules that "could never be activated"
(`WINDOW_TIMELAPSE × events_to_remove > EVENT_TIMEOUT`) and CheckAlive listed services
whose heartbeat was older than 30 s. Here the same questions, and a few more, are pure
functions of the documents, answered on demand (`GET /health`, `sc doctor`):

- a request rule that can never fire (`rules_that_cannot_fire`, also the warning of a
  `PUT /service/guardian/...` or `PUT /rule/...` that makes one);
- a service whose heartbeat is old (`stale_services`), each Guardian and Scaler shard
  by its own name (`with_shards`);
- a host without a live Ray node (`hosts_without_node`);
- a container whose cgroup is gone (`missing_containers`);
- a limit outside [min, max] (`limits_out_of_range`);
- a host whose Σ current exceeds its max (`overcommitted_hosts`);
- a journal not checkpointed for too long (`stale_checkpoint`).

The caller gathers the documents; nothing here reads a clock, a file or an actor.
"""
from __future__ import annotations

import functools
import json
import math
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Optional

from ..model import Container, Host, JsonObject, JsonValue, Rule
from ..settings import GuardianSettings, StructuresSnapshoterSettings, guardian_name, scaler_name
from .events import action_scale, scale_count
from .jsonlogic import evaluate
from .shards import shard_service


@dataclass(frozen=True)
class Problem:
    """One thing wrong: `kind` (which check), `subject` (the rule, service, host or
    structure named) and `message`, one line saying what is wrong and what to change."""

    kind: str
    subject: str
    message: str


# --------------------------------------------------------------------------- rules

MAX_EVENTS = 64
"""Largest count of up (and of down) events tried when looking for what a rule needs."""


@dataclass(frozen=True)
class EventNeed:
    """The fewest events a request rule needs: `up` and `down` counts, and the
    windows they take at the event rules' rate (one event per rule per window)."""

    up: int
    down: int
    windows: int


def events_per_window(rules: Iterable[Rule], resource: str) -> tuple[int, int]:
    """(up, down): the most events of `resource` one window can add, from the active event rules."""
    up = down = 0
    for r in rules:
        if r.active and r.generates == "events" and r.resource == resource:
            scale = action_scale(r.action)
            up += max(int(scale_count(scale, "up")), 0)
            down += max(int(scale_count(scale, "down")), 0)
    return up, down


def _holds(rule: JsonObject, up: int, down: int) -> bool:
    # The data a request rule sees in the Guardian: its resource's reduced counts.
    try:
        return evaluate(rule, {"events": {"scale": {"up": up, "down": down}}})
    except ValueError:
        return False


def _windows(count: int, per_window: int) -> Optional[int]:
    if count == 0:
        return 0
    return None if per_window <= 0 else math.ceil(count / per_window)


def events_needed(rule: Rule, per_window: tuple[int, int] = (1, 1)) -> Optional[EventNeed]:
    """The fewest windows of events in which the request rule's JSON-logic holds.

    Read from the rule itself (its JSON-logic over `events.scale.up` and
    `events.scale.down`, tried for every count up to MAX_EVENTS), never from its name.
    `per_window` is `events_per_window` of its resource. The up and down events may
    come in the same window (from different event rules), so `windows` is a lower
    bound. None when no count within reach makes the rule hold.
    """
    return _events_needed(json.dumps(rule.rule, sort_keys=True), per_window)


@functools.lru_cache(maxsize=256)
def _events_needed(logic: str, per_window: tuple[int, int]) -> Optional[EventNeed]:
    # Cached by the rule's JSON text: every health check and every change asks again.
    rule: JsonObject = json.loads(logic)
    best: Optional[EventNeed] = None
    for up in range(MAX_EVENTS + 1):
        for down in range(MAX_EVENTS + 1):
            wu, wd = _windows(up, per_window[0]), _windows(down, per_window[1])
            if wu is None or wd is None:
                continue
            w = max(wu, wd)
            if best is not None and (w, up + down) >= (best.windows, best.up + best.down):
                continue
            if _holds(rule, up, down):
                best = EventNeed(up, down, w)
    return best


def _describe(need: EventNeed, resource: str) -> str:
    parts = [f"{n} {d}" for n, d in ((need.up, "up"), (need.down, "down")) if n]
    return f"{' and '.join(parts) or 'no'} {resource} events"


def _at_most(x: float) -> str:
    # Rounded down, so the value suggested is on the safe side.
    floored = math.floor(x * 100) / 100
    return f"{floored:g}" if floored > 0 else f"{x:.3g}"


def rule_cannot_fire(rule: Rule, rules: Sequence[Rule], guardian: GuardianSettings) -> Optional[Problem]:
    """Why an active request rule can never fire under these Guardian settings, or None.

    The Guardian stamps each event with its window's end and counts, at the end of
    each window, the events not older than EVENT_TIMEOUT. N events come from N
    windows whose ends are more than (N − 1) × WINDOW_TIMELAPSE apart (a window is
    never shorter than WINDOW_TIMELAPSE), so the rule can never fire when
    (N − 1) × WINDOW_TIMELAPSE ≥ EVENT_TIMEOUT. A rule needing one event always can.
    (The original's SanityChecker used N × WINDOW_TIMELAPSE > EVENT_TIMEOUT, which also
    flags one-event rules; the fix suggested here is that safer N × WINDOW_TIMELAPSE.)
    E.g. CpuRescaleDown, 6 down events, window 1 s: 5 s ≥ EVENT_TIMEOUT 4 s.
    """
    if not rule.active or rule.generates != "requests":
        return None
    res = rule.resource
    rate = events_per_window(rules, res)
    need = events_needed(rule, rate)
    if need is None:
        anyhow = events_needed(rule, (1, 1))
        if anyhow is None:
            return Problem("rule", rule.name,
                           f"rule {rule.name} can never fire: its JSON-logic holds for no count of up to "
                           f"{MAX_EVENTS} up and down {res} events; fix its rule (`sc rule get {rule.name}`) "
                           f"or deactivate it (`sc rule deactivate {rule.name}`)")
        missing = [d for d, n, r in (("up", anyhow.up, rate[0]), ("down", anyhow.down, rate[1])) if n and r <= 0]
        idle = sorted(r.name for r in rules if r.generates == "events" and r.resource == res and not r.active)
        fix = f"activate one (`sc rule activate {idle[0]}`)" if idle else f"add an event rule making {res} " \
                                                                           f"{' and '.join(missing)} events"
        return Problem("rule", rule.name,
                       f"rule {rule.name} can never fire: it needs {_describe(anyhow, res)} and no active event "
                       f"rule makes {res} {' or '.join(missing)} events; {fix}")
    w, timeout = guardian.window_s, guardian.event_timeout_s
    if need.windows < 2 or (need.windows - 1) * w < timeout:
        return None
    return Problem(
        "rule", rule.name,
        f"rule {rule.name} can never fire: it needs {_describe(need, res)}, {need.windows} windows of "
        f"WINDOW_TIMELAPSE {w:g} s spanning {(need.windows - 1) * w:g} s, not within EVENT_TIMEOUT {timeout:g} s; "
        f"set EVENT_TIMEOUT to at least {need.windows * w:g} "
        f"(`sc service set guardian EVENT_TIMEOUT {need.windows * w:g}`) "
        f"or WINDOW_TIMELAPSE to at most {_at_most(timeout / need.windows)}")


def rules_that_cannot_fire(rules: Sequence[Rule], guardian: GuardianSettings) -> list[Problem]:
    """`rule_cannot_fire` for every active request rule of a resource the Guardian guards.

    A rule of a resource outside GUARDABLE_RESOURCES is not evaluated at all, so it is
    not reported; it is once that resource is made guardable.
    """
    guardable = set(guardian.guardable_resources)
    out = []
    for rule in rules:
        if rule.resource in guardable:
            problem = rule_cannot_fire(rule, rules, guardian)
            if problem is not None:
                out.append(problem)
    return out


# --------------------------------------------------------------------------- services

HEARTBEAT_S = 5.0
"""How often a service with nothing to do still beats, seconds (the Scaler's idle beat)."""
HEARTBEAT_SLACK_S = 10.0
"""Added to every expected heartbeat period before a heartbeat counts as old, seconds."""


@dataclass(frozen=True)
class ServiceBeat:
    """A service document's name, config and last heartbeat (0: none since the StateDB started)."""

    name: str
    heartbeat: float
    config: Mapping[str, JsonValue] = field(default_factory=dict)


def heartbeat_max_age_s(beat: ServiceBeat, windows_expected: bool) -> Optional[float]:
    """How old a service's heartbeat may be before it counts as stopped; None: not checked.

    The snapshoters beat every period; the Scaler every HEARTBEAT_S even when idle; the
    Guardian on every window a node pushes, so only while some container is present on
    a live host (`windows_expected`). The Refeeder lives in the StateDB, and services we
    do not run have no known period: neither is checked.
    """
    if beat.name == "structures_snapshoter":
        period = StructuresSnapshoterSettings.from_config(dict(beat.config)).polling_frequency_s
        return 3 * period + HEARTBEAT_SLACK_S
    if beat.name == "database_snapshoter":
        return 3 * HEARTBEAT_S + HEARTBEAT_SLACK_S
    service, _ = shard_service(beat.name)  # a shard (`scaler-2`) beats as its service does
    if service == "scaler":
        return 3 * HEARTBEAT_S + HEARTBEAT_SLACK_S
    if service == "guardian" and windows_expected:
        g = GuardianSettings.from_config(dict(beat.config))
        return 10 * g.window_s + g.window_delay_s + HEARTBEAT_SLACK_S
    return None


def with_shards(beats: Sequence[ServiceBeat], shards: int, heartbeats: Mapping[str, float]) -> list[ServiceBeat]:
    """The services' beats, then one per Guardian and Scaler shard past 0 (`guardian-1`,
    `scaler-1`, …: shards have no document, only a heartbeat), with its service's config."""
    config = {b.name: b.config for b in beats}
    out = list(beats)
    for service, name_of in (("guardian", guardian_name), ("scaler", scaler_name)):
        for i in range(1, shards):
            name = name_of(i)
            out.append(ServiceBeat(name, float(heartbeats.get(name, 0.0)), config.get(service, {})))
    return out


def stale_services(beats: Iterable[ServiceBeat], now: float, up_since: float, windows_expected: bool) -> list[Problem]:
    """Services whose last heartbeat is older than `heartbeat_max_age_s`.

    Heartbeats are volatile: a service that has not beaten since the StateDB started
    (`up_since`) is reported once the StateDB has been up longer than that age.
    """
    out = []
    for b in beats:
        max_age = heartbeat_max_age_s(b, windows_expected)
        if max_age is None:
            continue
        last = b.heartbeat if b.heartbeat > 0 else up_since
        age = now - last
        if age <= max_age:
            continue
        when = f"last heartbeat {age:.0f} s ago" if b.heartbeat > 0 else f"no heartbeat in the {age:.0f} s since the StateDB started"
        out.append(Problem(
            "heartbeat", b.name,
            f"service {b.name}: {when} (at most {max_age:g} s expected): its actor is stuck or dead; "
            f"look at `ray list actors --filter name={b.name}` and its log, and restart the control plane "
            f"(`sc down`, `sc up`) if it does not come back"))
    return out


# --------------------------------------------------------------------------- hosts and containers


def _utc(t: float) -> str:
    return datetime.fromtimestamp(t, timezone.utc).strftime("%H:%M:%S UTC")


def hosts_without_node(hosts: Iterable[Host], live: Optional[frozenset[str]]) -> list[Problem]:
    """Hosts marked unreachable, and hosts no live Ray node carries (`live`: the `sc_host`
    labels of the alive nodes; None when unknown)."""
    out = []
    for h in hosts:
        extra = h.model_extra or {}
        if not h.reachable:
            since = extra.get("unreachable_since")
            why = extra.get("unreachable_reason") or "its node is gone"
            when = f" since {_utc(since)}" if isinstance(since, (int, float)) else ""
        elif live is not None and h.name not in live:
            why, when = f"no live Ray node carries the label sc_host={h.name}", ""
        else:
            continue
        out.append(Problem(
            "host", h.name,
            f"host {h.name} has no live node{when} ({why}): start Ray on it with the label sc_host={h.name} "
            f"(`cluster/configs/ray-start.sh`), or desubscribe it (`sc host desubscribe {h.name}`, "
            f"after its containers)"))
    return out


def missing_since(container: Container) -> Optional[float]:
    """When the container's cgroup was first found gone (set by the StateDB), or None."""
    t = (container.model_extra or {}).get("missing_since")
    return float(t) if isinstance(t, (int, float)) else None


def missing_containers(containers: Iterable[Container], now: float, grace_s: float) -> list[Problem]:
    """Subscribed containers whose cgroup is gone from their host; their cores and memory
    go back to the host `grace_s` after it went missing."""
    out = []
    for c in containers:
        since = missing_since(c)
        if since is None:
            continue
        left = since + grace_s - now
        cpu, mem = c.resources["cpu"].current, c.resources["mem"].current
        release = f"released in {left:.0f} s" if left > 0 else "being released"
        out.append(Problem(
            "container", c.name,
            f"container {c.name} on host {c.host}: cgroup gone since {_utc(since)} ({now - since:.0f} s ago); "
            f"its {cpu:g} cpu shares and {mem:g} MiB are {release} (MISSING_GRACE_PERIOD of "
            f"structures_snapshoter): recreate it, or desubscribe it now (`sc container desubscribe {c.name}`)"))
    return out


@dataclass(frozen=True)
class ResourceRange:
    """One resource of a container, application or user: its current against [min, max].

    For applications and users `current` is the Refeeder's Σ of their containers'."""

    structure: str
    subtype: str
    resource: str
    current: Optional[float]
    min: Optional[float]
    max: Optional[float]


def limits_out_of_range(ranges: Iterable[ResourceRange]) -> list[Problem]:
    """Resources whose current limit is below their min or above their max."""
    out = []
    for r in ranges:
        if r.current is None:
            continue
        sum_of = " (Σ of its containers)" if r.subtype == "application" else \
            " (Σ of its applications)" if r.subtype == "user" else ""
        verb = f"sc user set {r.structure} {r.resource}" if r.subtype == "user" else \
            f"sc structure set {r.structure} {r.resource}"
        if r.max is not None and r.current > r.max:
            out.append(Problem("limit", r.structure,
                               f"{r.subtype} {r.structure} {r.resource}: current {r.current:g}{sum_of} is above "
                               f"its max {r.max:g}: raise its max (`{verb} max {r.current:g}`) or lower "
                               + ("its containers' limits" if sum_of else "its current")))
        elif r.min is not None and r.current < r.min:
            out.append(Problem("limit", r.structure,
                               f"{r.subtype} {r.structure} {r.resource}: current {r.current:g}{sum_of} is below "
                               f"its min {r.min:g}: lower its min (`{verb} min {r.current:g}`) or raise "
                               + ("its containers' limits" if sum_of else "its current")))
    return out


_UNIT = {"cpu": "cpu shares", "mem": "MiB"}


def overcommitted_hosts(hosts: Iterable[Host], containers: Sequence[Container]) -> list[Problem]:
    """Hosts whose containers' Σ current of cpu or mem exceeds the host's max."""
    out = []
    by_host: defaultdict[str, list[Container]] = defaultdict(list)
    for c in containers:
        by_host[c.host].append(c)
    for h in hosts:
        mine = by_host.get(h.name, [])
        for res in ("cpu", "mem"):
            hr = h.resources.get(res)
            if hr is None:
                continue
            held = sorted(((c.resources[res].current or 0.0, c.name) for c in mine if res in c.resources),
                          reverse=True)
            total = sum(v for v, _ in held)
            if total <= hr.max:
                continue
            top = ", ".join(f"{n} {v:g}" for v, n in held[:3])
            out.append(Problem(
                "host", h.name,
                f"host {h.name}: its containers hold {total:g} {_UNIT[res]} (Σ current: {top}) but its {res} max is "
                f"{hr.max:g}: raise its max (`sc structure set {h.name} {res} max {total:g}`) if the node has them, "
                f"or lower its containers' max or desubscribe some"))
    return out


# --------------------------------------------------------------------------- the StateDB's journal

CHECKPOINT_SLACK_S = 5.0
"""Seconds a write may follow a due checkpoint before the checkpoint counts as missed."""


@dataclass(frozen=True)
class JournalState:
    """The StateDB's journal: records and bytes since the last checkpoint, the age of that
    checkpoint, how long ago the journal was last written, and the checkpoint period."""

    records: int
    size_bytes: int
    checkpoint_age_s: float
    written_age_s: float
    checkpoint_every_s: float
    state_dir: str = ""


def stale_checkpoint(j: JournalState) -> list[Problem]:
    """A journal written to after a checkpoint was due, with no checkpoint since.

    The StateDB checkpoints on the first write once CHECKPOINT period has passed, so an
    idle journal may keep a few records for long: that is fine (they are fsynced). A
    write more than the period after the last checkpoint means that checkpoint failed.
    """
    if j.records <= 0:
        return []
    overdue = j.checkpoint_age_s - j.written_age_s - j.checkpoint_every_s
    if overdue <= CHECKPOINT_SLACK_S:
        return []
    where = f" in {j.state_dir}" if j.state_dir else ""
    return [Problem(
        "journal", "statedb",
        f"StateDB journal not checkpointed for {j.checkpoint_age_s:.0f} s (every {j.checkpoint_every_s:g} s expected; "
        f"{j.records} records, {j.size_bytes / 1024:.0f} KiB since): checkpoints are failing; free disk space or fix "
        f"the permissions{where} and look at the statedb actor's log")]


# --------------------------------------------------------------------------- all of it


@dataclass(frozen=True)
class Snapshot:
    """Everything `check` looks at, gathered at `now` by the caller."""

    now: float
    rules: Sequence[Rule]
    guardian: GuardianSettings
    services: Sequence[ServiceBeat]
    statedb_started: float
    hosts: Sequence[Host]
    live_hosts: Optional[frozenset[str]]
    containers: Sequence[Container]
    ranges: Sequence[ResourceRange]
    journal: JournalState
    missing_grace_s: float


def windows_expected(hosts: Iterable[Host], containers: Iterable[Container], live: Optional[frozenset[str]]) -> bool:
    """Whether some node should be pushing windows: a present container on a live, reachable host."""
    up = {h.name for h in hosts if h.reachable and (live is None or h.name in live)}
    return any(c.host in up and missing_since(c) is None for c in containers)


def check(s: Snapshot) -> list[Problem]:
    """Every problem found, rules first, then services, hosts, containers, limits, the journal."""
    return [
        *rules_that_cannot_fire(s.rules, s.guardian),
        *stale_services(s.services, s.now, s.statedb_started, windows_expected(s.hosts, s.containers, s.live_hosts)),
        *hosts_without_node(s.hosts, s.live_hosts),
        *missing_containers(s.containers, s.now, s.missing_grace_s),
        *limits_out_of_range(s.ranges),
        *overcommitted_hosts(s.hosts, s.containers),
        *stale_checkpoint(s.journal),
    ]
