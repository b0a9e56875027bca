"""The live Orchestrator API for tests: deployed once per session on the session's cluster.

`tests/api` and `tests/cli` both use it; the first fixture that asks deploys it,
the last one to finish takes it down (Serve's HTTP port is fixed once it starts,
so there is one deployment for the whole session).
"""
from __future__ import annotations

import dataclasses
import secrets
import socket
from typing import Any

import httpx
import pytest
import ray

_live: dict[str, Any] = {"users": 0}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclasses.dataclass
class Api:
    url: str
    token: str
    port: int

    def client(self, auth: bool = True) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.token}"} if auth else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=30)


def acquire() -> Api:
    from cluster.serve_deploy import deploy_api

    if _live["users"] == 0:
        port = free_port()
        token = secrets.token_urlsafe(16)
        url = deploy_api(port=port, token=token)
        _live["api"] = Api(url, token, port)
    _live["users"] += 1
    return _live["api"]


def release() -> None:
    from cluster.serve_deploy import undeploy_api

    _live["users"] -= 1
    if _live["users"] == 0:
        undeploy_api()


@pytest.fixture(scope="session")
def api(stack) -> Any:
    a = acquire()
    try:
        yield a
    finally:
        release()


@pytest.fixture
def http(api) -> Any:
    with api.client() as c:
        yield c


def snapshot(stack) -> tuple:
    """Every durable document of the StateDB, to compare before and after a refused request."""
    db = stack.statedb
    return tuple(
        ray.get(db.list.remote(c)) for c in ("structures", "limits", "rules", "services", "users")
    )


def without_usage(snap: tuple) -> tuple:
    """A snapshot without the volatile parts (usage of windows, heartbeats)."""
    def strip(doc):
        doc = dict(doc)
        doc.pop("heartbeat", None)
        doc.pop("heartbeat_human", None)
        if isinstance(doc.get("resources"), dict):
            doc["resources"] = {k: ({kk: vv for kk, vv in v.items() if kk not in ("usage", "upper", "lower")}
                                    if isinstance(v, dict) else v) for k, v in doc["resources"].items()}
        return doc
    return tuple(sorted((strip(d) for d in coll), key=lambda d: d["name"]) for coll in snap)
