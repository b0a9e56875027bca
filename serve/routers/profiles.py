"""Scaling profiles (our addition): which profile new subscriptions get, and `sc profile`.

`PUT /profile/{name}` applies a profile in one StateDB record: the Scaler's `PROFILE`,
the boundary of every subscribed container's limits and, with `timing`, the services'
periods (`sc_actors/profiles.py`). `GET /profile` tells the one in force.
"""
from __future__ import annotations

from typing import Literal, Optional

from fastapi import APIRouter, Depends
from pydantic import BaseModel, ConfigDict

from sc_actors.errors import Invalid
from sc_actors.profiles import PROFILES, TIMINGS, check_profile, profile_documents

from ..deps import StateDBApi, get_statedb, require_token
from ..answers import ProfileApplied, ProfileLimit, Profiles

router = APIRouter(prefix="/profile", tags=["profiles"])


class ProfileBody(BaseModel):
    model_config = ConfigDict(extra="forbid")
    timing: Optional[Literal["ours", "original"]] = None
    """Also set the services' periods: ours (0.4 s windows) or the original's (10 s)."""


@router.get("", summary="The profile in force and the ones there are")
@router.get("/", include_in_schema=False)
async def get_profile(db: StateDBApi = Depends(get_statedb)) -> Profiles:
    scaler = await db.get("services", "scaler")
    profiles = {name: {res: ProfileLimit(boundary=lim["boundary"], boundary_type=lim["boundary_type"])
                       for res, lim in limits.items()} for name, limits in PROFILES.items()}
    return {"profile": scaler.get("config", {}).get("PROFILE", "adaptive"), "profiles": profiles,
            "timings": list(TIMINGS)}


@router.put("/{name}", summary="Apply a profile to new subscriptions and every subscribed container",
            dependencies=[Depends(require_token)])
async def put_profile(name: str, body: Optional[ProfileBody] = None,
                      db: StateDBApi = Depends(get_statedb)) -> ProfileApplied:
    try:
        check_profile(name)
    except ValueError as e:
        raise Invalid(str(e)) from None
    timing = body.timing if body else None
    puts = profile_documents(name, timing, await db.list("services"), await db.list("limits"))
    if puts:
        await db.transact(puts)
    return {"profile": name, "timing": timing,
            "limits_changed": sum(1 for c, _ in puts if c == "limits"),
            "services_changed": sorted(d["name"] for c, d in puts if c == "services")}
