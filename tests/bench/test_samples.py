"""The benches read their samples from a real cgroup v1 container (root, real files).

`sc bench efficiency` and `sc bench apps` read files the backend has no reader for
(`cpu.stat`, `memory.oom_control`, `memory.failcnt`); a change of the backend's file IO
once broke both at their first sample. This takes one sample of each on a real container
whose limits this test sets, and checks the sample carries them.
"""
from __future__ import annotations

import secrets

import pytest

from cluster.tools.bench.apps import read_sample
from cluster.tools.bench.efficiency import _sample, oom_kills
from sc_actors.backends.cgroup_v1 import CgroupV1Backend
from sc_actors.model import LimitChange
from tests.conftest import _remove_parent

pytestmark = pytest.mark.cgroup


@pytest.fixture
def backend():
    parent = f"sc-test-bench-{secrets.token_hex(3)}"
    b = CgroupV1Backend(root="/sys/fs/cgroup", parent=parent)
    try:
        yield b
    finally:
        for name in b.list_containers():
            b.remove(name)
        _remove_parent(parent)


def test_the_efficiency_and_apps_samples_read_a_real_container(backend):
    backend.create("c1", cpu_num="0")
    backend.write_limits("c1", LimitChange(cpu_allowance_limit=50, mem_limit=256))

    t, cpu_ns, limit, throttled_ns, cpu_num = _sample(backend, "c1")
    assert (limit, cpu_num) == (50, "0")
    assert cpu_ns >= 0 and throttled_ns >= 0 and t > 0
    assert oom_kills(backend, "c1") == 0

    s = read_sample(backend, "c1")
    assert (s.cpu_limit, s.mem_limit_mib) == (50, 256)
    assert s.oom_kills == 0 and s.failcnt >= 0 and s.cpuset_cores == 1
    assert s.mem_cache_bytes >= s.mem_bytes >= 0
