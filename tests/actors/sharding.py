"""The session's stack deployed again with N Guardian and Scaler shards, for the shard tests.

The session's three hosts have random names (tests/conftest.py); `split_count` picks the
smallest N that puts them on at least two shards, so every shard test has hosts on
different shards. `Sharded` deploys N shards on the session cluster and, when done,
deploys it again with one (the shards past 0 are taken down, the count written back).
"""
from __future__ import annotations

import os
import time
from typing import Any

import ray

from cluster.deploy import deploy, wait_for
from sc_actors.policy.shards import shard_of
from sc_actors.settings import NAMESPACE, guardian_name, scaler_name
from tests.containers import Containers


def split_count(hosts: list[str], most: int = 8) -> int:
    """The smallest number of shards (≥ 2) that puts `hosts` on at least two shards."""
    for n in range(2, most + 1):
        if len({shard_of(h, n) for h in hosts}) >= 2:
            return n
    raise AssertionError(f"no count up to {most} splits {hosts}")


def pid_of(actor: Any) -> int:
    return int(ray.get(actor.__ray_call__.remote(lambda self: os.getpid()), timeout=30))


class Sharded:
    """The stack with `n` shards, one container per host (subscribed, unguarded), their owners."""

    def __init__(self, stack: Any) -> None:
        self.stack = stack
        self.hosts = [stack.host, *stack.worker_hosts]
        self.n = split_count(self.hosts)
        self.containers = Containers(stack)
        self.on: dict[str, str] = {}
        """Container → its host."""

    def up(self) -> "Sharded":
        deploy(self.stack.state_dir, node_defaults={"backend": "cgroup_v1"}, shards=self.n)
        for h in self.hosts:
            name = self.containers.create("shard", host=h)
            # Through shard 0: it hands the subscription to the owner of the host.
            self.containers.subscribe(name, cpu=(25, 50, 200))
            self.on[name] = h
        # The node agents read the count again within 5 s: each host's windows reach its shard.
        for h in self.hosts:
            wait_for(lambda: self.windows(self.guardian_of(h)) > 0, 30,
                     what=f"windows of {h} at {guardian_name(self.shard(h))}")
        wait_for(lambda: all(self.usage(c) for c in self.on), 30, what="a usage of every container")
        return self

    def down(self) -> None:
        try:
            self.containers.cleanup()
        finally:
            deploy(self.stack.state_dir, node_defaults={"backend": "cgroup_v1"}, shards=1)
            # The Scaler reads the count again within 5 s (a node agent at its next window): the
            # next tests start once it routes to the unsharded names again.
            wait_for(lambda: ray.get(self.stack.scaler.ping.remote(), timeout=30)["shards"] == 1, 30,
                     what="the scaler back to one shard")

    # ------------------------------------------------------------------ who owns what

    def shard(self, host: str) -> int:
        return shard_of(host, self.n)

    def guardian_of(self, host: str) -> Any:
        return ray.get_actor(guardian_name(self.shard(host)), namespace=NAMESPACE)

    def scaler_of(self, host: str) -> Any:
        return ray.get_actor(scaler_name(self.shard(host)), namespace=NAMESPACE)

    def container_on(self, host: str) -> str:
        return next(c for c, h in self.on.items() if h == host)

    # ------------------------------------------------------------------ what the stack holds

    def windows(self, guardian: Any) -> int:
        return int(ray.get(guardian.ping.remote(0), timeout=30)["windows"])

    def usage(self, name: str) -> dict[str, float]:
        return dict(ray.get(self.stack.statedb.recent_usage.remote(name), timeout=30))

    def doc(self, name: str) -> dict[str, Any]:
        return dict(ray.get(self.stack.statedb.get.remote("structures", name), timeout=30))

    def current(self, name: str) -> float:
        return float(self.doc(name)["resources"]["cpu"]["current"])

    def quota(self, name: str) -> float:
        return float(self.stack.backend_of(self.on[name]).read_limits(name).cpu_allowance_limit)

    def accounting(self, host: str) -> tuple[Any, ...]:
        """The host's free CPU and memory and core map, and its containers' `current`."""
        res = self.doc(host)["resources"]
        mine = sorted((c, self.doc(c)["resources"]["cpu"]["current"], self.doc(c)["resources"]["mem"]["current"])
                      for c, h in self.on.items() if h == host)
        return res["cpu"]["free"], res["mem"]["free"], res["cpu"].get("core_usage_mapping"), mine

    def entries(self, structure: str) -> list[dict[str, Any]]:
        return list(ray.get(self.stack.statedb.recent_requests.remote(structure, 1000), timeout=30))

    def request(self, structure: str, amount: int, structure_type: str = "container") -> dict[str, Any]:
        return {"type": "request", "resource": "cpu", "amount": amount, "structure": structure,
                "action": "CpuRescaleUp" if amount > 0 else "CpuRescaleDown", "timestamp": time.time(),
                "structure_type": structure_type}
