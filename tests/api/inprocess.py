"""The real API app over a real StateDB in this process: the fast route tests, without Ray.

`serve.app.create_app` with its dependencies overridden (FastAPI "Testing
Dependencies with Overrides"): the StateDB facade calls a real `StateDB(tmpdir,
fsync=False)` through `serve.deps.InProcess`, the Scaler's subscriptions go to
`LocalScaler` and each host's node to `LocalNode`, the live nodes' labels are given.
What a route needs of the real Scaler's accounting (cores placed, limits written on
a node) stays in the Ray suite (tests/api/test_routes.py).
"""
from __future__ import annotations

import copy
import socket
import threading
import time
from typing import Any, Optional

import uvicorn
from fastapi import FastAPI
from fastapi.testclient import TestClient

from sc_actors.errors import Conflict, Invalid, NotFound, Unavailable
from sc_actors.model import Container, Document, Host, HostInfo, Limits
from sc_actors.profiles import subscription_limits
from sc_actors.statedb import StateDB
from serve.app import create_app
from serve.deps import ApiConfig, InProcess, NodeApi, ScalerApi, StateDBApi, get_node, get_scaler, get_statedb
from serve.routers.health import get_live_hosts

COLLECTIONS = ("structures", "limits", "rules", "services", "users")


class LocalNode:
    """A host's ContainerScaler as the routes see it: its node's size and its containers."""

    def __init__(self, name: str, cores: int = 4, mem_mib: int = 8192) -> None:
        self.info = HostInfo(name=name, cores=cores, mem_mib=mem_mib,
                             topology={"0": {str(c): [c] for c in range(cores)}})
        self.containers: set[str] = set()

    async def host_info(self) -> dict[str, Any]:
        return self.info.model_dump()


class LocalScaler:
    """The Scaler's subscriptions over the same StateDB, for what the routes need.

    The same refusals in the same order (name, conflict, host, node lists it, free
    memory and shares), then the container, its limits (the profile's) and the host's
    free shares and MiB in one record; no per-core map. `unavailable`, when set, is
    raised as a node that does not answer would make the real one raise it.
    """

    def __init__(self, db: StateDB, nodes: dict[str, LocalNode]) -> None:
        self.db = db
        self.nodes = nodes
        self.unavailable: Optional[str] = None

    async def subscribe_container(self, container: Document, limits: Optional[Document] = None) -> Document:
        try:
            c = Container.model_validate(container)
        except Exception as e:
            raise Invalid(str(e)) from None
        profile = self.db.get("services", "scaler")["config"].get("PROFILE", "adaptive")
        lim = Limits.model_validate({"name": c.name,
                                     "resources": subscription_limits(profile, (limits or {}).get("resources"))})
        if self.db.exists("structures", c.name):
            raise Conflict(f"structure {c.name!r} already subscribed")
        host = Host.model_validate(self.db.get("structures", c.host))
        if self.unavailable:
            raise Unavailable(self.unavailable)
        node = self.nodes.get(c.host)
        if node is None or c.name not in node.containers:
            raise NotFound(f"container {c.name!r} not found on host {c.host!r}")
        cpu, mem = c.resources["cpu"], c.resources["mem"]
        cpu.current = cpu.max if cpu.current is None else cpu.current
        mem.current = mem.max if mem.current is None else mem.current
        for res, want in (("cpu", cpu.current), ("mem", mem.current)):
            if host.resources[res].free < want:
                raise Invalid(f"host {host.name} has {host.resources[res].free:g} {res} free, {want:g} needed")
            host.resources[res].free -= want
        placed = c.model_dump(mode="json", exclude_none=True)
        self.db.transact(puts=[("structures", placed), ("limits", lim.model_dump(mode="json", exclude_none=True)),
                               ("structures", host.model_dump(mode="json", exclude_none=True))])
        return placed

    async def desubscribe_container(self, name: str) -> None:
        c = Container.model_validate(self.db.get("structures", name))
        host = Host.model_validate(self.db.get("structures", c.host))
        host.resources["cpu"].free += c.resources["cpu"].current or 0
        host.resources["mem"].free += c.resources["mem"].current or 0
        puts = [("structures", host.model_dump(mode="json", exclude_none=True))]
        for app in self.db.list("structures", "application"):
            if name in app.get("containers", []):
                puts.append(("structures", {**app, "containers": [x for x in app["containers"] if x != name]}))
        deletes = [("structures", name)] + ([("limits", name)] if self.db.exists("limits", name) else [])
        self.db.transact(puts=puts, deletes=deletes)


_apps: list[FastAPI] = []


def _app() -> FastAPI:
    """One app for every test: its first request builds the middleware stack (~35 ms); each
    `Served` sets its config and dependencies anew."""
    if not _apps:
        _apps.append(create_app())
    return _apps[0]


class Served:
    """The app, its StateDB, the Scaler's stand-in and the nodes; `http` is its TestClient
    (`with Served(…) as served:` keeps one event loop for all its requests).

    The StateDB starts with the shipped rules and services, one host `h0` of 4 cores
    and 8 GiB whose node lists `c0`, and `c0` subscribed on it.
    """

    def __init__(self, state_dir: str, token: Optional[str] = None, checkpoint_every_s: float = 60.0,
                 cpu: tuple[float, float] = (400, 300), mem: tuple[float, float] = (8192, 7936),
                 own_app: bool = False) -> None:
        """`cpu` and `mem`: h0's (max, free), with c0's 100 shares and 256 MiB taken; `own_app`
        for one that lives beside others (the app is shared by the tests otherwise)."""
        from serve.deps import token_digest

        self.db = StateDB(state_dir, fsync=False, checkpoint_every_s=checkpoint_every_s)
        self.nodes: dict[str, LocalNode] = {"h0": LocalNode("h0")}
        self.scaler = LocalScaler(self.db, self.nodes)
        self.live: Optional[frozenset[str]] = frozenset({"h0"})
        self.app = create_app() if own_app else _app()
        self.app.state.config = ApiConfig(token_sha256=token_digest(token) if token else None)
        self.app.dependency_overrides.clear()
        self.app.dependency_overrides[get_statedb] = lambda: StateDBApi(InProcess(self.db))
        self.app.dependency_overrides[get_scaler] = lambda: ScalerApi(InProcess(self.scaler))
        self.app.dependency_overrides[get_node] = self._node
        self.app.dependency_overrides[get_live_hosts] = lambda: self.live
        self.http = TestClient(self.app, raise_server_exceptions=False)
        self.db.put("structures", {"name": "h0", "subtype": "host", "host": "h0", "resources": {
            "cpu": {"max": cpu[0], "free": cpu[1]}, "mem": {"max": mem[0], "free": mem[1]}}})
        self.add_container("c0")

    def __enter__(self) -> "Served":
        """One event loop for all the requests of a test (each request starts one otherwise)."""
        self.http.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        self.http.__exit__(None, None, None)

    def _node(self, name: str) -> NodeApi:
        node = self.nodes.get(name)

        class _Absent:
            async def __call__(self, method: str, *args: Any) -> Any:
                raise Unavailable(f"no ContainerScaler for host {name!r}")

            def alive(self) -> bool:
                return False

        return NodeApi(InProcess(node) if node is not None else _Absent())

    def add_container(self, name: str, cpu: float = 100, mem: float = 256, host: str = "h0") -> None:
        """A container stored as subscribed (documents only, as the Scaler leaves them)."""
        self.nodes[host].containers.add(name)
        self.db.put("structures", {"name": name, "subtype": "container", "host": host, "guard": True,
                                   "resources": {"cpu": {"min": 10, "current": cpu, "max": 200, "guard": True},
                                                 "mem": {"min": 64, "current": mem, "max": 1024, "guard": True}}})
        self.db.put("limits", {"name": name, "resources": {
            "cpu": {"boundary": 10, "boundary_type": "percentage_of_max"},
            "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}}})

    def snapshot(self) -> tuple[list[Document], ...]:
        """Every stored document, to compare before and after a refused request (without
        the services' heartbeats, which are not stored: the Refeeder's beats on every read)."""
        def stored(doc: Document) -> Document:
            return {k: v for k, v in copy.deepcopy(doc).items() if k not in ("heartbeat", "heartbeat_human")}
        return tuple(sorted((stored(d) for d in self.db.list(c)), key=lambda d: d["name"]) for c in COLLECTIONS)

    def problems(self) -> list[dict[str, str]]:
        """The problems `GET /health` reports (and its `ok` agrees)."""
        r = self.http.get("/health")
        assert r.status_code == 200, r.text
        body = r.json()
        assert body["ok"] == (body["problems"] == [])
        problems: list[dict[str, str]] = body["problems"]
        return problems

    def doc(self, collection: str, name: str) -> Document:
        return self.db.get(collection, name)


class Listening:
    """`Served`'s app on a real HTTP port (uvicorn in a thread), for clients that speak HTTP
    themselves (the `sc` CLI's urllib client)."""

    def __init__(self, served: Served) -> None:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = s.getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        self.server = uvicorn.Server(uvicorn.Config(served.app, host="127.0.0.1", port=port, log_level="warning",
                                                   access_log=False))
        self.thread = threading.Thread(target=self.server.run, name="api", daemon=True)
        self.thread.start()
        deadline = time.monotonic() + 10
        while not self.server.started:
            if not self.thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"the API did not start on {self.url}")
            time.sleep(0.01)

    def close(self) -> None:
        self.server.should_exit = True
        self.thread.join(timeout=10)
