"""Which Ray nodes are controlled hosts, and what the Membership does about them (reference §11.2).

Observe → decide → act, as Ray's autoscaler v2 reconciler does: the Membership actor
(`sc_actors/membership.py`) observes Ray's node table (reduced to `Node`s), the host
structures of the StateDB and what it remembers of each host (`HostView`), and
`plan` turns that into a list of typed actions that the actor then performs. After
a ContainerScaler answered its first call, `plan_placed` decides whether it counts.
Nothing here reads a clock, Ray or the StateDB.

A Ray node is a controlled host when it carries the label `sc_host=<name>` and not
`sc_exclude=1` (a head-only node, for instance). What the plan decides, per host:

- its nodes are all dead: forget its ContainerScaler, mark it unreachable;
- the node its ContainerScaler answered from died and another carries the label:
  forget that ContainerScaler (the label selector moves it), then place again;
- its ContainerScaler died for good (killed by hand): forget it, place a new one;
- alive and nothing ready nor being placed (and the back-off has passed): place a
  ContainerScaler on its newest alive node, with that node's settings;
- ready: ping it; unreachable once it has not answered for `silence_s`, reachable
  again once it answers;
- a host structure that no node of the cluster carries, alive or dead (one of an
  earlier cluster with the same state dir): unreachable, from the first tick;
- a host structure with an `agent` (a simulated host, served by the ContainerScaler
  of another host) that no node carries: reachable exactly when its agent host is,
  left as it is while its agent's ContainerScaler is being placed, unreachable when no
  node carries the agent either.

The first reason a host became unreachable is kept (it says what happened), and the
StateDB is written only where its `reachable` disagrees.
"""
from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal, TypedDict, Union

from ..model import Document, Host, HostInfo
from ..settings import HOST_LABEL

EXCLUDE_LABEL = "sc_exclude"
"""A node labelled `sc_exclude=1` (or `true`, `yes`) is never controlled, even with `sc_host`."""

RETRY_MAX_S = 30.0
"""Longest wait before placing again after failed placements, seconds."""


# --------------------------------------------------------------------------- nodes


class RayNode(TypedDict, total=False):
    """The fields of one `ray.nodes()` row that the Membership reads."""

    NodeID: str
    Alive: bool
    Labels: dict[str, str]


@dataclass(frozen=True)
class Node:
    """One row of Ray's node table, reduced to what decides membership."""

    node_id: str
    alive: bool = True
    labels: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_ray(cls, row: RayNode) -> Node:
        return cls(node_id=row.get("NodeID", ""), alive=bool(row.get("Alive")), labels=dict(row.get("Labels") or {}))

    @property
    def host(self) -> str:
        """The host this node carries ("" when none)."""
        return self.labels.get(HOST_LABEL, "")


def is_controlled(node: Node) -> bool:
    """Whether a node (alive or not) is a controlled host."""
    return bool(node.host) and node.labels.get(EXCLUDE_LABEL, "").lower() not in ("1", "true", "yes")


def controlled_nodes(nodes: Iterable[Node]) -> list[Node]:
    """The alive nodes that are controlled hosts, in order."""
    return [n for n in nodes if n.alive and is_controlled(n)]


@dataclass(frozen=True)
class HostNodes:
    """The nodes that carry one host's label: alive ones, and the dead ones the GCS remembers."""

    alive: tuple[Node, ...] = ()
    dead: tuple[Node, ...] = ()

    @property
    def alive_ids(self) -> frozenset[str]:
        return frozenset(n.node_id for n in self.alive)


def hosts_of(nodes: Iterable[Node]) -> dict[str, HostNodes]:
    """Controlled hosts of the cluster by name, with their alive and dead nodes (in order)."""
    alive: dict[str, list[Node]] = {}
    dead: dict[str, list[Node]] = {}
    for n in nodes:
        if is_controlled(n):
            alive.setdefault(n.host, [])
            dead.setdefault(n.host, [])
            (alive if n.alive else dead)[n.host].append(n)
    return {h: HostNodes(tuple(alive[h]), tuple(dead[h])) for h in alive}


class NodeDefaults(TypedDict, total=False):
    """ContainerScaler settings `sc up` gives every node: fields of `ContainerScalerSettings`,
    whose defaults apply to those left out. A node's labels `sc_backend` and
    `sc_cgroup_parent` override `backend` and `parent` (`node_settings`)."""

    backend: str
    parent: str
    cgroup_root: str
    cpu_burst_percent: float
    sample_period_s: float
    window_s: float
    synthetic_cores: int


def node_settings(node: Node, defaults: NodeDefaults) -> NodeDefaults:
    """ContainerScaler settings of a node: `defaults`, then its labels `sc_cgroup_parent`, `sc_backend`."""
    s = defaults.copy()
    if "sc_cgroup_parent" in node.labels:
        s["parent"] = node.labels["sc_cgroup_parent"]
    if "sc_backend" in node.labels:
        s["backend"] = node.labels["sc_backend"]
    return s


def host_document(info: HostInfo, agent: str | None = None) -> Document:
    """A host structure for a node: CPU shares = cores × 100 with its core map, memory MiB;
    `agent`: the host whose ContainerScaler serves it, when not its own (a simulated host)."""
    host = Host.model_validate({
        "name": info.name,
        "host": info.name,
        "resources": {
            "cpu": {"max": info.cores * 100, "free": info.cores * 100},
            "mem": {"max": info.mem_mib, "free": info.mem_mib},
        },
        "topology": info.topology,
        **({"agent": agent} if agent and agent != info.name else {}),
    })
    return host.model_dump(mode="json", exclude_none=True)


def retry_delay_s(failures: int) -> float:
    """Wait before the next placement after `failures` failed ones in a row: 2, 4, 8, 16, 30, 30 … s."""
    return min(2.0**failures, RETRY_MAX_S)


# --------------------------------------------------------------------------- observation


@dataclass(frozen=True)
class HostView:
    """What the Membership remembers of one host, as plain data (its clock already applied)."""

    name: str
    node_id: str = ""
    """The alive node its ContainerScaler answered from ("" while none has)."""
    known_ids: frozenset[str] = frozenset()
    """The host's alive nodes at the previous tick."""
    ready: bool = False
    """Its ContainerScaler answered from an alive node and has not been forgotten since."""
    placing: bool = False
    """A placement is under way."""
    retry_due: bool = True
    """The back-off after failed placements has passed."""
    silence_s: float | None = None
    """Seconds since its ContainerScaler last answered (None while not ready)."""
    pinging: bool = False
    """A ping is in flight (at most one per host)."""
    ping_error: str = ""
    """What the last ping raised ("" when it answered)."""
    scaler_died: bool = False
    """The last ping found its ContainerScaler dead for good."""
    reason: str = ""
    """Why it is unreachable, as written to the StateDB ("" when reachable)."""


@dataclass(frozen=True)
class Observation:
    """Everything one tick decides on."""

    nodes: Sequence[Node]
    """Ray's node table, alive and dead."""
    hosts: Mapping[str, HostView] = field(default_factory=dict)
    """What the Membership remembers, by host (a host it never saw is absent)."""
    documents: Mapping[str, bool] = field(default_factory=dict)
    """The StateDB's host structures: name → its `reachable`."""
    agents: Mapping[str, str] = field(default_factory=dict)
    """The host structures served by another host's ContainerScaler: name → its `agent`."""


# --------------------------------------------------------------------------- actions


ForgetWhy = Literal["node-gone", "node-replaced", "scaler-died"]


@dataclass(frozen=True)
class HostAction:
    """Something the Membership does about one host."""

    host: str


@dataclass(frozen=True)
class Forget(HostAction):
    """Drop the ContainerScaler known for the host (and, when its nodes are gone, any placement under way)."""

    why: ForgetWhy


@dataclass(frozen=True)
class NodeJoined(HostAction):
    """A node of the host joined or rejoined: the join → ready clock starts."""

    alive_ids: frozenset[str]


@dataclass(frozen=True)
class Place(HostAction):
    """Start (or find) the host's ContainerScaler, pinned to its label, with these settings."""

    node_id: str
    settings: NodeDefaults


@dataclass(frozen=True)
class Ping(HostAction):
    """Ask the host's ContainerScaler whether it is there; its answer time is the liveness signal."""


@dataclass(frozen=True)
class Mark(HostAction):
    """Remember whether the host is reachable and why not; write that to the StateDB when `write`."""

    reachable: bool
    reason: str = ""
    """Why it is not ("" when it is)."""
    write: bool = False


@dataclass(frozen=True)
class EnsureHost(HostAction):
    """The host's ContainerScaler answered from `node_id`, an alive node of the host: register
    the host's structure in the StateDB (or match the one subscribed through the API), then
    count the ContainerScaler ready."""

    document: Document
    node_id: str


Action = Union[Forget, NodeJoined, Place, Ping, Mark, EnsureHost]


# --------------------------------------------------------------------------- decisions


def plan(seen: Observation, defaults: NodeDefaults, silence_s: float) -> list[Action]:
    """The actions of one tick: per host (in node-table order), follow its nodes, then its reachability.

    `silence_s`: a ready host whose ContainerScaler has not answered for longer is unreachable.
    """
    groups = hosts_of(seen.nodes)
    actions: list[Action] = []
    want: dict[str, tuple[bool, str]] = {}
    for host, nodes in groups.items():
        view = seen.hosts.get(host, HostView(host))
        ready = _follow(view, nodes, defaults, actions)
        if not nodes.alive:
            last = nodes.dead[-1].node_id[:8] if nodes.dead else "?"
            want[host] = (False, f"its Ray node {last} is dead (no alive node has label {HOST_LABEL}={host})")
        elif ready and view.silence_s is not None and view.silence_s > silence_s:
            detail = f": {view.ping_error}" if view.ping_error else ""
            want[host] = (False, f"its ContainerScaler on node {view.node_id[:8]} has not answered for "
                                 f"{view.silence_s:.1f} s{detail}")
        elif ready:
            want[host] = (True, "")
        # Alive but not placed yet: left as it is until the ContainerScaler answers.
    # NOTE: ray.nodes() forgets the nodes of an earlier cluster; its host structures stay.
    nodeless = sorted(seen.documents.keys() - groups.keys())
    served = [h for h in nodeless if seen.agents.get(h, h) != h]
    for host in nodeless:
        if host not in served:
            want[host] = (False, f"no Ray node of this cluster has label {HOST_LABEL}={host}")
    for host in served:
        agent = seen.agents[host]
        if agent in want:
            reachable, why = want[agent]
            want[host] = (True, "") if reachable else (False, f"its agent host {agent} is unreachable: {why}")
        elif agent not in groups:
            want[host] = (False, f"its agent host {agent} has no Ray node of this cluster "
                                 f"(label {HOST_LABEL}={agent})")
        # Its agent's node is alive and its ContainerScaler not placed yet: left as it is.
    for host, (reachable, reason) in want.items():
        actions.extend(_mark(seen.hosts.get(host, HostView(host)), reachable, reason, seen.documents.get(host)))
    return actions


def _follow(view: HostView, nodes: HostNodes, defaults: NodeDefaults, out: list[Action]) -> bool:
    """Append what following the host's nodes takes; whether its ContainerScaler still counts as ready."""
    ids = nodes.alive_ids
    if not ids:
        if view.ready or view.placing or view.known_ids or view.node_id:
            out.append(Forget(view.name, "node-gone"))
        return False
    ready = view.ready
    if view.node_id and view.node_id not in ids:
        out.append(Forget(view.name, "node-replaced"))
        ready = False
    elif ready and view.scaler_died:
        out.append(Forget(view.name, "scaler-died"))
        ready = False
    if ids - view.known_ids:
        out.append(NodeJoined(view.name, ids))
    if not ready and not view.placing and view.retry_due:
        node = nodes.alive[-1]
        out.append(Place(view.name, node.node_id, node_settings(node, defaults)))
    if ready and not view.pinging:
        out.append(Ping(view.name))
    return ready


def _mark(view: HostView, reachable: bool, reason: str, document: bool | None) -> list[Action]:
    """The reachability action for one host, if its memory or its StateDB document must change."""
    write = document is not None and document != reachable
    if reachable:
        return [Mark(view.name, True, "", write)] if write or view.reason else []
    if write or not view.reason:
        return [Mark(view.name, False, view.reason or reason, write)]
    return []


def plan_placed(host: str, info: HostInfo, alive_ids: frozenset[str]) -> list[Action]:
    """After a placement's first answer: register the host and count it ready, or wait.

    The GCS may still count an older node of this host alive while the actor sits
    there; it moves once that node is declared dead, so nothing counts until the
    answer comes from a node alive now (the next tick places again).
    """
    if info.node_id not in alive_ids:
        return []
    return [EnsureHost(host, host_document(info), info.node_id)]
