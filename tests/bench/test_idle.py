"""`sc bench idle`: reading /proc, naming Ray's processes, grouping them, the sums.

The bench starts `sc up` and a second `ray start` node; what it computes from /proc is
pure and pinned here. The one test that brings a stack up is marked `ray`.
"""
from __future__ import annotations

import json
import os
import shutil
import time
import urllib.request
from pathlib import Path
from typing import Any, Callable

import pytest

from cluster.tools.bench import idle
from cluster.tools.bench.idle import ProcUsage, Stat, members, parse_pss_kb, parse_settings, parse_stat, role, summarize

# A real line's shape: pid, (comm), state, ppid, pgrp, session, tty, tpgid, flags,
# minflt, cminflt, majflt, cmajflt, utime, stime, cutime, cstime, ...
STAT = "4242 (ray::Container) S 4100 4242 4242 0 -1 4194560 900 0 1 0 130 27 5 6 20 0 12 0 5000 1 2 3"


def test_stat_gives_state_parent_group_and_own_cpu_ticks():
    # utime 130 + stime 27 = 157; the children's 5 and 6 are not its own
    assert parse_stat(STAT) == Stat(state="S", ppid=4100, pgid=4242, cpu_ticks=157)


def test_a_command_with_spaces_and_parentheses_does_not_shift_the_fields():
    line = STAT.replace("(ray::Container)", "(a (b) c)")
    assert parse_stat(line) == Stat(state="S", ppid=4100, pgid=4242, cpu_ticks=157)


def test_stat_of_this_process_parses():
    with open("/proc/self/stat") as f:
        s = parse_stat(f.read())
    assert (s.ppid, s.pgid, s.state) == (os.getppid(), os.getpgrp(), "R")


SMAPS_ROLLUP = """55d0c0a00000-7ffd3c5f2000 ---p 00000000 00:00 0                          [rollup]
Rss:               81236 kB
Pss:               40417 kB
Pss_Dirty:         30000 kB
Pss_Anon:          29000 kB
Shared_Clean:      50000 kB
"""


def test_pss_is_the_pss_line_not_its_dirty_or_anon_parts():
    assert parse_pss_kb(SMAPS_ROLLUP) == 40417


def test_pss_of_a_full_smaps_is_the_sum_of_its_mappings():
    smaps = "a-b r-xp 0 0:0 0 /lib.so\nPss: 100 kB\nRss: 300 kB\nc-d rw-p 0 0:0 0\nPss: 23 kB\n"
    assert parse_pss_kb(smaps) == 123


@pytest.mark.parametrize("cmdline, expected", [
    pytest.param(["ray::ContainerScaler"], "ray::ContainerScaler", id="actor"),
    pytest.param(["ray::ServeReplica:orchestrator:API"], "ray::ServeReplica", id="serve-replica"),
    pytest.param(["ray::IDLE                        "], "ray::IDLE", id="idle-worker-padded-title"),
    pytest.param(["ray::Guardian.on_usage"], "ray::Guardian", id="actor-running-a-method"),
    pytest.param(["/venv/lib/ray/core/src/ray/raylet/raylet", "--raylet_socket_name=x"], "raylet", id="raylet"),
    pytest.param(["/venv/lib/ray/core/src/ray/gcs/gcs_server", "--log_dir=x"], "gcs_server", id="gcs"),
    pytest.param(["/venv/bin/python", "-u", "/venv/lib/ray/_private/log_monitor.py", "--x"], "log monitor",
                 id="log-monitor"),
    pytest.param(["/venv/bin/python", "-u", "/venv/lib/ray/autoscaler/_private/monitor.py"], "autoscaler monitor",
                 id="autoscaler"),
    pytest.param(["/venv/bin/python", "/venv/lib/ray/dashboard/dashboard.py", "--host=127.0.0.1"],
                 "dashboard (head)", id="dashboard"),
    pytest.param(["ray-dashboard-ReportHead-0 (/venv/bin/python)"], "dashboard module ReportHead", id="module"),
    pytest.param([], "?", id="gone"),
])
def test_each_ray_process_gets_a_short_name(cmdline, expected):
    assert role(cmdline) == expected


def _s(ppid: int, pgid: int, state: str = "S") -> Stat:
    return Stat(state=state, ppid=ppid, pgid=pgid, cpu_ticks=0)


def test_members_are_the_groups_processes_and_all_their_descendants_but_not_zombies():
    stats = {
        100: _s(1, 100),     # raylet, in the group `ray start` made (reparented to init)
        101: _s(100, 101),   # a worker: child of the raylet, a group of its own
        102: _s(101, 102),   # a child of that worker
        103: _s(100, 100, "Z"),  # a dead child not reaped yet
        200: _s(1, 200),     # another Ray on the machine
        201: _s(200, 201),
    }
    assert members(stats, [100]) == {100, 101, 102}
    assert members(stats, [100, 200]) == {100, 101, 102, 200, 201}
    assert members(stats, [999]) == set()


def test_summary_gives_percent_of_a_core_and_mean_pss_per_process_and_group():
    clk = 100
    usages = [
        # 60 s sampled; 30 ticks = 0.3 s → 0.5 % of a core; PSS mean of 40, 44 MiB = 42
        ProcUsage(1, "host", "raylet", first_ticks=1000, last_ticks=1030, pss_kb=[40 * 1024, 44 * 1024]),
        # started during the window: all its 60 ticks count → 1 %
        ProcUsage(2, "host", "ray::IDLE", first_ticks=None, last_ticks=60, pss_kb=[10 * 1024]),
        # 120 ticks → 2 %
        ProcUsage(3, "head", "gcs_server", first_ticks=0, last_ticks=120, pss_kb=[30 * 1024]),
    ]
    rows, totals = summarize(usages, wall_s=60.0, clk_tck=clk)
    assert [(r.group, r.role) for r in rows] == [("head", "gcs_server"), ("host", "ray::IDLE"), ("host", "raylet")]
    by_role = {r.role: r for r in rows}
    assert by_role["raylet"].cpu_pct == pytest.approx(0.5)
    assert by_role["raylet"].pss_mb == pytest.approx(42.0)
    assert by_role["ray::IDLE"].cpu_pct == pytest.approx(1.0)
    assert totals["host"].cpu_pct == pytest.approx(1.5)      # 0.5 + 1
    assert totals["host"].pss_mb == pytest.approx(52.0)      # 42 + 10
    assert totals["head"].cpu_pct == pytest.approx(2.0)
    assert totals["stack"].cpu_pct == pytest.approx(3.5)     # head and host together
    assert totals["stack"].pss_mb == pytest.approx(82.0)     # 42 + 10 + 30


def test_settings_are_key_value_pairs_and_a_pair_without_equals_is_refused():
    assert parse_settings(["REPORTER_UPDATE_INTERVAL_MS=60000", "X=a=b"]) == {
        "REPORTER_UPDATE_INTERVAL_MS": "60000", "X": "a=b"}
    with pytest.raises(ValueError, match="KEY=VALUE"):
        parse_settings(["RAY_x"])


def test_the_tuned_host_is_started_as_ray_start_sh_starts_one_plus_a_tried_setting():
    from cluster.local import NODE_SITE_DIR, QUIET_NODE_ARGS, QUIET_NODE_ENV

    v = idle.tuned({"X_TRIED": "1"})
    assert {k: v.env[k] for k in QUIET_NODE_ENV} == QUIET_NODE_ENV and v.env["X_TRIED"] == "1"
    assert v.env["PYTHONPATH"].split(os.pathsep)[0] == str(NODE_SITE_DIR)  # the node's sitecustomize first
    assert v.args == list(QUIET_NODE_ARGS)
    assert idle.ray_defaults().env == {} and idle.ray_defaults().args == []


@pytest.mark.ray
def test_the_bench_measures_a_joined_hosts_own_processes_and_leaves_nothing_running():
    """`sc up` plus one `ray start --address` host, 5 s sampled (about 40 s in all)."""
    run = idle.measure(idle.tuned(), seconds=5, warmup_s=0, progress=lambda m: None)
    host = {r["role"] for r in run["processes"] if r["group"] == "host"}
    assert {"raylet", "ray::DashboardAgent", "ray::RuntimeEnvAgent", "ray::ContainerScaler"} <= host
    assert "log monitor" not in host  # the tuned host runs none
    assert "gcs_server" in {r["role"] for r in run["processes"] if r["group"] == "head"}
    g = run["groups"]
    assert g["stack"]["pss_mb"] == pytest.approx(g["head"]["pss_mb"] + g["host"]["pss_mb"], abs=0.2)
    assert 0 < g["host"]["pss_mb"] < g["stack"]["pss_mb"]
    # Every process it started is gone: Ray's daemons name their session dir, in the bench's temp dir.
    stats = idle._read_stats()
    left = [p for p, s in stats.items() if s.state != "Z" and "/sc-idle-" in " ".join(idle._cmdline(p))]
    assert left == []


def _get_json(url: str, token: str | None = None) -> Any:
    req = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"} if token else {})
    with urllib.request.urlopen(req, timeout=10) as r:
        return json.loads(r.read())


def _wait_for(what: str, check: Callable[[], Any], timeout_s: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout_s
    while True:
        got = check()
        if got or time.monotonic() > deadline:
            assert got, f"{what}: not within {timeout_s:g} s"
            return got
        time.sleep(0.5)


@pytest.mark.ray
def test_a_host_with_the_minimal_agent_runs_its_container_scaler_and_is_listed_without_node_stats():
    """`sc up`, then one host joined as `ray-start.sh worker` joins one (its agent minimal): its
    ContainerScaler runs, the control plane registers it reachable, the head's dashboard lists its
    node alive with its label but no node stats (the reporter module is what the minimal agent drops)."""
    from cluster.local import token_source

    stack = idle._Stack()
    try:
        address = idle._start_head(stack, "test", lambda m: None)
        idle._join(stack, address, "host", idle.HOST, idle.tuned(), lambda m: None)
        idle._wait_scalers(stack, ["host"], 120)
        groups = idle._groups(stack)
        raylets = {g: " ".join(idle._cmdline(p)) for p, g in groups.items() if idle.role(idle._cmdline(p)) == "raylet"}
        assert "--minimal" in raylets["host"]      # `ray start` started its agent minimal ...
        assert "--minimal" not in raylets["head"]  # ... and only there

        host = _wait_for("host structure registered", lambda: _api_host(stack.api_port))
        assert host.get("reachable", True) is True

        src = token_source()
        token = os.environ["RAY_AUTH_TOKEN"] if src == "RAY_AUTH_TOKEN" else (Path(src).read_text().strip() if src else None)

        def listed() -> Any:
            nodes = _get_json(f"http://127.0.0.1:{stack.dashboard_port}/nodes?view=summary", token)["data"]["summary"]
            return next((n for n in nodes if n["raylet"].get("labels", {}).get("scHost") == idle.HOST), None)

        node = _wait_for("node listed by the head's dashboard", listed)
        assert node["raylet"]["state"] == "ALIVE"
        assert node.get("cpu") is None and not node.get("mem")  # no reporter on the node: no stats
        head = next(n for n in _get_json(f"http://127.0.0.1:{stack.dashboard_port}/nodes?view=summary",
                                         token)["data"]["summary"] if n["raylet"].get("isHeadNode"))
        assert head.get("cpu") is not None  # the head's full agent still reports
    finally:
        stack.kill()
        idle.remove_parent(idle.PARENT)
        shutil.rmtree(stack.tmp, ignore_errors=True)


def _api_host(port: int) -> Any:
    try:
        return _get_json(f"http://127.0.0.1:{port}/structure/{idle.HOST}")
    except (OSError, ValueError):
        return None
