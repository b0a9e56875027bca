"""The number of shards as the actors see it: read from the StateDB, kept for a few seconds.

The count lives in one place, the `shards` field of the `guardian` service document
(`policy.shards.shards_of`), written by `cluster.deploy` before the shards start. Whoever
routes by host reads it through a `ShardCount`: the node agents (which Guardian shard a
host's windows go to), the Scaler shards (which shard owns a request's host). It changes
only when the control plane is deployed again with another count, so a reader keeps it
`SHARDS_REFRESH_S` and reads it again in the background; until its first read answers it
says 1: a node's first window may go to shard 0, which evaluates it as any other (its
requests reach their owner: a Scaler shard forwards what it does not own, `Scaler._dispatch`).
"""
from __future__ import annotations

import asyncio
import logging
import time
from typing import Callable, Optional

from .handles import ActorHandle, lookup
from .policy.shards import shard_of, shards_of
from .settings import GUARDIAN_NAME, guardian_name, scaler_name

log = logging.getLogger(__name__)

SHARDS_REFRESH_S = 5.0
"""How long a reader keeps the count before it reads it again, seconds."""


class ShardCount:
    """The number of shards, read from the `guardian` service document and cached."""

    def __init__(self, statedb: Callable[[], ActorHandle], refresh_s: float = SHARDS_REFRESH_S,
                 clock: Callable[[], float] = time.monotonic) -> None:
        """`statedb`: gives the StateDB's handle (looked up by the caller's `Handles`) at each read."""
        self._statedb = statedb
        self._refresh_s = refresh_s
        self._clock = clock
        self._value: Optional[int] = None
        self._read_at = float("-inf")
        self._reading: Optional[asyncio.Task[int]] = None
        self._guardians: dict[str, ActorHandle] = {}
        """Guardian shards' handles, looked up again after each read of the count (a shard
        of a control plane deployed again is a new actor under the same name)."""

    def _stale(self) -> bool:
        return self._value is None or self._clock() - self._read_at >= self._refresh_s

    async def _read(self) -> int:
        try:
            doc = await self._statedb().get.remote("services", GUARDIAN_NAME)
            self._value = shards_of(doc)
            self._guardians = {}
        except Exception as e:  # the StateDB restarting: keep what we had
            log.warning("shard count not read: %s", e)
        self._read_at = self._clock()
        return self._value or 1

    def invalidate(self) -> None:
        """Read the count again at the next use: a shard it names is not running (the control
        plane was deployed again with fewer shards)."""
        self._read_at = float("-inf")

    async def read_now(self) -> int:
        """The count, read now (a deployment just wrote a new one)."""
        return await self._read()

    def cached(self) -> int:
        """The count now, without waiting: a stale one starts a read in the background."""
        if self._stale() and (self._reading is None or self._reading.done()):
            try:
                self._reading = asyncio.get_running_loop().create_task(self._read())
            except RuntimeError:  # no event loop (a test of the routing): the last value stands
                pass
        return self._value or 1

    async def read(self) -> int:
        """The count, read again first when stale."""
        if self._stale():
            if self._reading is None or self._reading.done():
                self._reading = asyncio.get_running_loop().create_task(self._read())
            return await self._reading
        return self._value or 1

    def guardian_of(self, host: str) -> str:
        """The name of the Guardian shard that evaluates `host`'s windows (the cached count)."""
        return guardian_name(shard_of(host, self.cached()))

    def guardian_for(self, host: str) -> ActorHandle:
        """The handle of the Guardian shard of `host`; `Unavailable` when it is not running."""
        name = self.guardian_of(host)
        handle = self._guardians.get(name)
        if handle is None:
            handle = self._guardians[name] = lookup(name)
        return handle

    async def scaler_of(self, host: str) -> str:
        """The name of the Scaler shard that owns `host`'s accounting."""
        return scaler_name(shard_of(host, await self.read()))
