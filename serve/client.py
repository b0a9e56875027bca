"""The HTTP client of the Orchestrator API: all the CLI's HTTP goes through here.

Standard library only (urllib), so a CLI verb that only talks to the API starts
in a fraction of a second: no Ray, no FastAPI, no pydantic are imported.
"""
from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any, Optional

DEFAULT_URL = "http://127.0.0.1:8000"


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


class Client:
    def __init__(self, url: str = DEFAULT_URL, token: Optional[str] = None, timeout_s: float = 30.0):
        self.url = url.rstrip("/")
        self.token = token
        self.timeout_s = timeout_s

    def request(self, method: str, path: str, body: Any = None, params: Optional[dict[str, Any]] = None) -> Any:
        url = self.url + path
        if params:
            query = {k: v for k, v in params.items() if v is not None}
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

    def get(self, path: str, **params: Any) -> Any:
        return self.request("GET", path, params=params)

    def put(self, path: str, body: Any = None) -> Any:
        return self.request("PUT", path, body)

    def delete(self, path: str) -> Any:
        return self.request("DELETE", path)

    # ------------------------------------------------------------------ the routes, by name

    def set_service(self, service: str, key: str, value: Any) -> Any:
        return self.put(f"/service/{_q(service)}/{_q(key)}", {"value": value})

    def guard(self, structure: str, resources: Optional[list[str]] = None, state: bool = True) -> Any:
        verb = "guard" if state else "unguard"
        if resources:
            return self.put(f"/structure/{_q(structure)}/resources/{verb}", {"resources": resources})
        return self.put(f"/structure/{_q(structure)}/{verb}")


def _q(part: str) -> str:
    return urllib.parse.quote(part, safe="")


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
