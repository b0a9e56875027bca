"""`GET /health` and `sc status` name every Guardian and Scaler shard with its heartbeat (issue 16).

The real app over a real StateDB in this process (tests/api/inprocess.py); the shards'
heartbeats are written as the shards write them (`StateDB.heartbeat(name)`).
"""
from __future__ import annotations

import time

import pytest
from typer.testing import CliRunner

import cli
from tests.api.inprocess import Listening, Served


@pytest.fixture
def served(tmp_path):
    s = Served(str(tmp_path))
    s.db.patch("services", "guardian", {"shards": 2})  # as `deploy(shards=2)` writes it
    for name in ("guardian", "guardian-1", "scaler", "scaler-1"):
        s.db.heartbeat(name)
    return s


def test_health_lists_every_shard_with_its_heartbeat(served):
    body = served.http.get("/health").json()
    assert [b["name"] for b in body["shards"]] == ["guardian", "scaler", "guardian-1", "scaler-1"]
    assert all(body["time"] - 5 < b["heartbeat"] <= body["time"] for b in body["shards"])
    assert body["ok"], body["problems"]


def test_a_silent_shard_is_a_problem_of_its_own(served):
    served.db.state.heartbeats["scaler-1"] = time.time() - 100  # its last beat, 100 s ago
    [p] = served.problems()
    assert p["subject"] == "scaler-1" and "service scaler-1: last heartbeat 100 s ago" in p["message"]


def test_one_shard_lists_the_guardian_and_the_scaler(tmp_path):
    body = Served(str(tmp_path)).http.get("/health").json()
    assert [b["name"] for b in body["shards"]] == ["guardian", "scaler"]


def test_sc_status_prints_each_shards_last_heartbeat(served):
    listening = Listening(served)
    try:
        r = CliRunner().invoke(cli.app, ["--url", listening.url, "status"], catch_exceptions=False,
                               env={"SC_API_TOKEN": "", "COLUMNS": "200"})
    finally:
        listening.close()
    assert r.exit_code == 0, r.output
    line = next(ln for ln in r.stdout.splitlines() if ln.startswith("shards (last heartbeat):"))
    for name in ("guardian", "scaler", "guardian-1", "scaler-1"):
        assert f"{name} 0 s ago" in line, line


@pytest.mark.parametrize("bad", ["0", "65"])
def test_sc_up_refuses_a_bad_shard_count_before_it_starts_anything(tmp_path, bad):
    state = tmp_path / "state"
    r = CliRunner().invoke(cli.app, ["up", "--shards", bad, "--state-dir", str(state)], catch_exceptions=False)
    assert r.exit_code == 1
    assert f"--shards: shards must be a whole number from 1 to 64, got {bad}" in r.stderr
    assert not state.exists()
