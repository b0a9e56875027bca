"""A subscribed host gets no more cores or memory than its Ray node has (issue 14, item 6).

`subscribe_host.sh` with 800 shares and 24 GiB for a 2-core node used to store 8
cores, six of them phantom: the Scaler placed containers there and the node
refused the writes. The API now cuts `max` (and `free`) to the node's and says so
in `warnings`; less than the node has is kept (a host may keep some for itself).
"""
from __future__ import annotations

import pytest
import ray

from serve.values import clamp_host_to_node
from tests.api.test_routes import db_get


@pytest.mark.parametrize(
    "cpu, mem, want_cpu, want_mem, warned",
    [
        # 2 cores = 200 shares; 24 GiB asked of a 4 096 MiB node.
        pytest.param((800, 800), (24576, 24576), (200, 200), (4096, 4096), {"cpu", "mem"}, id="both-cut"),
        pytest.param((800, 100), (1024, 1024), (200, 100), (1024, 1024), {"cpu"}, id="free-kept-when-below"),
        pytest.param((100, 100), (2048, 1024), (100, 100), (2048, 1024), set(), id="less-than-the-node-kept"),
    ],
)
def test_a_host_is_cut_to_its_node(cpu, mem, want_cpu, want_mem, warned):
    doc = {"name": "h", "resources": {"cpu": {"max": cpu[0], "free": cpu[1]}, "mem": {"max": mem[0], "free": mem[1]}}}
    warnings = clamp_host_to_node(doc, cores=2, mem_mib=4096)
    assert (doc["resources"]["cpu"]["max"], doc["resources"]["cpu"]["free"]) == want_cpu
    assert (doc["resources"]["mem"]["max"], doc["resources"]["mem"]["free"]) == want_mem
    assert {w.split()[0] for w in warnings} == warned
    assert all("'h'" in w for w in warnings)


@pytest.mark.ray
def test_subscribe_host_with_more_than_the_node_stores_the_node_and_warns(http, stack):
    host = stack.worker_hosts[0]
    before = db_get(stack, "structures", host)
    info = ray.get(stack.node_of(host).host_info.remote())
    body = {"name": host, "host": host, "host_rescaler_ip": host, "host_rescaler_port": "8000",
            "resources": {"cpu": {"max": (info["cores"] + 6) * 100, "free": (info["cores"] + 6) * 100},
                          "mem": {"max": info["mem_mib"] + 20480, "free": info["mem_mib"] + 20480}}}
    try:
        ray.get(stack.statedb.delete.remote("structures", host))
        r = http.put(f"/structure/host/{host}", json=body)
        assert r.status_code == 201, r.text
        warnings = r.json()["warnings"]
        assert len(warnings) == 2 and f"{info['cores']} cores" in warnings[0], warnings
        stored = db_get(stack, "structures", host)
        cpu = stored["resources"]["cpu"]
        assert (cpu["max"], cpu["free"]) == (info["cores"] * 100, info["cores"] * 100)
        assert sorted(cpu["core_usage_mapping"], key=int) == [str(i) for i in range(info["cores"])]
        assert stored["resources"]["mem"]["max"] == info["mem_mib"]
    finally:
        ray.get(stack.statedb.put.remote("structures", before))
