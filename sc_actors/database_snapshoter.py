"""DatabaseSnapshoter: each Guardian window, the containers' values appended to a Parquet time series (reference §7.2).

Push, not poll. After the windows it evaluated, the Guardian sends this actor their
`SeriesFrame`s (`on_windows`: each host's usage and the limits it evaluated them
against, as arrays) and does not wait. The snapshoter turns them into rows
(`store.timeseries`, long schema) with a few array operations — no Python object per
value — and buffers them; a background task writes the buffer every
`FLUSH_INTERVAL` seconds or `FLUSH_ROWS` rows, compacts past hours and applies
`RETENTION_DAYS`, in a thread so windows keep coming in.

Where the values come from. The containers' rows come from the Guardian's frame, not
from the StateDB: at 10 000 containers a second, re-reading every container cost the
StateDB ~17 % and this actor ~18 % of a core (issue 16). What that changes: a row holds
what the Guardian evaluated the window against, so a `current` the Scaler records
during the window shows in the next window's rows (one window later than the StateDB
would have said), and `upper`/`lower` are always those of that `current`. Only the
applications and users anchored at the frames' hosts, and (at most once a second) the
service configs, still come from the StateDB, in one small call per batch
(`StateDB.timeseries_groups`); when no application or user exists the call skips them
for `GROUPS_RECHECK_S`. `on_window` (a host, its container names) is the older entry:
it takes the containers from `StateDB.timeseries_snapshot`, and its rows go through the
same columns.

Change-only rows (`SERIES_ROWS`, default `changes`). A container's usage changes every
window, its limits rarely: under `changes` its `current`, `max`, `min`, `upper`, `lower`
and `boundary` are written when they change and all of them every `FULL_ROWS_EVERY`
seconds (60) so a reader can start anywhere; `store.timeseries.read` (and so `sc history`,
`sc report`, the API) carries them to every window, and the result is the same as under
`all` (every value every window, the original's behaviour). The trade-off: a reader of the
raw files (DuckDB, Polars) must carry the values forward itself (or read them through
`read`), and a value that disappears is marked by one null row. At 10 000 containers and
1-s windows: about 2.6 instead of 14 rows per container-window (the README gives the
measured CPU and bytes).

A SIGKILL loses at most the buffered rows (≤ `FLUSH_INTERVAL` seconds); files are
whole or absent (written beside and renamed), and the restarted actor removes the
temporary files the killed one left; its first rows of each container are full ones.
"""
from __future__ import annotations

import asyncio
import logging
import os
import time
from pathlib import Path
from typing_extensions import TypedDict

from .columns import SeriesFrame
from .handles import ActorHandle, Handles
from .settings import DatabaseSnapshoterSettings
from .store.views import TimeseriesSnapshot
from .store.timeseries import (
    ChangeFilter, ContainerColumns, TimeseriesWriter, apply_retention, columns_from_frames, columns_from_snapshot,
    compact, container_table, groups_of, rows_from_snapshot,
)

log = logging.getLogger(__name__)

TICK_S = 0.5
"""Housekeeping period: configuration, flush by age, compaction when due, seconds."""
SERVICES_EVERY_S = 1.0
"""Service configs change rarely: their rows are taken at most this often, seconds."""
GROUPS_RECHECK_S = 5.0
"""With no application or user anywhere, `on_windows` asks for them again after this long, seconds."""


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
        self._no_groups_until = 0.0
        self._changes: ChangeFilter | None = None
        """What each container's rows last said, under `changes` (None under `all`: all is written)."""
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

    async def on_windows(self, frames: list[SeriesFrame]) -> int:
        """Buffer the rows of the Guardian's frames (one per host window it evaluated); returns the rows buffered.

        The containers' rows come from the frames, the applications and users anchored at
        their hosts and the service configs from one StateDB call (none when there are none).
        """
        s = self.settings
        if not s.active or not frames:
            return 0
        t = max(f.window.window_end for f in frames)
        services = self._services_due(t)
        groups_wanted = bool({"structures", "limits", "users"} & set(s.documents_persisted))
        hosts = sorted({f.window.host for f in frames}) if groups_wanted and time.monotonic() >= self._no_groups_until else []
        rows = 0
        if hosts or services:
            try:
                snap: TimeseriesSnapshot = await self._db().timeseries_groups.remote(hosts, services)
            except Exception:
                self.errors += 1
                log.exception("applications and users of %d hosts failed", len(hosts))
            else:
                if hosts and not snap["structures"] and not snap["users"]:
                    self._no_groups_until = time.monotonic() + GROUPS_RECHECK_S
                group_rows = rows_from_snapshot(snap, t, s.fields_persisted, s.documents_persisted)
                self.writer.append(group_rows)
                rows += len(group_rows)
        rows += self._append_containers(columns_from_frames(frames))
        self.windows += len(frames)
        if len(self.writer) >= s.flush_rows:
            await self._flush()
        return rows

    async def on_window(self, host: str, names: list[str], window_end: float) -> int:
        """Snapshot the StateDB for one node's window; returns the rows buffered (the older entry: see the module)."""
        s = self.settings
        if not s.active:
            return 0
        services = self._services_due(window_end)
        try:
            snap: TimeseriesSnapshot = await self._db().timeseries_snapshot.remote(host, names, services)
        except Exception:
            self.errors += 1
            log.exception("snapshot of %s's window failed", host)
            return 0
        group_rows = rows_from_snapshot(groups_of(snap), window_end, s.fields_persisted, s.documents_persisted)
        self.writer.append(group_rows)
        rows = len(group_rows) + self._append_containers(columns_from_snapshot(snap, window_end))
        self.windows += 1
        if len(self.writer) >= s.flush_rows:
            await self._flush()
        return rows

    def _services_due(self, t: float) -> list[str] | None:
        """The services whose configs go into this window's rows (at most once every `SERVICES_EVERY_S`)."""
        s = self.settings
        if "configs" in s.documents_persisted and t - self._last_services_t >= SERVICES_EVERY_S:
            self._last_services_t = t
            return s.services_persisted
        return None

    def _append_containers(self, cols: ContainerColumns) -> int:
        s = self.settings
        if s.series_rows != "changes":
            self._changes = None
        elif self._changes is None:
            self._changes = ChangeFilter(s.full_rows_every_s)
        else:
            self._changes.full_every_s = s.full_rows_every_s
        table = container_table(cols, s.fields_persisted, s.documents_persisted, self._changes)
        self.writer.append(table)
        return int(table.num_rows)

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
        # NOTE: never beside a flush: a window of a past hour (a late one, a test's clock) is
        # written into the directory being compacted, whose files compaction replaces.
        async with self._flush_lock:
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
            self._changes = None  # a new dataset starts with full rows
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
