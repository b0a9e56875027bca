"""The routes' real wiring, over real HTTP, against the session's Ray and control plane.

Every route and its refusals are tested in this process (test_routes_fast.py); here
only what needs the real stack: the token of the Serve deployment, a write and the
errors coming back through Ray, the Scaler's accounting and its refusals, the
cgroup limits written, the real nodes looked up. A refused request changes nothing.
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


# ---------------------------------------------------------------- auth


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


# ---------------------------------------------------------------- services


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


@pytest.mark.parametrize(
    "mutate, status, words",
    [
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


# ---------------------------------------------------------------- hosts


def test_a_host_without_a_running_container_scaler_is_refused(http, refused):
    body = {"name": "newhost", "host": "newhost", "subtype": "host", "host_rescaler_ip": "newhost",
            "host_rescaler_port": "8000", "resources": {"cpu": {"max": 400, "free": 400}, "mem": {"max": 1024, "free": 1024}}}
    refused(http.put("/structure/host/newhost", json=body), 400, "no containerscaler")


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


def test_desubscribing_a_container_takes_it_out_of_its_application(http, stack, sub, app):
    assert http.put(f"/structure/container/{sub}/{app}").status_code == 200
    assert http.delete(f"/structure/container/{sub}").status_code == 200
    assert db_get(stack, "structures", app)["containers"] == []


# ---------------------------------------------------------------- status


def test_status_has_a_row_per_container_and_resource(http, stack, sub):
    rows = [r for r in http.get("/status").json()["containers"] if r["container"] == sub]
    assert {r["resource"] for r in rows} == {"cpu", "mem"}
    cpu = next(r for r in rows if r["resource"] == "cpu")
    assert (cpu["current"], cpu["min"], cpu["max"], cpu["host"]) == (50, 25, 200, stack.host)