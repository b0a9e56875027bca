"""`GET /profile` and `PUT /profile/{name}` over real HTTP, against the session's control plane."""
from __future__ import annotations

import pytest
import ray

from tests.api.test_routes import refused  # noqa: F401  (fixture)

pytestmark = pytest.mark.ray


def test_the_shipped_profile_is_adaptive(http):
    body = http.get("/profile").json()
    assert body["profile"] == "adaptive"
    assert body["profiles"]["adaptive"]["cpu"] == {"boundary": 4, "boundary_type": "adaptive"}
    assert body["profiles"]["original"]["cpu"] == {"boundary": 10, "boundary_type": "percentage_of_max"}


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


def test_an_unknown_profile_is_400_and_changes_nothing(http, refused):
    refused(http.put("/profile/fastest"), 400, "unknown profile")


def test_an_unknown_timing_is_422_and_changes_nothing(http, refused):
    r = http.put("/profile/original", json={"timing": "faster"})
    assert r.status_code == 422, r.text
    refused(r, 422, "")
