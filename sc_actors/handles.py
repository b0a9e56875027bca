"""The control plane's actors by name: one place for their names, namespace, lookup and errors.

Every actor of the control plane is a named detached actor in `NAMESPACE`. Callers
(other actors, the API's replicas in Serve's namespace, the CLI) hold a `Handles`
and ask it for `statedb`, `guardian`, `scaler`, `node(host)` or any name with `get`. A handle is looked up
once and kept; after the actor died for good (`RayActorError`) the caller `forget`s
it and the next use looks it up again, so `sc down` then `sc up` needs no restart of
the caller. A restarting actor (max_restarts) keeps its handle.

`unwrap` turns what an actor call raised into the actor's own error: our `ScError`
classes (which the API maps to one HTTP status each), a pydantic `ValidationError`
as `Invalid`, anything else as it was raised.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Optional

from .errors import Invalid, ScError, Unavailable
from .settings import GUARDIAN_NAME, NAMESPACE, SCALER_NAME, STATEDB_NAME, container_scaler_name

ActorHandle = Any
"""`ray.actor.ActorHandle`; Ray's stubs type its methods as Any anyway."""


def lookup(name: str, namespace: str = NAMESPACE) -> ActorHandle:
    """The handle of the named actor; `Unavailable` when no actor has that name (yet)."""
    import ray

    try:
        return ray.get_actor(name, namespace=namespace)
    except ValueError:
        raise Unavailable(f"{name} is not running") from None


class Handles:
    """Handles of the control plane's actors, looked up on first use and kept."""

    def __init__(self, namespace: str = NAMESPACE) -> None:
        self.namespace = namespace
        self._handles: dict[str, ActorHandle] = {}
        self._agents: dict[str, str] = {}
        """Host → the host whose ContainerScaler serves it, where that is another one."""

    def get(self, name: str) -> ActorHandle:
        h = self._handles.get(name)
        if h is None:
            h = self._handles[name] = lookup(name, self.namespace)
        return h

    def forget(self, name: str) -> None:
        """Drop a handle whose actor died for good: the next `get` looks it up again."""
        self._handles.pop(name, None)

    @property
    def statedb(self) -> ActorHandle:
        return self.get(STATEDB_NAME)

    @property
    def guardian(self) -> ActorHandle:
        return self.get(GUARDIAN_NAME)

    @property
    def scaler(self) -> ActorHandle:
        return self.get(SCALER_NAME)

    def serve(self, host: str, agent: Optional[str]) -> None:
        """Remember which host's ContainerScaler serves `host` (None: its own), as its host
        document's `agent` says; callers fill this from the host documents they read."""
        if agent and agent != host:
            self._agents[host] = agent
        else:
            self._agents.pop(host, None)

    def serve_hosts(self, docs: Iterable[Mapping[str, object]]) -> None:
        """`serve` for each of these host documents."""
        for d in docs:
            agent = d.get("agent")
            self.serve(str(d.get("name", "")), agent if isinstance(agent, str) else None)

    def node(self, host: str) -> ActorHandle:
        """The ContainerScaler serving `host`; `Unavailable` when that host has none running."""
        try:
            return self.get(container_scaler_name(self._agents.get(host, host)))
        except Unavailable:
            raise Unavailable(f"no ContainerScaler for host {host!r}") from None

    def forget_node(self, host: str) -> None:
        self.forget(container_scaler_name(self._agents.get(host, host)))


def unwrap(e: BaseException) -> BaseException:
    """The error an actor raised, as our own error class where it has one.

    Ray wraps what an actor method raised in a `RayTaskError` whose `cause` is the
    original exception; a dead actor (`RayActorError`) becomes `Unavailable`.
    """
    from pydantic import ValidationError

    cause = getattr(e, "cause", None) or e
    if isinstance(cause, ScError):
        return cause
    if isinstance(cause, ValidationError):
        return Invalid(str(cause))
    try:
        import ray.exceptions

        if isinstance(cause, ray.exceptions.RayActorError):
            return Unavailable(f"an actor is unavailable: {cause}")
    except ImportError:  # pragma: no cover - ray is a dependency
        pass
    return cause if isinstance(cause, Exception) else e


__all__ = ["ActorHandle", "Handles", "lookup", "unwrap"]
