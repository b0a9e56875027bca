"""`sc bench apps` without Ray: phase schedules, tool output parsing, figures from samples, tables.

The bench itself starts an embedded Ray, which cannot run inside a test session; what
it computes from what it reads is pure and pinned here, with the arithmetic beside
each number.
"""
from __future__ import annotations

import io
import json

import pytest
from rich.console import Console
from typer.testing import CliRunner

import cli
from cluster.tools.bench import apps
from cluster.tools.bench.apps import Phase, Sample
from cluster.tools.bench.apps_redis import encode, read_reply
from cluster.tools.tables import print_table

MIB = 2**20


# ---------------------------------------------------------------- phase schedules


def test_web_phases_are_low_peak_medium_idle_low_and_the_peak_needs_more_than_one_core():
    phases = apps.web_phases(100, peak_rps=140)
    # fractions 0.2, 0.3, 0.2, 0.15, 0.15 of 100 s; rates 0.2 × 140 = 28, 140, 0.5 × 140 = 70, 0, 28
    assert phases == [Phase("low", 20, 28), Phase("peak", 30, 140), Phase("medium", 20, 70), Phase("idle", 15, 0),
                      Phase("low2", 15, 28)]
    # 140 requests/s × 8 ms of CPU each = 1.12 cores, before nginx's share
    assert apps.WEB_PEAK_RPS * apps.WEB_CPU_MS / 1000 > 1.0


def test_batch_phases_alternate_one_and_two_threads():
    assert apps.batch_phases(100) == [Phase("1 thread", 30, 1), Phase("2 threads", 20, 2),
                                      Phase("1 thread", 30, 1), Phase("2 threads", 20, 2)]


def test_redis_phases_fill_hold_delete_and_flush_the_dataset():
    phases = apps.redis_phases(100, peak_mib=600)
    # 0.4 × 600 = 240, the peak 600, a quarter 150, then empty
    assert [p.level for p in phases] == [240, 240, 600, 600, 150, 150, 0, 0]
    assert [p.seconds for p in phases] == [15, 10, 20, 10, 10, 10, 10, 15]


def test_a_short_run_keeps_each_phase_at_least_two_seconds():
    assert min(p.seconds for p in apps.web_phases(5)) == 2.0


@pytest.mark.parametrize(
    "minutes, runs, seconds",
    [
        pytest.param(14, 9, (14 * 60 - 180) / 9 - 8, id="default: (840 - 180) / 9 - 8 = 65.3 s"),
        pytest.param(2, 9, 20.0, id="too short: the 20-s floor"),
    ],
)
def test_run_seconds_share_the_minutes_among_the_runs(minutes, runs, seconds):
    assert apps.run_seconds(minutes, runs) == pytest.approx(seconds)


@pytest.mark.parametrize("rps, conns", [(140, 70), (28, 14), (1, 2)])
def test_wrk_connections_give_each_half_a_second_of_think_time(rps, conns):
    # 140 req/s × 0.5 s = 70 connections; never fewer than 2
    assert apps.wrk_connections(rps) == conns


# ---------------------------------------------------------------- tool output


WRK_OUT = """Running 20s test @ http://127.0.0.1:41234/
  1 threads and 70 connections
  2771 requests in 20.00s, 420.11KB read
SCJSON {"requests": 2771, "duration_us": 20004000, "errors": {"connect": 0, "read": 1, "write": 0, \
"status": 2, "timeout": 3}, "latency_us": {"min": 6900, "max": 180056, "mean": 23173.4, \
"percentiles": {"50": 13919, "99": 140900, "99.9": 180056, "100": 0}}}
"""


def test_parse_wrk_reads_the_scjson_line_in_milliseconds():
    r = apps.parse_wrk(WRK_OUT)
    assert r["requests"] == 2771
    assert r["duration_s"] == pytest.approx(20.004)
    assert r["errors"] == 6  # read 1 + status 2 + timeout 3
    lat = r["latency_ms"]
    assert (lat["p50"], lat["p99"], lat["p999"], lat["max"]) == (13.919, 140.9, 180.056, 180.056)
    # wrk 4.1 reads percentile(100) as 0: the maximum stands in
    assert lat["grid"][100.0] == 180.056


def test_parse_wrk_without_its_line_is_an_error():
    with pytest.raises(ValueError):
        apps.parse_wrk("Running 1s test\nunable to connect to 127.0.0.1:1 Connection refused\n")


SYSBENCH_OUT = """CPU speed:
    events per second:   659.01

General statistics:
    total time:                          0.3024s
    total number of events:              200
"""


def test_parse_sysbench_reads_its_totals():
    assert apps.parse_sysbench(SYSBENCH_OUT) == {"total_s": 0.3024, "events": 200, "events_per_s": 659.01}


# ---------------------------------------------------------------- percentiles of several runs


@pytest.mark.parametrize(
    "parts, q, expected",
    [
        # the docstring's example: all of the first part (≤ 2) is half the union
        pytest.param([(100, {50.0: 1.0, 100.0: 2.0}), (100, {50.0: 3.0, 100.0: 4.0})], 50, 2.0, id="halves"),
        # 900 requests at 10 ms and 100 at 100 ms: 90 % are at most 10 ms, 95 % need 100 ms
        pytest.param([(900, {50.0: 10.0, 100.0: 10.0}), (100, {50.0: 100.0, 100.0: 100.0})], 90, 10.0, id="p90"),
        pytest.param([(900, {50.0: 10.0, 100.0: 10.0}), (100, {50.0: 100.0, 100.0: 100.0})], 95, 100.0, id="p95"),
        # one part alone gives its own grid back: halfway from p50 = 8 to p100 = 9 is p75 = 8.5
        pytest.param([(10, {1.0: 7.0, 50.0: 8.0, 100.0: 9.0})], 75, 8.5, id="one part"),
        pytest.param([(10, {1.0: 7.0, 50.0: 8.0, 100.0: 9.0}), (0, {})], 50, 8.0, id="an idle phase counts not"),
    ],
)
def test_mixture_quantile_weights_each_run_by_its_requests(parts, q, expected):
    assert apps.mixture_quantile(parts, q) == pytest.approx(expected, abs=1e-3)


def test_mixture_quantile_of_no_requests_is_none():
    assert apps.mixture_quantile([(0, {}), (5, {})], 99) is None


# ---------------------------------------------------------------- figures from samples


def sample(t, cpu_s, limit=100.0, mem_mib=100, cache_mib=150, mem_limit=200.0, oom=0, failcnt=0, throttled_s=0.0,
           cores=2):
    return Sample(t, int(cpu_s * 1e9), limit, int(throttled_s * 1e9), mem_mib * MIB, cache_mib * MIB, mem_limit,
                  oom, failcnt, cores)


def test_window_figures_integrate_usage_against_the_limit():
    s = [sample(0, 0.0), sample(1, 0.5, throttled_s=0.1), sample(2, 1.0, oom=1, failcnt=3, throttled_s=0.3)]
    f = apps.window_figures(s, 0, 2, cpu_max=200, mem_max_mib=1024)
    # 1 CPU-s used of 2 s × 1 core allowed; memory 100 of 200 MiB, 150 with the page cache
    assert (f["used_cpu_s"], f["allocated_cpu_s"], f["utilization"]) == (1.0, 2.0, 0.5)
    assert (f["mean_usage_shares"], f["mean_limit_shares"]) == (50.0, 100.0)
    assert (f["mem_utilization"], f["mem_utilization_with_cache"]) == (0.5, 0.75)
    assert (f["oom_kills"], f["failcnt"], f["throttled_s"]) == (1, 3, 0.3)
    assert f["mean_cpuset_cores"] == 2


def test_window_figures_cut_the_intervals_at_the_window():
    s = [sample(0, 0.0), sample(1, 0.5), sample(2, 1.0)]
    f = apps.window_figures(s, 0.5, 1.5, cpu_max=200, mem_max_mib=1024)
    # half of each interval: 0.25 + 0.25 CPU-s used of 1 s at one core
    assert (f["seconds"], f["used_cpu_s"], f["allocated_cpu_s"]) == (1.0, 0.5, 1.0)


def test_an_unlimited_limit_counts_as_the_containers_max():
    s = [sample(0, 0.0, limit=-1, mem_limit=-1), sample(1, 0.5, limit=-1, mem_limit=-1)]
    f = apps.window_figures(s, 0, 1, cpu_max=200, mem_max_mib=1000)
    # 0.5 CPU-s of 2 cores; 100 MiB of 1000
    assert (f["utilization"], f["mem_utilization"]) == (0.25, 0.1)


def test_series_gives_usage_in_shares_from_counter_deltas():
    s = [sample(10, 0.0), sample(10.5, 0.25, limit=80)]
    # 0.25 CPU-s in 0.5 s = half a core = 50 shares
    assert apps.series(s, t_go=10) == {"t": [0.5], "usage": [50.0], "limit": [80], "cpuset": [200], "mem": [100.0],
                                       "mem_limit": [200.0]}


# ---------------------------------------------------------------- a whole result, its tables and verdicts


def _raw(phase_results, plan, limit=100.0, oom=0):
    samples = [sample(i, 0.5 * i, limit=limit, oom=oom if i >= 3 else 0) for i in range(5)]
    return {"t_go": 0, "samples": samples, "phases": phase_results, "bounds": [(0, 2), (2, 4)], "plan": plan,
            "unfinished": False, "server_died_at": None, "others_cores": 0.3}


def _result():
    wrk = apps.parse_wrk(WRK_OUT)
    web_plan = [Phase("low", 2, 28), Phase("peak", 2, 140)]
    batch_plan = [Phase("1 thread", 2, 1), Phase("2 threads", 2, 2)]
    redis_plan = [Phase("fill", 2, 240), Phase("hold", 2, 240)]
    out = {"machine": {"cores": 2}, "programs": {"web": {}, "batch": {}, "redis": {}}}
    for way, limit, slow in (("static", 200.0, 1.0), ("adaptive", 60.0, 1.02)):
        web = [{**wrk, "rps": p.level, "served_rps": 27.9} for p in web_plan]
        batch = [{"threads": 1, "events": 100, "wall_s": 10 * slow, "finished": True},
                 {"threads": 2, "events": 100, "wall_s": 10 * slow, "finished": True}]
        redis = [{"mib": 240, "latency_ms": [0.2, 0.3, 5.0], "errors": 0}, {"mib": 240, "latency_ms": [0.4], "errors": 0}]
        out["programs"]["web"][way] = apps.run_figures("web", _raw(web, web_plan, limit), 2)
        out["programs"]["batch"][way] = apps.run_figures("batch", _raw(batch, batch_plan, limit), 2)
        out["programs"]["redis"][way] = apps.run_figures("redis", _raw(redis, redis_plan, limit,
                                                                        oom=1 if way == "adaptive" else 0), 2)
    apps.vs_static(out)
    return out


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
def test_tables_show_every_number_at_80_columns_a_row_per_phase_and_one_for_all(terminal):
    tables = apps.tables(_result())
    assert len(tables) == 3
    for t in tables:
        # 2 ways × (2 phases + all)
        assert t.row_count == 2 * 3
        buf = io.StringIO()
        print_table(Console(file=buf, width=80, force_terminal=terminal, color_system=None), t)
        text = buf.getvalue()
        assert "…" not in text
        if terminal:
            assert max(len(x) for x in text.splitlines()) <= 80, text
        assert "adaptive" in text and "all" in text


def test_figures_compare_each_way_with_static():
    r = _result()["programs"]
    # 20 s × 1.02 = 20.4 s against 20 s: +2 %
    assert r["batch"]["adaptive"]["overall"]["finish_vs_static"] == pytest.approx(0.02)
    assert r["web"]["adaptive"]["overall"]["p99_vs_static"] == 1.0
    # the web run's CPU: 2 CPU-s used over 4 s at 60 shares = 2.4 CPU-s allowed
    assert r["web"]["adaptive"]["overall"]["utilization"] == pytest.approx(2 / 2.4, abs=1e-4)
    # redis probes: 4 latencies, nearest rank
    assert r["redis"]["static"]["overall"]["latency"] == {"n": 4, "p50": 0.3, "p99": 5.0, "p999": 5.0, "max": 5.0}


def test_acceptance_names_each_missed_target():
    lines = apps.acceptance(_result())
    assert "met  batch adaptive: time to finish +2.0 % vs static (≤ +3 %)" in lines
    assert any(x.startswith("MISS redis adaptive: OOM kills 1") for x in lines)
    # 2 / 2.4 = 83 % utilization and p99 1.00× static's
    assert any(x.startswith("met  web adaptive") for x in lines)


# ---------------------------------------------------------------- the redis client's wire format


def test_resp_encodes_a_command_and_reads_each_reply_kind():
    assert encode([b"SET", b"k:1", b"vv"]) == b"*3\r\n$3\r\nSET\r\n$3\r\nk:1\r\n$2\r\nvv\r\n"
    f = io.BytesIO(b"+OK\r\n:42\r\n$3\r\nabc\r\n$-1\r\n*2\r\n:1\r\n+x\r\n-ERR no\r\n")
    assert [read_reply(f) for _ in range(5)] == ["OK", 42, b"abc", None, [1, "x"]]
    assert str(read_reply(f)) == "ERR no"
    with pytest.raises(ValueError):
        read_reply(f)  # closed


# ---------------------------------------------------------------- the command line


runner = CliRunner()


def test_sc_bench_lists_apps_and_apps_its_options():
    assert "apps" in runner.invoke(cli.app, ["bench", "--help"], env={"COLUMNS": "200"}).stdout
    out = runner.invoke(cli.app, ["bench", "apps", "--help"], env={"COLUMNS": "200"}).stdout
    assert "--programs" in out and "--ways" in out and "--minutes" in out


def test_an_unknown_program_is_refused_before_anything_starts():
    r = runner.invoke(cli.app, ["bench", "apps", "--programs", "web,mysql"], env={"COLUMNS": "200"})
    assert r.exit_code == 1
    assert "--programs takes a comma-separated subset of web,batch,redis" in r.stderr


def test_the_phases_written_to_json_round_trip():
    assert json.loads(json.dumps([p.__dict__ for p in apps.web_phases(60)]))[1] == {"name": "peak", "seconds": 18.0,
                                                                                   "level": 140}


def test_without_a_static_run_web_and_batch_are_not_judged():
    r = _result()
    for program in ("web", "batch", "redis"):
        del r["programs"][program]["static"]
    lines = apps.acceptance(r)
    assert "–    batch adaptive: no static run to compare with" in lines
    assert any(x.startswith("MISS redis adaptive") for x in lines)


def test_plot_program_writes_one_png_per_program(tmp_path):
    r = _result()
    for program in ("web", "batch", "redis"):
        path = apps.plot_program(r, program, tmp_path / f"apps-{program}.png")
        assert path.stat().st_size > 10_000
