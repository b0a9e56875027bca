"""The one place that turns the plain actor classes into Ray actors.

Every control-plane actor is named, detached, in one fixed namespace, restarted by
Ray without limit, and takes no CPU slot. The StateDB sits on the head node (its
journal is on the head's disk, so a restart finds it), and so does every other
control-plane actor: a controlled host can drop off the network, and an actor on it
would stall every host's scaling until Ray declared the node dead. Each ContainerScaler is
pinned to its node by the node label `sc_host`: if the node goes away the actor
waits, and when a node with that label rejoins it is placed there again. Guardian and
Scaler shards past 0 may have a home instead of the head: a node labelled
`sc_shard_home=<shard>` (a machine of the control plane, not a controlled host).
"""
from __future__ import annotations

from typing import Any

import ray

from sc_actors import settings as names  # the actors' names, their namespace and the host label
from sc_actors.container_scaler import ContainerScaler
from sc_actors.database_snapshoter import DatabaseSnapshoter
from sc_actors.guardian import Guardian
from sc_actors.membership import MEMBERSHIP_NAME, Membership
from sc_actors.policy.membership import NodeDefaults
from sc_actors.rebalancer import ReBalancer
from sc_actors.scaler import Scaler
from sc_actors.snapshoters import StructuresSnapshoter
from sc_actors.statedb import ACTOR_OPTIONS as STATEDB_OPTIONS
from sc_actors.statedb import StateDB

_COMMON: dict[str, Any] = dict(
    namespace=names.NAMESPACE,
    lifetime="detached",
    max_restarts=-1,
    max_task_retries=-1,
    num_cpus=0,
    get_if_exists=True,
)

HEAD = names.HEAD_RESOURCES


def statedb_actor(state_dir: str, fsync: bool = True) -> Any:
    return ray.remote(StateDB).options(name=names.STATEDB_NAME, resources=HEAD, **STATEDB_OPTIONS,
                                       **_COMMON).remote(state_dir, fsync)


def guardian_actor(shard: int = 0, home: bool = False) -> Any:
    """Guardian shard `shard` (0: `guardian`), on the head or its home (`_where`): its nodes push to it by name."""
    return ray.remote(Guardian).options(name=names.guardian_name(shard), max_concurrency=1000, **_where(shard, home),
                                        **_COMMON).remote(shard)


def scaler_actor(shard: int = 0, home: bool = False) -> Any:
    """Scaler shard `shard` (0: `scaler`, the coordinator of requests that span hosts), on the head or its home."""
    return ray.remote(Scaler).options(name=names.scaler_name(shard), max_concurrency=1000, **_where(shard, home),
                                      **_COMMON).remote(shard)


def _where(shard: int, home: bool) -> dict[str, Any]:
    """On the head; with `home`, on the node labelled `sc_shard_home=<shard>` (only there: while
    that node is gone the shard waits for it, as a ContainerScaler waits for its host)."""
    if home and shard > 0:
        return {"label_selector": {names.SHARD_HOME_LABEL: str(shard)}}
    return {"resources": HEAD}


def shard_homes(nodes: list[dict[str, Any]]) -> set[int]:
    """The shards (≥ 1) an alive node of `nodes` (`ray.nodes()`) is labelled the home of."""
    out = set()
    for n in nodes:
        value = (n.get("Labels") or {}).get(names.SHARD_HOME_LABEL, "")
        if n.get("Alive") and value.isdigit() and int(value) > 0:
            out.add(int(value))
    return out


def structures_snapshoter_actor() -> Any:
    return ray.remote(StructuresSnapshoter).options(
        name=names.STRUCTURES_SNAPSHOTER_NAME, resources=HEAD, max_concurrency=100, **_COMMON
    ).remote()


def database_snapshoter_actor(dataset_dir: str) -> Any:
    """On the head, beside the StateDB: the dataset is on the head's disk, where `sc history` reads it."""
    return ray.remote(DatabaseSnapshoter).options(
        name=names.DATABASE_SNAPSHOTER_NAME, resources=HEAD, max_concurrency=100, **_COMMON
    ).remote(dataset_dir)


def rebalancer_actor() -> Any:
    """One for the cluster, on the head: it reads one view per round and sends requests."""
    return ray.remote(ReBalancer).options(name=names.REBALANCER_NAME, resources=HEAD, max_concurrency=100,
                                          **_COMMON).remote()


def membership_actor(node_defaults: dict[str, Any], settings: dict[str, float] | None = None) -> Any:
    """On the head: it watches the nodes, so it must not live on one that can go away.

    It starts each ContainerScaler with `container_scaler_actor`, so their options stay here.
    """
    return ray.remote(Membership).options(
        name=MEMBERSHIP_NAME, resources=HEAD, max_concurrency=100, **_COMMON
    ).remote(node_defaults, settings, container_scaler_actor)


def container_scaler_actor(host: str, settings: NodeDefaults) -> Any:
    return ray.remote(ContainerScaler).options(
        name=names.container_scaler_name(host),
        label_selector={names.HOST_LABEL: host},
        max_concurrency=100,
        **_COMMON,
    ).remote(host, settings)


# NOTE: the Membership comes first: taken down last, it would place ContainerScalers again.
# The shards past 0 (`guardian-1`, `scaler-1`, …) are found by name (`cluster.deploy.shard_actors`).
CONTROL_PLANE = (MEMBERSHIP_NAME, names.STATEDB_NAME, names.GUARDIAN_NAME, names.SCALER_NAME,
                 names.STRUCTURES_SNAPSHOTER_NAME, names.DATABASE_SNAPSHOTER_NAME, names.REBALANCER_NAME)
