"""Every service document carries a real heartbeat (issue 14, item 8).

The original's services wrote `heartbeat` into their document every loop and
CheckAlive called one older than 30 s dead; here every service document showed
0.0. Each service now beats while it runs, active or not, busy or idle (the
Refeeder lives in the StateDB: it beats with it).
"""
from __future__ import annotations

import time

import pytest

from cluster.deploy import wait_for

pytestmark = pytest.mark.ray


def test_every_service_document_has_a_recent_heartbeat(http):
    def beats():
        docs = http.get("/service/").json()
        now = time.time()
        stale = {d["name"]: d.get("heartbeat") for d in docs if not 0 < now - float(d.get("heartbeat") or 0) < 10}
        return docs if not stale else None

    try:
        docs = wait_for(beats, timeout_s=20, what="a heartbeat in every service document")
    except TimeoutError:
        docs = http.get("/service/").json()
        raise AssertionError({d["name"]: d.get("heartbeat") for d in docs}) from None
    assert {d["name"] for d in docs} >= {"guardian", "scaler", "structures_snapshoter", "database_snapshoter",
                                         "refeeder"}
    for d in docs:
        assert d["heartbeat_human"], d
    one = http.get("/service/scaler").json()
    assert 0 < time.time() - one["heartbeat"] < 10


def test_the_answer_to_a_service_change_carries_its_heartbeat(http):
    wait_for(lambda: http.get("/service/scaler").json()["heartbeat"] > 0, timeout_s=20, what="a scaler heartbeat")
    r = http.put("/service/scaler/DEBUG", json={"value": "false"})
    assert r.status_code == 200, r.text
    assert 0 < time.time() - r.json()["heartbeat"] < 30 and r.json()["heartbeat_human"]
    r = http.put("/service/scaler", json={"DEBUG": False})
    assert r.status_code == 200 and r.json()["heartbeat"] > 0, r.text
