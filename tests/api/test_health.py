"""`GET /health` and the warnings of a change, on the real app and a real StateDB, without Ray.

The app is `serve.app.create_app` over a real `StateDB` in this process, the live
nodes' labels given (tests/api/inprocess.py). Each test produces one problem for real
in the StateDB and sees it reported.
"""
from __future__ import annotations

import os
import re
import time

import pytest

from tests.api.inprocess import Served


def _stack(tmp_path, checkpoint_every_s: float = 60.0) -> Served:
    return Served(str(tmp_path), checkpoint_every_s=checkpoint_every_s, cpu=(200, 100), mem=(2048, 1792))


@pytest.fixture
def served(tmp_path):
    with _stack(tmp_path) as served:
        yield served


def test_a_healthy_stack_has_no_problem(served):
    assert served.problems() == []


def test_a_guardian_setting_that_leaves_a_rule_unable_to_fire_warns_in_the_answer_and_in_health(served):
    r = served.http.put("/service/guardian/WINDOW_TIMELAPSE", json={"value": "1"})
    assert r.status_code == 200 and r.json()["config"]["WINDOW_TIMELAPSE"] == 1
    # The change is made (honoured), and said to leave CpuRescaleDown (6 events) unable to fire.
    [cpu_down] = [w for w in r.json()["warnings"] if w.startswith("rule CpuRescaleDown ")]
    assert "needs 6 down cpu events" in cpu_down and "EVENT_TIMEOUT 4 s" in cpu_down
    assert "`sc service set guardian EVENT_TIMEOUT 6`" in cpu_down
    assert cpu_down in [p["message"] for p in served.problems()]
    # Following the advice clears it.
    r = served.http.put("/service/guardian", json={"EVENT_TIMEOUT": 10})
    assert r.status_code == 200 and "warnings" not in r.json()
    assert served.problems() == []


def test_a_rule_change_that_leaves_it_unable_to_fire_warns(served):
    r = served.http.put("/rule/CpuRescaleDown/events_required", json={"event_type": "down", "value": 12})
    assert r.status_code == 200
    # 12 windows of 0.4 s end 4.4 s apart ≥ EVENT_TIMEOUT 4 s.
    [warning] = r.json()["warnings"]
    assert warning.startswith("rule CpuRescaleDown can never fire: it needs 12 down cpu events")
    r = served.http.put("/rule/CpuRescaleDown/deactivate")
    assert "warnings" not in r.json()


def test_deactivating_the_only_event_rule_of_a_direction_warns_about_the_request_rules_needing_it(served):
    r = served.http.put("/rule/cpu_dropped_lower/deactivate")
    assert r.status_code == 200
    assert any(w.startswith("rule CpuRescaleDown can never fire") and "`sc rule activate cpu_dropped_lower`" in w
               for w in r.json()["warnings"])
    assert "CpuRescaleDown" in [p["subject"] for p in served.problems()]


def test_an_old_heartbeat_is_reported(served):
    start = time.time()
    served.db.heartbeats["scaler"] = start - 120
    [p] = served.problems()
    assert p["kind"] == "heartbeat" and p["subject"] == "scaler"
    # The age is read when /health answers: 120 s plus however long the answer took here.
    age = int(re.search(r"last heartbeat (\d+) s ago", p["message"]).group(1))
    assert 120 <= age <= 120 + (time.time() - start) + 1


def test_a_host_without_a_live_node_is_reported(served):
    served.live = frozenset()
    [p] = served.problems()
    assert p["subject"] == "h0" and "no live Ray node carries the label sc_host=h0" in p["message"]
    served.live = frozenset({"h0"})
    served.db.set_host_reachable("h0", False, "its ContainerScaler has not answered for 3 s")
    [p] = served.problems()
    assert "its ContainerScaler has not answered for 3 s" in p["message"]


def test_a_container_its_node_no_longer_lists_is_missing_in_status_health_and_the_decision_log(served):
    served.db.guardian_report({"c0": {"cpu": 99.8, "mem": 200}}, {}, [], time.time())
    missing = served.db.containers_seen({"h0": []}, 60)
    assert set(missing) == {"c0"}
    [row] = [r for r in served.http.get("/status").json()["containers"] if r["resource"] == "cpu"]
    # The last usage (99.8) is not shown as if it were alive.
    assert row["missing_since"] == missing["c0"] and row["usage"] is None
    [p] = served.problems()
    assert p["kind"] == "container" and "cgroup gone since" in p["message"]
    [entry] = served.http.get("/requests", params={"structure": "c0"}).json()
    assert entry["outcome"] == "missing" and "after 60 s" in entry["reason"]
    # Listed again: no longer missing, and the log says it came back.
    assert served.db.containers_seen({"h0": ["c0"]}, 60) == {}
    assert served.problems() == []
    assert [e["outcome"] for e in served.http.get("/requests", params={"structure": "c0"}).json()] == ["missing", "back"]


def test_an_application_whose_containers_hold_more_than_its_max_is_reported(served):
    served.add_container("c1", cpu=50)
    r = served.http.put("/structure/apps/app0", json={"app": {"name": "app0", "resources": {
        "cpu": {"min": 50, "max": 120}, "mem": {"min": 64, "max": 4096}}}})
    assert r.status_code == 201, r.text
    for c in ("c0", "c1"):
        assert served.http.put(f"/structure/container/{c}/app0").status_code == 200
    # Σ current = 100 + 50 = 150 > 120.
    [p] = served.problems()
    assert p["kind"] == "limit" and "application app0 cpu: current 150 (Σ of its containers) is above its max 120" \
        in p["message"]


def test_a_host_whose_max_is_lowered_under_its_containers_is_reported(served):
    r = served.http.put("/structure/h0/resources/cpu/max", json={"value": 100})
    assert r.status_code == 200
    served.add_container("c1", cpu=50)
    # Σ current = 100 + 50 = 150 > 100.
    [p] = served.problems()
    assert p["subject"] == "h0" and "hold 150 cpu shares" in p["message"]


def test_a_journal_whose_checkpoints_fail_is_reported(tmp_path):
    with _stack(tmp_path, checkpoint_every_s=0.2) as served:
        _a_failing_checkpoint_is_reported(served, tmp_path)


def _a_failing_checkpoint_is_reported(served, tmp_path):
    # The checkpoint's place taken by a directory: every checkpoint now fails (and is retried).
    checkpoint = served.db.store.checkpoint_path
    if checkpoint.exists():
        os.remove(checkpoint)
    os.mkdir(checkpoint)
    deadline = time.monotonic() + 30
    problems: list[dict[str, str]] = []
    while time.monotonic() < deadline:
        # Writes keep coming while the checkpoint is due: it is tried, fails, and the journal grows.
        served.db.patch("structures", "c0", {"guard": not served.db.get("structures", "c0")["guard"]})
        problems = [p for p in served.problems() if p["kind"] == "journal"]
        if problems:
            break
        time.sleep(0.1)  # a write every 0.1 s until it is reported (5 s of slack after a due checkpoint)
    assert problems, "a failing checkpoint was never reported"
    assert "not checkpointed for" in problems[0]["message"] and str(tmp_path) in problems[0]["message"]
