"""DatabaseSnapshoter: each Guardian window, the StateDB's values appended to a Parquet time series (reference §7.2).

Push, not poll. After each node's window the Guardian sends this actor one small
message (the node, its containers, the window's end) and does not wait. The
snapshoter asks the StateDB for one consistent snapshot — those containers, the
applications and users anchored at that node, and (at most once a second) the
service configs — turns it into rows (`store.timeseries`, long schema) and buffers
them; a background task writes the buffer every `FLUSH_INTERVAL` seconds or
`FLUSH_ROWS` rows, compacts past hours and applies `RETENTION_DAYS`, in a thread so
windows keep coming in.

Why the snapshot comes from the StateDB and not from the Guardian's message: the
Guardian sees the documents before its own report and before the Scaler records
what it applied; the StateDB holds both, so every row is a value the StateDB held at
the end of that window. Why the StateDB does not push it itself: the single source
of truth would then call out to other actors inside its transactions. One actor,
one extra StateDB call per node window, nothing on the Guardian's critical path.

A SIGKILL loses at most the buffered rows (≤ `FLUSH_INTERVAL` seconds); files are
whole or absent (written beside and renamed), and the restarted actor removes the
temporary files the killed one left.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing_extensions import TypedDict

from .handles import ActorHandle, Handles
from .settings import DatabaseSnapshoterSettings
from .store.views import TimeseriesSnapshot
from .store.timeseries import TimeseriesWriter, apply_retention, compact, rows_from_snapshot

log = logging.getLogger(__name__)

TICK_S = 0.5
"""Housekeeping period: configuration, flush by age, compaction when due, seconds."""
SERVICES_EVERY_S = 1.0
"""Service configs change rarely: their rows are taken at most this often, seconds."""


class DatabaseSnapshoterStatus(TypedDict):
    """`DatabaseSnapshoter.ping`: where it writes, what is buffered and written, windows, errors."""

    pid: int
    dataset_dir: str
    buffered: int
    rows_written: int
    files_written: int
    bytes_written: int
    windows: int
    compactions: int
    errors: int


class DatabaseSnapshoter:
    def __init__(self, default_dir: str):
        self.default_dir = default_dir
        self.settings = DatabaseSnapshoterSettings()
        self.writer = self._open(default_dir)
        self.windows = 0
        self.compactions = 0
        self.errors = 0
        self._last_services_t = 0.0
        self._last_compaction = 0.0
        self._flush_lock = asyncio.Lock()
        self._actors = Handles()
        self._task = asyncio.get_event_loop().create_task(self._loop())

    def _open(self, root: str) -> TimeseriesWriter:
        s = self.settings
        return TimeseriesWriter(root, flush_rows=s.flush_rows, flush_interval_s=s.flush_interval_s)

    def _db(self) -> ActorHandle:
        return self._actors.statedb

    async def ping(self) -> DatabaseSnapshoterStatus:
        return {
            "pid": os.getpid(),
            "dataset_dir": str(self.writer.root),
            "buffered": len(self.writer),
            "rows_written": self.writer.rows_written,
            "files_written": self.writer.files_written,
            "bytes_written": self.writer.bytes_written,
            "windows": self.windows,
            "compactions": self.compactions,
            "errors": self.errors,
        }

    # ------------------------------------------------------------------ windows

    async def on_window(self, host: str, names: list[str], window_end: float) -> int:
        """Snapshot the StateDB for one node's window; returns the rows buffered."""
        s = self.settings
        if not s.active:
            return 0
        services = None
        if "configs" in s.documents_persisted and window_end - self._last_services_t >= SERVICES_EVERY_S:
            services = s.services_persisted
            self._last_services_t = window_end
        try:
            snap: TimeseriesSnapshot = await self._db().timeseries_snapshot.remote(host, names, services)
        except Exception:
            self.errors += 1
            log.exception("snapshot of %s's window failed", host)
            return 0
        rows = rows_from_snapshot(snap, window_end, s.fields_persisted, s.documents_persisted)
        self.writer.append(rows)
        self.windows += 1
        if len(self.writer) >= s.flush_rows:
            await self._flush()
        return len(rows)

    async def flush(self) -> int:
        """Write whatever is buffered now; returns the rows written so far."""
        await self._flush()
        return self.writer.rows_written

    async def _flush(self) -> None:
        async with self._flush_lock:
            writer = self.writer
            buf = writer.take()
            if len(buf):
                await asyncio.to_thread(writer.write, buf)

    # ------------------------------------------------------------------ housekeeping

    async def compact(self, now: float | None = None) -> list[str]:
        """Merge the files of past hours and apply the retention now; returns the new files."""
        root, t = self.writer.root, time.time() if now is None else now
        merged = await asyncio.to_thread(compact, root, t)
        dropped = await asyncio.to_thread(apply_retention, root, self.settings.retention_days, t)
        if dropped:
            log.info("retention dropped %s", dropped)
        self.compactions += 1
        self._last_compaction = time.monotonic()
        return [str(p) for p in merged]

    async def tick(self) -> None:
        await self._configure()
        if self.writer.due():
            await self._flush()
        if time.monotonic() - self._last_compaction >= self.settings.compaction_interval_s:
            await self.compact()

    async def _configure(self) -> None:
        db = self._db()
        try:
            svc = await db.get.remote("services", "database_snapshoter")
            settings = DatabaseSnapshoterSettings.from_config(svc.get("config"))
        except Exception:
            settings = DatabaseSnapshoterSettings()  # a StateDB from before this service
        assert isinstance(settings, DatabaseSnapshoterSettings)
        root = settings.dataset_dir or self.default_dir
        old, self.settings = self.settings, settings
        if Path(root) != self.writer.root:
            # Everything buffered belongs to the old dataset.
            await self._flush()
            self.writer = self._open(root)
            log.info("time series now go to %s", root)
        elif (old.flush_rows, old.flush_interval_s) != (settings.flush_rows, settings.flush_interval_s):
            self.writer.flush_rows, self.writer.flush_interval_s = settings.flush_rows, settings.flush_interval_s
        await db.heartbeat.remote("database_snapshoter")

    async def _loop(self) -> None:
        # NOTE: housekeeping must never stop: one failed write is logged and retried.
        while True:
            try:
                await self.tick()
            except Exception:
                self.errors += 1
                log.exception("database snapshoter housekeeping failed")
            await asyncio.sleep(TICK_S)
