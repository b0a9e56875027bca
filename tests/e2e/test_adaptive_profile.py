"""The adaptive profile (the shipped default) on real cgroups and the real loop."""
from __future__ import annotations

import ray
import pytest

from cluster.deploy import wait_for

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]


def _windows(stack) -> int:
    return ray.get(stack.node.ping.remote())["windows_pushed"]


def test_a_throttled_container_is_raised_within_two_windows_sized_by_its_throttling(stack, containers):
    name = containers.create("thr")
    containers.subscribe(name, cpu=(10, 30, 200))  # no limits given: the profile's
    limits = ray.get(stack.statedb.get.remote("limits", name))["resources"]["cpu"]
    assert (limits["boundary"], limits["boundary_type"]) == (4, "adaptive")
    containers.guard(name, "cpu")
    proc = containers.busy_loop(name)  # wants a whole core (100 shares) under a quota of 30
    # Counted from the first window the node saw it throttled (on a machine busy with other
    # work the loop may not even reach its quota at first: then nothing holds it back).
    throttled_at = wait_for(lambda: ray.get(stack.statedb.recent_usage.remote(name)).get("cpu_throttled", 0) > 0
                            and _windows(stack), 30, what="a window in which the quota held the loop back")
    raised = wait_for(lambda: (q := stack.backend.read_limits(name).cpu_allowance_limit) > 30 and q, 15,
                      what="the quota to be raised")
    windows = _windows(stack) - throttled_at
    # That window's push is evaluated and applied before the next window ends; one push
    # may lag a window behind: at most two more windows.
    assert windows <= 2, f"raised {windows} windows after the first throttled one"
    req = wait_for(lambda: [r for r in ray.get(stack.statedb.recent_requests.remote(name))
                            if r.get("rule") == "CpuFitUp"], 5, what="the request in the decision log")[0]
    # Sized by throttling, not a fixed step: the demand is read through cpu.stat.
    assert req["amount_requested"] > 0 and raised > 30
    proc.kill()
    proc.wait()
    wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit < 20, 20,
             what="the quota to fit the idle container (min 10, floor margin 2)")


def test_a_subscription_naming_percentage_of_max_keeps_the_original_rules(stack, containers):
    name = containers.create("orig")
    ray.get(stack.scaler.subscribe_container.remote(
        {"name": name, "host": stack.host, "guard": True,
         "resources": {"cpu": {"min": 10, "current": 40, "max": 200, "guard": True},
                       "mem": {"min": 64, "current": 256, "max": 512, "guard": False}}},
        {"resources": {"cpu": {"boundary_type": "percentage_of_max"}}}))
    limits = ray.get(stack.statedb.get.remote("limits", name))["resources"]
    assert (limits["cpu"]["boundary"], limits["cpu"]["boundary_type"]) == (10, "percentage_of_max")
    assert limits["mem"]["boundary_type"] == "adaptive"  # not named: the profile's
    proc = containers.busy_loop(name)
    wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit > 40, 15, what="the quota to be raised")
    reqs = ray.get(stack.statedb.recent_requests.remote(name))
    assert {r.get("rule") for r in reqs} == {"CpuRescaleUp"}, reqs  # never CpuFitUp
    assert any(r["amount"] == 75 for r in reqs)  # the first: 40 + 75 = 115, after two events
    proc.kill()
    proc.wait()
