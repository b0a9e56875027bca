"""`sc bench scale`: realistic simulated hosts (seeded sizes), their plan and documents, the
`--json` lines. The pure parts run without Ray; the one test that runs the command is
marked `ray` (it starts its own local cluster, about 45 s)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest

from cluster.tools.bench import scale
from sc_actors.model import Container, Host
from sc_actors.units import parse_cpu_list


def test_10_000_containers_are_about_100_realistic_hosts():
    hosts = scale.realistic_hosts(10_000, seed=16)
    assert sum(len(h.containers) for h in hosts) == 10_000
    assert 80 <= len(hosts) <= 125
    full = hosts[:-1]  # the last host takes what is left
    assert all(32 <= h.cores <= 128 and 50 <= len(h.containers) <= 150 for h in full)
    assert all(h.mem_mib in (h.cores * 4096, h.cores * 8192) for h in hosts)
    for h in hosts:
        assert sum(c.cpu[1] for c in h.containers) <= 0.8 * h.cores * 100
        for c in h.containers:
            lo, cur, hi = c.cpu
            assert 10 <= lo <= cur <= hi <= 400 and 200 <= hi  # a few cores at most, min small
            assert c.mem[0] <= c.mem[1] <= c.mem[2] and c.mem_use < c.mem[1]


def test_the_same_seed_gives_the_same_hosts_and_another_seed_others():
    assert scale.realistic_hosts(1000, seed=3) == scale.realistic_hosts(1000, seed=3)
    assert scale.realistic_hosts(1000, seed=3) != scale.realistic_hosts(1000, seed=4)


def test_a_given_number_of_hosts_splits_the_containers_evenly_and_each_host_fits_them():
    hosts = scale.realistic_hosts(1000, seed=1, hosts=4)
    assert [len(h.containers) for h in hosts] == [250] * 4
    assert all(sum(c.cpu[1] for c in h.containers) <= 0.8 * h.cores * 100 for h in hosts)


def test_the_plan_places_each_container_on_its_hosts_cores_and_accounts_for_it():
    hosts = scale.realistic_hosts(120, seed=2)
    sims, docs = scale.plan_hosts(hosts, agent="sim0")
    host_docs = {d["name"]: Host.model_validate(d) for c, d in docs if d.get("subtype") == "host"}
    containers = [Container.model_validate(d) for c, d in docs if c == "structures" and d.get("subtype") == "container"]
    assert set(host_docs) == {h.name for h in hosts} and len(containers) == 120
    for sim in sims:
        h = host_docs[sim.name]
        assert h.agent == "sim0" and h.resources["cpu"].max == sim.cores * 100
        cmap = h.resources["cpu"].core_usage_mapping or {}
        for c in sim.containers:
            # Its shares on the cores the node is told, and the host's free CPU less its current.
            on = {core for core, users in cmap.items() if users.get(c.name)}
            assert on == set(parse_cpu_list(c.cpu_num))
            assert sum(users.get(c.name, 0) for users in cmap.values()) == c.cpu
        used = sum(c.cpu for c in sim.containers)
        assert h.resources["cpu"].free == sim.cores * 100 - used
        assert h.resources["mem"].free == sim.mem_mib - sum(c.mem for c in sim.containers)
    assert all(c.host in host_docs for c in containers)


def test_a_json_line_starts_with_the_issues_keys():
    run = {k: i for i, k in enumerate(scale.KEYS)} | {"extra": 1}
    line = scale.json_line(dict(reversed(list(run.items()))))
    assert "\n" not in line
    assert list(json.loads(line)) == [*scale.KEYS, "extra"]


@pytest.mark.ray
def test_the_json_lines_of_a_short_run(tmp_path):
    """Two tiny sizes, 5 s each: one JSON object per size on stdout, nothing else there."""
    proc = subprocess.run(
        [sys.executable, "-m", "cli", "bench", "scale", "--sizes", "20,60", "--duration", "5", "--warmup", "2",
         "--json", "--out", str(tmp_path)],
        capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-3000:]
    lines = proc.stdout.splitlines()
    assert len(lines) == 2, proc.stdout
    runs = [json.loads(line) for line in lines]
    assert [r["containers"] for r in runs] == [20, 60]
    for r in runs:
        assert list(r)[:len(scale.KEYS)] == list(scale.KEYS)
        assert r["hosts"] == 1
        assert r["windows_per_host_per_s"] > 0.5  # the one host's windows were evaluated
        assert r["epoch_p99_s"] is not None and 0 < r["epoch_p99_s"] < 5
        assert 0 < r["control_plane_cores"] < 2 and 0 < r["node_agent_cores"] < 2
        assert r["statedb_changes_per_s"] >= 0
        # Every actor of the namespace was measured: the control plane and the three agents.
        assert {"guardian", "scaler", "statedb", "container-scaler:sim0", "container-scaler:sim1",
                "container-scaler:sim2"} <= set(r["cores_by_actor"])
    assert "N=20" in proc.stderr  # progress goes to stderr
    assert (tmp_path / "scale.json").exists() and (tmp_path / "scale.png").exists()
