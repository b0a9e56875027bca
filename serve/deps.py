"""What the routes depend on: the API's config, the typed actor facade and the token check.

The routes talk to the control plane's actors only through `StateDBApi`, `ScalerApi`
and `NodeApi`: one typed async method per actor method a route calls, so a misspelt
method is a mypy error, not a 500. Each facade calls its actor through a `Caller`:
`ActorCaller` over Ray (replicas run in Serve's namespace, so every actor is looked
up with the control plane's namespace explicitly, reference ray.md §2), or
`InProcess` over a plain object of this process (the fast route tests). An actor call
that fails inside the actor comes back as the actor's own error (`NotFound`,
`Conflict`, `Invalid`, `Unavailable`, …), which `serve.app` maps to one HTTP status.
"""
from __future__ import annotations

import builtins
import copy
import dataclasses
import hashlib
import hmac
import inspect
from typing import Any, Literal, Optional, Protocol, Sequence

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from sc_actors.errors import Unavailable
from sc_actors.handles import Handles, unwrap
from sc_actors.model import Document, HostInfo
from sc_actors.policy.shards import shard_of, shards_of
from sc_actors.settings import (
    GUARDIAN_NAME,
    NAMESPACE,
    SCALER_NAME,
    STATEDB_NAME,
    container_scaler_name,
    scaler_name,
)
from sc_actors.store.views import EventEntry, HealthView, RequestEntry

Collection = Literal["structures", "limits", "rules", "services", "users"]
"""The StateDB's collections of stored documents."""


@dataclasses.dataclass(frozen=True)
class ApiConfig:
    """Per-deployment settings (never the token itself: only its SHA-256)."""

    token_sha256: Optional[str] = None
    """Hex SHA-256 of the bearer token mutating routes need; None = no auth."""
    namespace: str = NAMESPACE
    """Ray namespace of the control-plane actors this API talks to."""


def token_digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def config_of(request: Request) -> ApiConfig:
    config: ApiConfig = request.app.state.config
    return config


_bearer = HTTPBearer(auto_error=False, description="Needed by every mutating route when the API has a token.")


async def require_token(
    request: Request, creds: Optional[HTTPAuthorizationCredentials] = Depends(_bearer)
) -> None:
    """401 unless the request carries `Authorization: Bearer <token>` (when a token is set)."""
    cfg = config_of(request)
    if cfg.token_sha256 is None:
        return
    if creds is None:
        raise HTTPException(401, "this route needs 'Authorization: Bearer <token>'",
                            headers={"WWW-Authenticate": "Bearer"})
    if not hmac.compare_digest(token_digest(creds.credentials), cfg.token_sha256):
        raise HTTPException(401, "invalid token", headers={"WWW-Authenticate": "Bearer"})


# ---------------------------------------------------------------- callers


class Caller(Protocol):
    """Calls one method of one actor (or of its stand-in) and returns what it returned."""

    async def __call__(self, method: str, *args: Any) -> Any: ...

    def alive(self) -> bool: ...


class ActorCaller:
    """Calls a named actor over Ray; its handle is kept by `handles` and looked up again
    after the actor died for good (`sc down` then `sc up`); a restarting actor keeps it."""

    def __init__(self, handles: Handles, name: str) -> None:
        self.handles = handles
        self.name = name

    async def __call__(self, method: str, *args: Any) -> Any:
        import ray.exceptions

        try:
            return await getattr(self.handles.get(self.name), method).remote(*args)
        except ray.exceptions.RayTaskError as e:
            raise unwrap(e) from None
        except ray.exceptions.RayActorError:
            self.handles.forget(self.name)
            raise Unavailable(f"{self.name} is unavailable") from None

    def alive(self) -> bool:
        try:
            self.handles.get(self.name)
            return True
        except Unavailable:
            return False


class InProcess:
    """Calls a plain object of this process as `ActorCaller` calls an actor.

    Arguments and results are deep-copied, as Ray's serialization copies them, so a
    route that changes what it got changes nothing in the object.
    """

    def __init__(self, target: object) -> None:
        self.target = target

    async def __call__(self, method: str, *args: Any) -> Any:
        result = getattr(self.target, method)(*copy.deepcopy(args))
        if inspect.isawaitable(result):
            result = await result
        return copy.deepcopy(result)

    def alive(self) -> bool:
        return True


# ---------------------------------------------------------------- the facade


def _document(x: Any) -> Document:
    if not isinstance(x, dict):
        raise TypeError(f"expected a document, got {type(x).__name__}")
    return x


def _documents(x: Any) -> builtins.list[Document]:
    if not isinstance(x, builtins.list):
        raise TypeError(f"expected a list of documents, got {type(x).__name__}")
    return x


class StateDBApi:
    """The StateDB methods the routes call (`sc_actors/statedb.py` documents each)."""

    def __init__(self, call: Caller) -> None:
        self._call = call

    async def get(self, collection: Collection, name: str) -> Document:
        return _document(await self._call("get", collection, name))

    async def exists(self, collection: Collection, name: str) -> bool:
        return bool(await self._call("exists", collection, name))

    async def list(self, collection: Collection, subtype: Optional[str] = None) -> builtins.list[Document]:
        return _documents(await self._call("list", collection, subtype))

    async def put(self, collection: Collection, doc: Document, create: bool = False) -> Document:
        return _document(await self._call("put", collection, doc, create))

    async def patch(self, collection: Collection, name: str, changes: dict[str, Any],
                    expect: Optional[dict[str, Any]] = None) -> Document:
        """Set dotted fields (`{"resources.cpu.max": 200}`: JSON values), if `expect` still holds."""
        return _document(await self._call("patch", collection, name, changes, expect))

    async def transact(self, puts: Sequence[tuple[str, Document]] = (),
                       deletes: Sequence[tuple[str, str]] = ()) -> int:
        """Documents put and deleted in one journal record: (collection, document), (collection, name)."""
        return int(await self._call("transact", builtins.list(puts), builtins.list(deletes)))

    async def create_with_limits(self, doc: Document, limits: Optional[Document]) -> Document:
        return _document(await self._call("create_with_limits", doc, limits))

    async def delete_structure(self, name: str, subtype: Literal["host", "application"]) -> None:
        await self._call("delete_structure", name, subtype)

    async def delete_user(self, name: str) -> None:
        await self._call("delete_user", name)

    async def link_container_to_app(self, container: str, app: str) -> Document:
        return _document(await self._call("link_container_to_app", container, app))

    async def unlink_container_from_app(self, container: str, app: str) -> Document:
        return _document(await self._call("unlink_container_from_app", container, app))

    async def link_app_to_user(self, user: str, app: str) -> Document:
        return _document(await self._call("link_app_to_user", user, app))

    async def unlink_app_from_user(self, user: str, app: str) -> Document:
        return _document(await self._call("unlink_app_from_user", user, app))

    async def health_view(self) -> HealthView:
        view: HealthView = await self._call("health_view")
        return view

    async def recent_events(self, name: Optional[str], limit: int) -> builtins.list[EventEntry]:
        events: builtins.list[EventEntry] = await self._call("recent_events", name, limit)
        return events

    async def recent_requests(self, name: Optional[str], limit: int) -> builtins.list[RequestEntry]:
        entries: builtins.list[RequestEntry] = await self._call("recent_requests", name, limit)
        return entries


class ShardRoute:
    """Which Scaler shard owns a host (issue 16): the count from the `guardian` service
    document, the owner by `policy.shards.shard_of`; its caller."""

    def __init__(self, handles: Handles, statedb: Caller) -> None:
        self.handles = handles
        self.statedb = statedb

    async def for_host(self, host: str) -> Caller:
        shards = shards_of(_document(await self.statedb("get", "services", GUARDIAN_NAME)))
        return ActorCaller(self.handles, scaler_name(shard_of(host, shards)))

    async def for_container(self, name: str) -> Optional[Caller]:
        """The owner of the container's host; None when the StateDB has no such container."""
        hosts = await self.statedb("container_hosts", [name])
        host = hosts.get(name) if isinstance(hosts, dict) else None
        return await self.for_host(host) if isinstance(host, str) else None


class ScalerApi:
    """The Scaler methods the routes call: subscriptions, which move a host's accounting.

    With `route`, each goes to the Scaler shard that owns the container's host (a shard
    that does not answer is 503); without, to `call` (one Scaler, or its stand-in).
    """

    def __init__(self, call: Caller, route: Optional[ShardRoute] = None) -> None:
        self._call = call
        self._route = route

    async def subscribe_container(self, container: Document, limits: Optional[Document]) -> Document:
        host = container.get("host")
        call = await self._route.for_host(host) if self._route and isinstance(host, str) else self._call
        return _document(await call("subscribe_container", container, limits))

    async def desubscribe_container(self, name: str) -> None:
        call = (await self._route.for_container(name) if self._route else None) or self._call
        await call("desubscribe_container", name)


class NodeApi:
    """The ContainerScaler of one host: whether it runs, and what its node has."""

    def __init__(self, call: Caller) -> None:
        self._call = call

    def alive(self) -> bool:
        return self._call.alive()

    async def host_info(self) -> HostInfo:
        return HostInfo.model_validate(await self._call("host_info"))


# ---------------------------------------------------------------- the dependencies

_handles: dict[str, Handles] = {}
"""One `Handles` per namespace, kept across requests."""


def handles_of(request: Request) -> Handles:
    namespace = config_of(request).namespace
    h = _handles.get(namespace)
    if h is None:
        h = _handles[namespace] = Handles(namespace)
    return h


def get_statedb(request: Request) -> StateDBApi:
    return StateDBApi(ActorCaller(handles_of(request), STATEDB_NAME))


def get_scaler(request: Request) -> ScalerApi:
    handles = handles_of(request)
    return ScalerApi(ActorCaller(handles, SCALER_NAME), ShardRoute(handles, ActorCaller(handles, STATEDB_NAME)))


def get_node(request: Request, name: str) -> NodeApi:
    """The node of the host a route names (`/structure/host/{name}`)."""
    return NodeApi(ActorCaller(handles_of(request), container_scaler_name(name)))
