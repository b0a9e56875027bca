"""Bad input is refused with a message and changes nothing (reference §11.5).

The ContainerScaler refuses any name that would lead outside its cgroup parent,
even when called directly (not through the API); the API refuses oversized
bodies, huge and negative numbers, unicode and path-traversal names with a 4xx
and a JSON message, and the StateDB is the same afterwards. What
tests/api/test_routes.py already covers (unsafe names on GET, negative max,
boundary over 100) is not repeated.
"""
from __future__ import annotations

import os

import pytest
import ray

from tests.api.live import api, http, snapshot, without_usage  # noqa: F401  (session fixtures)

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")
BAD_NAMES = ["../x", "..", "a/b", "/etc", "x/../../y", "", ".", "é", "名前", "x\n", " x", "x" * 200, "a\x00b"]


def _cgroup_tree(parent: str) -> dict[str, set[str]]:
    """Every directory under the test parent of each controller, and the controllers' top level
    entries a bad name could have made (`../x` → `x`, `/etc` → `etc`, ...)."""
    suspects = {part for n in BAD_NAMES for part in n.split("/") if part not in ("", ".", "..")}
    out = {}
    for ctl in CONTROLLERS:
        root = os.path.join("/sys/fs/cgroup", ctl)
        if not os.path.isdir(root):
            continue
        entries = {top for top in os.listdir(root) if top in suspects}
        for dirpath, dirnames, _ in os.walk(os.path.join(root, parent)):
            entries.update(os.path.relpath(os.path.join(dirpath, d), root) for d in dirnames)
        out[ctl] = entries
    return out


@pytest.fixture
def refused(stack):
    before = without_usage(snapshot(stack))

    def check(response, words=""):
        assert 400 <= response.status_code < 500, response.text
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"], body
        assert words.lower() in body["message"].lower(), body
        assert without_usage(snapshot(stack)) == before
    return check


@pytest.mark.parametrize("name", BAD_NAMES, ids=repr)
def test_the_container_scaler_refuses_names_outside_its_parent_when_called_directly(stack, name):
    node = stack.node
    before = _cgroup_tree(stack.parent)
    calls = [
        node.apply.remote(name, {"cpu_allowance_limit": 100, "mem_limit": 128}),
        node.create_container.remote(name),
        node.attach.remote(name, os.getpid()),
        node.read_limits.remote(name),
        node.remove_container.remote(name),
    ]
    for call in calls:
        with pytest.raises(ray.exceptions.RayTaskError) as e:
            ray.get(call, timeout=30)
        assert isinstance(e.value.cause, (ValueError, KeyError, LookupError)), e.value
    assert _cgroup_tree(stack.parent) == before
    # This driver was not moved into any cgroup by the refused attach.
    with open("/proc/self/cgroup") as f:
        assert stack.parent not in f.read()


def test_a_10_mb_body_is_413_with_a_message_and_changes_nothing(api, refused):
    body = b'{"container": {"name": "' + b"x" * (10 * 1024 * 1024) + b'"}}'
    with api.client() as http:
        r = http.put("/structure/container/big", content=body, headers={"content-type": "application/json"})
        assert r.status_code == 413
        refused(r, "larger than")
        # A streamed (chunked) body without Content-Length is cut off too.
        chunks = (b"x" * (256 * 1024) for _ in range(8))
        refused(http.put("/rule/CpuRescaleUp", content=chunks, headers={"content-type": "application/json"}),
                "larger than")
        assert http.get("/heartbeat").status_code == 200


@pytest.fixture
def sub(stack, containers, http):
    from tests.containers import container_doc

    name = containers.create("badin")
    body = {"container": {**container_doc(name, stack.host), "subtype": "container",
                          "host_rescaler_ip": stack.host, "host_rescaler_port": "8000"}}
    r = http.put(f"/structure/container/{name}", json=body)
    assert r.status_code == 201, r.text
    return name


HUGE = 10**30


@pytest.mark.parametrize(
    "method, path, body",
    [
        pytest.param("PUT", "/structure/{sub}/resources/cpu/max", {"value": HUGE}, id="huge-max"),
        pytest.param("PUT", "/structure/{sub}/resources/cpu/max", {"value": 1e308 * 10}, id="inf-max"),
        pytest.param("PUT", "/structure/{sub}/resources/mem/min", {"value": -1}, id="negative-min"),
        pytest.param("PUT", "/structure/{sub}/resources/cpu/weight", {"value": -3}, id="negative-weight"),
        pytest.param("PUT", "/structure/{sub}/limits/cpu/boundary", {"value": -1}, id="negative-boundary"),
        pytest.param("PUT", "/structure/{sub}/limits/cpu/boundary", {"value": HUGE}, id="huge-boundary"),
        pytest.param("PUT", "/rule/CpuRescaleUp/amount", {"value": HUGE}, id="huge-rule-amount"),
        pytest.param("PUT", "/rule/CpuRescaleUp/amount", {"value": "1e999"}, id="inf-rule-amount"),
        pytest.param("PUT", "/rule/CpuRescaleUp/events_required", {"value": -5, "event_type": "up"},
                     id="negative-events"),
        pytest.param("PUT", "/service/guardian/WINDOW_TIMELAPSE", {"value": -1}, id="negative-window"),
        pytest.param("PUT", "/rule/CpuRescaleUp", {"name": "CpuRescaleUp", "rule": {"eval": ["__import__('os')"]}},
                     id="malformed-jsonlogic"),
        pytest.param("PUT", "/rule/CpuRescaleUp", "{not json", id="not-json"),
    ],
)
def test_huge_negative_and_malformed_values_are_4xx_and_change_nothing(http, sub, refused, method, path, body):
    kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    if isinstance(body, dict) and body.get("value") == float("inf"):
        kw = {"content": '{"value": 1e999}', "headers": {"content-type": "application/json"}}
    refused(http.request(method, path.format(sub=sub), **kw))


@pytest.mark.parametrize(
    "name",
    ["%2E%2E", "..%2F..%2Fetc", "%2Fetc%2Fpasswd", "caf%C3%A9", "%E5%90%8D%E5%89%8D", "x%00y", "a%0Ab", "x%20"],
)
def test_unicode_and_traversal_names_are_refused_on_every_kind_of_route(http, stack, refused, name):
    from tests.containers import container_doc

    before = _cgroup_tree(stack.parent)
    doc = {"container": {**container_doc("x", stack.host), "subtype": "container",
                         "host_rescaler_ip": stack.host, "host_rescaler_port": "8000"}}
    refused(http.put(f"/structure/container/{name}", json=doc))
    refused(http.put(f"/structure/{name}/resources/cpu/max", json={"value": 100}))
    refused(http.put(f"/structure/{name}/limits/cpu/boundary", json={"value": 10}))
    refused(http.put(f"/structure/{name}/guard"))
    refused(http.delete(f"/structure/container/{name}"))
    refused(http.put(f"/structure/apps/{name}", json={"app": {"name": "x"}}))
    refused(http.put(f"/user/{name}", json={"name": "x"}))
    assert _cgroup_tree(stack.parent) == before


def test_a_huge_service_period_is_refused_and_changes_nothing(http, stack):
    before = ray.get(stack.statedb.get.remote("services", "guardian"))["config"]
    r = http.put("/service/guardian/EVENT_TIMEOUT", json={"value": "1e30"})
    assert r.status_code in (400, 422) and "message" in r.json(), r.text
    assert ray.get(stack.statedb.get.remote("services", "guardian"))["config"] == before
