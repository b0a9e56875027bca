"""StructuresSnapshoter: reads the real limits back from every node and reconciles.

The Scaler records `current` as it applies, so drift only comes from outside
(someone wrote a cgroup file by hand, a container restarted with other limits).
Each period this actor reads every node's limits in parallel, asks the StateDB
which containers differ from their recorded `current`, reports each drift, and
has the Scaler write the recorded limits back. A subscribed container its node no
longer lists (its cgroup was removed from outside) is marked missing, with the time,
and after `MISSING_GRACE_PERIOD` the Scaler desubscribes it, giving its cores and
memory back to the host (issue 14 item 7); both are in the decision log.

NOTE: the original copied the real value into `current` instead; that leaves the
host's core map and free shares disagreeing with the container (its "core map
check" existed to repair exactly that). Restoring the recorded limits keeps the
accounting true and the host never over-committed.

A node that does not answer is skipped: the others are still reconciled (the
original skipped the whole epoch, reference §11.2).
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Optional

from typing_extensions import TypedDict

from .errors import Unavailable
from .handles import ActorHandle, Handles, unwrap
from .loops import every
from .model import ContainerLimits
from .settings import StructuresSnapshoterSettings
from .store.views import Drift, HostMark

log = logging.getLogger(__name__)
READ_TIMEOUT_S = 2.0


class SnapshoterStatus(TypedDict):
    """`StructuresSnapshoter.ping`: epochs run and the last drift found."""

    epochs: int
    drift: list[Drift]


class StructuresSnapshoter:
    def __init__(self) -> None:
        self.settings = StructuresSnapshoterSettings()
        self.drift: collections.deque[Drift] = collections.deque(maxlen=1000)
        self._actors = Handles()
        self.epochs = 0
        self._stop = asyncio.Event()
        self._task = asyncio.get_event_loop().create_task(
            every(lambda: self.settings.polling_frequency_s, self.tick, self._stop, log, "structures snapshot"))

    async def ping(self) -> SnapshoterStatus:
        return {"epochs": self.epochs, "drift": list(self.drift)[-50:]}

    async def tick(self) -> list[Drift]:
        db = self._actors.statedb
        svc = await db.get.remote("services", "structures_snapshoter")
        self.settings = StructuresSnapshoterSettings.from_config(svc.get("config"))
        if not self.settings.active:
            await db.heartbeat.remote("structures_snapshoter")
            return []
        since = await db.seq.remote()
        marks: dict[str, HostMark] = await db.host_marks.remote()
        hosts = [name for name, m in marks.items() if m["reachable"]]
        for name in hosts:
            self._actors.serve(name, marks[name]["agent"])  # a simulated host is read through its agent
        observed: dict[str, dict[str, Optional[float]]] = {}
        listed: dict[str, list[str]] = {}
        reads = {h: asyncio.ensure_future(self._read(h)) for h in hosts}
        for h, fut in reads.items():
            per_node = await fut
            if per_node is not None:
                listed[h] = list(per_node)
            for name, raw in (per_node or {}).items():
                lim = ContainerLimits.model_validate(raw)
                observed[name] = {}
                if "cpu" in self.settings.resources_persisted:
                    observed[name]["cpu"] = lim.effective_cpu_limit if lim.cpu_allowance_limit != -1 else None
                if "mem" in self.settings.resources_persisted:
                    observed[name]["mem"] = lim.mem_limit if lim.mem_limit != -1 else None
        drift: list[Drift] = await db.drift.remote(observed, since)
        for d in drift:
            log.warning("drift: %s %s recorded %s, real %s", d["structure"], d["resource"], d["recorded"], d["real"])
        if drift:
            await self._actors.scaler.reapply.remote(sorted({d["structure"] for d in drift}))
        self.drift.extend(drift)
        await self._missing(db, listed)
        self.epochs += 1
        return drift

    async def _missing(self, db: ActorHandle, listed: dict[str, list[str]]) -> None:
        """Mark the containers the nodes no longer list; release those gone longer than the grace period."""
        grace_s = self.settings.missing_grace_period_s
        missing: dict[str, float] = await db.containers_seen.remote(listed, grace_s)
        due = sorted(n for n, since in missing.items() if time.time() - since >= grace_s)
        if not due:
            return
        scaler = self._actors.scaler
        for name in due:
            try:
                if await scaler.release_missing.remote(name, missing[name]):
                    log.warning("released %s: its cgroup has been gone for %.0f s", name, time.time() - missing[name])
            except Exception as e:
                log.warning("could not release %s: %s", name, e)

    async def _read(self, host: str) -> Optional[dict[str, ContainerLimits]]:
        try:
            limits: dict[str, ContainerLimits] = await asyncio.wait_for(
                self._actors.node(host).read_all.remote(host), timeout=READ_TIMEOUT_S)
            return limits
        except Exception as e:
            if isinstance(unwrap(e), Unavailable):
                self._actors.forget_node(host)  # gone for good, or never there: looked up again next epoch
            log.warning("limits of host %s not read: %s", host, e)
            return None
