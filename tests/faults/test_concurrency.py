"""Orchestrator edits racing with the Guardian and the Scaler are never lost (reference §11.3).

The original's Guardian rewrote the whole limits document each epoch and merged
its stale copy over a fresh one on conflict, so a boundary edit could vanish.
Here a thread pool hammers edits — limits boundaries, a rule's amount, structure
guard flags — while a busy container is being scaled; at the end every field
holds the last edit acknowledged for it.
"""
from __future__ import annotations

import time
from concurrent.futures import ThreadPoolExecutor

import ray

from cluster.deploy import wait_for

EDITS_PER_FIELD = 60


def test_edits_hammered_during_scaling_are_all_kept(stack, containers):
    db = stack.statedb
    name = containers.create("race")
    containers.subscribe(name, cpu=(25, 50, 200))
    containers.guard(name, "cpu")
    rule_before = ray.get(db.get.remote("rules", "CpuRescaleUp"))["amount"]
    base = stack.backend.read_limits(name).cpu_allowance_limit
    containers.busy_loop(name)

    # Field → (collection, document, dotted path, the values written in order).
    fields = {
        "cpu boundary": ("limits", name, "resources.cpu.boundary", [5 + i % 40 for i in range(EDITS_PER_FIELD)]),
        "mem boundary": ("limits", name, "resources.mem.boundary", [3 + i % 50 for i in range(EDITS_PER_FIELD)]),
        "rule amount": ("rules", "CpuRescaleUp", "amount", [50 + i % 40 for i in range(EDITS_PER_FIELD)]),
        "mem guard": ("structures", name, "resources.mem.guard", [i % 2 == 0 for i in range(EDITS_PER_FIELD)]),
        "structure guard": ("structures", name, "guard", [i % 3 != 1 for i in range(EDITS_PER_FIELD)]),
    }
    last_ack: dict[str, object] = {}

    def hammer(field: str) -> int:
        collection, doc, path, values = fields[field]
        for v in values:
            ray.get(db.patch.remote(collection, doc, {path: v}))
            last_ack[field] = v  # acknowledged: patch returned after the journal write
        return len(values)

    try:
        t0 = time.monotonic()
        with ThreadPoolExecutor(max_workers=len(fields)) as pool:
            done = sum(pool.map(hammer, fields))
        assert done == len(fields) * EDITS_PER_FIELD
        # The Guardian and the Scaler were working meanwhile: the quota moved.
        wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit > base, 30,
                 what="a scale-up during the edits")
        assert time.monotonic() - t0 < 60
        # A few more windows of Guardian reports and Scaler records after the last edit.
        windows = ray.get(stack.guardian.ping.remote())["windows"]
        wait_for(lambda: ray.get(stack.guardian.ping.remote())["windows"] >= windows + 3, 10,
                 what="three more Guardian windows")
        for field, (collection, doc, path, _) in fields.items():
            got = ray.get(db.get.remote(collection, doc))
            for part in path.split("."):
                got = got[part]
            assert got == last_ack[field], (field, got, last_ack[field])
    finally:
        ray.get(db.patch.remote("rules", "CpuRescaleUp", {"amount": rule_before}))
