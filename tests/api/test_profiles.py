"""`PUT /profile/{name}` on the session's control plane: the real Scaler's subscriptions follow it.

The profile routes and their refusals are tested in this process (test_routes_fast.py).
"""
from __future__ import annotations

import pytest
import ray

pytestmark = pytest.mark.ray


def test_applying_the_original_profile_rewrites_limits_and_what_new_subscriptions_get(http, stack, containers):
    before = containers.create("prof")
    containers.subscribe(before)
    assert ray.get(stack.statedb.get.remote("limits", before))["resources"]["cpu"]["boundary_type"] == "adaptive"
    try:
        r = http.put("/profile/original")
        assert r.status_code == 200, r.text
        assert r.json()["limits_changed"] >= 1 and "scaler" in r.json()["services_changed"]
        assert http.get("/profile").json()["profile"] == "original"
        cpu = ray.get(stack.statedb.get.remote("limits", before))["resources"]["cpu"]
        assert (cpu["boundary"], cpu["boundary_type"]) == (10, "percentage_of_max")
        after = containers.create("prof")
        containers.subscribe(after)
        mem = ray.get(stack.statedb.get.remote("limits", after))["resources"]["mem"]
        assert (mem["boundary"], mem["boundary_type"]) == (10, "percentage_of_max")
    finally:
        assert http.put("/profile/adaptive").status_code == 200
    cpu = ray.get(stack.statedb.get.remote("limits", before))["resources"]["cpu"]
    assert (cpu["boundary"], cpu["boundary_type"]) == (4, "adaptive")