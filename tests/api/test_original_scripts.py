"""The original's shell scripts, as curl sends them, work unchanged against our API.

Each command is the one of `scripts/orchestrator/…` (reference §6, §8) with only
`${ORCHESTRATOR_REST_URL}` changed, and the bearer header the API needs when it has a
token (curl's `-H`, the only addition).
"""
from __future__ import annotations

import json
import shutil
import subprocess

import pytest
import ray

from tests.api.test_routes import db_get

pytestmark = pytest.mark.skipif(shutil.which("curl") is None, reason="curl is not installed")


def curl(api, *args: str) -> tuple[int, str]:
    out = subprocess.run(
        ["curl", "-s", "-o", "/dev/stderr", "-w", "%{http_code}",
         "-H", f"Authorization: Bearer {api.token}", *args],
        capture_output=True, text=True, timeout=60,
    )
    return int(out.stdout), out.stderr


def test_subscribe_host_sh(api, stack):
    # scripts/orchestrator/Structures/subscribe_host.sh '<host json>'
    host = stack.worker_hosts[0]
    before = db_get(stack, "structures", host)
    cores = int(before["resources"]["cpu"]["max"])
    mem = int(before["resources"]["mem"]["max"])
    doc = json.dumps({"name": host, "host": host, "host_rescaler_ip": host, "host_rescaler_port": "8000",
                      "resources": {"cpu": {"max": cores, "free": cores}, "mem": {"max": mem, "free": mem}}},
                     separators=(",", ":"))
    try:
        ray.get(stack.statedb.delete.remote("structures", host))
        code, body = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                          f"{api.url}/structure/host/{host}", "-d", doc)
        assert code == 201, body
        assert db_get(stack, "structures", host)["resources"]["cpu"]["core_usage_mapping"] == \
            before["resources"]["cpu"]["core_usage_mapping"]
    finally:
        ray.get(stack.statedb.put.remote("structures", before))


def test_subscribe_container_guard_and_activate_scripts(api, stack, containers):
    name = containers.create("script")
    host = stack.host
    # scripts/orchestrator/Structures/subscribe_container.sh NAME HOST (HEAD body, boundaries in %)
    body = ('{\n  "container":\n  {\n    "name": "' + name + '",\n    "resources": {\n'
            '      "cpu": {"max": 200,  "current": 100,  "min": 20,   "guard": false},\n'
            '      "mem": {"max": 1024, "current": 256, "min": 128,  "guard": false}\n    },\n'
            '    "host_rescaler_ip": "' + host + '",\n    "host_rescaler_port": "8000",\n'
            '    "host": "' + host + '",\n    "guard": false,\n    "subtype": "container"\n  },\n'
            '  "limits":\n  {\n    "resources": {\n      "cpu": {"boundary": 20, "boundary_type": "percentage_of_max"},\n'
            '      "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}\n    }\n  }\n}')
    code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                     f"{api.url}/structure/container/{name}", "-d", body)
    assert code == 201, out
    assert stack.backend.read_limits(name).cpu_allowance_limit == 100

    # Structures/set_many_resource_to_guarded.sh NAME cpu mem
    code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                     f"{api.url}/structure/{name}/resources/guard", "--data", '{"resources": ["cpu", "mem"]}')
    assert code == 200, out
    # Structures/set_to_guarded.sh NAME (a PUT with a JSON content type and no body)
    code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json", f"{api.url}/structure/{name}/guard")
    assert code == 200, out
    doc = db_get(stack, "structures", name)
    assert doc["guard"] and doc["resources"]["cpu"]["guard"] and doc["resources"]["mem"]["guard"]

    # Guardian/activate.sh and Scaler/activate.sh
    for service in ("guardian", "scaler"):
        code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json", "-s",
                         f"{api.url}/service/{service}/ACTIVE", "-d", '{"value":"true"}')
        assert code == 200, out
        assert db_get(stack, "services", service)["config"]["ACTIVE"] is True

    # Guardian/set_window_timelapse.sh 1 ; Rules/change_amount.sh CpuRescaleUp 75
    code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                     f"{api.url}/service/guardian/WINDOW_TIMELAPSE", "-d", '{"value":"0.5"}')
    assert code == 200, out
    code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                     f"{api.url}/rule/CpuRescaleUp/amount", "-d", '{"value":"75"}')
    assert code == 200, out

    # Structures/desubscribe_container.sh NAME
    code, out = curl(api, "-X", "DELETE", "-H", "Content-Type: application/json",
                     f"{api.url}/structure/container/{name}")
    assert code == 200, out
    assert not ray.get(stack.statedb.exists.remote("structures", name))


@pytest.mark.parametrize(
    "script, key, value, stored",
    [
        ("Rebalancer/activate.sh", "ACTIVE", "true", True),
        ("Rebalancer/deactivate.sh", "ACTIVE", "false", False),
        ("Rebalancer/activate_user_balancing.sh", "REBALANCE_USERS", "true", True),
        ("Rebalancer/deactivate_user_balancing.sh", "REBALANCE_USERS", "false", False),
        ("Rebalancer/set_energy_diff_percentage.sh 0.40", "ENERGY_DIFF_PERCENTAGE", "0.40", 0.4),
        ("Rebalancer/set_energy_stolen_percentage.sh 0.40", "ENERGY_STOLEN_PERCENTAGE", "0.40", 0.4),
        ("Rebalancer/set_window_delay.sh 10", "WINDOW_DELAY", "10", 10),
        ("Rebalancer/set_window_timelapse.sh 5", "WINDOW_TIMELAPSE", "5", 5),
    ],
)
def test_the_rebalancer_scripts(api, stack, script, key, value, stored):
    # scripts/orchestrator/<script>: curl -X PUT .../service/rebalancer/KEY -d '{"value":"'$1'"}'
    before = db_get(stack, "services", "rebalancer")["config"]
    try:
        code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                         f"{api.url}/service/rebalancer/{key}", "-d", '{"value":"' + value + '"}')
        assert code == 200, out
        assert db_get(stack, "services", "rebalancer")["config"][key] == stored
    finally:
        ray.get(stack.statedb.patch.remote("services", "rebalancer", {f"config.{key}": before[key]}))


def test_a_rebalancer_value_out_of_range_is_refused_and_nothing_changes(api, stack):
    before = db_get(stack, "services", "rebalancer")["config"]
    code, out = curl(api, "-X", "PUT", "-H", "Content-Type: application/json",
                     f"{api.url}/service/rebalancer/BALANCING_POLICY", "-d", '{"value":"magic"}')
    assert code == 400 and "BALANCING_POLICY" in out, out
    assert db_get(stack, "services", "rebalancer")["config"] == before
