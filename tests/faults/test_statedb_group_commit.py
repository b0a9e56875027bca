"""A real StateDB actor (fsync on, its calls in threads as deployed) SIGKILLed while hundreds of
concurrent writes are in flight: every write it acknowledged is there after Ray restarts it.

Its own actor in its own namespace and state dir (the session's control plane is not
touched), with `max_task_retries=0`, so a call the kill cut off fails to its caller
instead of being run again on the restarted actor: what returned is exactly what was
acknowledged.
"""
from __future__ import annotations

import os
import signal
import uuid
from typing import Any

import pytest
import ray
from ray.exceptions import RayActorError

from sc_actors.statedb import MAX_CONCURRENCY, StateDB

WRITES = 3000


def _limits(i: int) -> dict[str, Any]:
    return {"name": f"c{i}", "resources": {"cpu": {"boundary": 10, "upper": 100.0 + i, "lower": 80.0 + i}}}


@pytest.fixture
def statedb(stack, tmp_path):
    db = ray.remote(StateDB).options(
        name=f"statedb-{uuid.uuid4().hex[:6]}", namespace="sc_group_commit", max_concurrency=MAX_CONCURRENCY,
        max_restarts=-1, max_task_retries=0, num_cpus=0).remote(str(tmp_path / "state"), True)
    try:
        yield db
    finally:
        ray.kill(db, no_restart=True)


def test_a_statedb_killed_under_concurrent_writes_keeps_every_acknowledged_one(statedb):
    pid = ray.get(statedb.ping.remote())["pid"]
    refs = {statedb.put.remote("limits", _limits(i)): i for i in range(WRITES)}
    # Kill once some writes have been acknowledged and many are still in flight.
    done: list[Any] = []
    pending = list(refs)
    while len(done) < WRITES // 10:
        ready, pending = ray.wait(pending, num_returns=1, timeout=60)
        assert ready, "no write acknowledged within 60 s"
        done += ready
    os.kill(pid, signal.SIGKILL)

    acked, failed = [], 0
    for ref, i in refs.items():
        try:
            stored = ray.get(ref, timeout=120)
        except RayActorError:
            failed += 1
            continue
        assert stored["name"] == f"c{i}"
        acked.append(i)
    assert failed > 0, "the kill came after every write: it tested nothing"
    assert len(acked) >= WRITES // 10

    status = ray.get(statedb.ping.remote(), timeout=120)  # Ray restarted it: journal replayed
    assert status["pid"] != pid
    have = {d["name"] for d in ray.get(statedb.list.remote("limits"))}
    lost = sorted(i for i in acked if f"c{i}" not in have)
    assert not lost, f"{len(lost)} acknowledged writes lost: {lost[:10]}"
    print(f"{len(acked)} acknowledged, {failed} cut off by the kill, 0 lost; "
          f"{len(have) - len(acked)} unacknowledged ones were written before it")
