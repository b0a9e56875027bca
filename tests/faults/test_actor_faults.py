"""SIGKILL each actor in turn during a live run: it comes back and nothing is lost.

For every actor type: an acknowledged configuration change made before the kill
is still there after it, scaling resumes (a new CPU burst gets its quota raised),
no request is applied twice, and no limit ever leaves [min, max].
"""
from __future__ import annotations

import collections
import os
import signal
import threading
import time

import pytest
import ray

from cluster.deploy import wait_for
from sc_actors.settings import (
    GUARDIAN_NAME,
    NAMESPACE,
    SCALER_NAME,
    STATEDB_NAME,
    STRUCTURES_SNAPSHOTER_NAME,
    container_scaler_name,
)

RECOVERY: dict[str, float] = {}


def _pid(actor) -> int:
    return ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30)


@pytest.fixture(scope="module")
def guarded(stack):
    from tests.containers import Containers

    c = Containers(stack)
    name = c.create("fault")
    c.subscribe(name, cpu=(25, 50, 200))
    c.guard(name, "cpu")
    seen: list[float] = []
    stop = threading.Event()

    def watch():
        while not stop.is_set():
            try:
                seen.append(stack.backend.read_limits(name).cpu_allowance_limit)
            except KeyError:
                return
            time.sleep(0.05)

    t = threading.Thread(target=watch, daemon=True)
    t.start()
    try:
        yield c, name, seen
    finally:
        stop.set()
        t.join()
        c.cleanup()
        if RECOVERY:
            print("\nrecovery after SIGKILL (kill → quota raised by a new burst):")
            for k, v in RECOVERY.items():
                print(f"  {k:32s} {v:5.2f} s")


@pytest.mark.parametrize(
    "actor_name",
    [STATEDB_NAME, GUARDIAN_NAME, SCALER_NAME, STRUCTURES_SNAPSHOTER_NAME, "container-scaler"],
)
def test_a_killed_actor_comes_back_and_nothing_is_lost(stack, guarded, actor_name):
    c, name, seen = guarded
    if actor_name == "container-scaler":
        actor_name = container_scaler_name(stack.host)
    actor = ray.get_actor(actor_name, namespace=NAMESPACE)
    # Start from the floor, with no burst running.
    wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit < 100, 30, what="an idle container")
    boundary = 10 + len(RECOVERY)  # an acknowledged edit, different for each actor
    ray.get(stack.statedb.patch.remote("limits", name, {"resources.cpu.boundary": boundary}))
    base = stack.backend.read_limits(name).cpu_allowance_limit

    pid = _pid(actor)
    t_kill = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: _pid(actor) != pid, 30, what=f"{actor_name} to be restarted")
    proc = c.busy_loop(name)
    try:
        wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit > base, 30,
                 what=f"a scale-up after killing {actor_name}")
        RECOVERY[actor_name] = time.monotonic() - t_kill
    finally:
        proc.kill()
        proc.wait()

    assert ray.get(stack.statedb.get.remote("limits", name))["resources"]["cpu"]["boundary"] == boundary
    assert ray.get(stack.statedb.exists.remote("structures", name))
    assert seen and all(25 <= q <= 200 for q in seen), sorted(set(seen))
    applied = [r for r in ray.get(stack.statedb.recent_requests.remote(name, 1000)) if r.get("outcome") == "applied"]
    keys = collections.Counter((r["action"], r["timestamp"]) for r in applied)
    assert all(n == 1 for n in keys.values()), keys
    # Scaling resumed within 5 s of the actor's return, plus one ordinary reaction.
    assert RECOVERY[actor_name] < 12, RECOVERY
