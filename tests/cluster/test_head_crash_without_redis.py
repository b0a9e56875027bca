"""What a head crash costs without GCS fault tolerance, and how `sc up` recovers (issue 17).

Every process of the head SIGKILLed, no Redis. Then, measured:
- the worker host's raylet exits by itself once the GCS has not come back within Ray's
  `gcs_rpc_server_reconnect_timeout_s` (60 s by default), and its actors (the host's
  ContainerScaler) die with it;
- the containers keep their limits all along: the cgroup files are nobody's to reset;
- recovery is `sc up` again on the same state dir (a new cluster: its StateDB replays the
  journal, nothing acknowledged is lost) and the worker host's `ray start --address` again
  (what its service manager does): its host is matched by name, and scaling resumes.

About 2 min, most of it the reconnect timeout: marked `cluster_long`.
"""
from __future__ import annotations

import time

import pytest

from cluster.deploy import wait_for
from tests.cluster.headhost import HeadCluster, LimitsWatch

pytestmark = [pytest.mark.ray, pytest.mark.cgroup, pytest.mark.cluster_long]

N_CHANGES = 20


@pytest.fixture
def head_cluster():
    c = HeadCluster(redis=False)
    try:
        yield c
    finally:
        c.down()


def _host_ready(c: HeadCluster) -> bool:
    return any(h["name"] == c.worker_host and h.get("reachable", True) for h in c.client().structures("host"))


def test_without_redis_a_head_crash_ends_the_workers_and_sc_up_again_brings_back_everything_acknowledged(
        head_cluster):
    c = head_cluster
    c.up()
    c.join_worker()
    wait_for(lambda: _host_ready(c), 60, what="worker host registered")
    for name in ("hold", "load"):
        c.container(name)
    wait_for(lambda: all(c.backend.read_limits(n).cpu_allowance_limit == 25 for n in ("hold", "load")), 30,
             what="limits written on the worker")
    before = {n: c.backend.read_limits(n) for n in ("hold", "load")}
    acked = c.acknowledged_changes(N_CHANGES)
    raylet = c.worker_raylet()
    scaler = c.actor_pids("ContainerScaler", c.worker_pids())
    assert raylet and len(scaler) == 1

    watch = LimitsWatch(c.backend, ["hold", "load"]).start()
    c.kill_head()
    t_kill = time.monotonic()
    c.busy_loop("load")

    # The worker's raylet gives up on the GCS and exits; its ContainerScaler goes with it.
    wait_for(lambda: c.worker_raylet() is None, 150, interval_s=0.2, what="the worker's raylet exits")
    t_raylet_gone = time.monotonic()
    wait_for(lambda: not c.actor_pids("ContainerScaler", c.worker_pids() | scaler), 30,
             what="the worker's ContainerScaler gone")

    # Recovery: `sc up` on the same state dir, then the worker host joins again.
    t_up = c.up()
    t_head_back = time.monotonic()
    t_join = c.join_worker()
    wait_for(lambda: _host_ready(c), 60, what="worker host registered again")
    t_host = time.monotonic()
    wait_for(lambda: watch.samples and watch.samples[-1][1]["load"].cpu_allowance_limit > 25, 60,
             interval_s=0.05, what="the loaded container's quota raised after the recovery")
    watch.stop()
    raised = watch.first_change("load", lambda limits: limits.cpu_allowance_limit > 25)

    # The containers' limits stayed as they were through the crash and the recovery: `hold`
    # to the end, `load` until its raise (nothing else ever wrote them).
    assert watch.seen("hold") == [before["hold"]]
    assert watch.seen("load", until=raised - 1e-6) == [before["load"]]
    assert raised > t_head_back
    lost = c.lost(acked)
    assert lost == []

    print(f"\ntiming: without Redis: kill -> the worker's raylet exits {t_raylet_gone - t_kill:.1f} s "
          f"(Ray's gcs_rpc_server_reconnect_timeout_s)")
    print(f"timing: recovery: sc up again {t_up:.1f} s, worker ray start --address again {t_join:.1f} s, "
          f"-> host registered {t_host - t_head_back:.1f} s after sc up returned, -> CPU loop's quota raised "
          f"{raised - t_head_back:.1f} s after sc up returned; kill -> scaling resumed {raised - t_kill:.1f} s")
    print(f"timing: limits through crash and recovery: hold {len(watch.seen('hold'))} distinct value(s) in "
          f"{len(watch.samples)} samples; acknowledged changes lost {len(lost)} of {N_CHANGES}")
