"""The Scaler writes a host's batch in one call; a refused write puts the batch back.

Three containers of one host ask for more CPU in one batch; the third one's cgroup
has vanished from the node (still subscribed). The batch is written in one call,
the node refuses the third write, every write is put back, and the requests are
applied one at a time: the first two get their quota, the third fails with the
reason, and the host's accounting moves by exactly the two amounts granted.
"""
from __future__ import annotations

import time

import ray

from cluster.deploy import wait_for


def _free_cpu(stack) -> float:
    return ray.get(stack.statedb.get.remote("structures", stack.host))["resources"]["cpu"]["free"]


def test_a_refused_write_puts_the_batch_back_and_the_rest_is_applied_one_by_one(stack, containers):
    names = [containers.create("batch") for _ in range(3)]
    for n in names:
        containers.subscribe(n, cpu=(25, 50, 200), mem=(64, 256, 512))  # idle, not guarded
    logged_before = {n: len(ray.get(stack.statedb.recent_requests.remote(n, 100_000))) for n in names}
    before = {n: stack.backend.read_limits(n).cpu_allowance_limit for n in names[:2]}
    free_before = _free_cpu(stack)
    put_back_before = ray.get(stack.scaler.ping.remote())["batches"].get("put_back", 0)
    gone = names[2]
    stack.backend.remove(gone)  # the node no longer has it; the StateDB still does

    now = time.time()
    ray.get(stack.scaler.submit.remote([
        {"type": "request", "resource": "cpu", "amount": 10 + i, "structure": n, "action": "CpuRescaleUp",
         "timestamp": now, "host": stack.host} for i, n in enumerate(names)]))

    def logged(n):
        return ray.get(stack.statedb.recent_requests.remote(n, 100_000))[logged_before[n]:]

    wait_for(lambda: all(logged(n) for n in names), 30, what="the three requests in the request log")
    outcome = {n: logged(n)[-1] for n in names}
    assert [outcome[n]["outcome"] for n in names] == ["applied", "applied", "failed"], outcome
    assert gone in outcome[gone]["reason"], outcome[gone]
    # The two good writes landed (10 and 11 shares), the accounting moved by exactly those.
    assert [stack.backend.read_limits(n).cpu_allowance_limit - before[n] for n in names[:2]] == [10, 11]
    assert _free_cpu(stack) == free_before - 21
    currents = [ray.get(stack.statedb.get.remote("structures", n))["resources"]["cpu"]["current"] for n in names]
    assert currents == [60, 61, 50]
    assert ray.get(stack.scaler.ping.remote())["batches"].get("put_back", 0) == put_back_before + 1
