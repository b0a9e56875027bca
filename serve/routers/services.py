"""Services (reference §6 "Services"): read and change their `config`, original keys."""
from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Body, Depends
from pydantic import ValidationError

from sc_actors.errors import Invalid
from sc_actors.model import Document
from sc_actors.settings import SETTINGS_BY_SERVICE

from ..deps import StateDBApi, get_statedb, require_token
from ..schemas import PathName, ServiceValue
from ..values import coerce_service_value
from .health import rule_warnings, with_warnings
from .reads import add_reads

router = APIRouter(prefix="/service", tags=["services"])
add_reads(router, "services", "service document")


def _beat(changed: Document, read: Document) -> Document:
    """The changed document with the heartbeat it was read with: heartbeats are volatile and
    not in the stored document, whose `heartbeat` is the model's 0.0."""
    return {**changed, **{k: read[k] for k in ("heartbeat", "heartbeat_human") if k in read}}


def _check_key(key: str) -> None:
    if not key or "." in key or len(key) > 128:
        raise Invalid(f"invalid config key {key!r}")


def _check(name: str, config: dict[str, Any]) -> None:
    """The config (free-form JSON, the original's keys) must still make valid settings
    for the services we run."""
    cls = SETTINGS_BY_SERVICE.get(name)
    if cls is None:
        return
    try:
        cls.from_config(config)
    except ValidationError as e:
        parts = [f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}" for err in e.errors()[:3]]
        raise Invalid(f"invalid {name} config: " + "; ".join(parts)) from None


async def _set_config(db: StateDBApi, name: str, values: dict[str, Any]) -> Document:
    """Merge `values` into the service's config, if the result still makes valid settings."""
    service = await db.get("services", name)
    _check(name, {**service.get("config", {}), **values})
    doc = _beat(await db.patch("services", name, {f"config.{k}": v for k, v in values.items()}), service)
    # A Guardian setting may leave a request rule unable to fire: the answer says so (issue 14 item 3).
    return with_warnings(doc, await rule_warnings(db) if name == "guardian" else [])


@router.put("/{name}", summary="Merge keys into the service's config (values as given)",
            dependencies=[Depends(require_token)])
async def put_service_config(
    name: PathName,
    body: dict[str, Any] = Body(..., examples=[{"WINDOW_TIMELAPSE": 1, "EVENT_TIMEOUT": 10}]),
    db: StateDBApi = Depends(get_statedb),
) -> Document:
    for key in body:
        _check_key(key)
    return await _set_config(db, name, body)


@router.put("/{name}/{key}", summary="Set one config key; strings are coerced as by the original",
            dependencies=[Depends(require_token)])
async def put_service_value(
    name: PathName, key: str, body: ServiceValue, db: StateDBApi = Depends(get_statedb)
) -> Document:
    _check_key(key)
    try:
        value = coerce_service_value(key, body.value)
    except ValueError as e:
        raise Invalid(str(e)) from None
    return await _set_config(db, name, {key: value})
