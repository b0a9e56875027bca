"""SIGKILL one Guardian shard, then one Scaler shard, in the middle of a run (issue 16's acceptance);
then the coordinator of a request across shards between its parts and its record.

The session's stack runs with N shards (`tests/actors/sharding.py`: the three hosts on two
shards at least), one real cgroup container per host. For each kill: the hosts of the
other shards keep being served while the killed shard is down (a window evaluated, a
request applied on them after the kill and before the killed shard serves again), the
killed shard's hosts are served again within 5 s of the kill (the restarted Guardian
evaluates their next window; the restarted Scaler applies a request sent at the kill),
and nothing acknowledged is lost (their accounting is what it was, plus what was applied
after). Every wait is a condition polled with a deadline. Run with `-s` for the times.
"""
from __future__ import annotations

import os
import signal
import time
from typing import Any, Callable, Optional

import pytest
import ray

from cluster.deploy import wait_for
from tests.actors.sharding import Sharded, pid_of

pytestmark = pytest.mark.ray

SERVED_AGAIN_S = 5.0
"""Issue 16: a killed shard's hosts are served again within this, seconds from the kill."""
TIMES: dict[str, dict[str, float]] = {}


@pytest.fixture(scope="module")
def sharded(stack):
    s = Sharded(stack)
    try:
        yield s.up()
    finally:
        s.down()
        for kind, t in TIMES.items():
            print(f"\nSIGKILL of a {kind} shard ({s.n} shards): " + ", ".join(f"{k} {v:.2f} s" for k, v in t.items()))


def _first_times(checks: dict[str, Callable[[], bool]], until: str, timeout_s: float) -> dict[str, float]:
    """Poll every check together until `until` holds; when each first held (monotonic)."""
    seen: dict[str, float] = {}
    deadline = time.monotonic() + timeout_s
    while until not in seen:
        for k, check in checks.items():
            if k not in seen and check():
                seen[k] = time.monotonic()
        if time.monotonic() > deadline:
            raise TimeoutError(f"within {timeout_s:g} s only {sorted(seen)} of {sorted(checks)} held")
        time.sleep(0.02)
    return seen


def _alive_again(actor: Any, old_pid: int) -> Callable[[], Optional[int]]:
    """A check that never blocks: the actor's new pid once a new process answers, else None."""
    asked: list[Any] = []

    def check() -> Optional[int]:
        if not asked:
            asked.append(actor.__ray_call__.remote(lambda self: os.getpid()))
        ready, _ = ray.wait(asked, timeout=0)
        if not ready:
            return None
        ref = asked.pop()
        try:
            pid = int(ray.get(ref))
        except Exception:
            return None
        return pid if pid != old_pid else None
    return check


def _hosts(sharded: Sharded) -> tuple[str, list[str]]:
    """A host of a shard past 0 (the one killed) and the hosts of the other shards."""
    victim = next(h for h in sharded.hosts if sharded.shard(h) != 0)
    return victim, [h for h in sharded.hosts if sharded.shard(h) != sharded.shard(victim)]


def test_a_killed_guardian_shard_serves_its_hosts_again_and_the_others_go_on(sharded):
    victim, others = _hosts(sharded)
    guardian = sharded.guardian_of(victim)
    other_guardians = {sharded.shard(h): sharded.guardian_of(h) for h in others}
    windows_before = {i: sharded.windows(g) for i, g in other_guardians.items()}
    accounting = sharded.accounting(victim)
    other = sharded.container_on(others[0])
    current = sharded.current(other)
    pid = pid_of(guardian)
    back = _alive_again(guardian, pid)

    t_kill = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # A request on another shard's host, sent at the kill.
    ray.get(sharded.scaler_of(others[0]).submit.remote([sharded.request(other, 10)]))
    seen = _first_times({
        "others' windows evaluated": lambda: all(sharded.windows(g) > windows_before[i]
                                                 for i, g in other_guardians.items()),
        "request applied on another shard's host": lambda: sharded.current(other) == current + 10,
        # The new process evaluated a window: the only windows it gets are its own hosts'.
        "killed shard's hosts served again": lambda: back() is not None and sharded.windows(guardian) > 0,
    }, until="killed shard's hosts served again", timeout_s=30)
    times = {k: v - t_kill for k, v in seen.items()}
    TIMES["guardian"] = times
    served_again = times["killed shard's hosts served again"]
    assert served_again < SERVED_AGAIN_S, times
    assert times["request applied on another shard's host"] < served_again, times
    assert times["others' windows evaluated"] < served_again, times
    # The Guardian holds nothing acknowledged: the host's accounting is untouched by the kill.
    assert sharded.accounting(victim) == accounting
    ray.get(sharded.scaler_of(others[0]).submit.remote([sharded.request(other, -10)]))
    wait_for(lambda: sharded.current(other) == current, 15, what="the request put back")


def test_a_killed_scaler_shard_serves_its_hosts_again_and_the_others_go_on(sharded):
    victim, others = _hosts(sharded)
    scaler = sharded.scaler_of(victim)
    mine, other = sharded.container_on(victim), sharded.container_on(others[0])
    cpu_free, mem_free, _, containers = sharded.accounting(victim)
    current_mine, current_other = sharded.current(mine), sharded.current(other)
    quota_mine = sharded.quota(mine)
    pid = pid_of(scaler)
    back = _alive_again(scaler, pid)

    t_kill = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    # Sent at the kill: one to another shard (applied while this one is down), one to the
    # killed shard itself (Ray holds it for the restarted actor, max_task_retries=-1).
    sharded.scaler_of(others[0]).submit.remote([sharded.request(other, 10)])
    scaler.submit.remote([sharded.request(mine, 10)])
    seen = _first_times({
        "request applied on another shard's host": lambda: sharded.current(other) == current_other + 10,
        "killed shard back": lambda: back() is not None,
        "killed shard's hosts served again": lambda: sharded.current(mine) == current_mine + 10,
    }, until="killed shard's hosts served again", timeout_s=30)
    times = {k: v - t_kill for k, v in seen.items()}
    TIMES["scaler"] = times
    served_again = times["killed shard's hosts served again"]
    assert served_again < SERVED_AGAIN_S, times
    assert times["request applied on another shard's host"] < times["killed shard back"], times
    # Nothing acknowledged lost, nothing applied twice: the host's accounting is what it was
    # before the kill plus the one request applied after it, and the node holds that limit.
    cpu_free_after, mem_free_after, _, containers_after = sharded.accounting(victim)
    assert cpu_free_after == cpu_free - 10
    assert mem_free_after == mem_free
    assert containers_after == [(c, cpu + 10 if c == mine else cpu, mem) for c, cpu, mem in containers]
    assert sharded.quota(mine) == quota_mine + 10
    applied = [e for e in sharded.entries(mine) if e.get("outcome") == "applied" and e.get("amount") == 10]
    assert len(applied) == 1, applied
    for name, shards in ((mine, scaler), (other, sharded.scaler_of(others[0]))):
        ray.get(shards.submit.remote([sharded.request(name, -10)]))
    wait_for(lambda: (sharded.current(mine), sharded.current(other)) == (current_mine, current_other), 15,
             what="the requests put back")


def test_a_coordinator_killed_between_its_parts_and_its_record_leaves_no_part_applied(sharded, stack):
    """Shard 0 applies an application's parts through the owners (its own hosts' too), then dies
    before recording its decision: every owner, shard 0 started again included, puts its part
    back once it has held it PART_HOLD_S, so no host keeps the request."""
    from sc_actors.scaler import PART_HOLD_S
    from sc_actors.settings import NAMESPACE, scaler_name

    def hang_decision_records(self: Any) -> None:
        """Run in the coordinator (defined here: pickled by value): its records that carry a
        request's tx (its decisions on requests across shards) never return; every other
        StateDB call goes through."""
        import asyncio

        statedb = self._handles.statedb

        class Hanging:
            def __getattr__(self, method: str) -> Any:
                real = getattr(statedb, method)
                if method != "record_scaling":
                    return real

                class Call:
                    @staticmethod
                    def remote(*args: Any) -> Any:
                        if any(e.get("tx") for e in (args[2] if len(args) > 2 else [])):
                            return asyncio.get_running_loop().create_future()  # never done
                        return real.remote(*args)
                return Call

        self._db = lambda: Hanging()

    db = stack.statedb
    app = f"killapp-{int(time.time() * 1000) % 100000}"
    names = sorted(sharded.on)
    ray.get(db.put.remote("structures", {
        "name": app, "subtype": "application", "state": "running", "containers": names,
        "resources": {"cpu": {"min": 20, "max": 1000}, "mem": {"min": 64, "max": 4096}}}))
    coordinator = ray.get_actor(scaler_name(0), namespace=NAMESPACE)
    try:
        before = {h: sharded.accounting(h) for h in sharded.hosts}
        quotas = {c: sharded.quota(c) for c in names}
        ray.get(coordinator.__ray_call__.remote(hang_decision_records))
        ray.get(coordinator.submit.remote([sharded.request(app, 30, "application")]))
        # Every part applied and held (each container 10 shares up, §4.8's even split), no decision.
        wait_for(lambda: all(sharded.quota(c) == quotas[c] + 10 for c in names), 20, what="every part applied")
        pid = pid_of(coordinator)
        t_kill = time.monotonic()
        os.kill(pid, signal.SIGKILL)
        wait_for(lambda: all(sharded.quota(c) == quotas[c] for c in names)
                 and {h: sharded.accounting(h) for h in sharded.hosts} == before,
                 PART_HOLD_S + 20, what="every part put back")
        print(f"\ncoordinator killed between its parts and its record: all put back in "
              f"{time.monotonic() - t_kill:.1f} s ({len(sharded.hosts)} hosts, hold {PART_HOLD_S:g} s)")
        assert not [e for e in sharded.entries(app) if e.get("outcome") == "applied"]
    finally:
        ray.get(db.delete.remote("structures", app))
