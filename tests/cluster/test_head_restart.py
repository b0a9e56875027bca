"""A head that dies (issue 17): every process of the head SIGKILLed, then the head started
again with the same command, `sc up --gcs-redis` (same GCS port, same Redis, same state dir).

With the GCS in Redis, the worker host's raylet and its actors live through the outage (the
same processes before and after), the containers keep their limits (read from the cgroup
files all along), nothing acknowledged is lost (the StateDB's journal is on the head's disk
and its actor is restarted on the new head), and scaling resumes on the worker.

Timings are printed as `timing: ...` lines (`pytest -s tests/cluster/test_head_restart.py`).
"""
from __future__ import annotations

import time

import pytest

from cluster.deploy import wait_for
from tests.cluster.headhost import HeadCluster, LimitsWatch

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]

N_CHANGES = 20


@pytest.fixture
def head_cluster():
    c = HeadCluster(redis=True)
    try:
        yield c
    finally:
        c.down()


def test_a_head_killed_and_started_again_keeps_its_workers_limits_and_every_acknowledged_change(head_cluster):
    c = head_cluster
    t_up = c.up()
    assert "GCS in Redis" in c.up_output
    t_join = c.join_worker()
    client = c.client()
    wait_for(lambda: any(h["name"] == c.worker_host and h.get("reachable", True)
                         for h in client.structures("host")), 60, what="worker host registered")

    # Two guarded containers on the worker at their minimum: `hold` stays idle throughout,
    # `load` gets a CPU loop from the moment of the kill.
    for name in ("hold", "load"):
        c.container(name)
    wait_for(lambda: all(c.backend.read_limits(n).cpu_allowance_limit == 25 for n in ("hold", "load")), 30,
             what="limits written on the worker")
    before = {n: c.backend.read_limits(n) for n in ("hold", "load")}

    acked = c.acknowledged_changes(N_CHANGES)
    raylet, scaler = c.worker_raylet(), c.actor_pids("ContainerScaler", c.worker_pids())
    assert raylet and len(scaler) == 1

    watch = LimitsWatch(c.backend, ["hold", "load"], probe=c.gcs_answers).start()
    n_killed = c.kill_head()
    t_kill = time.monotonic()
    c.busy_loop("load")
    assert not c.gcs_answers()

    t_restart = c.up()
    t_ready = time.monotonic()

    wait_for(lambda: watch.samples and watch.samples[-1][1]["load"].cpu_allowance_limit > 25, 60,
             interval_s=0.05, what="the loaded container's quota raised after the restart")
    watch.stop()
    # When it was raised: the first sample of the watch (every 0.1 s) that saw it.
    raised = watch.first_change("load", lambda limits: limits.cpu_allowance_limit > 25)

    # The worker host lived through it: the same raylet, the same ContainerScaler process.
    assert c.worker_raylet() == raylet
    assert c.actor_pids("ContainerScaler", c.worker_pids()) == scaler
    # The StateDB (a detached actor) came back, on the new head.
    assert c.actor_pids("StateDB", c.head_pids())

    # Limits during the outage: what they were, never reset. `hold` keeps them to the end;
    # `load` at least until the GCS answered again (the StateDB, which every change of a
    # limit goes through, comes back after it), and its first change is the raise.
    gcs_back = watch.first(True, after=t_kill)
    assert gcs_back is not None
    assert watch.seen("hold") == [before["hold"]]
    assert watch.seen("load", until=gcs_back) == [before["load"]]
    seen_load = watch.seen("load")
    assert seen_load[0] == before["load"]
    assert all(later.cpu_allowance_limit > 25 for later in seen_load[1:])

    lost = c.lost(acked)
    assert lost == []

    print(f"\ntiming: head with GCS in Redis: sc up {t_up:.1f} s, worker join {t_join:.1f} s; "
          f"{n_killed} head processes SIGKILLed")
    print(f"timing: kill -> GCS answers again {gcs_back - t_kill:.1f} s; kill -> head back (sc up --gcs-redis "
          f"returned) {t_ready - t_kill:.1f} s (sc up itself {t_restart:.1f} s)")
    print(f"timing: kill -> scaling resumed on the worker (CPU loop's quota 25 -> "
          f"{c.backend.read_limits('load').cpu_allowance_limit:g} shares) {raised - t_kill:.1f} s, "
          f"{raised - gcs_back:.1f} s after the GCS answered ({t_ready - raised:.1f} s before sc up returned)")
    print(f"timing: limits during the outage: hold {len(watch.seen('hold'))} distinct value(s) in "
          f"{len(watch.samples)} samples; acknowledged changes lost {len(lost)} of {N_CHANGES}")
