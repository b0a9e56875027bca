"""Users (reference §6 "Users"): subscribe, give applications, set resource bounds."""
from __future__ import annotations

from typing import Literal

from fastapi import APIRouter, Depends, status

from sc_actors.errors import Invalid, NotFound
from sc_actors.model import Document, ResourceName

from ..deps import StateDBApi, get_statedb, require_token
from ..answers import Message
from ..schemas import NewName, NumberValue, PathName, UserSubscription
from .reads import add_reads

router = APIRouter(prefix="/user", tags=["users"])
auth = [Depends(require_token)]
add_reads(router, "users", "user")



@router.put("/clusters/{user}/{app}", dependencies=auth, summary="Give an application to a user")
async def add_app(user: PathName, app: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.link_app_to_user(user, app)


@router.delete("/clusters/{user}/{app}/", dependencies=auth, summary="Take an application from a user")
@router.delete("/clusters/{user}/{app}", dependencies=auth, include_in_schema=False)
async def remove_app(user: PathName, app: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.unlink_app_from_user(user, app)


@router.put("/{name}", status_code=status.HTTP_201_CREATED, dependencies=auth, summary="Subscribe a user")
async def subscribe_user(name: NewName, body: UserSubscription, db: StateDBApi = Depends(get_statedb)) -> Document:
    if body.user.name != name:
        raise Invalid(f"name mismatch: {body.user.name!r} in the body, {name!r} in the URL")
    doc = body.user.model_dump(mode="json", exclude_none=True)
    doc["clusters"] = []
    return await db.put("users", doc, True)


@router.delete("/{name}", dependencies=auth, summary="Desubscribe a user (its applications stay)")
async def desubscribe_user(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Message:
    await db.delete_user(name)
    return {"message": f"user {name} desubscribed"}


@router.put("/{name}/resources/{res}/{param}", dependencies=auth, summary="Set max or min of a user's resource")
async def set_user_resource(name: PathName, res: ResourceName, param: Literal["max", "min"], body: NumberValue,
                            db: StateDBApi = Depends(get_statedb)) -> Document:
    user = await db.get("users", name)
    if not isinstance(user.get("resources", {}).get(res), dict):
        raise NotFound(f"user {name!r} has no resource {res!r}")
    value = int(body.value) if float(body.value).is_integer() else body.value
    return await db.patch("users", name, {f"resources.{res}.{param}": value})
