"""`GET /health`: the original's SanityChecker as a live check (reference §7.5, issue 18).

The route only gathers: the StateDB's documents in one call (`health_view`) and the
`sc_host` labels of the alive Ray nodes; `sc_actors.policy.health.check` decides. The
answer is 200 with `ok` and one `problems` entry per problem, each naming its fix: the
API itself works, what is wrong is in the stack it reports on.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Optional

from fastapi import APIRouter, Depends

from sc_actors.model import Container, Document, Host, Rule
from sc_actors.policy.health import (
    JournalState,
    Problem,
    ResourceRange,
    ServiceBeat,
    Snapshot,
    check,
    rules_that_cannot_fire,
    with_shards,
)
from sc_actors.policy.membership import Node, controlled_nodes
from sc_actors.policy.shards import shard_service, shards_of
from sc_actors.settings import GuardianSettings, StructuresSnapshoterSettings
from sc_actors.store.views import HealthView

from ..deps import StateDBApi, get_statedb
from ..answers import Health, ProblemJson, ShardBeat

log = logging.getLogger(__name__)
router = APIRouter(tags=["heartbeat"])

async def get_live_hosts() -> Optional[frozenset[str]]:
    """The `sc_host` labels of the alive Ray nodes that run a ContainerScaler; None if Ray cannot tell."""
    import ray

    try:
        # ray.nodes() is a blocking GCS call: off the event loop.
        nodes = await asyncio.to_thread(ray.nodes)
    except Exception as e:
        log.warning("live nodes unknown: %s", e)
        return None
    # The Membership's own rule of which nodes are controlled hosts (labels, exclusion).
    return frozenset(n.host for n in controlled_nodes(Node.from_ray(row) for row in nodes))


def _rules(docs: list[Document]) -> list[Rule]:
    out = []
    for d in docs:
        try:
            out.append(Rule.model_validate(d))
        except Exception as e:  # a stored rule is valid; one that is not says so in the log
            log.warning("rule %s skipped by the health check: %s", d.get("name"), e)
    return out


def _guardian(services: list[Document]) -> GuardianSettings:
    config = next((s.get("config") for s in services if s.get("name") == "guardian"), None)
    return GuardianSettings.from_config(config)


def _ranges(docs: list[Document]) -> list[ResourceRange]:
    out = []
    for d in docs:
        subtype = d.get("subtype", "user")
        if subtype not in ("container", "application", "user"):
            continue
        for res, r in (d.get("resources") or {}).items():
            if isinstance(r, dict):
                out.append(ResourceRange(d["name"], subtype, res, r.get("current"), r.get("min"), r.get("max")))
    return out


def _shards(view: HealthView) -> int:
    return shards_of(next((s for s in view["services"] if s.get("name") == "guardian"), None))


def _beats(view: HealthView) -> list[ServiceBeat]:
    """Every service's heartbeat, and every Guardian and Scaler shard's."""
    return with_shards([ServiceBeat(s["name"], float(s.get("heartbeat") or 0.0), s.get("config") or {})
                        for s in view["services"]], _shards(view), view.get("heartbeats", {}))


def snapshot_of(view: HealthView, live: Optional[frozenset[str]]) -> Snapshot:
    """The policy's input from the StateDB's `health_view` and the live nodes' labels."""
    structures = view["structures"]
    return Snapshot(
        now=view["now"],
        rules=_rules(view["rules"]),
        guardian=_guardian(view["services"]),
        services=_beats(view),
        statedb_started=view["started"],
        hosts=[Host.model_validate(d) for d in structures if d.get("subtype") == "host"],
        live_hosts=live,
        containers=[Container.model_validate(d) for d in structures if d.get("subtype") == "container"],
        ranges=_ranges(structures) + _ranges(view["users"]),
        journal=JournalState(**view["journal"]),
        missing_grace_s=StructuresSnapshoterSettings.from_config(
            view.get("snapshoter_config")).missing_grace_period_s,
    )


def as_json(problems: list[Problem]) -> list[ProblemJson]:
    return [ProblemJson(kind=p.kind, subject=p.subject, message=p.message) for p in problems]


@router.get("/health", summary="What is wrong with the stack: one problem per entry, each with its fix")
async def get_health(db: StateDBApi = Depends(get_statedb),
                     live: Optional[frozenset[str]] = Depends(get_live_hosts)) -> Health:
    view = await db.health_view()
    snapshot = snapshot_of(view, live)
    problems = check(snapshot)
    shards: list[ShardBeat] = [{"name": b.name, "heartbeat": b.heartbeat} for b in snapshot.services
                               if shard_service(b.name)[0] in ("guardian", "scaler")]
    return {"time": view["now"], "ok": not problems, "problems": as_json(problems), "shards": shards}


async def rule_warnings(db: StateDBApi, only: Optional[set[str]] = None) -> list[str]:
    """The messages of the request rules that can never fire now (of `only`, when given).

    The warning a change through the API returns: the same function as the health check's.
    """
    rules = _rules(await db.list("rules"))
    guardian = GuardianSettings.from_config((await db.get("services", "guardian")).get("config"))
    return [p.message for p in rules_that_cannot_fire(rules, guardian)
            if only is None or p.subject in only]


def with_warnings(doc: Document, warnings: list[str]) -> Document:
    """The changed document, plus `warnings` when there are any (the original's scripts ignore it)."""
    return {**doc, "warnings": warnings} if warnings else doc
