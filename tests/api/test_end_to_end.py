"""Through the API only: subscribe a real cgroup container, guard it, and see the Scaler move its quota."""
from __future__ import annotations

from cluster.deploy import wait_for
from tests.api.test_routes import body_of


def test_a_container_subscribed_and_guarded_through_the_api_gets_its_quota_raised(http, stack, containers):
    name = containers.create("e2eapi")
    r = http.put(f"/structure/container/{name}", json=body_of(name, stack.host, cpu=(25, 50, 200)))
    assert r.status_code == 201, r.text
    assert stack.backend.read_limits(name).cpu_allowance_limit == 50
    assert http.put(f"/structure/{name}/resources/cpu/guard").status_code == 200
    assert http.put(f"/structure/{name}/guard").status_code == 200
    containers.busy_loop(name)
    raised = wait_for(lambda: (q := stack.backend.read_limits(name).cpu_allowance_limit) > 50 and q, 30,
                      what="the Scaler to raise the quota")
    assert 50 < raised <= 200
    # The API reports what the cgroup file holds, and the decision that led to it.
    wait_for(lambda: http.get(f"/structure/{name}/resources/cpu/current").json()
             == stack.backend.read_limits(name).cpu_allowance_limit, 10, what="current == cgroup quota")
    applied = [q for q in http.get("/requests", params={"structure": name}).json() if q.get("outcome") in ("applied", "trimmed")]
    assert applied and applied[0]["action"] == "CpuRescaleUp"
