"""The ReBalancer on real Ray and real cgroups: a swap goes through the Scaler and keeps the application's total.

Three unguarded containers of one application on the test node: one busy at its quota
(a receiver), two idle (donors). With the ReBalancer active, CPU moves to the busy one
as pairs the Scaler applies whole; at every look the three limits, read from the cgroup
files, add up to at most the application's total (the donor is written first), and to the
total once the swaps are applied; the host's free CPU does not move.
"""
from __future__ import annotations

import pytest
import ray

from cluster.deploy import wait_for
from tests.containers import container_doc

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]

TOTAL = 180


@pytest.fixture
def rebalancer_on(stack):
    db = stack.statedb
    before = ray.get(db.get.remote("services", "rebalancer"))["config"]
    ray.get(db.patch.remote("services", "rebalancer", {"config.ACTIVE": True, "config.WINDOW_TIMELAPSE": 0.5}))
    try:
        yield
    finally:
        ray.get(db.patch.remote("services", "rebalancer", {f"config.{k}": before[k]
                                                          for k in ("ACTIVE", "WINDOW_TIMELAPSE")}))


def test_a_swap_goes_through_the_scaler_and_keeps_the_application_total(stack, containers, rebalancer_on):
    db = stack.statedb
    names = [containers.create("rb") for _ in range(3)]
    for n in names:
        ray.get(stack.scaler.subscribe_container.remote(container_doc(n, stack.host, cpu=(10, TOTAL // 3, TOTAL))))
    app = f"rbapp-{names[0]}"
    ray.get(db.put.remote("structures", {
        "name": app, "subtype": "application", "guard": False, "state": "running", "containers": names,
        "resources": {"cpu": {"min": 30, "max": TOTAL}, "mem": {"min": 64, "max": 2048}},
    }))
    try:
        free_before = ray.get(db.get.remote("structures", stack.host))["resources"]["cpu"]["free"]
        busy = names[0]
        containers.busy_loop(busy)

        def quotas() -> list[float]:
            return [stack.backend.read_limits(n).cpu_allowance_limit for n in names]

        def moved() -> bool:
            q = quotas()
            # The donor is written first: between its write and the receiver's a look may see
            # less than the total for a moment, never more.
            assert sum(q) <= TOTAL, q
            return q[0] >= 100 and sum(q) == TOTAL

        wait_for(moved, 60, interval_s=0.2, what="CPU moved to the busy container")
        swaps = [e for e in ray.get(db.recent_requests.remote(busy, 200)) if e.get("pair_structure")]
        assert swaps and all(e["outcome"] == "applied" and e["rule"] == "ReBalancer" for e in swaps)
        assert {e["pair_structure"] for e in swaps} <= set(names[1:])
        # each swap's donor part is in the log too, under the donor, for the same amount
        donor_parts = [e for n in names[1:] for e in ray.get(db.recent_requests.remote(n, 200))
                       if e.get("swap_with") == busy]
        assert sum(-e["amount_applied"] for e in donor_parts) == sum(e["amount_applied"] for e in swaps)
        docs = [ray.get(db.get.remote("structures", n)) for n in names]
        assert [d["resources"]["cpu"]["current"] for d in docs] == quotas()
        assert ray.get(db.get.remote("structures", app))["resources"]["cpu"]["current"] == TOTAL
        assert ray.get(db.get.remote("structures", stack.host))["resources"]["cpu"]["free"] == free_before
    finally:
        ray.get(db.delete.remote("structures", app))
        for n in names:
            ray.get(stack.scaler.desubscribe_container.remote(n))


def test_a_swap_the_donor_cannot_give_whole_is_refused_and_nothing_changes(stack, containers):
    import time

    db = stack.statedb
    names = [containers.create("rbx") for _ in range(2)]
    for n in names:
        ray.get(stack.scaler.subscribe_container.remote(container_doc(n, stack.host, cpu=(10, 50, 150))))
    donor, receiver = names

    def swap(amount: int) -> dict:
        req = {"type": "request", "resource": "cpu", "amount": amount, "priority": 2, "structure": receiver,
               "pair_structure": donor, "action": "CpuRescaleUp", "timestamp": time.time(), "rule": "ReBalancer"}
        ray.get(stack.scaler.submit.remote([req]))
        return wait_for(lambda: next((e for e in ray.get(db.recent_requests.remote(receiver, 50))
                                      if e.get("amount") == amount and e.get("pair_structure") == donor), None),
                        30, what=f"the swap of {amount}")

    try:
        free = ray.get(db.get.remote("structures", stack.host))["resources"]["cpu"]["free"]
        # the donor can give 50 − min 10 = 40, not 60: refused whole, the receiver gets nothing
        refused = swap(60)
        assert refused["outcome"] == "refused" and "no part applied" in refused["reason"], refused
        assert [stack.backend.read_limits(n).cpu_allowance_limit for n in names] == [50, 50]
        applied = swap(30)
        assert applied["outcome"] == "applied" and applied["new_current"] == 80, applied
        assert [stack.backend.read_limits(n).cpu_allowance_limit for n in names] == [20, 80]  # 50 − 30, 50 + 30
        assert [ray.get(db.get.remote("structures", n))["resources"]["cpu"]["current"] for n in names] == [20, 80]
        assert ray.get(db.get.remote("structures", stack.host))["resources"]["cpu"]["free"] == free
    finally:
        for n in names:
            ray.get(stack.scaler.desubscribe_container.remote(n))
