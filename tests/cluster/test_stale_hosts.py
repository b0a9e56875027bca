"""Hosts of an earlier cluster do not look reachable (issue 14, item 2).

`sc up` on a new cluster with the state dir of an old one finds host structures
that no node of the new cluster carries. The Membership's first reconcile, the one
`sc up` waits for, marks them unreachable with the reason; a container subscribed
to one is refused with a message naming the host and why.
"""
from __future__ import annotations

import uuid

import pytest
import ray

from tests.api.live import api, http  # noqa: F401  (session fixtures)
from tests.cluster.nodes import host_status, membership
from tests.containers import container_doc

pytestmark = pytest.mark.ray


@pytest.fixture
def stale_host(stack):
    """A host structure as an earlier cluster left it: reachable, its node long gone."""
    name = f"old{uuid.uuid4().hex[:6]}"
    doc = {"name": name, "host": name, "subtype": "host", "reachable": True, "node_id": "ab" * 28,
           "resources": {"cpu": {"max": 200, "free": 200}, "mem": {"max": 2048, "free": 2048}}}
    ray.get(stack.statedb.put.remote("structures", doc))
    yield name
    ray.get(stack.statedb.delete.remote("structures", name))


def test_a_host_no_node_carries_is_unreachable_once_the_first_reconcile_returns(stack, stale_host):
    ray.get(membership().reconcile.remote(10), timeout=60)
    doc = ray.get(stack.statedb.get.remote("structures", stale_host))
    assert doc["reachable"] is False
    assert f"sc_host={stale_host}" in doc["unreachable_reason"]
    st = host_status(stale_host)
    assert st["reachable"] is False and f"sc_host={stale_host}" in st["reason"]
    # The hosts of the live nodes are untouched.
    for host in (stack.host, *stack.worker_hosts):
        assert ray.get(stack.statedb.get.remote("structures", host))["reachable"] is True


def test_a_container_subscribed_to_a_stale_host_is_refused_naming_the_host_and_why(stack, stale_host, http):
    ray.get(membership().reconcile.remote(10), timeout=60)
    body = {"container": {**container_doc("stalec", stale_host), "subtype": "container"}}
    r = http.put("/structure/container/stalec", json=body)
    assert r.status_code == 503, r.text
    message = r.json()["message"]
    assert f"host {stale_host!r} is unreachable" in message
    assert f"sc_host={stale_host}" in message
    assert not ray.get(stack.statedb.exists.remote("structures", "stalec"))
    hosts = {h["name"]: h for h in http.get("/structure/", params={"subtype": "host"}).json()}
    assert hosts[stale_host]["reachable"] is False


def test_sc_host_list_says_why_a_host_is_unreachable(stack, stale_host, api):
    from typer.testing import CliRunner

    import cli

    ray.get(membership().reconcile.remote(10), timeout=60)
    r = CliRunner().invoke(cli.app, ["--url", api.url, "host", "list"])
    assert r.exit_code == 0, r.output
    line = next(line for line in r.output.splitlines() if stale_host in line)
    assert "False" in line and f"sc_host={stale_host}" in line, r.output
