"""The DatabaseSnapshoter on the session's control plane: a real scaling run, then a SIGKILL mid-write."""
from __future__ import annotations

import os
import signal
import time

import pyarrow.parquet as pq
import pytest
import ray

from cluster.deploy import wait_for
from sc_actors.model import LimitResource, Resource
from sc_actors.policy.limits import adjust_limits
from sc_actors.profiles import PROFILES
from sc_actors.settings import DATABASE_SNAPSHOTER_NAME, NAMESPACE
from sc_actors.store import timeseries as ts

pytestmark = pytest.mark.ray


def _snapshoter():
    return ray.get_actor(DATABASE_SNAPSHOTER_NAME, namespace=NAMESPACE)


@pytest.fixture
def dataset(stack, tmp_path):
    """The snapshoter writes into a test directory (service config `DATASET_DIR`) while the test runs."""
    root = tmp_path / "timeseries"
    db = stack.statedb
    before = ray.get(db.get.remote("services", "database_snapshoter"))["config"]

    def configure(**config):
        ray.get(db.patch.remote("services", "database_snapshoter", {f"config.{k}": v for k, v in config.items()}))

    configure(DATASET_DIR=str(root), FLUSH_INTERVAL=0.5)
    wait_for(lambda: ray.get(_snapshoter().ping.remote(), timeout=10)["dataset_dir"] == str(root), 20,
             what="the snapshoter to write into the test dataset")
    try:
        yield root, configure
    finally:
        configure(**{k: before.get(k) for k in ("DATASET_DIR", "FLUSH_INTERVAL", "FLUSH_ROWS")
                     if before.get(k) is not None})
        wait_for(lambda: ray.get(_snapshoter().ping.remote(), timeout=10)["dataset_dir"] != str(root), 20,
                 what="the snapshoter to leave the test dataset")


def _windows(root, name):
    """timestamp (s) → field → value, for `name`'s cpu rows."""
    out: dict[float, dict[str, float]] = {}
    table = ts.read(root, structures=[name], resources=["cpu"])
    for row in table.to_pylist():
        out.setdefault(row["timestamp"].timestamp(), {})[row["field"]] = row["value"]
    return dict(sorted(out.items()))


def test_a_scaled_container_writes_rows_that_match_the_limits_applied(stack, containers, dataset):
    root, _ = dataset
    name = containers.create("series")
    containers.subscribe(name, cpu=(25, 50, 200))
    containers.guard(name, "cpu")
    proc = containers.busy_loop(name)
    # One busy thread uses one core (100 shares): 50 → about 100 / 0.94, then down when it stops.
    wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit >= 100, 30, what="a scale-up")
    proc.kill()
    proc.wait()
    wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit < 50, 30, what="a scale-down")
    unguarded_at = time.time()
    ray.get(stack.statedb.patch.remote("structures", name, {"guard": False}))
    applied = [e for e in ray.get(stack.statedb.recent_requests.remote(name, 1000))
               if e["outcome"] in ("applied", "trimmed")]
    last = applied[-1]
    doc = ray.get(stack.statedb.get.remote("structures", name))
    assert doc["resources"]["cpu"]["current"] == last["new_current"] == stack.backend.read_limits(name).cpu_allowance_limit
    # Rows of windows after the last scaling are on disk.
    wait_for(lambda: ray.get(_snapshoter().flush.remote()) and any(
        t > last["applied_at"] + 1 for t in _windows(root, name)), 20, what="rows after the last scaling")
    windows = _windows(root, name)

    # Every `current` is a value the StateDB held: the subscribed 50, then each applied limit, in order.
    held = [50.0] + [float(e["new_current"]) for e in applied]
    seen = [w["current"] for w in windows.values()]
    changes = [c for i, c in enumerate(seen) if i == 0 or c != seen[i - 1]]
    assert changes == held, (changes, held)
    # Each change shows up in the window in which it was applied.
    for e in applied:
        first = next(t for t, w in windows.items() if t >= e["applied_at"] - 1.0 and w["current"] == e["new_current"])
        assert first - e["applied_at"] < 2.0
    # While guarded, limits of a window follow the chain of its current (the shipped profile's
    # adaptive 4 % of current, at least 2 shares), except in the one window where the Scaler
    # applied between the Guardian's read and the snapshot.
    rows = list(windows.values())
    for (_, prev), (t, w) in zip(windows.items(), list(windows.items())[1:]):
        assert (w["max"], w["min"]) == (200, 25)
        if "upper" in w and w["current"] == prev["current"] and t < unguarded_at - 0.5:
            fixed = adjust_limits(Resource(min=25, max=200, current=w["current"]),
                                  LimitResource(**PROFILES["adaptive"]["cpu"]), "cpu")
            assert (w["upper"], w["lower"]) == (fixed.upper, fixed.lower)
    # Usage rows are the windows' measurements: the busy loop (up to its quota of 50), then idle.
    usages = [w["usage"] for w in rows if "usage" in w]
    assert max(usages) > 25 and min(usages) < 5 and all(0 <= u <= 130 for u in usages)
    # Service configs are there too, once a second.
    services = ts.read(root, kinds=["service"])
    assert {"window_timelapse", "request_timeout"} <= set(services["field"].to_pylist())


def test_killing_the_snapshoter_mid_write_leaves_no_corrupt_file(stack, containers, dataset):
    root, configure = dataset
    for _ in range(2):
        containers.subscribe(containers.create("kill"))
    configure(FLUSH_ROWS=1)  # a file per window: the snapshoter is often in the middle of one
    wait_for(lambda: len(ts.data_files(root)) >= 5, 30, what="a few files")
    pid = ray.get(_snapshoter().ping.remote())["pid"]

    def caught_mid_write() -> bool:
        # Freeze the process; if a file is half-written now, kill it there.
        os.kill(pid, signal.SIGSTOP)
        if list(root.glob("date=*/.*.tmp")):
            os.kill(pid, signal.SIGKILL)
            return True
        os.kill(pid, signal.SIGCONT)
        return False

    try:
        wait_for(caught_mid_write, 120, interval_s=0.01, what="the snapshoter in the middle of a file")
    except TimeoutError:
        os.kill(pid, signal.SIGCONT)
        raise
    half = list(root.glob("date=*/.*.tmp"))
    assert half  # the killed writer left a half file …
    files = ts.data_files(root)
    for f in files:  # … that no reader sees: every visible file is whole
        assert pq.read_table(f).num_rows > 0
    assert not set(half) & set(files)
    assert ts.read(root).num_rows > 0
    duckdb = pytest.importorskip("duckdb")
    assert duckdb.sql(f"SELECT count(*) FROM read_parquet('{root}/**/*.parquet')").fetchall()[0][0] > 0
    # Ray restarts it; the restarted writer removes the half file and goes on writing.
    wait_for(lambda: ray.get(_snapshoter().ping.remote(), timeout=10)["pid"] != pid, 60,
             what="the snapshoter to come back")
    wait_for(lambda: ray.get(_snapshoter().ping.remote(), timeout=10)["rows_written"] > 0, 30,
             what="rows written after the restart")
    assert not any(p.exists() for p in half)
    for f in ts.data_files(root):
        pq.read_table(f)
