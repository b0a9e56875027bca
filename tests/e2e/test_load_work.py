"""`cluster.tools.load --work` in a real cgroup v1 container: throttled, the work still gets done.

Half a core of quota for 1.9 CPU-seconds of work in two phases (one above the
quota, one below): the cgroup's counter must show at least that work, and the
phase above the quota must take at least work / quota in wall time (less the one
CFS period a fresh quota may run ahead). The container lives under its own cgroup
parent, removed at the end also when the test fails.
"""
from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from sc_actors import units
from sc_actors.backends import CgroupV1Backend
from sc_actors.model import LimitChange

pytestmark = pytest.mark.cgroup

REPO = Path(__file__).resolve().parents[2]
ROOT = Path("/sys/fs/cgroup")
QUOTA_SHARES = 50
PHASES = [(150.0, 1.0), (40.0, 1.0)]
"""(demand in shares, seconds): 1.5 CPU-s at 1.5 cores, then 0.4 CPU-s at 0.4 core."""


@pytest.fixture
def backend():
    if os.geteuid() != 0 or not (ROOT / "cpu" / "cpu.cfs_quota_us").is_file():
        pytest.skip("needs root and cgroup v1")
    parent = f"sc-test-{secrets.token_hex(4)}"
    b = CgroupV1Backend(root=str(ROOT), parent=parent)
    try:
        yield b
    finally:
        for name in b.list_containers():
            b.remove(name)
        for controller in ("cpu", "cpuacct", "cpuset", "memory"):
            d = ROOT / controller / parent
            if d.is_dir():
                d.rmdir()


def test_a_throttled_work_load_does_all_its_work_and_takes_longer(backend):
    backend.create("work", cpu_num=",".join(str(c) for c in range(min(os.cpu_count() or 1, 2))))
    backend.write_limits("work", LimitChange(cpu_allowance_limit=QUOTA_SHARES))
    spec = ",".join(f"{d:g}:{s:g}" for d, s in PHASES)
    proc = subprocess.Popen([sys.executable, "-m", "cluster.tools.load", "--work", "--phases", spec],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, cwd=REPO)
    try:
        backend.attach("work", proc.pid)  # before "go": the workers are forked in the cgroup
        before = backend.read_counters("work").cpu_ns
        # Waits for the load's own end (a condition), with a deadline.
        out, _ = proc.communicate("go\n", timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, out
    used_s = (backend.read_counters("work").cpu_ns - before) / 1e9
    lines = [json.loads(line) for line in out.splitlines()]
    done = {x["phase"]: x for x in lines if x.get("done")}
    end = lines[-1]
    assert end.get("end") and set(done) == {0, 1}

    work = [d / 100 * s for d, s in PHASES]
    assert used_s >= sum(work)
    assert end["cpu_s"] >= sum(work)
    quota_cores = QUOTA_SHARES / 100
    period_s = units.CPU_PERIOD_US / 1e6
    for i, w in enumerate(work):
        assert done[i]["cpu_s"] >= w
        # At most quota × (wall + one period) of CPU fits in `wall` seconds.
        assert done[i]["wall_s"] >= w / quota_cores - period_s, done[i]
    # The phase above the quota was slowed down: the work was not done at 1.5 cores.
    assert done[0]["wall_s"] > PHASES[0][1] * 1.5
    assert end["wall_s"] >= sum(x["wall_s"] for x in done.values())
