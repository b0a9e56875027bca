"""Time series rows from the Guardian's frames, as columns: the same rows as the StateDB's
snapshot gives, change-only rows that read back as every value of every window, and the
DatabaseSnapshoter's `on_windows` (no Ray: its StateDB handle calls an in-process State)."""
from __future__ import annotations

import asyncio
import datetime as dt
import math
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from sc_actors.columns import HostWindow, SeriesFrame
from sc_actors.database_snapshoter import DatabaseSnapshoter
from sc_actors.settings import DatabaseSnapshoterSettings
from sc_actors.store import operations as ops
from sc_actors.store import timeseries as ts
from sc_actors.store import views
from sc_actors.store.state import State
from tests.builders import POM, application, container, limits

T0 = dt.datetime(2024, 5, 1, 10, 0, tzinfo=dt.timezone.utc).timestamp()
LIMIT_KEYS = [f"{r}.{f}" for r in ("cpu", "mem") for f in ("current", "max", "min", "upper", "lower", "boundary")]


def _doc(model: Any) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


@pytest.fixture
def state(tmp_path):
    s = State.open(tmp_path / "state", fsync=False, clock=lambda: T0)
    yield s
    s.docs.close()


def _fill(state: State) -> dict[str, list[str]]:
    """Two hosts of containers with uneven documents: no mem limits, no limits, a −1, no upper."""
    per_host = {"h0": ["a0", "a1", "a2"], "h1": ["b0", "b1"]}
    state.put("structures", _doc(container("a0", cpu=(25, 120, 400), host="h0")))
    state.put("structures", _doc(container("a1", cpu=(10, 33.5, 200), mem=(64, 333.25, 2048), host="h0")))
    state.put("structures", _doc(container("a2", cpu=(25, 50, 100), host="h0")))
    state.put("structures", _doc(container("b0", cpu=(25, 80, 400), host="h1")))
    state.put("structures", _doc(container("b1", cpu=(25, 80, 400), host="h1")))
    state.put("limits", _doc(limits("a0", cpu=(10, POM, 110, 60), mem=(10, POM, 3000, 2000))))
    state.put("limits", _doc(limits("a1", cpu=(4, POM, 30, 26))))
    state.put("limits", _doc(limits("b0", cpu=(10, POM, 70, 60))))
    # b1 has no limits document; a2's upper is the original's −1 ("no data").
    state.docs.docs["limits"]["a2"] = {"name": "a2", "resources": {"cpu": {"boundary": 5, "upper": -1, "lower": 30}}}
    return per_host


def _frame(state: State, host: str, names: list[str], t: float, cpu: list[float], mem: list[float]) -> SeriesFrame:
    """The frame the Guardian sends for this window: its usage and the documents' limit values."""
    limits_of: dict[str, np.ndarray] = {}
    for key in LIMIT_KEYS:
        res, field = key.split(".")
        col = []
        for n in names:
            doc = state.docs.get("structures", n) or {}
            src = doc if field in ("current", "max", "min") else state.docs.get("limits", n) or {}
            v = (src.get("resources", {}).get(res) or {}).get(field)
            col.append(math.nan if v is None else float(v))
        limits_of[key] = np.array(col)
    return SeriesFrame(HostWindow.of(host, t - 1, t, names, cpu, mem), limits_of)


def _as_set(table: pa.Table) -> set[tuple[Any, ...]]:
    d = table.to_pydict()
    return {(t.timestamp(), s, st, k, r, f, round(v, 9)) for t, s, st, k, r, f, v in
            zip(*(d[c] for c in ts.COLUMNS))}


def _rows_set(rows: list[ts.Row]) -> set[tuple[Any, ...]]:
    return {(int(r.t * 1000) / 1000, r.structure, r.subtype, r.kind, r.resource, r.field, round(r.value, 9))
            for r in rows}


# --------------------------------------------------------------------------- the same rows as the snapshot


def test_a_frames_rows_are_the_snapshots_container_rows(state):
    per_host = _fill(state)
    t = T0 + 0.4567
    usage = {"h0": ([90.0, 10.5, 0.0], [500.0, 12.25, 64.0]), "h1": ([7.125, 300.0], [1024.0, 2048.0])}
    for h, names in per_host.items():
        cpu, mem = usage[h]
        ops.guardian_report(state, {n: {"cpu": c, "mem": m} for n, c, m in zip(names, cpu, mem)}, {}, [], t)
    frames = [_frame(state, h, names, t, *usage[h]) for h, names in per_host.items()]

    expected: list[ts.Row] = []
    for h, names in per_host.items():
        snap = views.timeseries_snapshot(state, h, names, None)
        expected += [r for r in ts.rows_from_snapshot(snap, t) if r.subtype == "container"]
    got = ts.container_table(ts.columns_from_frames(frames))
    assert got.schema == ts.SCHEMA
    assert got.num_rows == len(expected)
    assert _as_set(got) == _rows_set(expected)
    # The uneven documents: a1 has no mem limit rows, b1 no limit rows, a2 no upper.
    keys = {(r[1], r[3], r[4], r[5]) for r in _as_set(got)}
    assert ("a1", "structure", "mem", "usage") in keys and ("a1", "limit", "mem", "upper") not in keys
    assert not any(k[0] == "b1" and k[1] == "limit" for k in keys)
    assert ("a2", "limit", "cpu", "upper") not in keys and ("a2", "limit", "cpu", "lower") in keys
    # The older entry's path (snapshot → columns) gives the same rows too.
    snap_cols = [ts.container_table(ts.columns_from_snapshot(views.timeseries_snapshot(state, h, names, None), t))
                 for h, names in per_host.items()]
    assert _as_set(pa.concat_tables(snap_cols)) == _rows_set(expected)


def test_fields_and_documents_persisted_select_the_columns(state):
    per_host = _fill(state)
    f = _frame(state, "h0", per_host["h0"], T0, [1.0, 2.0, 3.0], [100.0, 100.0, 100.0])
    only_usage = ts.container_table(ts.columns_from_frames([f]), fields=["usage"])
    assert set(only_usage["field"].to_pylist()) == {"usage"}
    no_limits = ts.container_table(ts.columns_from_frames([f]), documents=["structures"])
    assert set(no_limits["kind"].to_pylist()) == {"structure"}
    assert ts.container_table(ts.columns_from_frames([f]), documents=["users"]).num_rows == 0


# --------------------------------------------------------------------------- change-only rows


def _walk(seconds: int, n: int, seed: int = 3) -> list[SeriesFrame]:
    """`seconds` 1-s windows of one host of `n` containers; `current` moves now and then,
    c0's boundary disappears at 40 s and comes back at 70 s."""
    rng = np.random.default_rng(seed)
    names = tuple(f"c{i}" for i in range(n))
    cur = np.full(n, 100.0)
    use = np.full(n, 50.0)
    frames = []
    for k in range(seconds):
        use = np.round(np.clip(use + rng.normal(0, 5, n), 0, 400), 3)
        cur = np.where(rng.random(n) < 0.05, np.clip(cur + rng.choice([-30.0, 75.0], n), 25, 400), cur)
        boundary = np.full(n, 4.0)
        if 40 <= k < 70:
            boundary[0] = np.nan
        lim = {"cpu.current": cur, "cpu.max": np.full(n, 400.0), "cpu.min": np.full(n, 25.0),
               "cpu.upper": cur - 4, "cpu.lower": cur - 8, "cpu.boundary": boundary}
        t = T0 + k + 1
        frames.append(SeriesFrame(HostWindow.of("h0", t - 1, t, names, use, use * 10), lim))
    return frames


def _write(root, frames: list[SeriesFrame], changes: ts.ChangeFilter | None, per_call: int = 1) -> int:
    """Rows of `per_call` frames at a time, a file every 40 frames; returns the rows written."""
    w = ts.TimeseriesWriter(root)
    for i in range(0, len(frames), per_call):
        w.append(ts.container_table(ts.columns_from_frames(frames[i:i + per_call]), changes=changes))
        if (i + per_call) % 40 == 0:
            w.flush()
    w.flush()
    return w.rows_written


def test_change_only_rows_read_back_as_every_value_of_every_window(tmp_path):
    frames = _walk(120, 20)
    n_all = _write(tmp_path / "all", frames, None)
    n_changes = _write(tmp_path / "changes", frames, ts.ChangeFilter(full_every_s=30))
    # usage every window (1 row: no mem resource here), the 6 others on change or every 30 s
    assert n_all == 120 * 20 * 7 - 30  # c0 without boundary for 30 windows
    assert n_changes < 0.35 * n_all
    a, c = ts.read(tmp_path / "all"), ts.read(tmp_path / "changes")
    assert a.num_rows == n_all
    assert _as_set(c) == _as_set(a)
    # The raw changes dataset: c0's boundary ends with one null row and comes back with a value.
    raw = ts.read(tmp_path / "changes", structures=["c0"], fill=False).to_pylist()
    b = [(r["timestamp"].timestamp() - T0, r["value"]) for r in raw if r["field"] == "boundary"]
    assert (41.0, None) in b and (71.0, 4.0) in b
    assert [x for x in b if 41 < x[0] < 71] == []
    # A reader may start anywhere: the last full rows before `since` give the values.
    since, until = T0 + 77.5, T0 + 100
    assert _as_set(ts.read(tmp_path / "changes", since=since, until=until)) == _as_set(
        ts.read(tmp_path / "all", since=since, until=until))
    only_limits = ts.read(tmp_path / "changes", structures=["c3"], kinds=["limit"], since=since)
    assert set(only_limits["kind"].to_pylist()) == {"limit"}
    assert only_limits.num_rows == 3 * 43  # upper, lower, boundary at each of 78 … 120
    # Compacted, the hour's file is still marked change-only, and reads the same.
    before = _as_set(ts.read(tmp_path / "changes"))
    (merged,) = ts.compact(tmp_path / "changes", now=T0 + 2 * 3600)
    assert ts._is_changes(pq.read_schema(merged).metadata)
    assert _as_set(ts.read(tmp_path / "changes")) == before
    # A dataset of `all` rows is not filled: a window without c0's boundary stays without.
    assert not any(ts._is_changes(pq.read_schema(f).metadata) for f in ts.data_files(tmp_path / "all"))


def test_full_rows_come_every_full_every_s_and_a_restart_starts_full(tmp_path):
    frames = _walk(61, 5, seed=9)
    for f in frames:  # nothing but usage changes
        f.limits["cpu.current"][:] = 100.0  # type: ignore[index]
        f.limits["cpu.upper"][:] = 96.0  # type: ignore[index]
        f.limits["cpu.lower"][:] = 92.0  # type: ignore[index]
        f.limits["cpu.boundary"][:] = 4.0  # type: ignore[index]
    changes = ts.ChangeFilter(full_every_s=20)
    per_window = [ts.container_table(ts.columns_from_frames([f]), changes=changes).num_rows for f in frames]
    full, usage_only = 5 * 7, 5  # cpu: usage and 6 values (no mem resource here)
    assert [k for k, n in enumerate(per_window) if n == full] == [0, 20, 40, 60]
    assert all(n == usage_only for k, n in enumerate(per_window) if k % 20)
    assert ts.container_table(ts.columns_from_frames([frames[1]]), changes=ts.ChangeFilter()).num_rows == full


def test_a_container_twice_in_one_call_is_filtered_window_after_window(tmp_path):
    names = ("c0",)

    def frame(k: int, current: float) -> SeriesFrame:
        lim = {"cpu.current": np.array([current]), "cpu.max": np.array([400.0])}
        return SeriesFrame(HostWindow.of("h0", T0 + k - 1, T0 + k, names, [1.0], [1.0]), lim)

    frames = [frame(1, 50.0), frame(2, 75.0), frame(3, 50.0), frame(4, 50.0)]
    _write(tmp_path / "one-call", frames, ts.ChangeFilter(), per_call=4)
    got = ts.read(tmp_path / "one-call")
    current = [(r["timestamp"].timestamp() - T0, r["value"]) for r in got.to_pylist() if r["field"] == "current"]
    assert current == [(1.0, 50.0), (2.0, 75.0), (3.0, 50.0), (4.0, 50.0)]


# --------------------------------------------------------------------------- the actor's hot path


class _Call:
    def __init__(self, fn, log, name):
        self.fn, self.log, self.name = fn, log, name

    def remote(self, *args):
        self.log.append((self.name, args))
        fut = asyncio.get_running_loop().create_future()
        fut.set_result(self.fn(*args))
        return fut


class _StateDB:
    """The StateDB's calls the snapshoter makes, on an in-process State; `calls` lists them."""

    def __init__(self, state: State, config: dict[str, Any]) -> None:
        self.state, self.config, self.calls = state, config, []

    def __getattr__(self, name):
        fns = {
            "get": lambda c, n: {"name": n, "config": self.config},
            "heartbeat": lambda s: None,
            "timeseries_groups": lambda hosts, services: views.timeseries_groups(self.state, hosts, services),
            "timeseries_snapshot": lambda h, names, services: views.timeseries_snapshot(self.state, h, names, services),
        }
        return _Call(fns[name], self.calls, name)


class _Handles:
    def __init__(self, db: _StateDB) -> None:
        self.statedb = db


def test_on_windows_writes_frames_and_asks_the_statedb_only_for_groups(state, tmp_path):
    per_host = _fill(state)
    root = tmp_path / "ts"

    async def scenario():
        db = _StateDB(state, {"DATASET_DIR": str(root), "SERIES_ROWS": "changes"})
        snap = DatabaseSnapshoter(str(tmp_path / "default"))
        snap._actors = _Handles(db)
        await snap.tick()
        assert snap.writer.root == root
        f = [_frame(state, h, n, T0 + 1, [1.0] * len(n), [100.0] * len(n)) for h, n in per_host.items()]
        rows = await snap.on_windows(f)
        groups = [args for name, args in db.calls if name == "timeseries_groups"]
        assert groups == [(["h0", "h1"], ["guardian", "scaler"])]
        # No application anywhere: the next windows do not ask for groups (services once a second).
        db.calls.clear()
        await snap.on_windows([_frame(state, "h0", per_host["h0"], T0 + 1.5, [2.0] * 3, [100.0] * 3)])
        await snap.on_windows([_frame(state, "h0", per_host["h0"], T0 + 2, [3.0] * 3, [100.0] * 3)])
        assert [args for name, args in db.calls if name == "timeseries_groups"] == [([], ["guardian", "scaler"])]
        assert not any(name == "timeseries_snapshot" for name, _ in db.calls)
        # An application anchored at h0 shows up after the recheck.
        state.put("structures", _doc(application("app1", cpu=(20, 100, 1600), containers=["a0", "a2"])))
        snap._no_groups_until = 0.0
        await snap.on_windows([_frame(state, "h0", per_host["h0"], T0 + 3, [4.0] * 3, [100.0] * 3)])
        await snap.flush()
        snap._task.cancel()
        return rows, await snap.ping()

    rows, status = asyncio.run(scenario())
    assert rows > 0 and status["windows"] == 5 and status["errors"] == 0
    table = ts.read(root)
    names = set(table["structure"].to_pylist())
    assert {"a0", "a1", "a2", "b0", "b1", "app1", "guardian", "scaler"} <= names
    # Filled: a0's current at each of its windows, though written once.
    a0 = [r for r in table.to_pylist() if r["structure"] == "a0" and r["field"] == "current"
          and r["resource"] == "cpu"]
    assert [(r["timestamp"].timestamp() - T0, r["value"]) for r in a0] == [(1, 120), (1.5, 120), (2, 120), (3, 120)]
    raw = ts.read(root, structures=["a0"], fill=False).to_pylist()
    assert len([r for r in raw if r["field"] == "current" and r["resource"] == "cpu"]) == 1


def test_series_rows_settings_and_the_readers_lookback_agree():
    s = DatabaseSnapshoterSettings.from_config({"SERIES_ROWS": "all", "FULL_ROWS_EVERY": 600})
    assert (s.series_rows, s.full_rows_every_s) == ("all", 600)
    assert DatabaseSnapshoterSettings().series_rows == "changes"
    limit = DatabaseSnapshoterSettings.model_fields["full_rows_every_s"].metadata
    assert any(getattr(m, "le", None) == ts.LOOKBACK_S for m in limit)
    with pytest.raises(ValueError):
        DatabaseSnapshoterSettings.from_config({"SERIES_ROWS": "some"})
    with pytest.raises(ValueError):
        DatabaseSnapshoterSettings.from_config({"FULL_ROWS_EVERY": ts.LOOKBACK_S + 1})


def test_sc_history_and_report_show_change_only_rows_as_every_window(tmp_path):
    from cluster.tools import history

    frames = _walk(90, 4, seed=5)
    _write(tmp_path / "all", frames, None)
    _write(tmp_path / "changes", frames, ts.ChangeFilter(full_every_s=30))
    for name in ("c0", "c2"):
        a, c = (history.series(tmp_path / d, name) for d in ("all", "changes"))
        assert len(c) == 90 and c == a
    assert history.utilization(tmp_path / "changes") == history.utilization(tmp_path / "all")


def test_the_change_filter_forgets_containers_silent_longer_than_the_lookback():
    def frame(prefix: str, t: float) -> SeriesFrame:
        names = tuple(f"{prefix}{i}" for i in range(10))
        lim = {"cpu.current": np.full(10, 100.0), "cpu.max": np.full(10, 400.0)}
        return SeriesFrame(HostWindow.of("h0", t - 1, t, names, np.ones(10), np.ones(10)), lim)

    changes = ts.ChangeFilter(full_every_s=60)

    def rows(f: SeriesFrame) -> int:
        return ts.container_table(ts.columns_from_frames([f]), changes=changes).num_rows

    assert rows(frame("c", T0)) == 10 * 3  # usage, current, max
    assert rows(frame("c", T0 + 1)) == 10  # usage only
    assert rows(frame("d", T0 + 2)) == 30 and len(changes) == 20  # c still within the lookback
    assert rows(frame("d", T0 + ts.LOOKBACK_S + 1.5)) == 30  # full rows again (60 s passed)
    assert rows(frame("e", T0 + ts.LOOKBACK_S + 2)) == 30 and len(changes) == 20  # c forgotten
    assert rows(frame("c", T0 + ts.LOOKBACK_S + 3)) == 30  # back: a full row
