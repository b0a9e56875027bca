"""The Orchestrator HTTP API: a FastAPI app served by Ray Serve (reference §6).

Same routes and bodies as the original's Flask Orchestrator, so its shell scripts
work unchanged, but with honest HTTP: 200 for reads and updates, 201 for
creation, 404 for unknown names, 400/422 for invalid bodies, 409 for conflicts,
401 without the token (when one is set), 503 when an actor is down; every error
body is `{"message": ...}`. OpenAPI at /docs and /openapi.json.
"""
from __future__ import annotations

import logging
from typing import Any, Optional, Union

from typing_extensions import TypedDict

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import ValidationError
from starlette.exceptions import HTTPException as StarletteHTTPException

from sc_actors.errors import ScError
from sc_actors.settings import HEAD_RESOURCES, NAMESPACE

from .deps import ApiConfig
from .routers import health, heartbeat, limits, profiles, rules, services, structures, ui, users

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024 * 1024
"""Largest request body accepted, bytes; the original's documents are a few KiB."""

MAX_DRAIN_BYTES = 256 * 1024 * 1024
"""An oversized body up to this size is read and dropped before the 413 goes out, bytes:
a client that sends its whole body before it reads (urllib, the `sc` CLI) would
otherwise get a connection reset instead of the answer. Beyond it the connection is cut."""


class BodyTooLarge(Exception):
    pass


class BodySizeLimit:
    """ASGI middleware: a body over `max_bytes` is refused with 413 before any route reads it.

    NOTE: the declared Content-Length is checked first; a chunked body is counted
    as it arrives, so nothing larger than the limit is ever buffered.
    """

    def __init__(self, app: Any, max_bytes: int = MAX_BODY_BYTES, max_drain_bytes: int = MAX_DRAIN_BYTES):
        self.app = app
        self.max_bytes = max_bytes
        self.max_drain_bytes = max_drain_bytes

    async def _drain(self, receive: Any, seen: int = 0) -> None:
        """Read and drop the rest of the body (see MAX_DRAIN_BYTES)."""
        while seen <= self.max_drain_bytes:
            msg = await receive()
            if msg["type"] != "http.request":
                return
            seen += len(msg.get("body", b""))
            if not msg.get("more_body", False):
                return

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        message = f"request body larger than {self.max_bytes} bytes"
        for key, value in scope.get("headers", ()):
            if key == b"content-length":
                try:
                    too_large = int(value) > self.max_bytes
                except ValueError:
                    too_large = False
                if too_large:
                    await self._drain(receive)
                    await _error(413, message)(scope, receive, send)
                    return
        seen = 0
        over = False
        replaced = False
        ended = False

        async def counted_receive() -> Any:
            nonlocal seen, over, ended
            msg = await receive()
            if msg["type"] == "http.request":
                seen += len(msg.get("body", b""))
                ended = not msg.get("more_body", False)
                if seen > self.max_bytes:
                    over = True
                    raise BodyTooLarge(message)
            return msg

        async def checked_send(msg: Any) -> None:
            # Whatever the app answers to a body cut short, the client gets the 413.
            nonlocal replaced
            if not over:
                await send(msg)
            elif not replaced and msg["type"] == "http.response.start":
                replaced = True
                if not ended:
                    await self._drain(receive, seen)
                await _error(413, message)(scope, receive, send)

        try:
            await self.app(scope, counted_receive, checked_send)
        except BodyTooLarge:
            if not replaced:
                if not ended:
                    await self._drain(receive, seen)
                await _error(413, message)(scope, receive, send)


DESCRIPTION = """\
Route-compatible with the Orchestrator of UDC-GAC Serverless Containers: the original's
scripts work when pointed here. Units as in the original: CPU in shares (100 = one core),
memory in MiB, `boundary` a percentage.

When the API has a token, every PUT/POST/DELETE needs `Authorization: Bearer <token>`.
"""

TAGS = [
    {"name": "structures", "description": "Containers, hosts and applications; subscriptions."},
    {"name": "limits", "description": "Boundaries of each structure's resources."},
    {"name": "rules", "description": "Event and request rules (JSON-logic)."},
    {"name": "services", "description": "Service configs, with the original's upper-case keys."},
    {"name": "users", "description": "Users and the applications they own."},
    {"name": "profiles", "description": "Scaling profiles: adaptive (the default) or the original's."},
    {"name": "heartbeat", "description": "Liveness, status, recent events and requests."},
]


def _error(status: int, message: str, headers: Optional[dict[str, str]] = None, **extra: Any) -> JSONResponse:
    return JSONResponse({"message": message, **extra}, status_code=status, headers=headers)


def _validation_message(errors: list[Any]) -> str:
    parts = []
    for err in errors[:5]:
        where = ".".join(str(p) for p in err.get("loc", ()) if p != "body")
        parts.append(f"{where}: {err.get('msg')}" if where else str(err.get("msg")))
    return "; ".join(parts) or "invalid request"


class ErrorDetail(TypedDict):
    """One validation error of a 4xx answer's `detail`, as plain JSON."""

    loc: list[Union[str, int]]
    msg: str
    type: str


def _plain(errors: list[Any]) -> list[ErrorDetail]:
    return [{"loc": list(e.get("loc", ())), "msg": str(e.get("msg")), "type": str(e.get("type"))} for e in errors]


def install_error_handlers(app: FastAPI) -> None:
    async def on_sc_error(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, ScError)
        return _error(e.status, e.message)

    async def on_http(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, StarletteHTTPException)
        return _error(e.status_code, str(e.detail), headers=getattr(e, "headers", None))

    async def on_request_validation(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, RequestValidationError)
        errors = list(e.errors())
        return _error(422, _validation_message(errors), detail=_plain(errors))

    async def on_validation(_: Request, e: Exception) -> JSONResponse:
        assert isinstance(e, ValidationError)
        errors = list(e.errors())
        return _error(400, _validation_message(errors), detail=_plain(errors))

    async def on_other(request: Request, e: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return _error(500, f"internal error: {type(e).__name__}")

    app.add_exception_handler(ScError, on_sc_error)
    app.add_exception_handler(StarletteHTTPException, on_http)
    app.add_exception_handler(RequestValidationError, on_request_validation)
    app.add_exception_handler(ValidationError, on_validation)
    app.add_exception_handler(Exception, on_other)


def create_app(config: ApiConfig | None = None) -> FastAPI:
    """The FastAPI app; `config` says which actors it talks to and whether it needs a token."""
    app = FastAPI(
        title="Serverless Containers Orchestrator",
        version="1.0",
        description=DESCRIPTION,
        openapi_tags=TAGS,
    )
    app.state.config = config or ApiConfig()
    install_error_handlers(app)
    app.add_middleware(BodySizeLimit)
    for module in (structures, limits, rules, services, users, profiles, heartbeat, health, ui):
        app.include_router(module.router)
    return app


def orchestrator_deployment() -> Any:
    """The Serve deployment class (Ray Serve imported only here)."""
    from ray import serve

    # No access log: a line per request costs latency, and the control plane's own
    # logs already say what changed.
    # A dead replica is noticed within about a second (Serve's default check is every 10 s).
    # On the head, beside its proxy (HeadOnly): a replica on a controlled host would take
    # the API down with that host's link.
    @serve.deployment(ray_actor_options={"num_cpus": 0, "resources": HEAD_RESOURCES}, max_ongoing_requests=200,
                      num_replicas=1,
                      logging_config={"enable_access_log": False},
                      health_check_period_s=1, health_check_timeout_s=2)
    @serve.ingress()
    class Orchestrator:
        # NOTE: only the token's SHA-256 reaches the replica (and Serve's stored config).
        def __init__(self, token_sha256: Optional[str] = None, namespace: str = NAMESPACE):
            self.config = ApiConfig(token_sha256=token_sha256, namespace=namespace)

        def __serve_build_asgi_app__(self) -> FastAPI:
            return create_app(self.config)

    return Orchestrator


def build(token_sha256: Optional[str] = None, namespace: str = NAMESPACE) -> Any:
    """The bound Serve application, for `serve.run`."""
    return orchestrator_deployment().bind(token_sha256, namespace)
