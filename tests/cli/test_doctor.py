"""`sc doctor`, `sc status` and `sc service set` on the live stack: GET /health end to end (issues 14, 18).

Real Ray, the real API on Serve, real cgroups: a healthy stack has nothing wrong; a
Guardian setting under which a rule can never fire is warned about where it is made and
reported by `sc doctor`; a guarded container whose cgroup is removed from outside shows
as missing (with the time) and is released after the grace period, in the decision log.
"""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cli
from cluster.deploy import wait_for

pytestmark = pytest.mark.ray
runner = CliRunner()


@pytest.fixture
def sc(api):
    def run(*args: str):
        return runner.invoke(cli.app, ["--url", api.url, "--token", api.token, *args], catch_exceptions=False,
                             env={"SC_API_TOKEN": "", "COLUMNS": "200"})
    return run


def test_doctor_on_a_healthy_stack_finds_nothing_wrong(sc, stack):
    result = sc("doctor")
    assert result.exit_code == 0, result.output
    assert "no problem found" in result.stdout


def test_a_window_under_which_a_rule_can_never_fire_is_warned_about_and_reported(sc, stack, http):
    before = http.get("/service/guardian").json()["config"]
    try:
        result = sc("service", "set", "guardian", "WINDOW_TIMELAPSE", "1")
        assert result.exit_code == 0, result.output
        # The value is honoured, and the command says which rule it leaves unable to fire and what to set.
        assert "WINDOW_TIMELAPSE = 1" in result.stdout
        assert "warning: rule CpuRescaleDown can never fire: it needs 6 down cpu events" in result.stderr
        assert "EVENT_TIMEOUT 6" in result.stderr
        doctor = sc("doctor")
        assert doctor.exit_code == 3
        assert any(line.startswith("rule CpuRescaleDown can never fire") for line in doctor.stdout.splitlines())
        status = sc("status")
        assert status.exit_code == 0 and "health: " in status.stdout and "CpuRescaleDown" in status.stdout
    finally:
        http.put("/service/guardian", json={k: before[k] for k in ("WINDOW_TIMELAPSE", "EVENT_TIMEOUT")})
    assert sc("doctor").exit_code == 0


@pytest.mark.cgroup
def test_a_container_whose_cgroup_vanished_is_missing_then_released(sc, stack, http, containers):
    before = http.get("/service/structures_snapshoter").json()["config"]
    http.put("/service/structures_snapshoter", json={"POLLING_FREQUENCY": 0.5, "MISSING_GRACE_PERIOD": 4})
    try:
        name = containers.create("gone")
        r = sc("container", "subscribe", name, "--host", stack.host, "--cpu", "25,100,200", "--mem", "64,256,512",
               "--guard")
        assert r.exit_code == 0, r.output
        containers.busy_loop(name)

        def cpu_row():
            return next(r for r in http.get("/status").json()["containers"]
                        if r["container"] == name and r["resource"] == "cpu")

        wait_for(lambda: (cpu_row()["usage"] or 0) > 50, 30, what=f"{name}'s loop measured")

        # From outside: its processes killed and its cgroup removed.
        stack.backend.remove(name)

        row = wait_for(lambda: (r := cpu_row())["missing_since"] and r, 30, what=f"{name} seen missing")
        assert row["usage"] is None
        # What it holds now (no window of it is evaluated any more, so nothing scales it).
        host = http.get(f"/structure/{stack.host}").json()["resources"]
        current = {res: http.get(f"/structure/{name}/resources/{res}/current").json() for res in ("cpu", "mem")}
        status = sc("status")
        assert "gone " in status.stdout and f"container {name} on host {stack.host}: cgroup gone since" in status.stdout
        assert sc("doctor").exit_code == 3

        # After MISSING_GRACE_PERIOD: desubscribed, its cores and memory back on its host.
        wait_for(lambda: http.get(f"/structure/{name}").status_code == 404, 30, what=f"{name} released")
        after = http.get(f"/structure/{stack.host}").json()["resources"]
        assert after["mem"]["free"] == host["mem"]["free"] + current["mem"]
        assert after["cpu"]["free"] == host["cpu"]["free"] + current["cpu"]
        outcomes = [e["outcome"] for e in http.get("/requests", params={"structure": name, "limit": 1000}).json()]
        assert "missing" in outcomes and outcomes[-1] == "released"
        explain = sc("events", "--explain", name)
        assert f"{name}: released: cgroup gone since" in explain.stdout
    finally:
        http.put("/service/structures_snapshoter",
                 json={k: before.get(k, v) for k, v in (("POLLING_FREQUENCY", 5.0), ("MISSING_GRACE_PERIOD", 60.0))})


def test_a_host_no_live_node_carries_is_reported_by_doctor(sc, stack, http):
    import uuid

    import ray

    # A host structure as an earlier cluster left it: marked reachable, no node carries its label.
    name = f"old{uuid.uuid4().hex[:6]}"
    ray.get(stack.statedb.put.remote("structures", {
        "name": name, "subtype": "host", "reachable": True,
        "resources": {"cpu": {"max": 200, "free": 200}, "mem": {"max": 2048, "free": 2048}}}))
    try:
        [problem] = [p for p in http.get("/health").json()["problems"] if p["subject"] == name]
        assert problem["kind"] == "host" and f"sc_host={name}" in problem["message"]
        doctor = sc("doctor")
        assert doctor.exit_code == 3 and f"host {name} has no live node" in doctor.stdout
    finally:
        ray.get(stack.statedb.delete.remote("structures", name))
    assert sc("doctor").exit_code == 0
