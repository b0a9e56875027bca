"""Every route of reference §6 over real HTTP, against the session's Ray and control plane.

Each route: its success, then each class of error (404, 400/422, 409, 401) with
the StateDB compared before and after: a refused request changes nothing.
"""
from __future__ import annotations

import pytest
import ray

from tests.api.live import snapshot, without_usage
from tests.containers import container_doc


def body_of(name, host, cpu=(25, 50, 200), mem=(64, 128, 512), boundary=10):
    return {
        "container": {**container_doc(name, host, cpu=cpu, mem=mem), "subtype": "container",
                      "host_rescaler_ip": host, "host_rescaler_port": "8000"},
        "limits": {"resources": {"cpu": {"boundary": boundary, "boundary_type": "percentage_of_max"},
                                 "mem": {"boundary": boundary, "boundary_type": "percentage_of_max"}}},
    }


def db_get(stack, collection, name):
    return ray.get(stack.statedb.get.remote(collection, name))


def db_exists(stack, collection, name):
    return ray.get(stack.statedb.exists.remote(collection, name))


@pytest.fixture
def refused(stack):
    """Call `refused(response, status, words)`: checks the status, the message and that nothing changed."""
    before = without_usage(snapshot(stack))

    def check(response, status, words=""):
        assert response.status_code == status, response.text
        assert words.lower() in response.json()["message"].lower(), response.json()
        assert without_usage(snapshot(stack)) == before
    return check


@pytest.fixture
def sub(stack, containers, http):
    """A real cgroup container subscribed through the API."""
    name = containers.create("api")
    r = http.put(f"/structure/container/{name}", json=body_of(name, stack.host))
    assert r.status_code == 201, r.text
    return name


@pytest.fixture
def app(http, stack):
    """An application subscribed through the API, removed afterwards."""
    import itertools
    name = f"app{next(_app_ids)}"
    body = {"app": {"name": name, "guard": False, "subtype": "application",
                    "resources": {"cpu": {"max": 400, "min": 20, "guard": False},
                                  "mem": {"max": 2048, "min": 128, "guard": False}},
                    "install_script": "", "install_files": "", "runtime_files": "", "output_dir": "",
                    "start_script": "", "stop_script": ""},
            "limits": {"resources": {"cpu": {"boundary": 5, "boundary_type": "percentage_of_max"}}}}
    r = http.put(f"/structure/apps/{name}", json=body)
    assert r.status_code == 201, r.text
    yield name
    if db_exists(stack, "structures", name):
        http.delete(f"/structure/apps/{name}")


_app_ids = iter(range(10**6))


# ---------------------------------------------------------------- heartbeat, auth


def test_heartbeat_answers_alive(http):
    r = http.get("/heartbeat")
    assert r.status_code == 200 and r.json() == {"status": "alive"}


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
                         ids=["no-header", "wrong-token", "not-bearer"])
def test_a_mutating_route_without_the_token_is_401_and_changes_nothing(api, stack, refused, headers):
    with api.client(auth=False) as c:
        r = c.put(f"/service/guardian/WINDOW_TIMELAPSE", json={"value": "7"}, headers=headers)
    refused(r, 401, "token")
    assert r.headers.get("www-authenticate") == "Bearer"


def test_reads_need_no_token(api):
    with api.client(auth=False) as c:
        assert c.get("/service/guardian").status_code == 200
        assert c.get("/structure/").status_code == 200


def test_the_openapi_schema_has_every_route_and_examples(http):
    spec = http.get("/openapi.json").json()
    assert "/structure/container/{name}" in spec["paths"]
    assert "/rule/{name}/events_required" in spec["paths"]
    sub_schema = spec["components"]["schemas"]["ContainerSubscription"]
    assert sub_schema["examples"][0]["container"]["name"] == "host0-cont0"
    assert http.get("/docs").status_code == 200


def test_an_unknown_route_is_404_with_a_message(http):
    r = http.get("/nothing/here")
    assert r.status_code == 404 and "message" in r.json()


# ---------------------------------------------------------------- services


def test_services_are_listed_with_and_without_the_trailing_slash(http):
    names = {s["name"] for s in http.get("/service/").json()}
    assert {"guardian", "scaler"} <= names
    assert {s["name"] for s in http.get("/service").json()} == names


def test_a_service_key_is_coerced_and_stored(http, stack):
    before = db_get(stack, "services", "guardian")["config"]["EVENT_TIMEOUT"]
    try:
        r = http.put("/service/guardian/EVENT_TIMEOUT", json={"value": "6.5"})
        assert r.status_code == 200, r.text
        assert db_get(stack, "services", "guardian")["config"]["EVENT_TIMEOUT"] == 6.5
        assert http.put("/service/scaler/DEBUG", json={"value": "true"}).status_code == 200
        assert db_get(stack, "services", "scaler")["config"]["DEBUG"] is True
    finally:
        http.put("/service/guardian/EVENT_TIMEOUT", json={"value": before})
        http.put("/service/scaler/DEBUG", json={"value": "false"})


def test_a_service_config_is_merged_as_given(http, stack):
    r = http.put("/service/scaler", json={"SOME_KEY_OF_A_SCRIPT": 3})
    assert r.status_code == 200, r.text
    assert db_get(stack, "services", "scaler")["config"]["SOME_KEY_OF_A_SCRIPT"] == 3
    assert db_get(stack, "services", "scaler")["config"]["REQUEST_TIMEOUT"] > 0


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        pytest.param("/service/nosuch/ACTIVE", {"value": "true"}, 404, "not found", id="unknown-service"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": "abc"}, 400, "bad content", id="not-a-number"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": "-1"}, 400, "greater than", id="out-of-range"),
        pytest.param("/service/guardian/STRUCTURE_GUARDED", {"value": "host"}, 400, "structure_guarded",
                     id="unknown-scope"),
        pytest.param("/service/guardian/ACTIVE", {"val": "true"}, 422, "value", id="no-value"),
        pytest.param("/service/guardian/A.B", {"value": "1"}, 400, "invalid config key", id="dotted-key"),
    ],
)
def test_bad_service_changes_are_refused(http, refused, path, body, status, words):
    refused(http.put(path, json=body), status, words)


def test_an_unknown_service_is_404(http):
    assert http.get("/service/nosuch").status_code == 404


# ---------------------------------------------------------------- rules


def test_rules_are_read(http):
    rules = {r["name"]: r for r in http.get("/rule/").json()}
    assert rules["CpuRescaleUp"]["amount"] == 75
    assert http.get("/rule/CpuRescaleUp").json() == rules["CpuRescaleUp"]
    assert http.get("/rule/nosuch").status_code == 404


def test_a_rule_is_deactivated_and_activated(http, stack):
    try:
        assert http.put("/rule/cpu_usage_low/activate").status_code == 200
        assert db_get(stack, "rules", "cpu_usage_low")["active"] is True
        assert http.put("/rule/cpu_usage_low/deactivate").status_code == 200
        assert db_get(stack, "rules", "cpu_usage_low")["active"] is False
    finally:
        http.put("/rule/cpu_usage_low/deactivate")


def test_amount_and_policy_of_a_request_rule_are_set(http, stack):
    try:
        assert http.put("/rule/MemRescaleUp/amount", json={"value": "300"}).status_code == 200
        assert db_get(stack, "rules", "MemRescaleUp")["amount"] == 300
        assert http.put("/rule/MemRescaleUp/policy", json={"value": "proportional"}).status_code == 200
        assert db_get(stack, "rules", "MemRescaleUp")["rescale_policy"] == "proportional"
    finally:
        http.put("/rule/MemRescaleUp/amount", json={"value": 256})
        http.put("/rule/MemRescaleUp/policy", json={"value": "amount"})


def test_events_required_edits_one_clause_and_keeps_events_to_remove_of_the_trigger(http, stack):
    original = db_get(stack, "rules", "MemRescaleUp")
    try:
        # The original's set_rules_config.sh: MemRescaleUp up 2, then down 6.
        assert http.put("/rule/MemRescaleUp/events_required", json={"value": "3", "event_type": "up"}).status_code == 200
        assert http.put("/rule/MemRescaleUp/events_required", json={"value": "6", "event_type": "down"}).status_code == 200
        rule = db_get(stack, "rules", "MemRescaleUp")
        assert rule["rule"]["and"] == [{">=": [{"var": "events.scale.up"}, 3]},
                                       {"<=": [{"var": "events.scale.down"}, 6]}]
        assert rule["events_to_remove"] == 3
    finally:
        ray.get(stack.statedb.put.remote("rules", original))


def test_a_new_rule_is_created_with_201_and_replaced_with_200(http, stack):
    rule = {"name": "test_api_rule", "resource": "cpu", "generates": "events", "active": False,
            "rule": {">": [{"var": "cpu.structure.cpu.usage"}, 10]}, "action": {"events": {"scale": {"up": 1}}}}
    try:
        assert http.put("/rule/test_api_rule", json=rule).status_code == 201
        assert http.put("/rule/test_api_rule", json=rule).status_code == 200
        assert db_get(stack, "rules", "test_api_rule")["rule"] == rule["rule"]
    finally:
        ray.get(stack.statedb.delete.remote("rules", "test_api_rule"))


@pytest.mark.parametrize(
    "method, path, body, status, words",
    [
        pytest.param("put", "/rule/nosuch/activate", None, 404, "not found", id="unknown-rule"),
        pytest.param("put", "/rule/CpuRescaleDown/amount", {"value": 10}, 400, "amount", id="amount-of-down-rule"),
        pytest.param("put", "/rule/cpu_exceeded_upper/amount", {"value": 10}, 400, "amount", id="amount-of-event-rule"),
        pytest.param("put", "/rule/CpuRescaleUp/amount", {"value": "x"}, 422, "integer", id="amount-not-int"),
        pytest.param("put", "/rule/CpuRescaleUp/policy", {"value": "fit_to_usage"}, 400, "not valid",
                     id="fit-to-usage-up"),
        pytest.param("put", "/rule/CpuRescaleUp/policy", {"value": "modelling"}, 400, "not valid",
                     id="unimplemented-policy"),
        pytest.param("put", "/rule/CpuRescaleUp/policy", {"value": "guess"}, 422, "value", id="unknown-policy"),
        pytest.param("put", "/rule/CpuRescaleDown/policy", {"value": "amount"}, 400, "needs an amount",
                     id="amount-policy-without-amount"),
        pytest.param("put", "/rule/CpuRescaleUp/events_required", {"value": -1, "event_type": "up"}, 422,
                     "greater than", id="negative-events"),
        pytest.param("put", "/rule/CpuRescaleUp/events_required", {"value": 1, "event_type": "sideways"}, 422,
                     "event_type", id="unknown-event-type"),
        pytest.param("put", "/rule/cpu_exceeded_upper/events_required", {"value": 1, "event_type": "up"}, 400,
                     "not a request rule", id="event-rule"),
        pytest.param("put", "/rule/bad_logic", {"name": "bad_logic", "resource": "cpu", "generates": "events",
                                                 "rule": {"no_such_op": [1, 2]}}, 400, "json-logic",
                     id="invalid-json-logic"),
        pytest.param("put", "/rule/other", {"name": "mismatch", "resource": "cpu", "generates": "events",
                                             "rule": {">": [1, 0]}}, 400, "mismatch", id="name-mismatch"),
    ],
)
def test_bad_rule_changes_are_refused(http, refused, method, path, body, status, words):
    refused(http.request(method.upper(), path, json=body), status, words)


# ---------------------------------------------------------------- structures: reads


def test_structures_are_read_whole_and_by_part(http, stack, sub):
    assert sub in {s["name"] for s in http.get("/structure/").json()}
    assert {s["subtype"] for s in http.get("/structure/", params={"subtype": "host"}).json()} == {"host"}
    doc = http.get(f"/structure/{sub}").json()
    assert doc["host"] == stack.host and doc["resources"]["cpu"]["current"] == 50
    assert http.get(f"/structure/{sub}/resources").json()["mem"]["max"] == 512
    assert http.get(f"/structure/{sub}/resources/cpu").json()["min"] == 25
    assert http.get(f"/structure/{sub}/resources/cpu/max").json() == 200
    assert http.get(f"/structure/{sub}/resources/disk").status_code == 404
    assert http.get(f"/structure/{sub}/resources/cpu/nosuch").status_code == 404
    assert http.get("/structure/nosuch/resources").status_code == 404


@pytest.mark.parametrize("name", ["a..b", "-x", "x" * 129])
def test_an_unsafe_name_is_refused_before_anything_is_looked_up(http, name):
    r = http.get(f"/structure/{name}")
    assert r.status_code == 422 and r.json()["message"]


# ---------------------------------------------------------------- containers


def test_subscribing_a_container_through_the_api_places_it_and_writes_its_limits(http, stack, containers):
    name = containers.create("apisub")
    host_before = db_get(stack, "structures", stack.host)
    r = http.put(f"/structure/container/{name}", json=body_of(name, stack.host, cpu=(25, 150, 200), mem=(64, 300, 512)))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == name
    real = stack.backend.read_limits(name)
    assert real.cpu_allowance_limit == 150 and real.mem_limit == 300
    host = db_get(stack, "structures", stack.host)
    assert host["resources"]["cpu"]["free"] == host_before["resources"]["cpu"]["free"] - 150
    assert host["resources"]["mem"]["free"] == host_before["resources"]["mem"]["free"] - 300
    assert db_get(stack, "limits", name)["resources"]["cpu"]["boundary"] == 10

    r = http.delete(f"/structure/container/{name}")
    assert r.status_code == 200, r.text
    assert not db_exists(stack, "structures", name) and not db_exists(stack, "limits", name)
    assert db_get(stack, "structures", stack.host)["resources"] == host_before["resources"]


def test_a_bare_container_document_is_accepted_as_the_body(http, stack, containers):
    name = containers.create("bare")
    r = http.put(f"/structure/container/{name}", json=container_doc(name, stack.host))
    assert r.status_code == 201, r.text
    assert db_get(stack, "limits", name)["resources"]["cpu"]["boundary_type"] == "adaptive"  # the profile's


def test_subscribing_twice_is_a_409(http, stack, sub, refused):
    refused(http.put(f"/structure/container/{sub}", json=body_of(sub, stack.host)), 409, "already")


@pytest.mark.parametrize(
    "mutate, status, words",
    [
        pytest.param(lambda b: b["container"]["resources"]["cpu"].update(min=300), 422, "min", id="min-above-max"),
        pytest.param(lambda b: b["container"]["resources"]["cpu"].update(current=300), 422, "current",
                     id="current-above-max"),
        pytest.param(lambda b: b["container"]["resources"].pop("mem"), 422, "mandatory", id="no-mem"),
        pytest.param(lambda b: b["limits"]["resources"]["cpu"].update(boundary=256), 422, "boundary",
                     id="boundary-above-100"),
        pytest.param(lambda b: b["limits"]["resources"]["cpu"].update(boundary_type="absolute"), 422,
                     "boundary_type", id="unknown-boundary-type"),
        pytest.param(lambda b: b["container"].update(name="other"), 400, "mismatch", id="name-mismatch"),
        pytest.param(lambda b: b["container"].update(host="nohost"), 404, "host 'nohost'", id="unknown-host"),
        pytest.param(lambda b: b["container"]["resources"]["mem"].update(current=10**7, max=10**7), 400, "free",
                     id="more-memory-than-the-host"),
        pytest.param(lambda b: b["container"]["resources"]["cpu"].update(current=10**4, max=10**4), 400, "free",
                     id="more-cpu-than-the-host"),
    ],
)
def test_bad_container_subscriptions_are_refused(http, stack, containers, refused, mutate, status, words):
    name = containers.create("badsub")
    body = body_of(name, stack.host)
    mutate(body)
    refused(http.put(f"/structure/container/{name}", json=body), status, words)


def test_a_container_the_node_does_not_have_is_404(http, stack, refused):
    refused(http.put("/structure/container/ghost1", json=body_of("ghost1", stack.host)), 404, "not found on host")


def test_desubscribing_an_unknown_container_is_404(http, refused):
    refused(http.delete("/structure/container/ghost2"), 404, "not found")


def test_desubscribing_a_host_as_a_container_is_400(http, stack, refused):
    refused(http.delete(f"/structure/container/{stack.host}"), 400, "not a container")


# ---------------------------------------------------------------- structure changes


def test_guard_and_unguard_a_structure_and_its_resources(http, stack, sub):
    assert http.put(f"/structure/{sub}/guard").status_code == 200
    assert db_get(stack, "structures", sub)["guard"] is True
    assert http.put(f"/structure/{sub}/resources/cpu/guard").status_code == 200
    assert db_get(stack, "structures", sub)["resources"]["cpu"]["guard"] is True
    assert http.put(f"/structure/{sub}/resources/guard", json={"resources": ["cpu", "mem"]}).status_code == 200
    assert db_get(stack, "structures", sub)["resources"]["mem"]["guard"] is True
    assert http.put(f"/structure/{sub}/resources/unguard", json={"resources": "mem"}).status_code == 200
    assert db_get(stack, "structures", sub)["resources"]["mem"]["guard"] is False
    assert http.put(f"/structure/{sub}/resources/cpu/unguard").status_code == 200
    assert http.put(f"/structure/{sub}/unguard").status_code == 200
    doc = db_get(stack, "structures", sub)
    assert doc["guard"] is False and doc["resources"]["cpu"]["guard"] is False


def test_max_min_and_weight_of_a_resource_are_set(http, stack, sub):
    assert http.put(f"/structure/{sub}/resources/cpu/max", json={"value": "180"}).status_code == 200
    assert http.put(f"/structure/{sub}/resources/cpu/min", json={"value": 30}).status_code == 200
    assert http.put(f"/structure/{sub}/resources/mem/weight", json={"value": 0.5}).status_code == 200
    r = db_get(stack, "structures", sub)["resources"]
    assert (r["cpu"]["max"], r["cpu"]["min"], r["mem"]["weight"]) == (180, 30, 0.5)


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        pytest.param("/structure/{sub}/resources/cpu/max", {"value": 40}, 400, "current", id="max-below-current"),
        pytest.param("/structure/{sub}/resources/cpu/min", {"value": 300}, 400, "min", id="min-above-max"),
        pytest.param("/structure/{sub}/resources/cpu/max", {"value": -5}, 422, "greater than", id="negative"),
        pytest.param("/structure/{sub}/resources/cpu/current", {"value": 60}, 400, "scaler", id="cpu-current"),
        pytest.param("/structure/{sub}/resources/cpu/usage", {"value": 60}, 422, "param", id="unknown-param"),
        pytest.param("/structure/{sub}/resources/gpu/max", {"value": 1}, 422, "res", id="unknown-resource"),
        pytest.param("/structure/{sub}/resources/disk_read/max", {"value": 1}, 404, "no resource",
                     id="missing-resource"),
        pytest.param("/structure/nosuch/resources/cpu/max", {"value": 1}, 404, "not found", id="unknown-structure"),
        pytest.param("/structure/{sub}/resources/guard", {"resources": ["disk_read"]}, 400, "missing",
                     id="guard-missing-resource"),
        pytest.param("/structure/{sub}/resources/guard", {"resources": ["gpu"]}, 422, "resources",
                     id="guard-unknown-resource"),
        pytest.param("/structure/{sub}/resources/guard", {}, 422, "resources", id="guard-no-list"),
        pytest.param("/structure/nosuch/guard", None, 404, "not found", id="guard-unknown-structure"),
        pytest.param("/structure/{sub}/state/running", None, 400, "only applications", id="state-of-container"),
    ],
)
def test_bad_structure_changes_are_refused(http, sub, refused, path, body, status, words):
    refused(http.put(path.format(sub=sub), json=body), status, words)


# ---------------------------------------------------------------- limits


def test_limits_are_read_and_their_boundary_set(http, stack, sub):
    assert http.get(f"/structure/{sub}/limits").json()["cpu"]["boundary"] == 10
    assert http.get(f"/structure/{sub}/limits/mem").json()["boundary_type"] == "percentage_of_max"
    assert http.put(f"/structure/{sub}/limits/cpu/boundary", json={"value": "25"}).status_code == 200
    assert http.put(f"/structure/{sub}/limits/cpu/boundary_type",
                    json={"value": "percentage_of_current"}).status_code == 200
    lim = db_get(stack, "limits", sub)["resources"]["cpu"]
    assert (lim["boundary"], lim["boundary_type"]) == (25, "percentage_of_current")


@pytest.mark.parametrize(
    "method, path, body, status, words",
    [
        pytest.param("GET", "/structure/{sub}/limits/disk_read", None, 404, "no limits", id="missing-resource"),
        pytest.param("GET", "/structure/nosuch/limits", None, 404, "not found", id="unknown-structure"),
        pytest.param("GET", "/structure/{host}/limits", None, 404, "no limits", id="host-without-limits"),
        pytest.param("PUT", "/structure/{sub}/limits/cpu/boundary", {"value": 101}, 422, "less than", id="over-100"),
        pytest.param("PUT", "/structure/{sub}/limits/cpu/boundary", {"value": "x"}, 422, "integer", id="not-int"),
        pytest.param("PUT", "/structure/{sub}/limits/cpu/boundary_type", {"value": "absolute"}, 422, "value",
                     id="bad-type"),
        pytest.param("PUT", "/structure/{sub}/limits/energy/boundary", {"value": 5}, 404, "no resource",
                     id="resource-not-in-structure"),
    ],
)
def test_bad_limits_requests_are_refused(http, stack, sub, refused, method, path, body, status, words):
    refused(http.request(method, path.format(sub=sub, host=stack.host), json=body), status, words)


# ---------------------------------------------------------------- hosts


def test_a_host_already_registered_is_409(http, stack, refused):
    body = {"name": stack.host, "host": stack.host, "subtype": "host", "host_rescaler_ip": stack.host,
            "host_rescaler_port": "8000", "resources": {"cpu": {"max": 200, "free": 200}, "mem": {"max": 1024, "free": 1024}}}
    refused(http.put(f"/structure/host/{stack.host}", json=body), 409, "already exists")


@pytest.mark.parametrize(
    "mutate, status, words",
    [
        pytest.param(lambda b: None, 400, "no containerscaler", id="no-node-for-the-host"),
        pytest.param(lambda b: b["resources"]["cpu"].update(max=150), 422, "multiple of 100", id="cpu-not-cores"),
        pytest.param(lambda b: b["resources"]["mem"].update(free=2048), 422, "free", id="free-above-max"),
        pytest.param(lambda b: b["resources"].pop("mem"), 422, "mem", id="no-mem"),
        pytest.param(lambda b: b.update(name="other"), 400, "mismatch", id="name-mismatch"),
    ],
)
def test_bad_host_subscriptions_are_refused(http, refused, mutate, status, words):
    body = {"name": "newhost", "host": "newhost", "subtype": "host", "host_rescaler_ip": "newhost",
            "host_rescaler_port": "8000", "resources": {"cpu": {"max": 400, "free": 400}, "mem": {"max": 1024, "free": 1024}}}
    mutate(body)
    refused(http.put("/structure/host/newhost", json=body), status, words)


def test_a_host_with_containers_is_not_desubscribed(http, stack, sub, refused):
    refused(http.delete(f"/structure/host/{stack.host}"), 409, "still has containers")


def test_a_host_is_desubscribed_and_subscribed_again(http, stack):
    host = stack.worker_hosts[1]
    before = db_get(stack, "structures", host)
    try:
        assert http.delete(f"/structure/host/{host}").status_code == 200
        assert not db_exists(stack, "structures", host)
        body = {"name": host, "host": host, "subtype": "host", "host_rescaler_ip": host, "host_rescaler_port": "8000",
                "resources": {k: {"max": v["max"], "free": v["max"]} for k, v in before["resources"].items()}}
        r = http.put(f"/structure/host/{host}", json=body)
        assert r.status_code == 201, r.text
        after = db_get(stack, "structures", host)
        assert after["resources"]["cpu"]["core_usage_mapping"] == before["resources"]["cpu"]["core_usage_mapping"]
        assert after["topology"] == before["topology"]
    finally:
        ray.get(stack.statedb.put.remote("structures", before))


# ---------------------------------------------------------------- applications


def test_an_application_is_subscribed_with_its_limits_and_desubscribed(http, stack, app):
    doc = db_get(stack, "structures", app)
    assert doc["subtype"] == "application" and doc["containers"] == [] and doc["state"] == "stopped"
    assert db_get(stack, "limits", app)["resources"]["cpu"]["boundary"] == 5
    assert http.put(f"/structure/{app}/state/running").status_code == 200
    assert db_get(stack, "structures", app)["state"] == "running"
    assert http.delete(f"/structure/apps/{app}").status_code == 200
    assert not db_exists(stack, "structures", app) and not db_exists(stack, "limits", app)


def test_a_container_joins_one_application_only(http, stack, sub, app, refused):
    r = http.put(f"/structure/container/{sub}/{app}")
    assert r.status_code == 200, r.text
    assert db_get(stack, "structures", app)["containers"] == [sub]
    assert db_get(stack, "structures", sub)["resources"]["cpu"]["alloc_ratio"] == 200 / 400
    before = without_usage(snapshot(stack))
    r = http.put(f"/structure/container/{sub}/{app}")
    assert r.status_code == 409 and "already in application" in r.json()["message"]
    assert without_usage(snapshot(stack)) == before
    assert http.delete(f"/structure/container/{sub}/{app}").status_code == 200
    assert db_get(stack, "structures", app)["containers"] == []
    assert http.delete(f"/structure/container/{sub}/{app}").status_code == 404


def test_desubscribing_a_container_takes_it_out_of_its_application(http, stack, sub, app):
    assert http.put(f"/structure/container/{sub}/{app}").status_code == 200
    assert http.delete(f"/structure/container/{sub}").status_code == 200
    assert db_get(stack, "structures", app)["containers"] == []


@pytest.mark.parametrize(
    "method, path, status, words",
    [
        pytest.param("PUT", "/structure/container/{sub}/nosuchapp", 404, "not found", id="unknown-app"),
        pytest.param("PUT", "/structure/container/nosuch/{app}", 404, "not found", id="unknown-container"),
        pytest.param("PUT", "/structure/container/{sub}/{host}", 400, "not a application", id="host-as-app"),
        pytest.param("DELETE", "/structure/apps/nosuchapp", 404, "not found", id="delete-unknown-app"),
        pytest.param("DELETE", "/structure/apps/{sub}", 400, "not a application", id="delete-container-as-app"),
        pytest.param("PUT", "/structure/{app}/state/flying", 422, "state", id="unknown-state"),
    ],
)
def test_bad_application_requests_are_refused(http, stack, sub, app, refused, method, path, status, words):
    refused(http.request(method, path.format(sub=sub, app=app, host=stack.host)), status, words)


def test_an_application_name_taken_is_409(http, app, refused):
    body = {"app": {"name": app, "resources": {"cpu": {"max": 100, "min": 10}}}}
    refused(http.put(f"/structure/apps/{app}", json=body), 409, "already exists")


@pytest.mark.parametrize("name", ["container", "host", "apps"])
def test_a_reserved_word_can_not_name_an_application(http, refused, name):
    refused(http.put(f"/structure/apps/{name}", json={"app": {"name": name, "resources": {}}}), 422, "reserved")


# ---------------------------------------------------------------- users


def _user_body(name):
    return {"user": {"name": name, "subtype": "user",
                     "resources": {"cpu": {"max": 2000, "min": 100}, "mem": {"max": 8192, "min": 1024}}}}


def test_a_user_owns_applications_until_desubscribed(http, stack, app):
    name = "apiuser1"
    try:
        r = http.put(f"/user/{name}", json=_user_body(name))
        assert r.status_code == 201, r.text
        assert http.get(f"/user/{name}").json()["clusters"] == []
        assert name in {u["name"] for u in http.get("/user/").json()}
        assert http.put(f"/user/clusters/{name}/{app}").status_code == 200
        assert db_get(stack, "users", name)["clusters"] == [app]
        assert db_get(stack, "structures", app)["user"] == name
        assert http.put(f"/user/{name}/resources/cpu/max", json={"value": "3000"}).status_code == 200
        assert db_get(stack, "users", name)["resources"]["cpu"]["max"] == 3000
        assert http.delete(f"/user/clusters/{name}/{app}/").status_code == 200
        assert db_get(stack, "users", name)["clusters"] == []
        assert "user" not in db_get(stack, "structures", app)
        assert http.put(f"/user/clusters/{name}/{app}").status_code == 200
        assert http.delete(f"/user/{name}").status_code == 200
        assert not db_exists(stack, "users", name)
        assert "user" not in db_get(stack, "structures", app)
    finally:
        if db_exists(stack, "users", name):
            ray.get(stack.statedb.delete_user.remote(name))


def test_a_bare_user_document_is_accepted_as_subscribe_user_sh_sends_it(http, stack):
    try:
        assert http.put("/user/apiuser2", json=_user_body("apiuser2")["user"]).status_code == 201
    finally:
        ray.get(stack.statedb.delete_user.remote("apiuser2"))


def test_bad_user_requests_are_refused(http, stack, app, refused):
    name = "apiuser3"
    assert http.put(f"/user/{name}", json=_user_body(name)).status_code == 201
    try:
        assert http.put(f"/user/clusters/{name}/{app}").status_code == 200
        other = "apiuser4"
        assert http.put(f"/user/{other}", json=_user_body(other)).status_code == 201
        before = without_usage(snapshot(stack))
        cases = [
            (http.put(f"/user/{name}", json=_user_body(name)), 409, "already exists"),
            (http.put(f"/user/clusters/{other}/{app}"), 409, "already belongs"),
            (http.put(f"/user/clusters/nosuch/{app}"), 404, "not found"),
            (http.put(f"/user/clusters/{name}/nosuchapp"), 404, "not found"),
            (http.delete(f"/user/clusters/{other}/{app}/"), 404, "does not belong"),
            (http.put("/user/u5", json={"user": {"name": "u5", "resources": {"cpu": {"max": 1, "min": 0}}}}), 422,
             "mandatory"),
            (http.put("/user/u6", json=_user_body("u7")), 400, "mismatch"),
            (http.put(f"/user/{name}/resources/cpu/min", json={"value": 5000}), 400, "min"),
            (http.put(f"/user/{name}/resources/cpu/current", json={"value": 5}), 422, "param"),
            (http.put(f"/user/{name}/resources/energy/max", json={"value": 5}), 404, "no resource"),
            (http.get("/user/nosuch"), 404, "not found"),
            (http.delete("/user/nosuch"), 404, "not found"),
        ]
        for r, status, words in cases:
            assert r.status_code == status, (r.request.url, r.text)
            assert words in r.json()["message"].lower(), (r.request.url, r.text)
        assert without_usage(snapshot(stack)) == before
    finally:
        for u in (name, "apiuser4"):
            if db_exists(stack, "users", u):
                ray.get(stack.statedb.delete_user.remote(u))


# ---------------------------------------------------------------- status, events, requests


def test_status_has_a_row_per_container_and_resource(http, stack, sub):
    rows = [r for r in http.get("/status").json()["containers"] if r["container"] == sub]
    assert {r["resource"] for r in rows} == {"cpu", "mem"}
    cpu = next(r for r in rows if r["resource"] == "cpu")
    assert (cpu["current"], cpu["min"], cpu["max"], cpu["host"]) == (50, 25, 200, stack.host)


def test_events_and_requests_are_read_and_filtered(http):
    assert isinstance(http.get("/events").json(), list)
    assert http.get("/events", params={"structure": "nosuch"}).json() == []
    assert http.get("/requests", params={"limit": 5}).status_code == 200
    assert http.get("/requests", params={"limit": 0}).status_code == 422
