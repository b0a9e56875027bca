"""What the routes depend on: the API's config, actor handles and the token check.

Replicas run in Serve's namespace, so every actor is looked up with the
control plane's namespace explicitly (reference ray.md §2). An actor call that
fails inside the actor comes back as the actor's own error (`NotFound`,
`Conflict`, `Invalid`, …), which `serve.app` maps to one HTTP status.
"""
from __future__ import annotations

import dataclasses
import hashlib
import hmac
from typing import Any, Optional

from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import ValidationError

from sc_actors.errors import Invalid, ScError, Unavailable
from sc_actors.settings import NAMESPACE, SCALER_NAME, STATEDB_NAME, container_scaler_name


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
    return request.app.state.config  # type: ignore[no-any-return]


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


class Actor:
    """An awaitable proxy of one named actor: `await db.get("structures", name)`.

    The handle is looked up on first use and again after the actor died for good
    (`sc down` then `sc up`); a restarting actor keeps its handle.
    """

    _handles: dict[tuple[str, str], Any] = {}

    def __init__(self, name: str, namespace: str):
        self.name = name
        self.namespace = namespace

    def _handle(self) -> Any:
        import ray

        key = (self.namespace, self.name)
        h = self._handles.get(key)
        if h is None:
            try:
                h = ray.get_actor(self.name, namespace=self.namespace)
            except ValueError:
                raise Unavailable(f"{self.name} is not running") from None
            self._handles[key] = h
        return h

    def __getattr__(self, method: str) -> Any:
        if method.startswith("_"):
            raise AttributeError(method)

        async def call(*args: Any, **kwargs: Any) -> Any:
            import ray

            try:
                return await getattr(self._handle(), method).remote(*args, **kwargs)
            except ray.exceptions.RayTaskError as e:
                raise unwrap(e) from None
            except ray.exceptions.RayActorError:
                self._handles.pop((self.namespace, self.name), None)
                raise Unavailable(f"{self.name} is unavailable") from None

        return call

    async def alive(self) -> bool:
        try:
            self._handle()
            return True
        except Unavailable:
            return False


def unwrap(e: BaseException) -> BaseException:
    """The error an actor raised, as our own error class where it has one."""
    cause = getattr(e, "cause", None) or e
    if isinstance(cause, ScError):
        return cause
    if isinstance(cause, ValidationError):
        return Invalid(str(cause))
    return cause if isinstance(cause, Exception) else e


def get_statedb(request: Request) -> Actor:
    return Actor(STATEDB_NAME, config_of(request).namespace)


def get_scaler(request: Request) -> Actor:
    return Actor(SCALER_NAME, config_of(request).namespace)


def get_node(request: Request, host: str) -> Actor:
    return Actor(container_scaler_name(host), config_of(request).namespace)
