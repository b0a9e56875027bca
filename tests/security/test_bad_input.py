"""Bad input is refused with a message and changes nothing (reference §11.5).

The ContainerScaler refuses any name that would lead outside its cgroup parent,
even when called directly (not through the API); through the deployed API, unicode
and path-traversal names get a 4xx and a JSON message, the StateDB is the same
afterwards and no cgroup appears. Oversized bodies, huge and negative numbers and
the rest of the API's refusals are tested in this process (test_bad_input_fast.py).
"""
from __future__ import annotations

import os

import pytest
import ray

from tests.api.live import api, http, snapshot, without_usage  # noqa: F401  (session fixtures)
from tests.security.test_bad_input_fast import requests_naming

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


@pytest.mark.parametrize(
    "name",
    ["%2E%2E", "..%2F..%2Fetc", "%2Fetc%2Fpasswd", "caf%C3%A9", "%E5%90%8D%E5%89%8D", "x%00y", "a%0Ab", "x%20"],
)
def test_unicode_and_traversal_names_are_refused_on_every_kind_of_route(http, stack, refused, name):
    before = _cgroup_tree(stack.parent)
    for response in requests_naming(http, name, stack.host):
        refused(response)
    assert _cgroup_tree(stack.parent) == before
