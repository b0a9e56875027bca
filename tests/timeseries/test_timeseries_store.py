"""The Parquet time series: rows, batched atomic writes, compaction, retention, readers (no Ray)."""
from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path

import pyarrow.parquet as pq
import pytest

from cluster.deploy import wait_for
from sc_actors.store import timeseries as ts

T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc).timestamp()
REPO = Path(__file__).resolve().parents[2]


def _snapshot(current=50.0, usage=10.0):
    return {
        "structures": [{
            "name": "c0", "subtype": "container",
            "resources": {"cpu": {"usage": usage, "current": current, "max": 200, "min": 25},
                          "mem": {"usage": None, "current": 256, "max": 512, "min": 64}},
            "limits": {"cpu": {"upper": current - 20, "lower": current - 40, "boundary": 10}},
        }, {
            "name": "app1", "subtype": "application",
            "resources": {"cpu": {"usage": usage, "current": current, "max": 1600, "min": 20}}, "limits": {},
        }],
        "users": [{"name": "u0", "resources": {"cpu": {"current": current, "usage": -1, "max": 4000}}}],
        "services": {"guardian": {"WINDOW_TIMELAPSE": 0.5, "WINDOW_DELAY": 0, "EVENT_TIMEOUT": 5, "ACTIVE": True},
                     "scaler": {"REQUEST_TIMEOUT": 10, "POLLING_FREQUENCY": 5}},
    }


def test_a_snapshot_becomes_the_originals_series_one_row_per_value():
    rows = ts.rows_from_snapshot(_snapshot(), T0)
    keys = {(r.kind, r.structure, r.resource, r.field): r.value for r in rows}
    # structure.cpu.{usage,current,max,min}, limit.cpu.{upper,lower,boundary} (reference §7.2)
    assert keys[("structure", "c0", "cpu", "usage")] == 10
    assert keys[("structure", "c0", "cpu", "current")] == 50
    assert keys[("limit", "c0", "cpu", "upper")] == 30
    assert keys[("limit", "c0", "cpu", "boundary")] == 10
    assert keys[("structure", "app1", "cpu", "current")] == 50
    # conf.guardian.window_timelapse, conf.scaler.request_timeout; ACTIVE is not a series.
    assert keys[("service", "guardian", None, "window_timelapse")] == 0.5
    assert keys[("service", "scaler", None, "request_timeout")] == 10
    assert not any(k[3] == "active" for k in keys)
    # Missing values and the original's −1 ("no data") are skipped.
    assert ("structure", "c0", "mem", "usage") not in keys
    assert ("user", "u0", "cpu", "usage") not in keys
    assert keys[("user", "u0", "cpu", "current")] == 50
    assert {r.subtype for r in rows if r.structure == "app1"} == {"application"}
    assert len(rows) == 4 + 3 + 3 + 4 + 2 + 5  # c0 cpu, c0 mem (no usage), c0 limits, app1, u0, services


def test_fields_and_documents_persisted_select_rows():
    rows = ts.rows_from_snapshot(_snapshot(), T0, fields=["current"], documents=["structures"])
    assert {(r.kind, r.field) for r in rows} == {("structure", "current")}


def test_the_writer_flushes_by_rows_and_by_age_one_file_per_hour(tmp_path):
    now = [0.0]
    w = ts.TimeseriesWriter(tmp_path, flush_rows=1000, flush_interval_s=5.0, clock=lambda: now[0])
    w.append(ts.rows_from_snapshot(_snapshot(), T0 + 3590))
    assert not w.due()
    now[0] = 5.0
    assert w.due()  # the oldest row waited 5 s
    w.append(ts.rows_from_snapshot(_snapshot(), T0 + 3610))  # the next hour
    paths = w.flush()
    assert [p.name.split("-")[1] for p in paths] == ["10", "11"]
    assert all(p.parent.name == "date=2024-05-01" for p in paths)
    for _ in range(1000 // 21 + 1):
        w.append(ts.rows_from_snapshot(_snapshot(), T0))
    assert w.due()  # over 1000 rows
    assert len(w) == 21 * 48 and w.flush()
    assert len(w) == 0 and w.rows_written == 21 * 2 + 21 * 48


def test_files_are_written_beside_and_renamed_so_no_temporary_is_visible(tmp_path):
    w = ts.TimeseriesWriter(tmp_path)
    w.append(ts.rows_from_snapshot(_snapshot(), T0))
    (path,) = w.flush()
    assert not list(tmp_path.rglob("*.tmp"))
    assert pq.read_table(path).num_rows == 21
    # A temporary a killed writer left is never read, and the next writer removes it.
    leftover = path.with_name(".part-10-1-abc.parquet.tmp")
    leftover.write_bytes(b"PAR1 half a file")
    assert ts.data_files(tmp_path) == [path]
    assert ts.read(tmp_path).num_rows == 21
    ts.TimeseriesWriter(tmp_path)
    assert not leftover.exists()


def _write_hours(root, windows=12):
    w = ts.TimeseriesWriter(root)
    for i in range(windows):  # one flush per 10 minutes, over two hours
        w.append(ts.rows_from_snapshot(_snapshot(current=50 + i, usage=i), T0 + i * 600))
        w.flush()
    return w


def test_compaction_merges_the_files_of_each_past_hour_into_one(tmp_path):
    _write_hours(tmp_path)
    before = ts.read(tmp_path, dedup=False).sort_by([(c, "ascending") for c in ts.COLUMNS])
    assert len(ts.data_files(tmp_path)) == 12
    # At 11:30 only hour 10 is over (plus the 2 min grace).
    merged = ts.compact(tmp_path, now=T0 + 5400)
    assert [p.name[:7] for p in merged] == ["hour-10"]
    assert len(ts.data_files(tmp_path)) == 1 + 6
    after = ts.read(tmp_path, dedup=False).sort_by([(c, "ascending") for c in ts.COLUMNS])
    assert after.equals(before)
    assert ts.compact(tmp_path, now=T0 + 7200 + 121)[0].name.startswith("hour-11")
    assert len(ts.data_files(tmp_path)) == 2
    assert ts.compact(tmp_path, now=T0 + 86400) == []  # nothing more to merge


def test_a_compaction_killed_before_unlinking_its_sources_is_finished_by_the_next(tmp_path):
    _write_hours(tmp_path, windows=6)
    sources = ts.data_files(tmp_path)
    saved = {p: p.read_bytes() for p in sources}
    (merged,) = ts.compact(tmp_path, now=T0 + 7200)
    for p, data in saved.items():  # as if killed after the rename, before the unlinks
        p.write_bytes(data)
    assert ts.read(tmp_path).num_rows == 6 * 21  # the reader drops the duplicate rows
    ts.compact(tmp_path, now=T0 + 7200)
    assert ts.data_files(tmp_path) == [merged]
    assert ts.read(tmp_path, dedup=False).num_rows == 6 * 21


def test_retention_drops_whole_days_older_than_the_setting(tmp_path):
    w = ts.TimeseriesWriter(tmp_path)
    for day in range(4):
        w.append(ts.rows_from_snapshot(_snapshot(), T0 + day * 86400))
    w.flush()
    assert len(list(tmp_path.glob("date=*"))) == 4
    # At 2024-05-04 10:00 with 2 days kept, days ending before 05-02 10:00 go: 05-01 only.
    assert ts.apply_retention(tmp_path, 2, now=T0 + 3 * 86400) == ["2024-05-01"]
    assert ts.apply_retention(tmp_path, 0, now=T0 + 30 * 86400) == []  # 0 keeps everything
    assert sorted(p.name for p in tmp_path.glob("date=*")) == ["date=2024-05-02", "date=2024-05-03",
                                                              "date=2024-05-04"]
    assert not list(tmp_path.glob(".trash-*"))


def test_read_filters_by_structure_time_and_resource(tmp_path):
    _write_hours(tmp_path)
    t = ts.read(tmp_path, structures=["c0"], since=T0 + 3600, resources=["cpu"], kinds=["structure"])
    assert set(t["structure"].to_pylist()) == {"c0"}
    assert t.num_rows == 6 * 4  # 6 windows in hour 11, usage/current/max/min
    assert min(x.timestamp() for x in t["timestamp"].to_pylist()) == T0 + 3600


def test_duckdb_polars_and_pyarrow_read_the_dataset_directly(tmp_path):
    duckdb = pytest.importorskip("duckdb")
    pl = pytest.importorskip("polars")
    import pyarrow.dataset as pads

    _write_hours(tmp_path)
    ts.compact(tmp_path, now=T0 + 5400)
    glob = f"{tmp_path}/**/*.parquet"
    q = f"SELECT max(value) FROM read_parquet('{glob}', hive_partitioning=true) " \
        "WHERE structure='c0' AND kind='structure' AND resource='cpu' AND field='current'"
    assert duckdb.sql(q).fetchall() == [(61.0,)]  # 50 + 11
    df = pl.scan_parquet(glob, hive_partitioning=True).filter(pl.col("field") == "upper").collect()
    assert df.height == 12 and set(df["date"].cast(str).to_list()) == {"2024-05-01"}
    assert pads.dataset(tmp_path, partitioning="hive").count_rows() == 12 * 21


_CRASH_WRITER = textwrap.dedent("""
    import sys
    from sc_actors.store import timeseries as ts
    w = ts.TimeseriesWriter(sys.argv[1])
    rows = [ts.Row(1714557600.0 + i * 0.001, f"c{i % 100}", "container", "structure", "cpu", "usage", float(i))
            for i in range(400_000)]
    while True:
        w.append(rows)
        w.flush()
""")


def test_a_writer_killed_mid_write_leaves_only_whole_files(tmp_path):
    root = tmp_path / "ds"
    p = subprocess.Popen([sys.executable, "-c", _CRASH_WRITER, str(root)], cwd=REPO)
    try:
        # Wait until a file is being written, with one already done, then SIGKILL the writer.
        wait_for(lambda: list(root.glob("date=*/.*.tmp")) and ts.data_files(root), 60, 0.005,
                 what="the writer to be in the middle of a file")
        os.kill(p.pid, signal.SIGKILL)
    finally:
        p.kill()
        p.wait()
    files = ts.data_files(root)
    assert files
    for f in files:
        assert pq.read_table(f).num_rows == 400_000  # whole, never half
    assert ts.read(root, dedup=False).num_rows == 400_000 * len(files)
    ts.TimeseriesWriter(root)  # the next writer cleans up
    assert not list(root.rglob("*.tmp"))
