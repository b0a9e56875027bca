"""Structures (reference §6 "Structures"): containers, hosts, applications.

Subscribing and desubscribing a container goes through the Scaler actor, which
owns every host's accounting (cores, memory) and writes the limits on the node;
the other changes are single-document patches or multi-document StateDB calls
that check first and write once.
"""
from __future__ import annotations

import logging
from typing import Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, status

from sc_actors.errors import Conflict, Invalid, NotFound
from sc_actors.model import GUARDABLE, AppState, Document, ResourceName

from ..answers import Message
from ..deps import NodeApi, ScalerApi, StateDBApi, get_node, get_scaler, get_statedb, require_token
from ..schemas import (
    AppSubscription,
    ContainerSubscription,
    GuardResources,
    HostSubscription,
    NewName,
    NumberValue,
    PathName,
)
from ..values import clamp_host_to_node

log = logging.getLogger(__name__)

router = APIRouter(prefix="/structure", tags=["structures"])
auth = [Depends(require_token)]


def _mismatch(body_name: str, url_name: str) -> None:
    if body_name != url_name:
        raise Invalid(f"name mismatch: {body_name!r} in the body, {url_name!r} in the URL")


async def _new(db: StateDBApi, body_name: str, name: str, taken: str) -> None:
    """Refuse a body naming another structure than the URL, or a name taken (409 `taken`)."""
    _mismatch(body_name, name)
    if await db.exists("structures", name):
        raise Conflict(f"structure {name!r} {taken}")


# ---------------------------------------------------------------- subscriptions
# Registered before the generic `/{name}/...` routes, so `/structure/container/x`
# is a subscription, as in the original (Werkzeug prefers static path parts).


@router.put("/container/{name}", status_code=status.HTTP_201_CREATED, dependencies=auth,
            summary="Subscribe a container: cores and memory from its host, limits applied on the node")
async def subscribe_container(
    name: NewName, body: ContainerSubscription, db: StateDBApi = Depends(get_statedb),
    scaler: ScalerApi = Depends(get_scaler),
) -> Document:
    c = body.container
    # Cheap refusals first, before the Scaler takes its lock and the node is asked.
    await _new(db, c.name, name, "already subscribed")
    try:
        host = await db.get("structures", c.host)
    except NotFound:
        raise NotFound(f"host {c.host!r} not found") from None
    if host.get("subtype") != "host":
        raise Invalid(f"{c.host!r} is a {host.get('subtype')}, not a host")
    limits = body.limits.model_dump(mode="json", exclude_none=True) if body.limits else None
    return await scaler.subscribe_container(c.model_dump(mode="json", exclude_none=True), limits)


@router.delete("/container/{name}", dependencies=auth,
               summary="Desubscribe a container: its cores and memory go back to its host")
async def desubscribe_container(name: PathName, db: StateDBApi = Depends(get_statedb),
                                scaler: ScalerApi = Depends(get_scaler)) -> Message:
    doc = await db.get("structures", name)
    if doc.get("subtype") != "container":
        raise Invalid(f"{name!r} is a {doc.get('subtype')}, not a container")
    await scaler.desubscribe_container(name)
    return {"message": f"container {name} desubscribed"}


@router.put("/container/{name}/{app}", dependencies=auth, summary="Add a container to an application")
async def add_container_to_app(name: PathName, app: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.link_container_to_app(name, app)


@router.delete("/container/{name}/{app}", dependencies=auth, summary="Remove a container from an application")
async def remove_container_from_app(name: PathName, app: PathName,
                                    db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.unlink_container_from_app(name, app)


@router.put("/host/{name}", status_code=status.HTTP_201_CREATED, dependencies=auth,
            summary="Subscribe a host (its ContainerScaler must be running)")
async def subscribe_host(name: NewName, body: HostSubscription, node: NodeApi = Depends(get_node),
                         db: StateDBApi = Depends(get_statedb)) -> Document:
    await _new(db, body.name, name, "already exists")
    if not node.alive():
        raise Invalid(f"no ContainerScaler answers for host {name!r}: is a Ray node labelled sc_host={name} up?")
    doc = body.model_dump(mode="json", exclude_none=True)
    # As the original: every core starts free, whatever the body says.
    doc["resources"]["cpu"].pop("core_usage_mapping", None)
    info = await node.host_info()
    doc.setdefault("topology", info.topology)
    # Never more cores or memory than the node has (issue 14): cut, and say so.
    warnings = clamp_host_to_node(doc, info.cores, float(info.mem_mib))
    for w in warnings:
        log.warning("host subscription: %s", w)
    stored = await db.put("structures", doc, True)
    return {**stored, "warnings": warnings} if warnings else stored


@router.delete("/host/{name}", dependencies=auth, summary="Desubscribe a host (refused while it has containers)")
async def desubscribe_host(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Message:
    await db.delete_structure(name, "host")
    return {"message": f"host {name} desubscribed"}


@router.put("/apps/{name}", status_code=status.HTTP_201_CREATED, dependencies=auth,
            summary="Subscribe an application (no containers yet) and its limits")
async def subscribe_app(name: NewName, body: AppSubscription, db: StateDBApi = Depends(get_statedb)) -> Document:
    _mismatch(body.app.name, name)
    doc = body.app.model_dump(mode="json", exclude_none=True)
    doc["containers"] = []
    doc.pop("user", None)
    limits = body.limits.model_dump(mode="json", exclude_none=True) if body.limits else {"resources": {}}
    return await db.create_with_limits(doc, limits)


@router.delete("/apps/{name}", dependencies=auth, summary="Desubscribe an application and its limits")
async def desubscribe_app(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Message:
    await db.delete_structure(name, "application")
    return {"message": f"application {name} desubscribed"}


@router.put("/host/{name}/disks", include_in_schema=False, status_code=501)
@router.post("/host/{name}/disks", include_in_schema=False, status_code=501)
async def host_disks(name: str) -> Message:
    raise HTTPException(501, "disk bandwidth is not managed by this implementation (CPU and memory only)")


# ---------------------------------------------------------------- reads


@router.get("/", summary="All structures (containers, hosts, applications)")
@router.get("", include_in_schema=False)
async def list_structures(
    subtype: Literal["container", "host", "application", None] = Query(None, description="only this subtype"),
    db: StateDBApi = Depends(get_statedb),
) -> list[Document]:
    return await db.list("structures", subtype)


@router.get("/{name}", summary="One structure")
async def get_structure(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.get("structures", name)


@router.get("/{name}/resources", summary="The resources of a structure")
async def get_resources(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    """The `resources` part of the stored document."""
    resources: Document = (await db.get("structures", name)).get("resources", {})
    return resources


def _resource(doc: Document, res: str) -> Document:
    """One resource of a stored structure (a part of the document)."""
    r = doc.get("resources", {}).get(res)
    if not isinstance(r, dict):
        raise NotFound(f"structure {doc['name']!r} has no resource {res!r}")
    return r


@router.get("/{name}/resources/{res}", summary="One resource of a structure")
async def get_resource(name: PathName, res: str, db: StateDBApi = Depends(get_statedb)) -> Document:
    return _resource(await db.get("structures", name), res)


@router.get("/{name}/resources/{res}/{param}", summary="One parameter of a resource (max, min, current, ...)")
async def get_resource_param(name: PathName, res: str, param: str, db: StateDBApi = Depends(get_statedb)) -> Any:
    r = _resource(await db.get("structures", name), res)
    if param not in r:
        raise NotFound(f"resource {res!r} of {name!r} has no {param!r}")
    return r[param]


# ---------------------------------------------------------------- changes


@router.put("/{name}/guard", dependencies=auth, summary="Guard a structure (the Guardian scales it)")
async def guard(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.patch("structures", name, {"guard": True})


@router.put("/{name}/unguard", dependencies=auth, summary="Unguard a structure")
async def unguard(name: PathName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await db.patch("structures", name, {"guard": False})


async def _guard_resources(db: StateDBApi, name: str, resources: list[str], state: bool) -> Document:
    doc = await db.get("structures", name)
    for res in resources:
        if res not in GUARDABLE:
            raise Invalid(f"resource {res!r} can't be guarded (guardable: {', '.join(GUARDABLE)})")
        if not isinstance(doc.get("resources", {}).get(res), dict):
            raise Invalid(f"resource {res!r} is missing in structure {name!r}")
    return await db.patch("structures", name, {f"resources.{res}.guard": state for res in resources})


@router.put("/{name}/resources/guard", dependencies=auth, summary="Guard several resources of a structure")
async def guard_resources(name: PathName, body: GuardResources, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await _guard_resources(db, name, body.names(), True)


@router.put("/{name}/resources/unguard", dependencies=auth, summary="Unguard several resources of a structure")
async def unguard_resources(name: PathName, body: GuardResources,
                            db: StateDBApi = Depends(get_statedb)) -> Document:
    return await _guard_resources(db, name, body.names(), False)


@router.put("/{name}/resources/{res}/guard", dependencies=auth, summary="Guard one resource of a structure")
async def guard_resource(name: PathName, res: ResourceName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await _guard_resources(db, name, [res], True)


@router.put("/{name}/resources/{res}/unguard", dependencies=auth, summary="Unguard one resource of a structure")
async def unguard_resource(name: PathName, res: ResourceName, db: StateDBApi = Depends(get_statedb)) -> Document:
    return await _guard_resources(db, name, [res], False)


@router.put("/{name}/resources/{res}/{param}", dependencies=auth,
            summary="Set max, min or weight of a resource (and current of energy)")
async def set_resource_param(
    name: PathName,
    res: ResourceName,
    param: Literal["max", "min", "weight", "current"],
    body: NumberValue,
    db: StateDBApi = Depends(get_statedb),
) -> Document:
    if param == "current" and res != "energy":
        raise Invalid("only the energy budget's 'current' is set through the API; "
                      "the Scaler owns the current limits of cpu and mem")
    doc = await db.get("structures", name)
    _resource(doc, res)
    value: float | int = body.value
    if param != "weight" and float(value).is_integer():
        value = int(value)
    # min <= current <= max is checked by the model when the StateDB applies it.
    return await db.patch("structures", name, {f"resources.{res}.{param}": value})


@router.put("/{name}/state/{state}", dependencies=auth, summary="Set the state of an application")
async def set_state(name: PathName, state: AppState, db: StateDBApi = Depends(get_statedb)) -> Document:
    doc = await db.get("structures", name)
    if doc.get("subtype") != "application":
        raise Invalid(f"{name!r} is a {doc.get('subtype')}: only applications have a state")
    return await db.patch("structures", name, {"state": state})
