"""The HTTP client of the Orchestrator API: all the CLI's HTTP goes through here.

One method per operation the CLI uses; this module alone knows the routes' URLs and
bodies, and quotes every name it puts in a URL. Standard library only (urllib, plus
`serve.answers`' typed dicts), so a CLI verb that only talks to the API starts in a
fraction of a second: no Ray, no FastAPI, no pydantic are imported.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Literal, Optional, Sequence, Union

from .answers import Document, Health, Message, ProfileApplied, Profiles, Status

DEFAULT_URL = "http://127.0.0.1:8000"

Number = Union[int, float]
Params = dict[str, Union[str, int, None]]
Verb = Literal["GET", "PUT", "DELETE"]
Kind = Literal["container", "host", "apps"]
"""What `PUT/DELETE /structure/<kind>/<name>` subscribes: `apps` are applications."""


class ApiError(Exception):
    """The API answered with an error status; `message` is its JSON `message`."""

    def __init__(self, status: int, message: str, method: str = "", path: str = ""):
        super().__init__(f"{status}: {message}")
        self.status = status
        self.message = message
        self.method = method
        self.path = path


class Unreachable(Exception):
    """Nothing answered at the API's URL."""

    def __init__(self, url: str, reason: str):
        super().__init__(f"cannot reach the API at {url}: {reason}")
        self.url = url
        self.reason = reason


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


def _path(*parts: str) -> str:
    """`/a/b/c` with every part quoted: a name never adds a path segment or a query."""
    return "".join("/" + _q(p) for p in parts)


# ---------------------------------------------------------------- bodies the CLI builds from options


def _limits_body(boundary: int) -> Document:
    return {"resources": {r: {"boundary": boundary, "boundary_type": "percentage_of_max"} for r in ("cpu", "mem")}}


def container_body(name: str, host: str, cpu: Sequence[Number], mem: Sequence[Number], boundary: int,
                   guard: bool) -> Document:
    """`PUT /structure/container/<name>`'s body; `cpu`, `mem`: (min, max) or (min, current, max)."""
    res = {r: {"min": p[0], "current": p[1] if len(p) == 3 else p[-1], "max": p[-1], "guard": guard}
           for r, p in (("cpu", cpu), ("mem", mem))}
    return {"container": {"name": name, "host": host, "host_rescaler_ip": host, "host_rescaler_port": "8000",
                          "subtype": "container", "guard": guard, "resources": res},
            "limits": _limits_body(boundary)}


def host_body(name: str, cpu: int, mem: int) -> Document:
    """`PUT /structure/host/<name>`'s body: `cpu` shares and `mem` MiB, all free."""
    return {"name": name, "host": name, "subtype": "host", "host_rescaler_ip": name, "host_rescaler_port": "8000",
            "resources": {"cpu": {"max": cpu, "free": cpu}, "mem": {"max": mem, "free": mem}}}


def app_body(name: str, cpu: Sequence[Number], mem: Sequence[Number], boundary: int) -> Document:
    """`PUT /structure/apps/<name>`'s body; `cpu`, `mem`: (min, max)."""
    res = {r: {"min": p[0], "max": p[-1], "guard": False, "weight": 1} for r, p in (("cpu", cpu), ("mem", mem))}
    return {"app": {"name": name, "subtype": "application", "guard": False, "resources": res},
            "limits": _limits_body(boundary)}


def user_body(name: str, cpu: Sequence[Number], mem: Sequence[Number]) -> Document:
    """`PUT /user/<name>`'s body; `cpu`, `mem`: (min, max)."""
    res = {r: {"min": p[0], "max": p[-1]} for r, p in (("cpu", cpu), ("mem", mem))}
    return {"user": {"name": name, "subtype": "user", "resources": res}}


# ---------------------------------------------------------------- the client


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: Optional[str] = None, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: Verb, path: str, body: Any = None, params: Optional[Params] = None) -> Any:
        """One call; the answer's JSON. Raises `ApiError` (an error status) or `Unreachable`."""
        url = self.url + path
        query = {k: v for k, v in (params or {}).items() if v is not None}
        if query:
            url += "?" + urllib.parse.urlencode(query)
        headers = {"Accept": "application/json"}
        data = None
        if body is not None:
            data = json.dumps(body).encode()
            headers["Content-Type"] = "application/json"
        if self.token and method != "GET":
            headers["Authorization"] = f"Bearer {self.token}"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        try:
            with urllib.request.urlopen(req, timeout=self.timeout_s) as r:
                raw = r.read()
        except urllib.error.HTTPError as e:
            raise ApiError(e.code, _message(e.read(), e.reason), method, path) from None
        except urllib.error.URLError as e:
            raise Unreachable(self.url, str(e.reason)) from None
        except (TimeoutError, ConnectionError) as e:
            raise Unreachable(self.url, str(e) or type(e).__name__) from None
        return json.loads(raw) if raw else None

    # ------------------------------------------------------------------ status, health, logs

    def status(self) -> Status:
        answer: Status = self.request("GET", "/status")
        return answer

    def health(self) -> Health:
        answer: Health = self.request("GET", "/health")
        return answer

    def events(self, structure: Optional[str] = None, limit: int = 100) -> list[Document]:
        return self._documents("GET", "/events", params={"structure": structure, "limit": limit})

    def requests(self, structure: Optional[str] = None, limit: int = 100) -> list[Document]:
        return self._documents("GET", "/requests", params={"structure": structure, "limit": limit})

    # ------------------------------------------------------------------ structures

    def structures(self, subtype: Optional[str] = None) -> list[Document]:
        return self._documents("GET", "/structure/", params={"subtype": subtype})

    def structure(self, name: str) -> Document:
        return self._document("GET", _path("structure", name))

    def resources(self, name: str, resource: Optional[str] = None, parameter: Optional[str] = None) -> Any:
        """The resources of a structure, one of them, or one parameter of one (a number, …)."""
        parts = ["structure", name, "resources"] + ([resource] if resource else []) + (
            [parameter] if resource and parameter else [])
        return self.request("GET", _path(*parts))

    def guard(self, structure: str, resources: Optional[list[str]] = None, state: bool = True) -> Document:
        """Guard (or unguard) a structure, or only some of its resources."""
        verb = "guard" if state else "unguard"
        if resources:
            return self._document("PUT", _path("structure", structure, "resources", verb), {"resources": resources})
        return self._document("PUT", _path("structure", structure, verb))

    def set_resource(self, name: str, resource: str, parameter: str, value: Number) -> Document:
        return self._document("PUT", _path("structure", name, "resources", resource, parameter), {"value": value})

    def set_state(self, name: str, state: str) -> Document:
        return self._document("PUT", _path("structure", name, "state", state))

    def subscribe(self, kind: Kind, name: str, body: Any) -> Document:
        """Subscribe a container, host or application (`apps`). `body`: `container_body(…)`,
        `host_body(…)` or `app_body(…)`, or one given whole (as the original's scripts send)."""
        return self._document("PUT", _path("structure", kind, name), body)

    def desubscribe(self, kind: Kind, name: str) -> Message:
        answer: Message = self.request("DELETE", _path("structure", kind, name))
        return answer

    def add_to_app(self, app: str, container: str) -> Document:
        return self._document("PUT", _path("structure", "container", container, app))

    def remove_from_app(self, app: str, container: str) -> Document:
        return self._document("DELETE", _path("structure", "container", container, app))

    # ------------------------------------------------------------------ limits

    def limits(self, name: str, resource: Optional[str] = None) -> Document:
        return self._document("GET", _path("structure", name, "limits", *([resource] if resource else [])))

    def set_limit(self, name: str, resource: str, field: Literal["boundary", "boundary_type"],
                  value: Union[int, str]) -> Document:
        return self._document("PUT", _path("structure", name, "limits", resource, field), {"value": value})

    # ------------------------------------------------------------------ rules

    def rules(self) -> list[Document]:
        return self._documents("GET", "/rule/")

    def rule(self, name: str) -> Document:
        return self._document("GET", _path("rule", name))

    def activate_rule(self, name: str, active: bool = True) -> Document:
        return self._document("PUT", _path("rule", name, "activate" if active else "deactivate"))

    def set_rule(self, name: str, field: Literal["amount", "policy"], value: Union[int, str]) -> Document:
        return self._document("PUT", _path("rule", name, field), {"value": value})

    def set_events_required(self, name: str, event_type: str, value: int) -> Document:
        return self._document("PUT", _path("rule", name, "events_required"), {"value": value, "event_type": event_type})

    # ------------------------------------------------------------------ services

    def services(self) -> list[Document]:
        return self._documents("GET", "/service/")

    def service(self, name: str) -> Document:
        return self._document("GET", _path("service", name))

    def set_service(self, service: str, key: str, value: Any) -> Document:
        """One config key; a string is coerced by the API as the original's scripts expect."""
        return self._document("PUT", _path("service", service, key), {"value": value})

    def activate_service(self, service: str, active: bool = True) -> Document:
        return self.set_service(service, "ACTIVE", "true" if active else "false")

    # ------------------------------------------------------------------ users

    def users(self) -> list[Document]:
        return self._documents("GET", "/user/")

    def user(self, name: str) -> Document:
        return self._document("GET", _path("user", name))

    def subscribe_user(self, name: str, body: Any) -> Document:
        return self._document("PUT", _path("user", name), body)

    def desubscribe_user(self, name: str) -> Message:
        answer: Message = self.request("DELETE", _path("user", name))
        return answer

    def give_app(self, user: str, app: str) -> Document:
        return self._document("PUT", _path("user", "clusters", user, app))

    def take_app(self, user: str, app: str) -> Document:
        return self._document("DELETE", _path("user", "clusters", user, app) + "/")

    def set_user_resource(self, name: str, resource: str, parameter: str, value: Number) -> Document:
        return self._document("PUT", _path("user", name, "resources", resource, parameter), {"value": value})

    # ------------------------------------------------------------------ profiles

    def profile(self) -> Profiles:
        answer: Profiles = self.request("GET", "/profile")
        return answer

    def set_profile(self, name: str, timing: Optional[str] = None) -> ProfileApplied:
        answer: ProfileApplied = self.request("PUT", _path("profile", name), {"timing": timing} if timing else None)
        return answer

    # ------------------------------------------------------------------ helpers

    def _document(self, method: Verb, path: str, body: Any = None) -> Document:
        answer = self.request(method, path, body)
        if not isinstance(answer, dict):
            raise ApiError(200, f"expected a JSON object, got {type(answer).__name__}", method, path)
        return answer

    def _documents(self, method: Verb, path: str, params: Optional[Params] = None) -> list[Document]:
        answer = self.request(method, path, params=params)
        if not isinstance(answer, list):
            raise ApiError(200, f"expected a JSON list, got {type(answer).__name__}", method, path)
        return answer


def _message(raw: bytes, reason: Any) -> str:
    try:
        body = json.loads(raw)
    except ValueError:
        return str(reason)
    if isinstance(body, dict):
        msg = body.get("message") or body.get("detail")
        if msg:
            return msg if isinstance(msg, str) else json.dumps(msg)
    return str(reason)
