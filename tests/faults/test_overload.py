"""A burst of 1 000 requests collapses to the latest per (structure, action), applied once (reference §4.2).

The original's Scaler only deduplicated by key within one polling epoch, so piles
of stale requests could be applied one after another. Here the whole burst
reaches the Scaler in one message; each key's newest request is applied (trimmed if
the host has less free) and every other one is logged "superseded", and the cgroup
moves by that one amount only.
"""
from __future__ import annotations

import collections
import time

import ray

from cluster.deploy import wait_for

BURST = 1000


def test_a_burst_of_1000_requests_is_applied_once_per_key(stack, containers):
    names = [containers.create("burst") for _ in range(3)]
    for n in names:
        containers.subscribe(n, cpu=(25, 50, 200), mem=(64, 256, 512))  # subscribed, idle, not guarded
    before = {n: stack.backend.read_limits(n) for n in names}
    logged_before = {n: len(ray.get(stack.statedb.recent_requests.remote(n, 100_000))) for n in names}

    # Key → the amount of its newest request; amounts differ so a wrong pick shows.
    t0 = time.time() - 5
    latest: dict[tuple[str, str], int] = {}
    burst = []
    for i in range(BURST):
        n = names[i % len(names)]
        res = "cpu" if (i // len(names)) % 2 == 0 else "mem"
        amount = (1 + i % 13) if res == "cpu" else (20 + i % 53)
        action = "CpuRescaleUp" if res == "cpu" else "MemRescaleUp"
        burst.append({"type": "request", "resource": res, "amount": amount, "structure": n, "action": action,
                      "timestamp": t0 + i * 1e-3, "host": stack.host})
        latest[(n, action)] = amount
    assert len(latest) == 2 * len(names)
    ray.get(stack.scaler.submit.remote(burst))

    def all_logged():
        return all(len(ray.get(stack.statedb.recent_requests.remote(n, 100_000))) - logged_before[n]
                   >= sum(1 for r in burst if r["structure"] == n) for n in names)

    wait_for(all_logged, 30, what="every request of the burst in the request log")
    for n in names:
        log = ray.get(stack.statedb.recent_requests.remote(n, 100_000))[logged_before[n]:]
        outcomes = collections.Counter(r["outcome"] for r in log)
        done = [r for r in log if r["outcome"] != "superseded"]
        assert len(log) == sum(1 for r in burst if r["structure"] == n), outcomes
        # One processed request per key, the newest; its amount may be trimmed by what the host has free.
        assert sorted((r["action"], r["amount"]) for r in done) == sorted(
            (a, amt) for (s, a), amt in latest.items() if s == n), done
        assert all(r["outcome"] in ("applied", "trimmed") for r in done), done
        moved = {r["action"]: r["amount_applied"] for r in done}
        after = stack.backend.read_limits(n)
        assert after.cpu_allowance_limit == before[n].cpu_allowance_limit + moved["CpuRescaleUp"]
        assert after.mem_limit == before[n].mem_limit + moved["MemRescaleUp"]
        doc = ray.get(stack.statedb.get.remote("structures", n))["resources"]
        assert doc["cpu"]["current"] == after.cpu_allowance_limit and doc["mem"]["current"] == after.mem_limit
