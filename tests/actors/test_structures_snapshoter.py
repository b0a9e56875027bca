"""The StructuresSnapshoter finds limits changed behind our back and restores them."""
from __future__ import annotations

import ray

from cluster.deploy import wait_for
from sc_actors.model import LimitChange


def test_a_limit_written_by_hand_is_reported_as_drift_and_restored(stack, containers):
    name = containers.create("drift")
    containers.subscribe(name, cpu=(25, 50, 200))
    stack.backend.write_limits(name, LimitChange(cpu_allowance_limit=80))
    ray.get(stack.snapshoter.tick.remote())  # the periodic epoch may have been first
    wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit == 50, 10, what="the limit restored")
    drift = ray.get(stack.snapshoter.ping.remote())["drift"]
    assert {"structure": name, "host": stack.host, "resource": "cpu", "recorded": 50, "real": 80} in drift
    assert ray.get(stack.statedb.get.remote("structures", name))["resources"]["cpu"]["current"] == 50
    assert all(d["structure"] != name for d in ray.get(stack.snapshoter.tick.remote()))
