"""Subscribing containers: bad input gets a clear error and changes nothing."""
from __future__ import annotations

import pytest
import ray

from sc_actors.errors import Conflict, Invalid, NotFound
from tests.containers import container_doc


def _snapshot(stack):
    db = stack.statedb
    return (ray.get(db.list.remote("structures")), ray.get(db.list.remote("limits")))


def _subscribe(stack, doc):
    return ray.get(stack.scaler.subscribe_container.remote(doc))


def test_subscribing_places_the_container_on_cores_and_writes_its_limits(stack, containers):
    name = containers.create("sub")
    host_before = ray.get(stack.statedb.get.remote("structures", stack.host))
    containers.subscribe(name, cpu=(25, 150, 200), mem=(64, 300, 512))
    real = stack.backend.read_limits(name)
    assert real.cpu_allowance_limit == 150 and real.mem_limit == 300
    host = ray.get(stack.statedb.get.remote("structures", stack.host))
    cmap = host["resources"]["cpu"]["core_usage_mapping"]
    assert sum(core.get(name, 0) for core in cmap.values()) == 150
    assert all(sum(v for v in core.values()) == 100 for core in cmap.values())
    assert host["resources"]["cpu"]["free"] == host_before["resources"]["cpu"]["free"] - 150
    assert host["resources"]["mem"]["free"] == host_before["resources"]["mem"]["free"] - 300
    assert real.cpu_num == ",".join(sorted((c for c, m in cmap.items() if m.get(name)), key=int))
    limits = ray.get(stack.statedb.get.remote("limits", name))
    # No limits given: the shipped profile's (adaptive, 4 % of current).
    assert (limits["resources"]["cpu"]["boundary"], limits["resources"]["cpu"]["boundary_type"]) == (4, "adaptive")


def test_desubscribing_gives_cores_and_memory_back(stack, containers):
    name = containers.create("unsub")
    host_before = ray.get(stack.statedb.get.remote("structures", stack.host))
    containers.subscribe(name, cpu=(25, 120, 200))
    ray.get(stack.scaler.desubscribe_container.remote(name))
    host = ray.get(stack.statedb.get.remote("structures", stack.host))
    assert host["resources"] == host_before["resources"]
    assert not ray.get(stack.statedb.exists.remote("structures", name))
    assert not ray.get(stack.statedb.exists.remote("limits", name))


@pytest.mark.parametrize(
    "mutate, error, words",
    [
        pytest.param(lambda d: d["resources"]["cpu"].update(min=300), Invalid, "min", id="min-above-max"),
        pytest.param(lambda d: d.update(name="a/b"), Invalid, "invalid name", id="slash-in-name"),
        pytest.param(lambda d: d.update(name=".."), Invalid, "invalid name", id="dotdot-name"),
        pytest.param(lambda d: d.update(host="nohost"), NotFound, "host 'nohost'", id="unknown-host"),
        pytest.param(lambda d: d.update(name="not-on-node"), NotFound, "not found on host", id="unknown-container"),
        pytest.param(lambda d: d["resources"]["mem"].update(current=10**7, max=10**7), Invalid, "MiB free",
                     id="more-memory-than-host"),
        pytest.param(lambda d: d["resources"]["cpu"].update(current=10_000, max=10_000), Invalid, "free",
                     id="more-cpu-than-host"),
    ],
)
def test_bad_subscriptions_are_refused_and_change_nothing(stack, containers, mutate, error, words):
    name = containers.create("bad")
    doc = container_doc(name, stack.host)
    mutate(doc)
    before = _snapshot(stack)
    with pytest.raises(error, match=words):
        _subscribe(stack, doc)
    assert _snapshot(stack) == before


def test_subscribing_twice_is_a_conflict(stack, containers):
    name = containers.create("twice")
    containers.subscribe(name)
    before = _snapshot(stack)
    with pytest.raises(Conflict, match="already subscribed"):
        containers.subscribe(name)
    assert _snapshot(stack) == before


def test_an_invalid_patch_is_refused_and_changes_nothing(stack, containers):
    name = containers.create("patch")
    containers.subscribe(name)
    before = ray.get(stack.statedb.get.remote("structures", name))
    with pytest.raises(Invalid, match="min"):
        ray.get(stack.statedb.patch.remote("structures", name, {"resources.cpu.min": 500}))
    with pytest.raises(Invalid):
        ray.get(stack.statedb.patch.remote("limits", name, {"resources.cpu.boundary": 101}))
    with pytest.raises(NotFound):
        ray.get(stack.statedb.patch.remote("structures", "ghost", {"guard": True}))
    assert ray.get(stack.statedb.get.remote("structures", name)) == before

