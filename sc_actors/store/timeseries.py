"""The control plane's time series as a Parquet dataset (what the original sent to OpenTSDB, reference §1.8, §7.2).

Schema (long: one row per value, so a new resource or field needs no migration):

| column      | type                   | meaning                                                              |
|-------------|------------------------|----------------------------------------------------------------------|
| `timestamp` | timestamp[ms, UTC]     | end of the usage window the value belongs to                         |
| `structure` | string                 | container, application or user name; the service name for `service`  |
| `subtype`   | string                 | `container`, `application`, `user` or `service`                      |
| `kind`      | string                 | `structure`, `limit`, `user` or `service` (the original's metric prefix) |
| `resource`  | string (null: service) | `cpu` (shares, 100 = one core), `mem` (MiB), ...                     |
| `field`     | string                 | `usage`, `current`, `max`, `min` (structure, user); `upper`, `lower`, `boundary` (limit); `window_timelapse`, `window_delay`, `event_timeout`, `request_timeout`, `polling_frequency` (service, seconds) |
| `value`     | double                 | the value                                                            |

The original's metric `structure.cpu.current` tagged `structure=c0` is the row
(`structure`, `c0`, `cpu`, `current`); `limit.cpu.upper` is kind `limit`;
`conf.guardian.window_timelapse` is kind `service`, structure `guardian`.

Layout: `<root>/date=YYYY-MM-DD/part-HH-<first ms>-<id>.parquet` (one flush of one UTC
hour) and `<root>/date=YYYY-MM-DD/hour-HH-<id>.parquet` (that hour compacted), hive
partitioned by day, so DuckDB, Polars and pyarrow read it directly:

    duckdb:  SELECT * FROM read_parquet('<root>/**/*.parquet', hive_partitioning = true)
    polars:  pl.scan_parquet('<root>/**/*.parquet', hive_partitioning=True)
    pyarrow: pyarrow.dataset.dataset('<root>', partitioning='hive')

Every file is written as a hidden `.<name>.tmp` beside its final name, fsynced and
renamed, so a reader never sees a half-written file; a writer that starts removes the
temporary files a killed one left (one writer per dataset). Rows are buffered and
flushed every `flush_rows` rows or `flush_interval_s` seconds (bounded memory).
`compact` merges the files of each past hour into one (the merged file lists its
sources in its metadata, so a compaction killed between the rename and the unlinks is
finished by the next one); `apply_retention` drops days older than the retention.

NOTE: a reader that lists the files in the instant between a compaction's rename and
its unlinks may see that hour twice; `read` drops such duplicate rows (same
timestamp, structure, kind, resource, field).
"""
from __future__ import annotations

import datetime as dt
import json
import math
import os
import shutil
import time
import uuid
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple, Optional

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from ..columns import SeriesFrame
from .journal import _fsync_dir

SCHEMA = pa.schema(
    [
        ("timestamp", pa.timestamp("ms", tz="UTC")),
        ("structure", pa.string()),
        ("subtype", pa.string()),
        ("kind", pa.string()),
        ("resource", pa.string()),
        ("field", pa.string()),
        ("value", pa.float64()),
    ]
)
COLUMNS = tuple(SCHEMA.names)
KEY = ("timestamp", "structure", "kind", "resource", "field")
"""A value is identified by these columns (used to drop duplicates)."""
SORT_KEYS = [("structure", "ascending"), ("kind", "ascending"), ("resource", "ascending"),
             ("field", "ascending"), ("timestamp", "ascending")]

STRUCTURE_FIELDS = ("usage", "current", "max", "min")
LIMIT_FIELDS = ("upper", "lower", "boundary")
SERVICE_KEYS: dict[str, tuple[str, ...]] = {
    "guardian": ("WINDOW_TIMELAPSE", "WINDOW_DELAY", "EVENT_TIMEOUT"),
    "scaler": ("REQUEST_TIMEOUT", "POLLING_FREQUENCY"),
}
"""Service configuration values persisted per service (reference §7.2), seconds."""

COMPRESSION = "zstd"
HOUR_S = 3600


class Row(NamedTuple):
    """One value: `t` in epoch seconds, the other columns as in the schema."""

    t: float
    structure: str
    subtype: str
    kind: str
    resource: Optional[str]
    field: str
    value: float


# --------------------------------------------------------------------------- snapshot → rows


def rows_from_snapshot(
    snapshot: Mapping[str, Any],
    t: float,
    fields: Iterable[str] = STRUCTURE_FIELDS + LIMIT_FIELDS,
    documents: Iterable[str] = ("structures", "limits", "users", "configs"),
) -> list[Row]:
    """The rows of one StateDB snapshot taken at `t` (the original's `translate_doc_to_timeseries`).

    `snapshot` is what `StateDB.timeseries_snapshot` returns:
    `{"structures": [{"name", "subtype", "resources": {res: {field: v}}, "limits": {res: {field: v}}}],
    "users": [{"name", "resources": {...}}], "services": {name: config}}`. Missing values,
    non-numbers and the original's −1 ("no data") are skipped.
    """
    wanted = set(fields)
    docs = set(documents)
    out: list[Row] = []
    for s in snapshot.get("structures", ()):
        name, subtype = s["name"], s.get("subtype", "container")
        if "structures" in docs:
            out += _resource_rows(t, name, subtype, "structure", s.get("resources", {}), wanted, STRUCTURE_FIELDS)
        if "limits" in docs:
            out += _resource_rows(t, name, subtype, "limit", s.get("limits", {}), wanted, LIMIT_FIELDS)
    if "users" in docs:
        for u in snapshot.get("users", ()):
            out += _resource_rows(t, u["name"], "user", "user", u.get("resources", {}), wanted, STRUCTURE_FIELDS)
    if "configs" in docs:
        for service, config in (snapshot.get("services") or {}).items():
            for key in SERVICE_KEYS.get(service, ()):
                v = _number((config or {}).get(key))
                if v is not None:
                    out.append(Row(t, service, "service", "service", None, key.lower(), v))
    return out


def _resource_rows(
    t: float, name: str, subtype: str, kind: str, resources: Mapping[str, Any], wanted: set[str],
    fields: Sequence[str],
) -> list[Row]:
    out = []
    for res, values in sorted(resources.items()):
        if not isinstance(values, Mapping):
            continue
        for f in fields:
            if f not in wanted:
                continue
            v = _number(values.get(f))
            if v is not None:
                out.append(Row(t, name, subtype, kind, res, f, v))
    return out


def _number(v: Any) -> Optional[float]:
    if isinstance(v, bool) or not isinstance(v, (int, float)):
        try:
            v = float(v) if isinstance(v, str) else None
        except ValueError:
            return None
    if v is None or math.isnan(v) or v == -1:
        return None
    return float(v)


# --------------------------------------------------------------------------- frames → rows, as columns

SERIES_ROWS = ("all", "changes")
"""`all`: every value of every window (the original). `changes`: a container's `usage` every
window, its other values (`current`, `max`, `min`, `upper`, `lower`, `boundary`) only when they
change, with all of them at least every `full_every_s` (see `ChangeFilter`)."""
CHANGE_FIELDS = ("current", "max", "min", "upper", "lower", "boundary")
"""The fields written only when they change under `changes` (a container's limits)."""
USAGE_MEASURES = {"cpu": "cpu", "mem": "mem"}
"""Resource → the `HostWindow` measure that is its `usage`."""
LOOKBACK_S = 600.0
"""Longest a reader carries a changed-only value forward (the greatest `full_every_s`), seconds."""
CHANGES_META = {"sc.series_rows": "changes"}
"""The metadata of a table, and of a file, holding change-only rows: `read` fills only those."""


class ContainerColumns(NamedTuple):
    """Containers' values in columns: `names[i]`'s value of "<resource>.<field>" is
    `values[key][i]` (NaN: none), at `t_ms[i]` (epoch ms, as `Row` timestamps are stored)."""

    names: list[str]
    t_ms: np.ndarray
    values: dict[str, np.ndarray]


def columns_from_frames(frames: Sequence[SeriesFrame]) -> ContainerColumns:
    """The containers of these frames in one set of columns, frame after frame.

    `usage` of a resource is the window's measure, for the containers that have that
    resource (any of its `current`, `max`, `min` known), as the StateDB's snapshot shows it.
    """
    names: list[str] = []
    for f in frames:
        names.extend(f.window.names)
    lengths = [len(f.window) for f in frames]
    t_ms = np.repeat(np.array([int(f.window.window_end * 1000) for f in frames], dtype=np.int64), lengths)
    keys = sorted({k for f in frames for k in f.limits}
                  | {f"{res}.{field}" for res in USAGE_MEASURES for field in ("usage", "current")})
    values: dict[str, np.ndarray] = {}
    for key in keys:
        res, field = key.split(".", 1)
        parts = []
        for f, n in zip(frames, lengths):
            if field == "usage":
                has = np.zeros(n, dtype=bool)
                for k in (f"{res}.current", f"{res}.max", f"{res}.min"):
                    a = f.limits.get(k)
                    if a is not None:
                        has |= ~np.isnan(a)
                measure = USAGE_MEASURES.get(res)
                usage = f.window.column(measure) if measure is not None else np.full(n, np.nan)
                parts.append(np.where(has, usage, np.nan))
            else:
                a = f.limits.get(key)
                parts.append(np.full(n, np.nan) if a is None else np.asarray(a, dtype=np.float64))
        values[key] = np.concatenate(parts) if parts else np.empty(0)
    return ContainerColumns(names, t_ms, values)


def columns_from_snapshot(snapshot: Mapping[str, Any], t: float) -> ContainerColumns:
    """The containers of a `StateDB.timeseries_snapshot` as columns (the others stay rows)."""
    entries = [s for s in snapshot.get("structures", ()) if s.get("subtype", "container") == "container"]
    cells: dict[str, list[float]] = {}
    for i, s in enumerate(entries):
        for doc in (s.get("resources", {}), s.get("limits", {})):
            for res, fields in doc.items():
                if not isinstance(fields, Mapping):
                    continue
                for f, v in fields.items():
                    x = _number(v)
                    if x is not None:
                        cells.setdefault(f"{res}.{f}", [math.nan] * len(entries))[i] = x
    return ContainerColumns([s["name"] for s in entries], np.full(len(entries), int(t * 1000), dtype=np.int64),
                            {k: np.array(v, dtype=np.float64) for k, v in cells.items()})


def groups_of(snapshot: Mapping[str, Any]) -> Mapping[str, Any]:
    """The snapshot without its containers: applications, users, services (rows, few)."""
    return {**snapshot, "structures": [s for s in snapshot.get("structures", ())
                                       if s.get("subtype", "container") != "container"]}


class _Series(NamedTuple):
    """The (kind, resource, field) columns of a container table, in order."""

    keys: tuple[str, ...]
    kind: pa.Array
    resource: pa.Array
    field: pa.Array
    changes_only: np.ndarray


def _series(keys: Iterable[str], fields: Iterable[str], documents: Iterable[str]) -> _Series:
    wanted, docs = set(fields), set(documents)
    resources = sorted({k.split(".", 1)[0] for k in keys})
    out: list[tuple[str, str, str]] = []
    for kind, doc, names in (("structure", "structures", STRUCTURE_FIELDS), ("limit", "limits", LIMIT_FIELDS)):
        if doc in docs:
            out += [(kind, res, f) for res in resources for f in names if f in wanted]
    return _Series(tuple(f"{r}.{f}" for _, r, f in out), pa.array([k for k, _, _ in out], pa.string()),
                   pa.array([r for _, r, _ in out], pa.string()), pa.array([f for _, _, f in out], pa.string()),
                   np.array([f in CHANGE_FIELDS for _, _, f in out], dtype=bool))


class ChangeFilter:
    """Which values of a container to write under `changes`, per container.

    A value is written when it differs from the last one written for that container,
    and every value at least every `full_every_s` seconds of the container's windows
    (from its first window here, so a reader may start anywhere with `LOOKBACK_S`). A
    value that disappears while the container stays is written once as null (its end).
    Usage and the fields not in `CHANGE_FIELDS` are written every window. The memory
    is one row of floats per container seen in the last `LOOKBACK_S` (a container
    silent longer is forgotten when room is needed, and starts again with a full row);
    a restart starts with full rows.
    """

    def __init__(self, full_every_s: float = 60.0) -> None:
        self.full_every_s = full_every_s
        self._keys: tuple[str, ...] = ()
        self._slot: dict[str, int] = {}
        self._last = np.empty((0, 0))
        self._full_at = np.empty(0)
        self._seen_at = np.empty(0)

    def __len__(self) -> int:
        """Containers remembered."""
        return len(self._slot)

    def _slots(self, names: Sequence[str], keys: tuple[str, ...], now: float) -> np.ndarray:
        if keys != self._keys:  # other fields persisted: start again, with full rows
            self._keys, self._slot = keys, {}
            self._last, self._full_at, self._seen_at = np.empty((0, len(keys))), np.empty(0), np.empty(0)
        slot = self._slot
        new = [n for n in dict.fromkeys(names) if n not in slot]
        if len(slot) + len(new) > len(self._full_at):
            self._forget(now - LOOKBACK_S, set(names))
            slot = self._slot
            need = len(slot) + len(new) - len(self._full_at)
            if need > 0:
                grow = max(need, len(self._full_at))
                self._last = np.vstack([self._last, np.full((grow, len(keys)), np.nan)])
                self._full_at = np.concatenate([self._full_at, np.full(grow, -np.inf)])
                self._seen_at = np.concatenate([self._seen_at, np.full(grow, -np.inf)])
        for n in new:
            i = slot[n] = len(slot)
            self._last[i], self._full_at[i] = np.nan, -np.inf
        return np.fromiter((slot[n] for n in names), dtype=np.int64, count=len(names))

    def _forget(self, before: float, now_seen: set[str]) -> None:
        """Drop the containers not seen since `before` (but those of `now_seen`), packing the others at the front."""
        keep = [(n, i) for n, i in self._slot.items() if self._seen_at[i] >= before or n in now_seen]
        if len(keep) == len(self._slot):
            return
        idx = np.array([i for _, i in keep], dtype=np.int64)
        for name in ("_last", "_full_at", "_seen_at"):
            old = getattr(self, name)
            packed = np.full_like(old, np.nan if name == "_last" else -np.inf)
            packed[:len(idx)] = old[idx]
            setattr(self, name, packed)
        self._slot = {n: j for j, (n, _) in enumerate(keep)}

    def select(self, names: Sequence[str], t_s: np.ndarray, values: np.ndarray, present: np.ndarray,
               series: _Series) -> tuple[np.ndarray, np.ndarray]:
        """(write, end): the values to write, and the ends to write as nulls.

        The containers of one call are distinct (`container_table` calls once per frame otherwise).
        """
        slots = self._slots(names, series.keys, float(t_s.max()) if len(t_s) else 0.0)
        self._seen_at[slots] = t_s
        last = self._last[slots]
        full = (t_s - self._full_at[slots] >= self.full_every_s)[:, None]
        had = ~np.isnan(last)
        changed = present & ~(values == last)
        write = present & (~series.changes_only[None, :] | changed | full)
        end = ~present & had & series.changes_only[None, :]
        self._last[slots] = np.where(present, values, np.nan)
        self._full_at[slots] = np.where(full[:, 0], t_s, self._full_at[slots])
        return write, end


def container_table(cols: ContainerColumns, fields: Iterable[str] = STRUCTURE_FIELDS + LIMIT_FIELDS,
                    documents: Iterable[str] = ("structures", "limits"),
                    changes: Optional[ChangeFilter] = None) -> pa.Table:
    """The rows of these containers as a table (schema `SCHEMA`), built with array operations.

    The same rows as `rows_from_snapshot` gives for the same values (NaN, missing and
    the original's −1 skipped) when `changes` is None; with a `ChangeFilter`, only what
    it selects (and its null ends).
    """
    series = _series(cols.values, fields, documents)
    n, k = len(cols.names), len(series.keys)
    if not n or not k:
        return SCHEMA.empty_table()
    nan = np.full(n, np.nan)
    values = np.column_stack([cols.values.get(key, nan) for key in series.keys])
    present = ~np.isnan(values) & (values != -1)
    if changes is None:
        write, end = present, None
    elif len(set(cols.names)) == n:
        write, end = changes.select(cols.names, cols.t_ms / 1000.0, values, present, series)
    else:  # a container twice (two windows of a host in one call): one window after the other
        parts = [container_table(ContainerColumns(cols.names[i:j], cols.t_ms[i:j],
                                                  {key: a[i:j] for key, a in cols.values.items()}),
                                 fields, documents, changes)
                 for i, j in _distinct_runs(cols.names)]
        return pa.concat_tables(parts).replace_schema_metadata(CHANGES_META)
    take = write if end is None else write | end
    rows, col = np.nonzero(take)
    value = values[rows, col]
    mask = None if end is None else end[rows, col]
    idx_rows, idx_col = pa.array(rows), pa.array(col)
    schema = SCHEMA if changes is None else SCHEMA.with_metadata(CHANGES_META)
    return pa.table([
        pa.array(cols.t_ms[rows], pa.timestamp("ms", tz="UTC")),
        pa.array(cols.names, pa.string()).take(idx_rows),
        _CONTAINER.take(pa.array(np.zeros(len(rows), dtype=np.int32))),
        series.kind.take(idx_col),
        series.resource.take(idx_col),
        series.field.take(idx_col),
        pa.array(value, pa.float64(), mask=mask),
    ], schema=schema)


_CONTAINER = pa.array(["container"], pa.string())


def _is_changes(metadata: Optional[Mapping[bytes, bytes]]) -> bool:
    return (metadata or {}).get(b"sc.series_rows") == b"changes"


def _distinct_runs(names: Sequence[str]) -> list[tuple[int, int]]:
    """Consecutive slices of `names` in which no name repeats."""
    out: list[tuple[int, int]] = []
    start, seen = 0, set[str]()
    for i, n in enumerate(names):
        if n in seen:
            out.append((start, i))
            start, seen = i, set()
        seen.add(n)
    out.append((start, len(names)))
    return out


def rows_table(rows: Sequence[Row]) -> pa.Table:
    """`Row`s as a table (the applications, users and services of a window: few)."""
    return pa.table({
        "timestamp": pa.array([int(r.t * 1000) for r in rows], SCHEMA.field("timestamp").type),
        "structure": pa.array([r.structure for r in rows], pa.string()),
        "subtype": pa.array([r.subtype for r in rows], pa.string()),
        "kind": pa.array([r.kind for r in rows], pa.string()),
        "resource": pa.array([r.resource for r in rows], pa.string()),
        "field": pa.array([r.field for r in rows], pa.string()),
        "value": pa.array([r.value for r in rows], pa.float64()),
    }, schema=SCHEMA)


# --------------------------------------------------------------------------- files


def day_of(hour_index: int) -> str:
    return dt.datetime.fromtimestamp(hour_index * HOUR_S, tz=dt.timezone.utc).strftime("%Y-%m-%d")


def write_atomic(table: pa.Table, path: Path, metadata: Optional[Mapping[str, str]] = None) -> Path:
    """Write `table` to a hidden temporary beside `path`, fsync it, rename it into place."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.tmp")
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}), **metadata})
    pq.write_table(table, tmp, compression=COMPRESSION)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)
    return path


def data_files(root: Path) -> list[Path]:
    """Every visible data file of the dataset (temporaries and trash excluded)."""
    root = Path(root)
    if not root.is_dir():
        return []
    return sorted(p for p in root.glob("date=*/*.parquet") if not p.name.startswith("."))


def remove_temporaries(root: Path) -> list[Path]:
    """Delete the `.*.tmp` files and trash a killed writer left behind."""
    removed: list[Path] = []
    root = Path(root)
    if not root.is_dir():
        return removed
    for p in list(root.glob("date=*/.*.tmp")) + list(root.glob(".trash-*")):
        if p.is_dir():
            shutil.rmtree(p, ignore_errors=True)
        else:
            p.unlink(missing_ok=True)
        removed.append(p)
    return removed


class _Buffer:
    """Rows as Arrow tables, the cheapest form to write: a table per window batch."""

    def __init__(self) -> None:
        self.tables: list[pa.Table] = []
        self.rows = 0
        self.changes = False
        """Some rows are change-only (a table marked `CHANGES_META`): so is the file."""

    def __len__(self) -> int:
        return self.rows

    def extend(self, rows: Sequence[Row]) -> None:
        if rows:
            self.add(rows_table(rows))

    def add(self, table: pa.Table) -> None:
        if table.num_rows:
            if table.schema.metadata:
                self.changes = self.changes or _is_changes(table.schema.metadata)
                table = table.replace_schema_metadata(None)
            self.tables.append(table)
            self.rows += table.num_rows

    def table(self) -> pa.Table:
        return pa.concat_tables(self.tables) if self.tables else SCHEMA.empty_table()


class TimeseriesWriter:
    """Buffers rows and writes them as part files, one per UTC hour, atomically.

    Not thread-safe: the owner appends and flushes from one thread (a flush may run in
    another thread on a buffer already taken with `take`).
    """

    def __init__(self, root: Path | str, flush_rows: int = 50_000, flush_interval_s: float = 5.0,
                 clock: Any = time.monotonic):
        self.root = Path(root)
        self.root.mkdir(parents=True, exist_ok=True)
        self.flush_rows = flush_rows
        self.flush_interval_s = flush_interval_s
        self._clock = clock
        self._buf = _Buffer()
        self._since: Optional[float] = None
        self.rows_written = 0
        self.files_written = 0
        self.bytes_written = 0
        remove_temporaries(self.root)

    def __len__(self) -> int:
        return len(self._buf)

    def append(self, rows: Iterable[Row] | pa.Table) -> None:
        """Buffer `Row`s, or a table of rows (schema `SCHEMA`)."""
        if self._since is None:
            self._since = self._clock()
        if isinstance(rows, pa.Table):
            self._buf.add(rows)
        else:
            self._buf.extend(list(rows))

    def due(self) -> bool:
        """True when the buffer is full or its oldest row waited `flush_interval_s`."""
        if not len(self._buf):
            return False
        return len(self._buf) >= self.flush_rows or self._clock() - (self._since or 0) >= self.flush_interval_s

    def take(self) -> _Buffer:
        buf, self._buf, self._since = self._buf, _Buffer(), None
        return buf

    def write(self, buf: _Buffer) -> list[Path]:
        """One part file per UTC hour present in `buf`."""
        if not len(buf):
            return []
        table = buf.table()
        hours = pc.divide(pc.cast(table["timestamp"], pa.int64()), HOUR_S * 1000)
        paths = []
        for h in pc.unique(hours).to_pylist():
            part = table.filter(pc.equal(hours, h)).sort_by(SORT_KEYS)
            first_ms = pc.min(pc.cast(part["timestamp"], pa.int64())).as_py()
            d = self.root / f"date={day_of(h)}"
            d.mkdir(exist_ok=True)
            path = write_atomic(part, d / f"part-{h % 24:02d}-{first_ms}-{uuid.uuid4().hex[:6]}.parquet",
                                CHANGES_META if buf.changes else None)
            self.rows_written += part.num_rows
            self.files_written += 1
            self.bytes_written += path.stat().st_size
            paths.append(path)
        return paths

    def flush(self) -> list[Path]:
        return self.write(self.take())


# --------------------------------------------------------------------------- compaction, retention


def _hour_of(path: Path) -> Optional[int]:
    parts = path.name.split("-")
    if len(parts) >= 2 and parts[0] in ("part", "hour") and parts[1].isdigit():
        return int(parts[1])
    return None


def _finish_interrupted(day_dir: Path) -> None:
    """Unlink the sources a compacted file lists that a killed compaction left."""
    for merged in day_dir.glob("hour-*.parquet"):
        try:
            meta = pq.read_schema(merged).metadata or {}
        except Exception:
            continue
        for name in json.loads(meta.get(b"sc.sources", b"[]")):
            (day_dir / name).unlink(missing_ok=True)


def compact(root: Path | str, now: float, grace_s: float = 120.0, row_group_rows: int = 500_000) -> list[Path]:
    """Merge the files of each hour that ended more than `grace_s` ago into one file.

    Memory is bounded by one row group: sources are read one at a time and written
    out whenever `row_group_rows` have gathered. Returns the merged files.
    """
    root = Path(root)
    merged_paths = []
    for day_dir in sorted(root.glob("date=*")):
        if not day_dir.is_dir():
            continue
        _finish_interrupted(day_dir)
        try:
            day_start = dt.datetime.strptime(day_dir.name[5:], "%Y-%m-%d").replace(tzinfo=dt.timezone.utc).timestamp()
        except ValueError:
            continue
        by_hour: dict[int, list[Path]] = {}
        for p in sorted(day_dir.glob("*.parquet")):
            h = _hour_of(p)
            if h is not None and not p.name.startswith("."):
                by_hour.setdefault(h, []).append(p)
        for h, sources in sorted(by_hour.items()):
            if len(sources) < 2 or day_start + (h + 1) * HOUR_S + grace_s > now:
                continue
            merged_paths.append(_merge(day_dir, h, sources, row_group_rows))
    return merged_paths


def _merge(day_dir: Path, hour: int, sources: list[Path], row_group_rows: int) -> Path:
    final = day_dir / f"hour-{hour:02d}-{uuid.uuid4().hex[:6]}.parquet"
    tmp = final.with_name(f".{final.name}.tmp")
    meta = {"sc.sources": json.dumps([p.name for p in sources])}
    if any(_is_changes(pq.read_schema(p).metadata) for p in sources):
        meta.update(CHANGES_META)
    schema = SCHEMA.with_metadata(meta)
    pending: list[pa.Table] = []
    pending_rows = 0
    with pq.ParquetWriter(tmp, schema, compression=COMPRESSION) as w:
        for src in sources:
            t = pq.read_table(src, schema=SCHEMA).replace_schema_metadata(schema.metadata)
            pending.append(t)
            pending_rows += t.num_rows
            if pending_rows >= row_group_rows:
                w.write_table(pa.concat_tables(pending).sort_by(SORT_KEYS), row_group_size=row_group_rows)
                pending, pending_rows = [], 0
        if pending:
            w.write_table(pa.concat_tables(pending).sort_by(SORT_KEYS), row_group_size=row_group_rows)
    with open(tmp, "rb") as f:
        os.fsync(f.fileno())
    os.replace(tmp, final)
    _fsync_dir(day_dir)
    for src in sources:
        src.unlink(missing_ok=True)
    _fsync_dir(day_dir)
    return final


def apply_retention(root: Path | str, retention_days: float, now: float) -> list[str]:
    """Drop the day partitions entirely older than `retention_days` (0 keeps everything)."""
    if retention_days <= 0:
        return []
    root = Path(root)
    cutoff = now - retention_days * 86400
    dropped = []
    for day_dir in sorted(root.glob("date=*")):
        try:
            day_end = dt.datetime.strptime(day_dir.name[5:], "%Y-%m-%d").replace(
                tzinfo=dt.timezone.utc).timestamp() + 86400
        except ValueError:
            continue
        if day_end <= cutoff:
            # Renamed away first: the whole day disappears at once for readers.
            trash = root / f".trash-{day_dir.name}-{uuid.uuid4().hex[:6]}"
            os.replace(day_dir, trash)
            shutil.rmtree(trash, ignore_errors=True)
            dropped.append(day_dir.name[5:])
    return dropped


# --------------------------------------------------------------------------- reading


def dataset(root: Path | str) -> ds.Dataset:
    """The dataset as pyarrow sees it; `date` (string) comes from the directory names."""
    part = ds.partitioning(pa.schema([("date", pa.string())]), flavor="hive")
    return ds.dataset([str(p) for p in data_files(Path(root))], format="parquet", partitioning=part,
                      partition_base_dir=str(root), schema=SCHEMA.append(pa.field("date", pa.string())))


def read(
    root: Path | str,
    structures: Optional[Iterable[str]] = None,
    since: Optional[float] = None,
    until: Optional[float] = None,
    resources: Optional[Iterable[str]] = None,
    kinds: Optional[Iterable[str]] = None,
    dedup: bool = True,
    fill: bool = True,
) -> pa.Table:
    """Rows filtered by structure, time (epoch seconds) and resource, sorted by time.

    With `fill` (the default), in a dataset with change-only files (`SERIES_ROWS`
    `changes`), a container's limit values are carried to each of its windows
    (`fill_changes`, which reads up to `LOOKBACK_S` before `since`), so every window has
    every value, as under `all`; the null ends are dropped.
    """
    root = Path(root)
    if not data_files(root):
        return SCHEMA.empty_table()
    flt = None

    def both(a: Any, b: Any) -> Any:
        return b if a is None else a & b

    if fill:
        fill = any(_is_changes(f.physical_schema.metadata) for f in dataset(root).get_fragments())
    start = None if since is None else since - (LOOKBACK_S if fill else 0.0)
    if structures is not None:
        flt = both(flt, ds.field("structure").isin(list(structures)))
    if resources is not None:
        flt = both(flt, ds.field("resource").isin(list(resources)))
    if kinds is not None and not fill:  # filled, a container's windows come from all its rows
        flt = both(flt, ds.field("kind").isin(list(kinds)))
    if start is not None:
        flt = both(flt, ds.field("date") >= _date(start))
        flt = both(flt, ds.field("timestamp") >= pa.scalar(int(start * 1000), pa.timestamp("ms", tz="UTC")))
    if until is not None:
        flt = both(flt, ds.field("date") <= _date(until))
        flt = both(flt, ds.field("timestamp") <= pa.scalar(int(until * 1000), pa.timestamp("ms", tz="UTC")))
    table = dataset(root).to_table(columns=list(COLUMNS), filter=flt)
    if dedup and table.num_rows:
        g = table.group_by(list(KEY), use_threads=False).aggregate([("subtype", "max"), ("value", "max")])
        table = pa.table({c: g[c if c in KEY else f"{c}_max"] for c in COLUMNS}, schema=SCHEMA)
    if fill:
        table = fill_changes(table)
        if kinds is not None:
            table = table.filter(pc.is_in(table["kind"], pa.array(list(kinds), pa.string())))
        if since is not None:
            table = table.filter(pc.greater_equal(table["timestamp"],
                                                  pa.scalar(int(since * 1000), pa.timestamp("ms", tz="UTC"))))
    return table.sort_by([("timestamp", "ascending"), ("structure", "ascending")])


def fill_changes(table: pa.Table, carry_s: float = LOOKBACK_S) -> pa.Table:
    """Each container's `CHANGE_FIELDS` values at each of its timestamps, from its last row.

    A container's timestamps are those of any of its rows (its `usage` is written every
    window). A value is carried forward at most `carry_s` seconds and not past a null row
    (its end); the nulls are dropped. A table of `all` rows comes back with the same rows,
    but for a value a window lacked between two that had it, which is carried too.
    """
    if not table.num_rows:
        return table
    is_container = pc.equal(table["subtype"], "container")
    is_change = pc.and_(is_container, pc.is_in(table["field"], pa.array(CHANGE_FIELDS, pa.string())))
    changed = table.filter(is_change)
    other = table.filter(pc.and_(pc.invert(is_change), pc.is_valid(table["value"])))
    if not changed.num_rows:
        return other
    series_cols = ["structure", "kind", "resource", "field"]
    grid = table.filter(is_container).group_by(["structure", "timestamp"], use_threads=False).aggregate([])
    series = changed.group_by(series_cols, use_threads=False).aggregate([])
    cand = series.join(grid, "structure", join_type="inner")
    src = pa.field("src", pa.int8())
    actual = changed.select(series_cols + ["timestamp", "value"]).append_column(
        src, pa.array(np.zeros(changed.num_rows, dtype=np.int8)))
    cand = cand.select(series_cols + ["timestamp"]).append_column(
        "value", pa.nulls(cand.num_rows, pa.float64())).append_column(
        src, pa.array(np.ones(cand.num_rows, dtype=np.int8)))
    both_ = pa.concat_tables([actual, cand]).sort_by(
        [(c, "ascending") for c in series_cols] + [("timestamp", "ascending"), ("src", "ascending")])
    n = both_.num_rows
    new_series = np.zeros(n, dtype=bool)
    new_series[0] = True
    for c in series_cols:
        col = both_[c].combine_chunks()
        ne = pc.not_equal(col.slice(1), col.slice(0, n - 1))
        ne = pc.fill_null(ne, pc.is_null(col.slice(1)) != pc.is_null(col.slice(0, n - 1)))
        new_series[1:] |= ne.to_numpy(zero_copy_only=False)
    seg = np.cumsum(new_series)
    t = pc.cast(both_["timestamp"], pa.int64()).to_numpy()
    v = both_["value"].to_numpy(zero_copy_only=False).astype(np.float64)
    is_actual = both_["src"].to_numpy() == 0
    last = np.maximum.accumulate(np.where(is_actual, np.arange(n), -1))
    anchored = last >= 0
    li = np.where(anchored, last, 0)
    keep_cand = (~is_actual & anchored & (seg[li] == seg) & (t[li] != t)
                 & (t - t[li] <= carry_s * 1000) & ~np.isnan(v[li]))
    keep = (is_actual & ~np.isnan(v)) | keep_cand
    value = np.where(is_actual, v, v[li])[keep]
    out = both_.filter(pa.array(keep)).drop_columns(["src", "value"])
    filled = pa.table({
        "timestamp": out["timestamp"], "structure": out["structure"],
        "subtype": pa.array(["container"], pa.string()).take(pa.array(np.zeros(out.num_rows, dtype=np.int32))),
        "kind": out["kind"], "resource": out["resource"], "field": out["field"],
        "value": pa.array(value, pa.float64()),
    }, schema=SCHEMA)
    return pa.concat_tables([other, filled])


def _date(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).strftime("%Y-%m-%d")


def dataset_bytes(root: Path | str) -> int:
    return sum(p.stat().st_size for p in data_files(Path(root)))
