"""Bad input to the API is refused with a 4xx and a message and changes nothing (reference §11.5).

The real app over a real StateDB in this process (tests/api/inprocess.py): oversized
bodies, huge, infinite and negative numbers, malformed JSON-logic, unicode and
path-traversal names, tokens that are almost right. What the nodes refuse when called
directly, and that no cgroup appears, is tested on the live stack (test_bad_input.py).
"""
from __future__ import annotations

import pytest

from tests.api.inprocess import Served

HUGE = 10**30
TOKEN = "s3cret-token"


@pytest.fixture
def served(tmp_path):
    with Served(str(tmp_path), token=TOKEN) as served:
        served.http.headers["Authorization"] = f"Bearer {TOKEN}"
        yield served


@pytest.fixture
def refused(served):
    """Call `refused(response, words)`: a 4xx with a JSON message, and nothing stored changed."""
    before = served.snapshot()

    def check(response, words=""):
        assert 400 <= response.status_code < 500, response.text
        body = response.json()
        assert isinstance(body.get("message"), str) and body["message"], body
        assert words.lower() in body["message"].lower(), body
        assert served.snapshot() == before
    return check


def test_a_10_mb_body_is_413_with_a_message_and_changes_nothing(served, refused):
    body = b'{"container": {"name": "' + b"x" * (10 * 1024 * 1024) + b'"}}'
    r = served.http.put("/structure/container/big", content=body, headers={"content-type": "application/json"})
    assert r.status_code == 413
    refused(r, "larger than")
    # A streamed (chunked) body without Content-Length is cut off too.
    chunks = (b"x" * (256 * 1024) for _ in range(8))
    refused(served.http.put("/rule/CpuRescaleUp", content=chunks, headers={"content-type": "application/json"}),
            "larger than")
    assert served.http.get("/heartbeat").status_code == 200


@pytest.mark.parametrize(
    "path, body",
    [
        pytest.param("/structure/c0/resources/cpu/max", {"value": HUGE}, id="huge-max"),
        pytest.param("/structure/c0/resources/cpu/max", '{"value": 1e999}', id="inf-max"),
        pytest.param("/structure/c0/resources/cpu/max", '{"value": NaN}', id="nan-max"),
        pytest.param("/structure/c0/resources/mem/min", {"value": -1}, id="negative-min"),
        pytest.param("/structure/c0/resources/cpu/weight", {"value": -3}, id="negative-weight"),
        pytest.param("/structure/c0/limits/cpu/boundary", {"value": -1}, id="negative-boundary"),
        pytest.param("/structure/c0/limits/cpu/boundary", {"value": HUGE}, id="huge-boundary"),
        pytest.param("/rule/CpuRescaleUp/amount", {"value": HUGE}, id="huge-rule-amount"),
        pytest.param("/rule/CpuRescaleUp/amount", {"value": "1e999"}, id="inf-rule-amount"),
        pytest.param("/rule/CpuRescaleUp/events_required", {"value": -5, "event_type": "up"}, id="negative-events"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": -1}, id="negative-window"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": "inf"}, id="inf-window"),
        pytest.param("/service/guardian/EVENT_TIMEOUT", {"value": "1e30"}, id="huge-period"),
        pytest.param("/service/guardian/WINDOW_TIMELAPSE", {"value": {"nested": 1}}, id="object-value"),
        pytest.param("/rule/CpuRescaleUp", {"name": "CpuRescaleUp", "rule": {"eval": ["__import__('os')"]}},
                     id="malformed-jsonlogic"),
        pytest.param("/rule/CpuRescaleUp", "{not json", id="not-json"),
    ],
)
def test_huge_negative_and_malformed_values_are_4xx_and_change_nothing(served, refused, path, body):
    kw = {"content": body, "headers": {"content-type": "application/json"}} if isinstance(body, str) else {"json": body}
    refused(served.http.put(path, **kw))


@pytest.mark.parametrize(
    "name",
    ["%2E%2E", "..%2F..%2Fetc", "%2Fetc%2Fpasswd", "caf%C3%A9", "%E5%90%8D%E5%89%8D", "x%00y", "a%0Ab", "x%20"],
)
def test_unicode_and_traversal_names_are_refused_on_every_kind_of_route(served, refused, name):
    served.nodes["h0"].containers.add(name)
    for response in requests_naming(served.http, name, "h0"):
        refused(response)


def requests_naming(http, name, host):
    """One request of every kind of route that names `name` (the live-stack test sends them too)."""
    doc = {"container": {"name": "x", "host": host, "resources": {"cpu": {"min": 1, "max": 100},
                                                                   "mem": {"min": 64, "max": 128}}}}
    return [
        http.put(f"/structure/container/{name}", json=doc),
        http.put(f"/structure/{name}/resources/cpu/max", json={"value": 100}),
        http.put(f"/structure/{name}/limits/cpu/boundary", json={"value": 10}),
        http.put(f"/structure/{name}/guard"),
        http.delete(f"/structure/container/{name}"),
        http.put(f"/structure/apps/{name}", json={"app": {"name": "x"}}),
        http.put(f"/user/{name}", json={"name": "x"}),
        http.put(f"/rule/{name}/activate"),
        http.put(f"/service/{name}/ACTIVE", json={"value": "true"}),
        http.put(f"/user/clusters/{name}/x"),
    ]


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer x", "Basic abc", f"Bearer {TOKEN}x",
                                    f"Bearer {TOKEN[:-1]}", f"bearer{TOKEN}"])
def test_a_wrong_token_is_401_and_changes_nothing(served, header):
    before = served.snapshot()
    headers = {"Authorization": header} if header else {}
    served.http.headers.pop("Authorization")
    for method, path, body in [("PUT", "/rule/CpuRescaleUp/amount", {"value": 60}),
                               ("PUT", "/service/guardian/EVENT_TIMEOUT", {"value": 5}),
                               ("PUT", "/profile/original", None),
                               ("DELETE", "/structure/container/c0", None)]:
        r = served.http.request(method, path, json=body, headers=headers)
        assert r.status_code == 401, (path, r.text)
        assert r.json()["message"] and r.headers.get("www-authenticate") == "Bearer"
    # Reads stay open, whatever the header.
    assert served.http.get("/rule/CpuRescaleUp", headers=headers).status_code == 200
    assert served.snapshot() == before
