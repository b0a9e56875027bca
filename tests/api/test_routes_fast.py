"""Every route of the API in this process: the real app over a real StateDB, no Ray.

Each route: its success, read back from the StateDB, then each class of error
(404, 400/422, 409, 401, 503) with every stored document compared before and after:
a refused request changes nothing. The Scaler's subscriptions go to its in-process
stand-in (tests/api/inprocess.py); the real accounting and the cgroup writes are
proven on the live stack (test_routes.py).
"""
from __future__ import annotations

import pytest

from tests.api.inprocess import LocalNode, Served


def body_of(name, host="h0", cpu=(25, 50, 200), mem=(64, 128, 512), boundary=10):
    return {
        "container": {"name": name, "host": host, "subtype": "container", "guard": False,
                      "host_rescaler_ip": host, "host_rescaler_port": "8000",
                      "resources": {"cpu": {"min": cpu[0], "current": cpu[1], "max": cpu[2], "guard": False},
                                    "mem": {"min": mem[0], "current": mem[1], "max": mem[2], "guard": False}}},
        "limits": {"resources": {"cpu": {"boundary": boundary, "boundary_type": "percentage_of_max"},
                                 "mem": {"boundary": boundary, "boundary_type": "percentage_of_max"}}},
    }


def host_body(name, cpu=400, mem=1024):
    return {"name": name, "host": name, "subtype": "host", "host_rescaler_ip": name, "host_rescaler_port": "8000",
            "resources": {"cpu": {"max": cpu, "free": cpu}, "mem": {"max": mem, "free": mem}}}


def app_body(name, cpu_max=400):
    return {"app": {"name": name, "guard": False, "subtype": "application",
                    "resources": {"cpu": {"max": cpu_max, "min": 20, "guard": False},
                                  "mem": {"max": 2048, "min": 128, "guard": False}}},
            "limits": {"resources": {"cpu": {"boundary": 5, "boundary_type": "percentage_of_max"}}}}


def user_body(name):
    return {"user": {"name": name, "subtype": "user",
                     "resources": {"cpu": {"max": 2000, "min": 100}, "mem": {"max": 8192, "min": 1024}}}}


@pytest.fixture
def http(served):
    return served.http


@pytest.fixture
def app(served, http):
    """An application `app0` subscribed through the API."""
    r = http.put("/structure/apps/app0", json=app_body("app0"))
    assert r.status_code == 201, r.text
    return "app0"


@pytest.fixture
def ready(served):
    """A container `c1` the node of h0 lists, not yet subscribed."""
    served.nodes["h0"].containers.add("c1")
    return "c1"


# ---------------------------------------------------------------- heartbeat, docs, auth


def test_heartbeat_answers_alive(http):
    r = http.get("/heartbeat")
    assert r.status_code == 200 and r.json() == {"status": "alive"}


def test_the_openapi_schema_has_every_route_and_examples(http):
    spec = http.get("/openapi.json").json()
    for path in ("/structure/container/{name}", "/rule/{name}/events_required", "/service/{name}/{key}",
                 "/user/clusters/{user}/{app}", "/profile/{name}", "/health", "/ui/series"):
        assert path in spec["paths"], path
    assert spec["components"]["schemas"]["ContainerSubscription"]["examples"][0]["container"]["name"] == "host0-cont0"
    # The host's node is a dependency on the same path parameter: `name` is declared once.
    assert [p["name"] for p in spec["paths"]["/structure/host/{name}"]["put"]["parameters"]] == ["name"]
    assert http.get("/docs").status_code == 200


def test_an_unknown_route_is_404_with_a_message(http):
    r = http.get("/nothing/here")
    assert r.status_code == 404 and r.json()["message"]


@pytest.fixture
def guarded(tmp_path):
    with Served(str(tmp_path), token="s3cret") as served:
        yield served


@pytest.mark.parametrize("headers", [{}, {"Authorization": "Bearer wrong"}, {"Authorization": "Basic abc"}],
                         ids=["no-header", "wrong-token", "not-bearer"])
def test_a_change_without_the_token_is_401_and_changes_nothing(guarded, headers):
    before = guarded.snapshot()
    for method, path, body in [("PUT", "/service/guardian/WINDOW_TIMELAPSE", {"value": "7"}),
                               ("PUT", "/rule/CpuRescaleUp/amount", {"value": 60}),
                               ("DELETE", "/structure/container/c0", None)]:
        r = guarded.http.request(method, path, json=body, headers=headers)
        assert r.status_code == 401 and "token" in r.json()["message"], r.text
        assert r.headers.get("www-authenticate") == "Bearer"
    assert guarded.snapshot() == before


def test_reads_need_no_token_and_the_right_token_changes(guarded):
    assert guarded.http.get("/service/guardian").status_code == 200
    assert guarded.http.get("/structure/").status_code == 200
    r = guarded.http.put("/rule/CpuRescaleUp/amount", json={"value": 60}, headers={"Authorization": "Bearer s3cret"})
    assert r.status_code == 200, r.text
    assert guarded.doc("rules", "CpuRescaleUp")["amount"] == 60


# ---------------------------------------------------------------- services


def test_services_are_listed_with_and_without_the_trailing_slash(http):
    names = {s["name"] for s in http.get("/service/").json()}
    assert {"guardian", "scaler"} <= names
    assert {s["name"] for s in http.get("/service").json()} == names


def test_a_service_key_is_coerced_and_stored(served, http):
    assert http.put("/service/guardian/EVENT_TIMEOUT", json={"value": "6.5"}).status_code == 200
    assert served.doc("services", "guardian")["config"]["EVENT_TIMEOUT"] == 6.5
    assert http.put("/service/scaler/DEBUG", json={"value": "true"}).status_code == 200
    assert served.doc("services", "scaler")["config"]["DEBUG"] is True
    assert http.get("/service/scaler").json()["config"]["DEBUG"] is True


def test_a_service_config_is_merged_as_given(served, http):
    r = http.put("/service/scaler", json={"SOME_KEY_OF_A_SCRIPT": 3})
    assert r.status_code == 200, r.text
    config = served.doc("services", "scaler")["config"]
    assert config["SOME_KEY_OF_A_SCRIPT"] == 3 and config["REQUEST_TIMEOUT"] > 0


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        pytest.param("/service/nosuch/ACTIVE", {"value": "true"}, 404, "not found", id="unknown-service"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": "abc"}, 400, "bad content", id="not-a-number"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": "-1"}, 400, "greater than", id="out-of-range"),
        pytest.param("/service/guardian/EVENT_TIMEOUT", {"value": "1e30"}, 400, "event_timeout", id="huge-period"),
        pytest.param("/service/guardian/STRUCTURE_GUARDED", {"value": "host"}, 400, "structure_guarded",
                     id="unknown-scope"),
        pytest.param("/service/guardian/ACTIVE", {"val": "true"}, 422, "value", id="no-value"),
        pytest.param("/service/guardian/A.B", {"value": "1"}, 400, "invalid config key", id="dotted-key"),
        pytest.param("/service/guardian", {"A.B": 1}, 400, "invalid config key", id="dotted-key-in-config"),
        pytest.param("/service/guardian", {"WINDOW_TIMELAPSE": -1}, 400, "greater than", id="bad-config-value"),
        pytest.param("/service/nosuch", {"X": 1}, 404, "not found", id="config-of-unknown-service"),
    ],
)
def test_bad_service_changes_are_refused(http, unchanged, path, body, status, words):
    unchanged(http.put(path, json=body), status, words)


def test_an_unknown_service_is_404(http):
    r = http.get("/service/nosuch")
    assert r.status_code == 404 and "not found" in r.json()["message"]


# ---------------------------------------------------------------- rules


def test_rules_are_read(http):
    rules = {r["name"]: r for r in http.get("/rule/").json()}
    assert rules["CpuRescaleUp"]["amount"] == 75
    assert {r["name"] for r in http.get("/rule").json()} == set(rules)
    assert http.get("/rule/CpuRescaleUp").json() == rules["CpuRescaleUp"]
    assert http.get("/rule/nosuch").status_code == 404


def test_a_rule_is_activated_and_deactivated(served, http):
    assert http.put("/rule/cpu_usage_low/activate").status_code == 200
    assert served.doc("rules", "cpu_usage_low")["active"] is True
    assert http.put("/rule/cpu_usage_low/deactivate").status_code == 200
    assert served.doc("rules", "cpu_usage_low")["active"] is False


def test_amount_and_policy_of_a_request_rule_are_set(served, http):
    assert http.put("/rule/MemRescaleUp/amount", json={"value": "300"}).status_code == 200
    assert served.doc("rules", "MemRescaleUp")["amount"] == 300
    assert http.put("/rule/MemRescaleUp/policy", json={"value": "proportional"}).status_code == 200
    assert served.doc("rules", "MemRescaleUp")["rescale_policy"] == "proportional"


def test_events_required_edits_one_clause_and_keeps_events_to_remove_of_the_trigger(served, http):
    # The original's set_rules_config.sh: MemRescaleUp up 3, then down 6.
    assert http.put("/rule/MemRescaleUp/events_required", json={"value": "3", "event_type": "up"}).status_code == 200
    assert http.put("/rule/MemRescaleUp/events_required", json={"value": "6", "event_type": "down"}).status_code == 200
    rule = served.doc("rules", "MemRescaleUp")
    assert rule["rule"]["and"] == [{">=": [{"var": "events.scale.up"}, 3]}, {"<=": [{"var": "events.scale.down"}, 6]}]
    assert rule["events_to_remove"] == 3


def test_a_new_rule_is_created_with_201_and_replaced_with_200(served, http):
    rule = {"name": "test_api_rule", "resource": "cpu", "generates": "events", "active": False,
            "rule": {">": [{"var": "cpu.structure.cpu.usage"}, 10]}, "action": {"events": {"scale": {"up": 1}}}}
    assert http.put("/rule/test_api_rule", json=rule).status_code == 201
    assert http.put("/rule/test_api_rule", json=rule).status_code == 200
    assert served.doc("rules", "test_api_rule")["rule"] == rule["rule"]


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        pytest.param("/rule/nosuch/activate", None, 404, "not found", id="unknown-rule"),
        pytest.param("/rule/CpuRescaleDown/amount", {"value": 10}, 400, "amount", id="amount-of-down-rule"),
        pytest.param("/rule/cpu_exceeded_upper/amount", {"value": 10}, 400, "amount", id="amount-of-event-rule"),
        pytest.param("/rule/CpuRescaleUp/amount", {"value": "x"}, 422, "integer", id="amount-not-int"),
        pytest.param("/rule/CpuRescaleUp/amount", {"value": -5}, 400, "must be > 0", id="amount-negative"),
        pytest.param("/rule/CpuRescaleUp/amount", {"value": "0"}, 400, "must be > 0", id="amount-zero"),
        pytest.param("/rule/CpuRescaleUp/amount", {"value": 10**30}, 422, "less than", id="amount-huge"),
        pytest.param("/rule/CpuRescaleUp/policy", {"value": "fit_to_usage"}, 400, "not valid", id="fit-to-usage-up"),
        pytest.param("/rule/CpuRescaleUp/policy", {"value": "modelling"}, 400, "not valid", id="unimplemented-policy"),
        pytest.param("/rule/CpuRescaleUp/policy", {"value": "guess"}, 422, "value", id="unknown-policy"),
        pytest.param("/rule/cpu_exceeded_upper/policy", {"value": "amount"}, 400, "not a request rule",
                     id="policy-of-event-rule"),
        pytest.param("/rule/CpuRescaleDown/policy", {"value": "amount"}, 400, "needs an amount",
                     id="amount-policy-without-amount"),
        pytest.param("/rule/CpuRescaleUp/events_required", {"value": -1, "event_type": "up"}, 422, "greater than",
                     id="negative-events"),
        pytest.param("/rule/CpuRescaleUp/events_required", {"value": 1, "event_type": "sideways"}, 422,
                     "event_type", id="unknown-event-type"),
        pytest.param("/rule/cpu_exceeded_upper/events_required", {"value": 1, "event_type": "up"}, 400,
                     "not a request rule", id="event-rule"),
        pytest.param("/rule/bad_logic", {"name": "bad_logic", "resource": "cpu", "generates": "events",
                                         "rule": {"no_such_op": [1, 2]}}, 400, "json-logic", id="invalid-json-logic"),
        pytest.param("/rule/other", {"name": "mismatch", "resource": "cpu", "generates": "events",
                                     "rule": {">": [1, 0]}}, 400, "mismatch", id="name-mismatch"),
    ],
)
def test_bad_rule_changes_are_refused(http, unchanged, path, body, status, words):
    unchanged(http.put(path, json=body), status, words)


def test_a_whole_rule_put_with_a_contradicting_amount_is_refused(served, http, unchanged):
    unchanged(http.put("/rule/MemRescaleUp", json={**served.doc("rules", "MemRescaleUp"), "amount": -256}), 400,
              "must be > 0")
    unchanged(http.put("/rule/CpuRescaleDown", json={**served.doc("rules", "CpuRescaleDown"), "amount": 50}), 400,
              "must be < 0")


def test_a_rule_that_is_not_json_is_422_and_changes_nothing(http, unchanged):
    r = http.put("/rule/CpuRescaleUp", content="{not json", headers={"content-type": "application/json"})
    unchanged(r, 422, "")


# ---------------------------------------------------------------- structures: reads


def test_structures_are_read_whole_and_by_part(http):
    assert {s["name"] for s in http.get("/structure/").json()} == {"h0", "c0"}
    assert {s["name"] for s in http.get("/structure").json()} == {"h0", "c0"}
    assert [s["name"] for s in http.get("/structure/", params={"subtype": "host"}).json()] == ["h0"]
    doc = http.get("/structure/c0").json()
    assert doc["host"] == "h0" and doc["resources"]["cpu"]["current"] == 100
    assert http.get("/structure/c0/resources").json()["mem"]["max"] == 1024
    assert http.get("/structure/c0/resources/cpu").json()["min"] == 10
    assert http.get("/structure/c0/resources/cpu/max").json() == 200


@pytest.mark.parametrize(
    "path, status, words",
    [
        pytest.param("/structure/nosuch", 404, "not found", id="unknown"),
        pytest.param("/structure/nosuch/resources", 404, "not found", id="unknown-resources"),
        pytest.param("/structure/c0/resources/disk", 404, "no resource", id="missing-resource"),
        pytest.param("/structure/c0/resources/cpu/nosuch", 404, "has no 'nosuch'", id="missing-param"),
        pytest.param("/structure/", 422, "subtype", id="unknown-subtype"),
        pytest.param("/structure/a..b", 422, "", id="dots"),
        pytest.param("/structure/-x", 422, "", id="leading-dash"),
        pytest.param("/structure/" + "x" * 129, 422, "", id="too-long"),
    ],
)
def test_bad_structure_reads_are_refused(http, path, status, words):
    r = http.get(path, params={"subtype": "disk"} if path == "/structure/" else None)
    assert r.status_code == status, r.text
    assert r.json()["message"] and words in r.json()["message"]


# ---------------------------------------------------------------- containers


def test_a_container_is_subscribed_with_its_limits_and_desubscribed(served, http, ready):
    host_before = served.doc("structures", "h0")["resources"]
    r = http.put(f"/structure/container/{ready}", json=body_of(ready, cpu=(25, 150, 200), mem=(64, 300, 512)))
    assert r.status_code == 201, r.text
    assert r.json()["name"] == ready and r.json()["resources"]["cpu"]["current"] == 150
    assert served.doc("limits", ready)["resources"]["cpu"]["boundary"] == 10
    host = served.doc("structures", "h0")["resources"]
    assert (host["cpu"]["free"], host["mem"]["free"]) == (host_before["cpu"]["free"] - 150,
                                                          host_before["mem"]["free"] - 300)
    r = http.delete(f"/structure/container/{ready}")
    assert r.status_code == 200 and r.json() == {"message": f"container {ready} desubscribed"}
    assert not served.db.exists("structures", ready) and not served.db.exists("limits", ready)
    assert served.doc("structures", "h0")["resources"] == host_before


def test_a_bare_container_document_gets_the_profiles_limits(served, http, ready):
    r = http.put(f"/structure/container/{ready}", json=body_of(ready)["container"])
    assert r.status_code == 201, r.text
    assert served.doc("limits", ready)["resources"]["cpu"] == {"boundary": 4, "boundary_type": "adaptive"}


def test_subscribing_twice_is_a_409(http, unchanged):
    unchanged(http.put("/structure/container/c0", json=body_of("c0")), 409, "already subscribed")


@pytest.mark.parametrize(
    "mutate, status, words",
    [
        pytest.param(lambda b: b["container"]["resources"]["cpu"].update(min=300), 422, "min", id="min-above-max"),
        pytest.param(lambda b: b["container"]["resources"]["cpu"].update(current=300), 422, "current",
                     id="current-above-max"),
        pytest.param(lambda b: b["container"]["resources"].pop("mem"), 422, "mandatory", id="no-mem"),
        pytest.param(lambda b: b["limits"]["resources"]["cpu"].update(boundary=256), 422, "boundary",
                     id="boundary-above-100"),
        pytest.param(lambda b: b["limits"]["resources"]["cpu"].update(boundary=0), 422, "1..100", id="boundary-zero"),
        pytest.param(lambda b: b["limits"]["resources"]["cpu"].update(boundary_type="absolute"), 422,
                     "boundary_type", id="unknown-boundary-type"),
        pytest.param(lambda b: b["container"].update(name="other"), 400, "mismatch", id="name-mismatch"),
        pytest.param(lambda b: b["container"].update(host="nohost"), 404, "host 'nohost'", id="unknown-host"),
        pytest.param(lambda b: b["container"].update(host="c0"), 400, "not a host", id="container-as-host"),
        pytest.param(lambda b: b["container"]["resources"]["mem"].update(current=10**7, max=10**7), 400, "free",
                     id="more-memory-than-the-host"),
        pytest.param(lambda b: b["container"]["resources"]["cpu"].update(current=10**4, max=10**4), 400, "free",
                     id="more-cpu-than-the-host"),
    ],
)
def test_bad_container_subscriptions_are_refused(http, ready, unchanged, mutate, status, words):
    body = body_of(ready)
    mutate(body)
    unchanged(http.put(f"/structure/container/{ready}", json=body), status, words)


def test_a_container_the_node_does_not_have_is_404(http, unchanged):
    unchanged(http.put("/structure/container/ghost1", json=body_of("ghost1")), 404, "not found on host")


def test_a_node_that_does_not_answer_during_a_subscription_is_503_and_changes_nothing(served, http, ready, unchanged):
    served.scaler.unavailable = "the ContainerScaler of host 'h0' did not answer within 5 s"
    unchanged(http.put(f"/structure/container/{ready}", json=body_of(ready)), 503, "did not answer within 5 s")


@pytest.mark.parametrize(
    "path, status, words",
    [
        pytest.param("/structure/container/ghost2", 404, "not found", id="unknown"),
        pytest.param("/structure/container/h0", 400, "not a container", id="host-as-container"),
    ],
)
def test_bad_desubscriptions_of_a_container_are_refused(http, unchanged, path, status, words):
    unchanged(http.delete(path), status, words)


# ---------------------------------------------------------------- structure changes


def test_guard_and_unguard_a_structure_and_its_resources(served, http):
    assert http.put("/structure/c0/unguard").status_code == 200
    assert served.doc("structures", "c0")["guard"] is False
    assert http.put("/structure/c0/guard").json()["guard"] is True
    assert http.put("/structure/c0/resources/cpu/unguard").status_code == 200
    assert served.doc("structures", "c0")["resources"]["cpu"]["guard"] is False
    assert http.put("/structure/c0/resources/cpu/guard").status_code == 200
    assert http.put("/structure/c0/resources/unguard", json={"resources": "mem"}).status_code == 200
    assert served.doc("structures", "c0")["resources"]["mem"]["guard"] is False
    assert http.put("/structure/c0/resources/guard", json={"resources": ["cpu", "mem"]}).status_code == 200
    doc = served.doc("structures", "c0")
    assert doc["resources"]["cpu"]["guard"] is True and doc["resources"]["mem"]["guard"] is True


def test_max_min_and_weight_of_a_resource_are_set(served, http):
    assert http.put("/structure/c0/resources/cpu/max", json={"value": "180"}).status_code == 200
    assert http.put("/structure/c0/resources/cpu/min", json={"value": 30}).status_code == 200
    assert http.put("/structure/c0/resources/mem/weight", json={"value": 0.5}).status_code == 200
    r = served.doc("structures", "c0")["resources"]
    assert (r["cpu"]["max"], r["cpu"]["min"], r["mem"]["weight"]) == (180, 30, 0.5)


@pytest.mark.parametrize(
    "path, body, status, words",
    [
        pytest.param("/structure/c0/resources/cpu/max", {"value": 40}, 400, "current", id="max-below-current"),
        pytest.param("/structure/c0/resources/cpu/min", {"value": 300}, 400, "min", id="min-above-max"),
        pytest.param("/structure/c0/resources/cpu/max", {"value": -5}, 422, "greater than", id="negative"),
        pytest.param("/structure/c0/resources/cpu/max", {"value": 10**30}, 422, "less than", id="huge"),
        pytest.param("/structure/c0/resources/cpu/weight", {"value": -3}, 422, "greater than",
                     id="negative-weight"),
        pytest.param("/structure/c0/resources/cpu/current", {"value": 60}, 400, "scaler", id="cpu-current"),
        pytest.param("/structure/c0/resources/cpu/usage", {"value": 60}, 422, "param", id="unknown-param"),
        pytest.param("/structure/c0/resources/gpu/max", {"value": 1}, 422, "res", id="unknown-resource"),
        pytest.param("/structure/c0/resources/disk_read/max", {"value": 1}, 404, "no resource", id="missing-resource"),
        pytest.param("/structure/nosuch/resources/cpu/max", {"value": 1}, 404, "not found", id="unknown-structure"),
        pytest.param("/structure/c0/resources/guard", {"resources": ["disk_read"]}, 400, "missing",
                     id="guard-missing-resource"),
        pytest.param("/structure/c0/resources/guard", {"resources": ["gpu"]}, 422, "resources",
                     id="guard-unknown-resource"),
        pytest.param("/structure/c0/resources/guard", {}, 422, "resources", id="guard-no-list"),
        pytest.param("/structure/c0/resources/disk/guard", None, 400, "can't be guarded", id="guard-unguardable"),
        pytest.param("/structure/nosuch/guard", None, 404, "not found", id="guard-unknown-structure"),
        pytest.param("/structure/c0/state/running", None, 400, "only applications", id="state-of-container"),
    ],
)
def test_bad_structure_changes_are_refused(http, unchanged, path, body, status, words):
    unchanged(http.put(path, json=body), status, words)


# ---------------------------------------------------------------- limits


def test_limits_are_read_and_their_boundary_set(served, http):
    assert http.get("/structure/c0/limits").json()["cpu"]["boundary"] == 10
    assert http.get("/structure/c0/limits/mem").json()["boundary_type"] == "percentage_of_max"
    assert http.put("/structure/c0/limits/cpu/boundary", json={"value": "25"}).status_code == 200
    assert http.put("/structure/c0/limits/cpu/boundary_type", json={"value": "percentage_of_current"}).status_code == 200
    lim = served.doc("limits", "c0")["resources"]["cpu"]
    assert (lim["boundary"], lim["boundary_type"]) == (25, "percentage_of_current")


@pytest.mark.parametrize(
    "method, path, body, status, words",
    [
        pytest.param("GET", "/structure/c0/limits/disk_read", None, 404, "no limits", id="missing-resource"),
        pytest.param("GET", "/structure/nosuch/limits", None, 404, "not found", id="unknown-structure"),
        pytest.param("GET", "/structure/h0/limits", None, 404, "no limits", id="host-without-limits"),
        pytest.param("PUT", "/structure/c0/limits/cpu/boundary", {"value": 101}, 422, "less than", id="over-100"),
        pytest.param("PUT", "/structure/c0/limits/cpu/boundary", {"value": -1}, 422, "greater than", id="negative"),
        pytest.param("PUT", "/structure/c0/limits/cpu/boundary", {"value": "0"}, 400, "1..100", id="zero"),
        pytest.param("PUT", "/structure/c0/limits/cpu/boundary", {"value": "x"}, 422, "integer", id="not-int"),
        pytest.param("PUT", "/structure/c0/limits/cpu/boundary_type", {"value": "absolute"}, 422, "value",
                     id="bad-type"),
        pytest.param("PUT", "/structure/c0/limits/energy/boundary", {"value": 5}, 404, "no resource",
                     id="resource-not-in-structure"),
        pytest.param("PUT", "/structure/h0/limits/cpu/boundary", {"value": 5}, 404, "no limits", id="host"),
    ],
)
def test_bad_limits_requests_are_refused(http, unchanged, method, path, body, status, words):
    unchanged(http.request(method, path, json=body), status, words)


# ---------------------------------------------------------------- hosts


def test_a_host_is_subscribed_cut_to_its_node_and_desubscribed(served, http):
    served.nodes["h1"] = LocalNode("h1", cores=2, mem_mib=4096)
    body = host_body("h1", cpu=800, mem=2048)
    body["resources"]["cpu"]["core_usage_mapping"] = {"0": {"free": 0, "someone": 100}}
    r = http.put("/structure/host/h1", json=body)
    assert r.status_code == 201, r.text
    # 2 cores: 800 shares cut to 200, and said; 2048 MiB of 4096 kept; every core starts free.
    assert r.json()["warnings"] == ["cpu max 800 shares cut to 200: the Ray node of host 'h1' has 2 cores"]
    doc = served.doc("structures", "h1")
    assert (doc["resources"]["cpu"]["max"], doc["resources"]["mem"]["max"]) == (200, 2048)
    assert doc["resources"]["cpu"]["core_usage_mapping"] == {"0": {"free": 100}, "1": {"free": 100}}
    assert doc["topology"] == {"0": {"0": [0], "1": [1]}} and "warnings" not in doc
    r = http.delete("/structure/host/h1")
    assert r.status_code == 200 and r.json() == {"message": "host h1 desubscribed"}
    assert not served.db.exists("structures", "h1")


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
def test_bad_host_subscriptions_are_refused(http, unchanged, mutate, status, words):
    body = host_body("newhost")
    mutate(body)
    unchanged(http.put("/structure/host/newhost", json=body), status, words)


def test_a_host_already_registered_is_409(http, unchanged):
    unchanged(http.put("/structure/host/h0", json=host_body("h0")), 409, "already exists")


def test_a_host_with_containers_is_not_desubscribed(http, unchanged):
    unchanged(http.delete("/structure/host/h0"), 409, "still has containers")


@pytest.mark.parametrize("method", ["PUT", "POST"])
def test_disks_are_not_managed(http, unchanged, method):
    unchanged(http.request(method, "/structure/host/h0/disks", json={}), 501, "disk bandwidth")


# ---------------------------------------------------------------- applications


def test_an_application_is_subscribed_with_its_limits_run_and_desubscribed(served, http, app):
    doc = served.doc("structures", app)
    assert doc["subtype"] == "application" and doc["containers"] == [] and doc["state"] == "stopped"
    assert served.doc("limits", app)["resources"]["cpu"]["boundary"] == 5
    assert http.put(f"/structure/{app}/state/running").status_code == 200
    assert served.doc("structures", app)["state"] == "running"
    r = http.delete(f"/structure/apps/{app}")
    assert r.status_code == 200 and r.json() == {"message": f"application {app} desubscribed"}
    assert not served.db.exists("structures", app) and not served.db.exists("limits", app)


def test_a_container_joins_one_application_only(served, http, app, unchanged):
    r = http.put(f"/structure/container/c0/{app}")
    assert r.status_code == 200, r.text
    assert served.doc("structures", app)["containers"] == ["c0"]
    assert served.doc("structures", "c0")["resources"]["cpu"]["alloc_ratio"] == 200 / 400
    before = served.snapshot()
    r = http.put(f"/structure/container/c0/{app}")
    assert r.status_code == 409 and "already in application" in r.json()["message"]
    assert served.snapshot() == before
    assert http.delete(f"/structure/container/c0/{app}").status_code == 200
    assert served.doc("structures", app)["containers"] == []
    assert http.delete(f"/structure/container/c0/{app}").status_code == 404


def test_desubscribing_a_container_takes_it_out_of_its_application(served, http, app):
    assert http.put(f"/structure/container/c0/{app}").status_code == 200
    assert http.delete("/structure/container/c0").status_code == 200
    assert served.doc("structures", app)["containers"] == []


@pytest.mark.parametrize(
    "method, path, status, words",
    [
        pytest.param("PUT", "/structure/container/c0/nosuchapp", 404, "not found", id="unknown-app"),
        pytest.param("PUT", "/structure/container/nosuch/{app}", 404, "not found", id="unknown-container"),
        pytest.param("PUT", "/structure/container/c0/h0", 400, "not a application", id="host-as-app"),
        pytest.param("DELETE", "/structure/apps/nosuchapp", 404, "not found", id="delete-unknown-app"),
        pytest.param("DELETE", "/structure/apps/c0", 400, "not a application", id="delete-container-as-app"),
        pytest.param("PUT", "/structure/{app}/state/flying", 422, "state", id="unknown-state"),
    ],
)
def test_bad_application_requests_are_refused(http, app, unchanged, method, path, status, words):
    unchanged(http.request(method, path.format(app=app)), status, words)


def test_an_application_name_taken_is_409(http, app, unchanged):
    unchanged(http.put(f"/structure/apps/{app}", json=app_body(app)), 409, "already exists")


@pytest.mark.parametrize("name", ["container", "host", "apps"])
def test_a_reserved_word_can_not_name_an_application(http, unchanged, name):
    unchanged(http.put(f"/structure/apps/{name}", json={"app": {"name": name, "resources": {}}}), 422, "reserved")


# ---------------------------------------------------------------- users


def test_a_user_owns_applications_until_desubscribed(served, http, app):
    r = http.put("/user/u1", json=user_body("u1"))
    assert r.status_code == 201, r.text
    assert http.get("/user/u1").json()["clusters"] == []
    assert [u["name"] for u in http.get("/user/").json()] == ["u1"]
    assert [u["name"] for u in http.get("/user").json()] == ["u1"]
    assert http.put(f"/user/clusters/u1/{app}").status_code == 200
    assert served.doc("users", "u1")["clusters"] == [app] and served.doc("structures", app)["user"] == "u1"
    assert http.put("/user/u1/resources/cpu/max", json={"value": "3000"}).status_code == 200
    assert served.doc("users", "u1")["resources"]["cpu"]["max"] == 3000
    assert http.delete(f"/user/clusters/u1/{app}/").status_code == 200
    assert served.doc("users", "u1")["clusters"] == [] and "user" not in served.doc("structures", app)
    assert http.put(f"/user/clusters/u1/{app}").status_code == 200
    assert http.delete(f"/user/clusters/u1/{app}").status_code == 200
    assert http.put(f"/user/clusters/u1/{app}").status_code == 200
    r = http.delete("/user/u1")
    assert r.status_code == 200 and r.json() == {"message": "user u1 desubscribed"}
    assert not served.db.exists("users", "u1") and "user" not in served.doc("structures", app)


def test_a_bare_user_document_is_accepted_as_subscribe_user_sh_sends_it(served, http):
    assert http.put("/user/u2", json=user_body("u2")["user"]).status_code == 201
    assert served.doc("users", "u2")["resources"]["mem"]["min"] == 1024


@pytest.fixture
def owner(served, http, app):
    """Users u1 (owning app0) and u4 (owning nothing)."""
    for u in ("u1", "u4"):
        assert http.put(f"/user/{u}", json=user_body(u)).status_code == 201
    assert http.put(f"/user/clusters/u1/{app}").status_code == 200
    return "u1"


@pytest.mark.parametrize(
    "method, path, body, status, words",
    [
        pytest.param("PUT", "/user/u1", user_body("u1"), 409, "already exists", id="taken"),
        pytest.param("PUT", "/user/clusters/u4/app0", None, 409, "already belongs", id="app-owned"),
        pytest.param("PUT", "/user/clusters/nosuch/app0", None, 404, "not found", id="unknown-user"),
        pytest.param("PUT", "/user/clusters/u1/nosuchapp", None, 404, "not found", id="unknown-app"),
        pytest.param("DELETE", "/user/clusters/u4/app0/", None, 404, "does not belong", id="not-owned"),
        pytest.param("PUT", "/user/u5", {"user": {"name": "u5", "resources": {"cpu": {"max": 1, "min": 0}}}}, 422,
                     "mandatory", id="no-mem"),
        pytest.param("PUT", "/user/u6", user_body("u7"), 400, "mismatch", id="name-mismatch"),
        pytest.param("PUT", "/user/u1/resources/cpu/min", {"value": 5000}, 400, "min", id="min-above-max"),
        pytest.param("PUT", "/user/u1/resources/cpu/current", {"value": 5}, 422, "param", id="unknown-param"),
        pytest.param("PUT", "/user/u1/resources/energy/max", {"value": 5}, 404, "no resource", id="missing-resource"),
        pytest.param("GET", "/user/nosuch", None, 404, "not found", id="get-unknown"),
        pytest.param("DELETE", "/user/nosuch", None, 404, "not found", id="delete-unknown"),
    ],
)
def test_bad_user_requests_are_refused(http, owner, unchanged, method, path, body, status, words):
    unchanged(http.request(method, path, json=body), status, words)


# ---------------------------------------------------------------- status, events, requests


def test_status_has_a_row_per_container_and_resource_and_the_services(http):
    body = http.get("/status").json()
    rows = {r["resource"]: r for r in body["containers"] if r["container"] == "c0"}
    assert set(rows) == {"cpu", "mem"}
    cpu = rows["cpu"]
    assert (cpu["current"], cpu["min"], cpu["max"], cpu["host"], cpu["guard"]) == (100, 10, 200, "h0", True)
    assert (cpu["upper"], cpu["lower"], cpu["usage"], cpu["missing_since"]) == (None, None, None, None)
    assert {"guardian", "scaler"} <= {s["name"] for s in body["services"]}


def test_events_and_requests_are_read_and_filtered(served, http):
    served.db.log_requests([{"structure": "c0", "action": "CpuRescaleUp", "outcome": "applied", "timestamp": 1.0},
                            {"structure": "c9", "action": "MemRescaleUp", "outcome": "trimmed", "timestamp": 2.0}])
    assert [e["structure"] for e in http.get("/requests").json()] == ["c0", "c9"]
    assert [e["structure"] for e in http.get("/requests", params={"structure": "c9"}).json()] == ["c9"]
    assert [e["structure"] for e in http.get("/requests", params={"limit": 1}).json()] == ["c9"]
    assert http.get("/events").json() == []
    assert http.get("/events", params={"structure": "nosuch"}).json() == []
    for path in ("/events", "/requests"):
        r = http.get(path, params={"limit": 0})
        assert r.status_code == 422 and "limit" in r.json()["message"]


# ---------------------------------------------------------------- profiles


def test_the_shipped_profile_is_adaptive(http):
    body = http.get("/profile").json()
    assert body["profile"] == "adaptive" and http.get("/profile/").json() == body
    assert body["profiles"]["adaptive"]["cpu"] == {"boundary": 4, "boundary_type": "adaptive"}
    assert body["profiles"]["original"]["cpu"] == {"boundary": 10, "boundary_type": "percentage_of_max"}
    assert set(body["timings"]) == {"ours", "original"}


def test_applying_a_profile_rewrites_limits_and_what_new_subscriptions_get(served, http, ready):
    # c0's limits are the original's (10 % of max): the adaptive profile rewrites them.
    r = http.put("/profile/adaptive")
    assert r.status_code == 200 and r.json()["timing"] is None and r.json()["limits_changed"] == 1, r.text
    assert served.doc("limits", "c0")["resources"]["cpu"] == {"boundary": 4, "boundary_type": "adaptive"}
    r = http.put("/profile/original", json={"timing": "original"})
    assert r.status_code == 200, r.text
    assert r.json()["profile"] == "original" and r.json()["timing"] == "original"
    assert r.json()["limits_changed"] == 1 and "scaler" in r.json()["services_changed"]
    assert http.get("/profile").json()["profile"] == "original"
    assert served.doc("services", "guardian")["config"]["WINDOW_TIMELAPSE"] == 10
    assert http.put(f"/structure/container/{ready}", json=body_of(ready)["container"]).status_code == 201
    assert served.doc("limits", ready)["resources"]["mem"] == {"boundary": 10, "boundary_type": "percentage_of_max"}


@pytest.mark.parametrize(
    "body, status, words",
    [
        pytest.param(None, 400, "unknown profile", id="unknown-profile"),
        pytest.param({"timing": "faster"}, 422, "timing", id="unknown-timing"),
        pytest.param({"speed": 1}, 422, "speed", id="unknown-key"),
    ],
)
def test_bad_profiles_are_refused(http, unchanged, body, status, words):
    unchanged(http.put("/profile/fastest" if body is None else "/profile/original", json=body), status, words)


# ---------------------------------------------------------------- ui


def test_the_ui_page_and_its_series(http, monkeypatch):
    from serve.routers import ui

    monkeypatch.setattr(ui, "_last_sample", 0.0)  # a poll of another test just before takes no sample
    page = http.get("/ui")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "/series" in page.text
    body = http.get("/ui/series").json()
    assert body["hosts"] == [{"name": "h0", "reachable": True, "cpu": {"free": 300, "max": 400},
                              "mem": {"free": 7936, "max": 8192}}]
    [c0] = body["containers"]
    assert c0["name"] == "c0" and c0["host"] == "h0" and set(c0["resources"]) == {"cpu", "mem"}
    cpu = c0["resources"]["cpu"]
    assert cpu["fields"] == ["usage", "current", "upper", "lower"] and (cpu["min"], cpu["max"]) == (10, 200)
    # The newest sample: [time, usage, current, upper, lower].
    assert cpu["samples"][-1][1:] == [None, 100, None, None]
