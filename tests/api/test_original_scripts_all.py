"""Every script of the original's `scripts/orchestrator/` outside energy and the ReBalancer,
run in one go against the API as a user would (issue 14, acceptance).

Each step is the script's one curl line (reference §6 routes, `${ORCHESTRATOR_REST_URL}`
pointed here, the bearer header the only addition), with the arguments a user gives.
`subscribe_host.sh` for a host its Ray node registered answers 409 (README: nothing left
to subscribe); after `desubscribe_host.sh` it answers 201. Services and rules are put back
as they were afterwards, since the session's other tests share them.
"""
from __future__ import annotations

import json

import pytest
import ray

from tests.api.test_original_scripts import curl

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]

J = ("-H", "Content-Type: application/json")


def _value(v: str) -> str:
    # As the scripts build it: '{"value":"'$1'"}'
    return '{"value":"' + v + '"}'


def _service_steps() -> list[tuple[str, int, list[str]]]:
    steps = []
    for script, service, key, value in [
        ("Guardian/activate.sh", "guardian", "ACTIVE", "true"),
        ("Guardian/deactivate.sh", "guardian", "ACTIVE", "false"),
        ("Guardian/set_window_delay.sh 0", "guardian", "WINDOW_DELAY", "0"),
        ("Guardian/change_window_delay.sh 0", "guardian", "WINDOW_DELAY", "0"),
        ("Guardian/set_window_timelapse.sh 1", "guardian", "WINDOW_TIMELAPSE", "1"),
        ("Guardian/change_window_timelapse.sh 0.4", "guardian", "WINDOW_TIMELAPSE", "0.4"),
        ("Guardian/set_event_timeout.sh 4", "guardian", "EVENT_TIMEOUT", "4"),
        ("Guardian/set_to_application.sh", "guardian", "STRUCTURE_GUARDED", "application"),
        ("Guardian/set_to_container.sh", "guardian", "STRUCTURE_GUARDED", "container"),
        ("Scaler/activate.sh", "scaler", "ACTIVE", "true"),
        ("Scaler/activate_scaler.sh", "scaler", "ACTIVE", "true"),
        ("Scaler/deactivate_core_map_check.sh", "scaler", "CHECK_CORE_MAP", "false"),
        ("Scaler/activate_core_map_check.sh", "scaler", "CHECK_CORE_MAP", "true"),
        ("Scaler/set_polling_frequency.sh 5", "scaler", "POLLING_FREQUENCY", "5"),
        ("Scaler/set_request_timeout.sh 10", "scaler", "REQUEST_TIMEOUT", "10"),
        ("StructuresSnapshoter/deactivate.sh", "structures_snapshoter", "ACTIVE", "false"),
        ("StructuresSnapshoter/activate.sh", "structures_snapshoter", "ACTIVE", "true"),
        ("StructuresSnapshoter/set_polling_frequency.sh 5", "structures_snapshoter", "POLLING_FREQUENCY", "5"),
        ("DatabaseSnapshoter/deactivate.sh", "database_snapshoter", "ACTIVE", "false"),
        ("DatabaseSnapshoter/activate.sh", "database_snapshoter", "ACTIVE", "true"),
        ("DatabaseSnapshoter/set_polling_frequency.sh 5", "database_snapshoter", "POLLING_FREQUENCY", "5"),
        ("Refeeder/deactivate.sh", "refeeder", "ACTIVE", "false"),
        ("Refeeder/activate.sh", "refeeder", "ACTIVE", "true"),
        ("Refeeder/set_window_delay.sh 0", "refeeder", "WINDOW_DELAY", "0"),
        ("Refeeder/set_window_timelapse.sh 1", "refeeder", "WINDOW_TIMELAPSE", "1"),
    ]:
        steps.append((script, 200, ["-X", "PUT", *J, f"/service/{service}/{key}", "-d", _value(value)]))
    steps.append(("Guardian/activate.sh (again)", 200,
                  ["-X", "PUT", *J, "/service/guardian/ACTIVE", "-d", _value("true")]))
    steps.append(("Guardian/set_guardable_resources.sh cpu mem", 200,
                  ["-X", "PUT", *J, "/service/guardian/GUARDABLE_RESOURCES", "--data", '{"value": ["cpu", "mem"]}']))
    return steps


def _rule_steps() -> list[tuple[str, int, list[str]]]:
    return [
        ("Rules/deactivate_rule.sh CpuRescaleUp", 200, ["-X", "PUT", *J, "/rule/CpuRescaleUp/deactivate"]),
        ("Rules/activate_rule.sh CpuRescaleUp", 200, ["-X", "PUT", *J, "/rule/CpuRescaleUp/activate"]),
        ("Rules/change_amount.sh CpuRescaleUp 100", 200,
         ["-X", "PUT", *J, "/rule/CpuRescaleUp/amount", "-d", _value("100")]),
        ("Rules/change_policy.sh CpuRescaleUp proportional", 200,
         ["-X", "PUT", *J, "/rule/CpuRescaleUp/policy", "-d", _value("proportional")]),
        ("Rules/change_events_amount.sh CpuRescaleUp up 3", 200,
         ["-X", "PUT", *J, "/rule/CpuRescaleUp/events_required", "-d", '{"event_type": "up", "value":"3"}']),
        ("Rules/change_down_events_amount.sh CpuRescaleDown 6", 200,
         ["-X", "PUT", *J, "/rule/CpuRescaleDown/events_required", "-d", '{"event_type": "down", "value":"6"}']),
    ]


def _structure_steps(c: str, host: str) -> list[tuple[str, int, list[str]]]:
    host_json = json.dumps({"name": host, "host": host, "host_rescaler_ip": host, "host_rescaler_port": "8000",
                            "resources": {"cpu": {"max": 400, "free": 400}, "mem": {"max": 8192, "free": 8192}}},
                           separators=(",", ":"))
    cont_json = json.dumps({
        "container": {"name": c, "resources": {"cpu": {"max": 200, "current": 100, "min": 20, "guard": False},
                                               "mem": {"max": 1024, "current": 256, "min": 128, "guard": False}},
                      "host_rescaler_ip": host, "host_rescaler_port": "8000", "host": host, "guard": False,
                      "subtype": "container"},
        "limits": {"resources": {"cpu": {"boundary": 20, "boundary_type": "percentage_of_max"},
                                 "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}}}},
        separators=(",", ":"))
    app_json = json.dumps({
        "app": {"name": "scriptapp", "resources": {"cpu": {"max": 400, "min": 20, "guard": False},
                                                  "mem": {"max": 2048, "min": 128, "guard": False}},
                "guard": False, "subtype": "application", "install_script": "", "install_files": "",
                "runtime_files": "", "output_dir": "", "start_script": "", "stop_script": ""},
        "limits": {"resources": {"cpu": {"boundary": 5, "boundary_type": "percentage_of_max"}}}},
        separators=(",", ":"))
    return [
        ("Structures/subscribe_host.sh (host its node registered)", 409,
         ["-X", "PUT", *J, f"/structure/host/{host}", "-d", host_json]),
        ("Structures/desubscribe_host.sh", 200, ["-X", "DELETE", *J, f"/structure/host/{host}"]),
        ("Structures/subscribe_host.sh", 201, ["-X", "PUT", *J, f"/structure/host/{host}", "-d", host_json]),
        ("Structures/subscribe_container.sh", 201, ["-X", "PUT", *J, f"/structure/container/{c}", "-d", cont_json]),
        ("Structures/set_many_resource_to_guarded.sh", 200,
         ["-X", "PUT", *J, f"/structure/{c}/resources/guard", "--data", '{"resources": ["cpu", "mem"]}']),
        ("Structures/set_many_resource_to_unguarded.sh", 200,
         ["-X", "PUT", *J, f"/structure/{c}/resources/unguard", "--data", '{"resources": ["cpu", "mem"]}']),
        ("Structures/set_resource_to_guarded.sh", 200, ["-X", "PUT", *J, f"/structure/{c}/resources/cpu/guard"]),
        ("Structures/set_resource_to_unguarded.sh", 200, ["-X", "PUT", *J, f"/structure/{c}/resources/cpu/unguard"]),
        ("Structures/set_to_guarded.sh", 200, ["-X", "PUT", *J, f"/structure/{c}/guard"]),
        ("Structures/set_to_unguarded.sh", 200, ["-X", "PUT", *J, f"/structure/{c}/unguard"]),
        ("Structures/set_structure_resource_max.sh", 200,
         ["-X", "PUT", *J, f"/structure/{c}/resources/cpu/max", "-d", _value("300")]),
        ("Structures/set_structure_resource_min.sh", 200,
         ["-X", "PUT", *J, f"/structure/{c}/resources/cpu/min", "-d", _value("20")]),
        ("Structures/set_structure_resource_parameter.sh weight", 200,
         ["-X", "PUT", *J, f"/structure/{c}/resources/cpu/weight", "-d", _value("2")]),
        ("Limits/set_new_boundary.sh", 200, ["-X", "PUT", *J, f"/structure/{c}/limits/cpu/boundary", "-d", _value("15")]),
        ("Limits/set_new_boundary_type.sh", 200,
         ["-X", "PUT", *J, f"/structure/{c}/limits/cpu/boundary_type", "-d", _value("percentage_of_current")]),
        ("Structures/subscribe_app.sh", 201, ["-X", "PUT", *J, "/structure/apps/scriptapp", "-d", app_json]),
        ("Structures/subscribe_container_to_app.sh", 200, ["-X", "PUT", *J, f"/structure/container/{c}/scriptapp"]),
        ("Structures/desubscribe_container_from_app.sh", 200,
         ["-X", "DELETE", *J, f"/structure/container/{c}/scriptapp"]),
        ("Structures/desubscribe_app.sh", 200, ["-X", "DELETE", *J, "/structure/apps/scriptapp"]),
        ("Structures/desubscribe_container.sh", 200, ["-X", "DELETE", *J, f"/structure/container/{c}"]),
    ]


def test_the_original_scripts_answer_2xx_but_subscribe_host_on_a_registered_host(api, stack, containers):
    host = stack.worker_hosts[1]
    c = containers.create("scripts", host=host)
    db = stack.statedb
    services = ray.get(db.list.remote("services"))
    rules = ray.get(db.list.remote("rules"))
    host_doc = ray.get(db.get.remote("structures", host))
    steps = _service_steps() + _rule_steps() + _structure_steps(c, host)
    results = []
    try:
        for script, want, args in steps:
            path = next(a for a in args if a.startswith("/"))
            argv = [a if a != path else f"{api.url}{path}" for a in args]
            code, body = curl(api, *argv)
            results.append((script, want, code, body[:200]))
    finally:
        for doc in services:
            ray.get(db.put.remote("services", {k: v for k, v in doc.items()
                                               if k not in ("heartbeat", "heartbeat_human")}))
        for doc in rules:
            ray.get(db.put.remote("rules", doc))
        if ray.get(db.exists.remote("structures", c)):
            curl(api, "-X", "DELETE", f"{api.url}/structure/container/{c}")
        ray.get(db.put.remote("structures", {k: v for k, v in host_doc.items() if k != "usage"}))
    wrong = [r for r in results if r[1] != r[2]]
    assert not wrong, wrong
    assert len({s.split()[0] for s, *_ in results}) == 51
