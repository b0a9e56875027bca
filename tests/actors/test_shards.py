"""Shards by host on the session's Ray stack (issue 16): routing, and requests that span shards.

The stack is deployed again with N Guardian and Scaler shards (N the smallest that puts
the session's three hosts on two shards at least; `tests/actors/sharding.py`), one real
cgroup container per host. Each host's windows reach its own Guardian shard; a container
request sent to a shard that does not own its host is applied by the owner; an
application spread over the shards is applied on every host, through the owners, or, when
one part is refused, on none: every part already applied is put back and each host's
accounting and limits are as before.
"""
from __future__ import annotations

import time

import pytest
import ray

from cluster.deploy import wait_for
from sc_actors.settings import NAMESPACE, guardian_name, scaler_name
from tests.actors.sharding import Sharded

pytestmark = pytest.mark.ray


@pytest.fixture(scope="module")
def sharded(stack):
    s = Sharded(stack)
    try:
        yield s.up()
    finally:
        s.down()


@pytest.fixture
def application(stack, sharded):
    db = stack.statedb
    name = f"shardapp-{int(time.time() * 1000) % 100000}"
    ray.get(db.put.remote("structures", {
        "name": name, "subtype": "application", "state": "running", "containers": sorted(sharded.on),
        "resources": {"cpu": {"min": 20, "max": 1000}, "mem": {"min": 64, "max": 4096}}}))
    try:
        yield name
    finally:
        ray.get(db.delete.remote("structures", name))


def test_each_host_is_evaluated_by_its_own_guardian_shard_only(sharded):
    for h in sharded.hosts:
        assert sharded.windows(sharded.guardian_of(h)) > 0, h
    # A shard (made by this deployment) that owns none of the hosts gets no window.
    owners = {sharded.shard(h) for h in sharded.hosts}
    for i in set(range(1, sharded.n)) - owners:
        idle = ray.get_actor(guardian_name(i), namespace=NAMESPACE)
        assert sharded.windows(idle) == 0, guardian_name(i)


def test_a_container_request_sent_to_another_shard_is_applied_by_the_owner(sharded):
    host = next(h for h in sharded.hosts if sharded.shard(h) != 0)
    name = sharded.container_on(host)
    before, quota = sharded.current(name), sharded.quota(name)
    owner = sharded.scaler_of(host)
    applied_before = ray.get(owner.ping.remote())["outcomes"].get("applied", 0)
    coordinator = ray.get_actor(scaler_name(0), namespace=NAMESPACE)
    ray.get(coordinator.submit.remote([sharded.request(name, 10)]))
    try:
        wait_for(lambda: sharded.current(name) == before + 10, 15, what="the request applied by the owner")
        assert sharded.quota(name) == quota + 10
        assert ray.get(owner.ping.remote())["outcomes"].get("applied", 0) == applied_before + 1
        assert ray.get(coordinator.ping.remote())["outcomes"].get("forwarded", 0) >= 1
    finally:
        ray.get(owner.submit.remote([sharded.request(name, -10)]))
        wait_for(lambda: sharded.current(name) == before, 15, what="the request put back")


def _group_entry(sharded, app, since):
    return next((e for e in sharded.entries(app)
                 if e.get("structure_type") == "application" and e.get("applied_at", 0) > since), None)


def test_an_application_spread_over_shards_is_applied_on_every_host_through_the_owners(sharded, application):
    names = sorted(sharded.on)
    before = {h: sharded.accounting(h) for h in sharded.hosts}
    currents = {c: sharded.current(c) for c in names}
    quotas = {c: sharded.quota(c) for c in names}
    t0 = time.time()
    ray.get(ray.get_actor(scaler_name(0), namespace=NAMESPACE).submit.remote(
        [sharded.request(application, 30, "application")]))
    entry = wait_for(lambda: _group_entry(sharded, application, t0), 20, what="the application's decision")
    assert entry["outcome"] == "applied", entry
    # Σ usage 0 everywhere: §4.8 splits 30 evenly, 10 to each of the three containers.
    assert entry["split"] == {c: 10 for c in names}
    for c in names:
        assert sharded.current(c) == currents[c] + 10, c
        assert sharded.quota(c) == quotas[c] + 10, c
    for h in sharded.hosts:
        cpu_free_before = before[h][0]
        assert sharded.accounting(h)[0] == cpu_free_before - 10, h  # each host gave its container 10 shares
    # Back, the same way.
    t1 = time.time()
    ray.get(ray.get_actor(scaler_name(0), namespace=NAMESPACE).submit.remote(
        [sharded.request(application, -30, "application")]))
    assert wait_for(lambda: _group_entry(sharded, application, t1), 20, what="the way back")["outcome"] == "applied"
    assert {h: sharded.accounting(h)[:2] for h in sharded.hosts} == {h: before[h][:2] for h in sharded.hosts}


def test_one_refused_part_puts_back_every_part_and_changes_no_accounting(sharded, application, stack):
    names = sorted(sharded.on)
    # The parts are applied in host order; the last host's node refuses its write (its cgroup is gone).
    last_host = max(sharded.hosts)
    victim = sharded.container_on(last_host)
    others = [c for c in names if c != victim]
    before = {h: sharded.accounting(h) for h in sharded.hosts}
    quotas = {c: sharded.quota(c) for c in others}
    stack.backend_of(last_host).remove(victim)
    try:
        t0 = time.time()
        ray.get(ray.get_actor(scaler_name(0), namespace=NAMESPACE).submit.remote(
            [sharded.request(application, 30, "application")]))
        entry = wait_for(lambda: _group_entry(sharded, application, t0), 20, what="the application's decision")
        assert entry["outcome"] == "failed", entry
        put_back_on = sorted({sharded.on[c] for c in others})
        assert f"host {last_host} (scaler shard {scaler_name(sharded.shard(last_host))})" in entry["reason"]
        assert f"put back on {', '.join(put_back_on)}" in entry["reason"], entry["reason"]
        assert entry["reason"].endswith("no part applied")
        # Every host's accounting, and every written container's limits, as before.
        assert {h: sharded.accounting(h) for h in sharded.hosts} == before
        assert {c: sharded.quota(c) for c in others} == quotas
    finally:
        ray.get(stack.node_of(last_host).create_container.remote(victim))


def test_a_swap_between_hosts_of_two_shards_moves_the_shares_through_both_owners(sharded):
    # The ReBalancer's swap (§4.7): `amount` from `pair_structure` (the donor) to `structure`.
    a, b = (next(h for h in sharded.hosts if sharded.shard(h) == s)
            for s in sorted({sharded.shard(h) for h in sharded.hosts})[:2])
    donor, receiver = sharded.container_on(a), sharded.container_on(b)
    # A container an earlier test made again has no quota until the drift repair writes its recorded one.
    wait_for(lambda: all(sharded.quota(c) == sharded.current(c) for c in (donor, receiver)), 20,
             what="the recorded limits in the cgroup files")
    before = {c: (sharded.current(c), sharded.quota(c)) for c in (donor, receiver)}
    free = {h: sharded.accounting(h)[0] for h in (a, b)}
    swap = {**sharded.request(receiver, 10), "pair_structure": donor}
    t0 = time.time()
    ray.get(ray.get_actor(scaler_name(0), namespace=NAMESPACE).submit.remote([swap]))
    entry = wait_for(lambda: next((e for e in sharded.entries(receiver)
                                   if e.get("pair_structure") == donor and e.get("applied_at", 0) > t0), None),
                     20, what="the swap's decision")
    assert entry["outcome"] == "applied", entry
    assert (sharded.current(donor), sharded.quota(donor)) == (before[donor][0] - 10, before[donor][1] - 10)
    assert (sharded.current(receiver), sharded.quota(receiver)) == (before[receiver][0] + 10, before[receiver][1] + 10)
    assert {h: sharded.accounting(h)[0] for h in (a, b)} == {a: free[a] + 10, b: free[b] - 10}
    # And back.
    back = {**sharded.request(donor, 10), "pair_structure": receiver}
    ray.get(ray.get_actor(scaler_name(0), namespace=NAMESPACE).submit.remote([back]))
    wait_for(lambda: {c: sharded.current(c) for c in before} == {c: v[0] for c, v in before.items()}, 20,
             what="the swap back")
