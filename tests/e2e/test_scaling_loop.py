"""The whole loop on real cgroups: node sampling → Guardian → Scaler → cgroup files."""
from __future__ import annotations

import json
import os
import signal
import threading
import time

import ray

from cluster.deploy import wait_for


def _watch_limits(stack, name, stop: threading.Event, seen: list):
    """Record every limit the cgroup files hold, to check bounds over the whole run."""
    while not stop.is_set():
        try:
            seen.append(stack.backend.read_limits(name))
        except KeyError:
            return
        time.sleep(0.05)


def test_a_busy_loop_gets_its_quota_raised_then_lowered_within_min_max(stack, containers):
    name = containers.create("busy")
    containers.subscribe(name, cpu=(25, 50, 200))
    assert stack.backend.read_limits(name).cpu_allowance_limit == 50
    seen: list = []
    stop = threading.Event()
    watcher = threading.Thread(target=_watch_limits, args=(stack, name, stop, seen), daemon=True)
    watcher.start()
    try:
        containers.guard(name, "cpu")
        proc = containers.busy_loop(name)
        t0 = time.monotonic()
        raised = wait_for(lambda: (q := stack.backend.read_limits(name).cpu_allowance_limit) > 50 and q, 15,
                          what="the quota to be raised")
        up_s = time.monotonic() - t0
        proc.kill()
        proc.wait()
        wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit < raised, 30,
                 what="the quota to come down after the loop stopped")
        # The StateDB agrees with the cgroup file.
        doc = ray.get(stack.statedb.get.remote("structures", name))
        wait_for(lambda: ray.get(stack.statedb.get.remote("structures", name))["resources"]["cpu"]["current"]
                 == stack.backend.read_limits(name).cpu_allowance_limit, 5, what="StateDB current == cgroup")
        assert doc["resources"]["cpu"]["current"] >= 25
    finally:
        stop.set()
        watcher.join()
    quotas = [l.cpu_allowance_limit for l in seen]
    assert quotas and all(25 <= q <= 200 for q in quotas), sorted(set(quotas))
    print(f"scale-up after {up_s:.2f}s; quotas seen {sorted(set(quotas))}")


def test_a_process_growing_its_memory_gets_its_limit_raised_before_an_oom_kill(stack, containers):
    name = containers.create("grow")
    containers.subscribe(name, mem=(64, 128, 1024))
    containers.guard(name, "mem")
    # 300 MiB at 40 MiB/s: the initial 128 MiB would be hit in about 3 s.
    proc = containers.load(name, "0:10", "--mem-mib-per-s", "40", "--mem-max-mib", "300")
    out, _ = proc.communicate(timeout=60)
    assert proc.returncode == 0, f"load exited {proc.returncode} (killed by the OOM killer?)"
    assert json.loads(out.strip().splitlines()[-1]).get("end")
    assert stack.backend.read_limits(name).mem_limit > 300


def test_killing_the_statedb_keeps_a_subscribed_container_and_its_limits(stack, containers):
    name = containers.create("durable")
    containers.subscribe(name, cpu=(25, 60, 150))
    ray.get(stack.statedb.patch.remote("limits", name, {"resources.cpu.boundary": 20}))
    before = ray.get(stack.statedb.get.remote("structures", name))
    host_before = ray.get(stack.statedb.get.remote("structures", stack.host))
    pid = ray.get(stack.statedb.ping.remote())["pid"]
    os.kill(pid, signal.SIGKILL)
    wait_for(lambda: ray.get(stack.statedb.ping.remote(), timeout=10)["pid"] != pid, 30,
             what="the StateDB to come back")
    after = ray.get(stack.statedb.get.remote("structures", name))
    assert after["resources"]["cpu"]["current"] == before["resources"]["cpu"]["current"] == 60
    assert ray.get(stack.statedb.get.remote("limits", name))["resources"]["cpu"]["boundary"] == 20
    host_after = ray.get(stack.statedb.get.remote("structures", stack.host))
    assert host_after["resources"]["cpu"]["core_usage_mapping"] == host_before["resources"]["cpu"]["core_usage_mapping"]
