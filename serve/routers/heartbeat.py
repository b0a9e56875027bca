"""Liveness and the one-call summaries the CLI reads (`sc status`, `sc events`, `sc requests`)."""
from __future__ import annotations

import asyncio
import time
from typing import Optional

from fastapi import APIRouter, Depends, Query

from sc_actors.model import GUARDABLE, Document
from sc_actors.store.views import EventEntry, RequestEntry

from ..deps import StateDBApi, get_statedb
from ..answers import Status, StatusRow

router = APIRouter(tags=["heartbeat"])


@router.get("/heartbeat", summary="The API answers")
async def heartbeat() -> dict[str, str]:
    return {"status": "alive"}


def status_rows(containers: list[Document], limits: list[Document]) -> list[StatusRow]:
    """One row per container and resource: usage against current, upper, lower, min, max."""
    by_name = {d["name"]: d.get("resources", {}) for d in limits}
    rows: list[StatusRow] = []
    for c in sorted(containers, key=lambda d: d["name"]):
        for res in GUARDABLE:
            r = c.get("resources", {}).get(res)
            if not isinstance(r, dict) or r.get("max") is None:
                continue
            lr = by_name.get(c["name"], {}).get(res, {})
            missing = c.get("missing_since")
            rows.append({
                "container": c["name"], "host": c.get("host"), "resource": res,
                "guard": bool(c.get("guard") and r.get("guard")),
                # A container whose cgroup is gone has no usage: its last one would look alive.
                "usage": None if missing is not None else r.get("usage"), "current": r.get("current"),
                "upper": lr.get("upper"), "lower": lr.get("lower"),
                "min": r.get("min"), "max": r.get("max"),
                "missing_since": missing,
            })
    return rows


@router.get("/status", summary="Containers' usage and limits, and the services' state, in one call")
async def get_status(db: StateDBApi = Depends(get_statedb)) -> Status:
    containers, limits, services = await asyncio.gather(
        db.list("structures", "container"), db.list("limits"), db.list("services"))
    return {
        "time": time.time(),
        "containers": status_rows(containers, limits),
        "services": [{"name": s["name"], "active": s.get("config", {}).get("ACTIVE"),
                      "heartbeat": s.get("heartbeat", 0.0)} for s in services],
    }


# NOTE: response_model=None: the entries go out as the StateDB logged them, whatever keys they carry.
@router.get("/events", summary="Recent events (newest last), optionally of one structure", response_model=None)
async def get_events(structure: Optional[str] = Query(None, max_length=128),
                     limit: int = Query(100, ge=1, le=10_000),
                     db: StateDBApi = Depends(get_statedb)) -> list[EventEntry]:
    return await db.recent_events(structure, limit)


@router.get("/requests", summary="Recent requests and what the Scaler did with them (newest last)",
            response_model=None)
async def get_requests(structure: Optional[str] = Query(None, max_length=128),
                       limit: int = Query(100, ge=1, le=10_000),
                       db: StateDBApi = Depends(get_statedb)) -> list[RequestEntry]:
    return await db.recent_requests(structure, limit)
