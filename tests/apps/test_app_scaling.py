"""Applications on real cgroups: guarded on their summed usage, scaled as a whole (reference §3.8, §4.5, §4.8).

Three containers on the session's three hosts (one each), in one application.
"""
from __future__ import annotations

import subprocess
import sys
import time

import pytest
import ray

from cluster.deploy import wait_for
from sc_actors.policy.propagation import propagate_application_request
from tests.builders import container
from tests.containers import container_doc

pytestmark = pytest.mark.ray


class Spread:
    """One plain-cgroup container per host, with processes; everything removed afterwards."""

    def __init__(self, stack, prefix: str):
        self.stack = stack
        self.hosts = [stack.host, *stack.worker_hosts]
        self.names = [f"{prefix}{i}-{int(time.time() * 1000) % 100000}" for i in range(len(self.hosts))]
        self.host_of = dict(zip(self.names, self.hosts))
        self.procs: list[subprocess.Popen] = []
        self.subscribed: list[str] = []

    def create(self, cpu=(25, 50, 200)) -> list[str]:
        for name, host in self.host_of.items():
            ray.get(self.stack.node_of(host).create_container.remote(name))
            ray.get(self.stack.scaler.subscribe_container.remote(container_doc(name, host, cpu=cpu)))
            self.subscribed.append(name)
        return self.names

    def busy_loop(self, name: str) -> None:
        p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.procs.append(p)
        ray.get(self.stack.node_of(self.host_of[name]).attach.remote(name, p.pid))

    def quota(self, name: str) -> float:
        return self.stack.backend_of(self.host_of[name]).read_limits(name).cpu_allowance_limit

    def cleanup(self) -> None:
        for p in self.procs:
            p.kill()
            p.wait(timeout=10)
        for name in self.subscribed:
            try:
                ray.get(self.stack.scaler.desubscribe_container.remote(name))
            except Exception:
                pass
        for name, host in self.host_of.items():
            try:
                self.stack.backend_of(host).remove(name)
            except Exception:
                pass


@pytest.fixture
def spread(stack):
    s = Spread(stack, "app")
    try:
        yield s
    finally:
        s.cleanup()


@pytest.fixture
def application(stack):
    """Create an application (and its limits) from a factory; removed afterwards, guarding back to containers."""
    db = stack.statedb
    made: list[str] = []

    def make(name: str, containers: list[str], guard: bool) -> str:
        ray.get(db.put.remote("structures", {
            "name": name, "subtype": "application", "guard": guard, "state": "running", "containers": containers,
            "resources": {"cpu": {"min": 20, "max": 600, "guard": guard}, "mem": {"min": 64, "max": 4096}},
        }))
        ray.get(db.put.remote("limits", {"name": name, "resources": {
            "cpu": {"boundary": 10, "boundary_type": "percentage_of_max"}}}))
        made.append(name)
        return name

    try:
        yield make
    finally:
        ray.get(db.patch.remote("services", "guardian", {"config.STRUCTURE_GUARDED": "container"}))
        for name in made:
            for collection in ("structures", "limits"):
                if ray.get(db.exists.remote(collection, name)):
                    ray.get(db.delete.remote(collection, name))


def _app_entries(stack, app: str, outcomes=("applied", "trimmed")) -> list[dict]:
    return [e for e in ray.get(stack.statedb.recent_requests.remote(app, 1000))
            if e.get("structure_type") == "application" and e["outcome"] in outcomes]


def test_an_application_under_load_is_scaled_up_split_over_its_containers_per_propagation(stack, spread, application):
    names = spread.create(cpu=(25, 40, 200))
    # Two of the three containers are busy at their quota of 40: Σ usage ≈ 80 > upper 60
    # (Σ current 120 − 10 % of the application's max 600).
    spread.busy_loop(names[0])
    spread.busy_loop(names[1])
    app = application(f"app-{names[0]}", names, guard=True)
    db = stack.statedb
    ray.get(db.patch.remote("services", "guardian", {"config.STRUCTURE_GUARDED": "application"}))
    wait_for(lambda: _app_entries(stack, app), 60, what="an application-level scale-up")
    ray.get(db.patch.remote("structures", app, {"guard": False}))
    first = _app_entries(stack, app)[0]
    assert first["action"] == "CpuRescaleUp" and first["amount"] == 75  # CpuRescaleUp's amount
    # The split is §4.8's propagation of the amount over the containers, from the usages and
    # limits the Scaler saw (recorded with the decision).
    before = [container(n, cpu=(25, first["bases"][n], 200), host=spread.host_of[n]) for n in names]
    assert first["split"] == propagate_application_request(first["amount"], before, first["usages"])
    assert sum(first["split"].values()) == first["amount_applied"] == 75
    # Every part reached its container's cgroup on its own host: quotas are the recorded bases
    # plus every application scaling since (no container-level guarding here).
    entries = _app_entries(stack, app)
    for n in names:
        want = 40 + sum(e["split"].get(n, 0) for e in entries)
        assert spread.quota(n) == want, (n, entries)
    # The application's current is the sum of its containers'.
    docs = {n: ray.get(db.get.remote("structures", n)) for n in names}
    app_doc = ray.get(db.get.remote("structures", app))
    assert app_doc["resources"]["cpu"]["current"] == sum(d["resources"]["cpu"]["current"] for d in docs.values())
    assert app_doc["resources"]["cpu"]["current"] == sum(spread.quota(n) for n in names) > 120
    # Each part is in the decision log under its container, with its parent.
    parts = [e for n in names for e in ray.get(db.recent_requests.remote(n, 100)) if e.get("parent") == app]
    assert {p["structure"]: p["amount"] for p in parts if p["timestamp"] == first["timestamp"]} == first["split"]


def test_a_part_its_node_refuses_puts_back_the_parts_already_written(stack, spread, application):
    names = spread.create(cpu=(25, 50, 200))
    app = application(f"app-{names[0]}", names, guard=False)
    db = stack.statedb
    wait_for(lambda: all(ray.get(db.recent_usage.remote(n)) for n in names), 20, what="usage of every container")
    hosts_before = {h: ray.get(db.get.remote("structures", h))["resources"]["cpu"] for h in spread.hosts}
    # The last container's cgroup disappears behind the control plane's back: its write will fail.
    stack.backend_of(spread.host_of[names[2]]).remove(names[2])
    # All idle: equal priorities, so the slices of 5 go round: 10 each, written in the application's order.
    ray.get(stack.scaler.submit.remote([{
        "resource": "cpu", "amount": 30, "structure": app, "action": "CpuRescaleUp", "field": "current",
        "timestamp": time.time(), "structure_type": "application"}]))
    decided = wait_for(lambda: ray.get(db.recent_requests.remote(app, 10)), 20, what="the application request decided")
    failed = decided[0]
    assert failed["outcome"] == "failed", decided
    assert failed["split"] == {n: 10 for n in names}
    assert failed["reason"].startswith(names[2]) and "no part applied" in failed["reason"]
    # The two parts written before it are back, and nothing was recorded.
    assert [spread.quota(n) for n in names[:2]] == [50, 50]
    assert [ray.get(db.get.remote("structures", n))["resources"]["cpu"]["current"] for n in names] == [50] * 3
    assert {h: ray.get(db.get.remote("structures", h))["resources"]["cpu"] for h in spread.hosts} == hosts_before


def test_a_user_under_load_is_scaled_up_through_its_application_to_its_containers(stack, spread, application):
    names = spread.create(cpu=(25, 40, 200))
    spread.busy_loop(names[0])
    spread.busy_loop(names[1])
    app = application(f"app-{names[0]}", names, guard=False)
    user = f"user-{names[0]}"
    db = stack.statedb
    ray.get(db.put.remote("users", {"name": user, "guard": True, "clusters": [app],
                                    "resources": {"cpu": {"min": 20, "max": 600, "guard": True}}}))
    ray.get(db.put.remote("limits", {"name": user, "resources": {
        "cpu": {"boundary": 10, "boundary_type": "percentage_of_max"}}}))
    try:
        # The user's sums are its application's, which are its containers'.
        # Busy at 40 + 40 ≈ 80 > upper 60 (Σ current 120 − 10 % of max 600).
        wait_for(lambda: ray.get(db.get.remote("users", user))["resources"]["cpu"].get("usage", 0) > 30, 20,
                 what="the user's summed usage")
        assert ray.get(db.get.remote("users", user))["resources"]["cpu"]["current"] == 120
        ray.get(db.patch.remote("services", "guardian", {"config.STRUCTURE_GUARDED": "user"}))
        entries = lambda: [e for e in ray.get(db.recent_requests.remote(user, 100))  # noqa: E731
                           if e.get("structure_type") == "user" and e["outcome"] in ("applied", "trimmed")]
        wait_for(entries, 60, what="a user-level scale-up")
        ray.get(db.patch.remote("users", user, {"guard": False}))
        first = entries()[0]
        # One application: it takes all 75; then §4.8 over its containers, as for an application request.
        assert first["app_split"] == {app: 75}
        before = [container(n, cpu=(25, first["bases"][n], 200), host=spread.host_of[n]) for n in names]
        assert first["split"] == propagate_application_request(75, before, first["usages"])
        for n in names:
            assert spread.quota(n) == 40 + sum(e["split"].get(n, 0) for e in entries())
    finally:
        ray.get(db.patch.remote("services", "guardian", {"config.STRUCTURE_GUARDED": "container"}))
        ray.get(db.delete.remote("users", user))
        ray.get(db.delete.remote("limits", user))
