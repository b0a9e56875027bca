"""Limits (reference §6, `/structure/<name>/limits…`): boundaries per resource.

`upper` and `lower` are the Guardian's; the API sets only `boundary` (1..100) and
`boundary_type`.
"""
from __future__ import annotations

from fastapi import APIRouter, Depends

from sc_actors.errors import Invalid, NotFound
from sc_actors.model import Document, ResourceName

from ..deps import StateDBApi, get_statedb, require_token
from ..schemas import MIN_BOUNDARY, BoundaryTypeValue, BoundaryValue, PathName

router = APIRouter(prefix="/structure", tags=["limits"])


async def _limits(db: StateDBApi, name: str) -> Document:
    await db.get("structures", name)
    try:
        return await db.get("limits", name)
    except NotFound:
        raise NotFound(f"structure {name!r} has no limits") from None


@router.get("/{name}/limits", summary="Limits of a structure, per resource")
async def get_limits(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    """The `resources` part of the stored limits document."""
    resources: Document = (await _limits(db, name)).get("resources", {})
    return resources


@router.get("/{name}/limits/{res}", summary="Limits of one resource of a structure")
async def get_resource_limits(name: PathName, res: str, db: StateDBApi = Depends(get_statedb)) -> Document:
    r = (await _limits(db, name)).get("resources", {}).get(res)
    if not isinstance(r, dict):
        raise NotFound(f"structure {name!r} has no limits for {res!r}")
    return r


async def _set(db: StateDBApi, name: str, res: str, field: str, value: int | str) -> Document:
    structure = await db.get("structures", name)
    if not isinstance(structure.get("resources", {}).get(res), dict):
        raise NotFound(f"structure {name!r} has no resource {res!r}")
    await _limits(db, name)
    return await db.patch("limits", name, {f"resources.{res}.{field}": value})


@router.put("/{name}/limits/{res}/boundary", dependencies=[Depends(require_token)],
            summary="Boundary of a resource, a percentage 1..100")
async def set_boundary(name: PathName, res: ResourceName, body: BoundaryValue,
                       db: StateDBApi = Depends(get_statedb)) -> Document:
    if body.value < MIN_BOUNDARY:
        raise Invalid(f"boundary {body.value} leaves a margin of 1 between current, upper and lower: "
                      f"give {MIN_BOUNDARY}..100 (a percentage)")
    return await _set(db, name, res, "boundary", body.value)


@router.put("/{name}/limits/{res}/boundary_type", dependencies=[Depends(require_token)],
            summary="Boundary type: percentage_of_max or percentage_of_current")
async def set_boundary_type(name: PathName, res: ResourceName, body: BoundaryTypeValue,
                            db: StateDBApi = Depends(get_statedb)) -> Document:
    return await _set(db, name, res, "boundary_type", body.value)
