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

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.dataset as ds
import pyarrow.parquet as pq

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
    """Rows in columns (a list per column), the cheapest form to turn into Arrow."""

    def __init__(self) -> None:
        self.cols: dict[str, list[Any]] = {c: [] for c in COLUMNS}

    def __len__(self) -> int:
        return len(self.cols["value"])

    def extend(self, rows: Iterable[Row]) -> None:
        t, s, st, k, r, f, v = (self.cols[c] for c in COLUMNS)
        for row in rows:
            t.append(int(row[0] * 1000))
            s.append(row[1])
            st.append(row[2])
            k.append(row[3])
            r.append(row[4])
            f.append(row[5])
            v.append(row[6])

    def table(self) -> pa.Table:
        return pa.table({c: pa.array(self.cols[c], type=SCHEMA.field(c).type) for c in COLUMNS}, schema=SCHEMA)


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

    def append(self, rows: Iterable[Row]) -> None:
        if self._since is None:
            self._since = self._clock()
        self._buf.extend(rows)

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
            path = write_atomic(part, d / f"part-{h % 24:02d}-{first_ms}-{uuid.uuid4().hex[:6]}.parquet")
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
    schema = SCHEMA.with_metadata({"sc.sources": json.dumps([p.name for p in sources])})
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
) -> pa.Table:
    """Rows filtered by structure, time (epoch seconds) and resource, sorted by time."""
    root = Path(root)
    if not data_files(root):
        return SCHEMA.empty_table()
    flt = None

    def both(a: Any, b: Any) -> Any:
        return b if a is None else a & b

    if structures is not None:
        flt = both(flt, ds.field("structure").isin(list(structures)))
    if resources is not None:
        flt = both(flt, ds.field("resource").isin(list(resources)))
    if kinds is not None:
        flt = both(flt, ds.field("kind").isin(list(kinds)))
    if since is not None:
        flt = both(flt, ds.field("date") >= _date(since))
        flt = both(flt, ds.field("timestamp") >= pa.scalar(int(since * 1000), pa.timestamp("ms", tz="UTC")))
    if until is not None:
        flt = both(flt, ds.field("date") <= _date(until))
        flt = both(flt, ds.field("timestamp") <= pa.scalar(int(until * 1000), pa.timestamp("ms", tz="UTC")))
    table = dataset(root).to_table(columns=list(COLUMNS), filter=flt)
    if dedup and table.num_rows:
        g = table.group_by(list(KEY), use_threads=False).aggregate([("subtype", "max"), ("value", "max")])
        table = pa.table({c: g[c if c in KEY else f"{c}_max"] for c in COLUMNS}, schema=SCHEMA)
    return table.sort_by([("timestamp", "ascending"), ("structure", "ascending")])


def _date(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).strftime("%Y-%m-%d")


def dataset_bytes(root: Path | str) -> int:
    return sum(p.stat().st_size for p in data_files(Path(root)))
