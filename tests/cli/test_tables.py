"""Tables stay readable at 80 columns and in a pipe (issue 14, item 8).

`sc bench api` printed a table of nothing but `…` at 80 columns, the headers of
`sc bench scale` and of the demo's live table came out cut (`conta…`, `epo…`). The
real tables of those commands, filled with figures of the README, are printed at
80 columns to a terminal and to a pipe: every header and every figure must be
there whole, and no line of a terminal may be longer than it.
"""
from __future__ import annotations

import io

import pytest
from rich.console import Console

from cluster.tools.bench.api import latency_table
from cluster.tools.bench.scale import scale_tables
from cluster.tools.demo import DemoContainer, live_table
from cluster.tools.tables import print_table


def _api_ops():
    ops = []
    for op, kind in (("GET /heartbeat", "read"), ("GET /structure/<name>", "read"), ("GET /status", "read"),
                     ("PUT /structure/<name>/guard", "write")):
        for conc, p50, p99 in ((1, 9.2, 17.0), (4, 20.0, 42.5), (16, 108.4, 164.6)):
            ops.append({"op": op, "kind": kind, "concurrency": conc, "n": 2000, "p50": p50, "p95": p99 - 1,
                        "p99": p99, "max": p99 + 40.3, "throughput_rps": 104.7, "errors": 0,
                        "errors_by_status": {}})
    return ops


def _scale_runs():
    runs = {}
    for n, hosts, p99 in (("100", 1, 0.03), ("1000", 12, 0.363), ("10000", 107, 24.141)):
        runs[n] = {"hosts": hosts, "epoch_p50_s": round(p99 / 3, 3), "epoch_p99_s": p99,
                   "windows_per_host_per_s": 0.178, "request_applied_p50_s": 0.175, "request_applied_p99_s": 12.042,
                   "control_plane_cores": 0.884, "control_plane_rss_mib": 1564, "node_agent_cores": 0.228,
                   "statedb_changes_per_s": 12.1, "keeps_up": n != "10000",
                   "cores_by_actor": {"guardian": 0.437, "scaler": 0.234, "statedb": 0.129,
                                      "container-scaler:sim0": 0.068}}
    return runs


def _demo_table():
    a, b = DemoContainer("demo-a", [(20, 150)]), DemoContainer("demo-b", [(20, 60)])
    a.phase_starts.append({"phase": 1, "demand": 150, "t": 0})
    rows = [{"structure": c.name, "cpu_usage": u, "cpu_limit": 225, "cpu_upper": 205, "cpu_lower": 185,
             "cpu_min": 25, "cpu_max": 400, "mem_usage": 12.5, "mem_limit": 512} for c, u in ((a, 148.3), (b, 0.2))]
    return live_table([a, b], rows, 12.0, 90.0)


TABLES = {
    "bench-api": lambda: [latency_table(_api_ops())],
    "bench-scale": lambda: list(scale_tables(_scale_runs())),
    "demo-live": lambda: [_demo_table()],
}


def _printed(tables, terminal: bool) -> str:
    buf = io.StringIO()
    console = Console(file=buf, width=80, force_terminal=terminal, color_system=None)
    for t in tables:
        print_table(console, t)
    return buf.getvalue()


def _words_of(tables) -> set[str]:
    """Every header word and every cell of the tables, as they must appear."""
    words = set()
    for t in tables:
        for c in t.columns:
            words.update(str(c.header).split())
            words.update(str(cell).replace("[red]", "").replace("[/]", "") for cell in c.cells)
    return words


@pytest.mark.parametrize("terminal", [True, False], ids=["terminal", "pipe"])
@pytest.mark.parametrize("name", list(TABLES))
def test_every_header_and_figure_shows_whole_at_80_columns(name, terminal):
    tables = TABLES[name]()
    out = _printed(tables, terminal)
    assert "…" not in out, out
    missing = {w for w in _words_of(tables) if w not in out}
    assert not missing, (missing, out)
    if terminal:
        assert max(len(line) for line in out.splitlines()) <= 80, out


def test_a_table_that_fits_is_printed_as_a_table():
    small = scale_tables({"100": _scale_runs()["100"]})[1]
    out = _printed([small], terminal=True)
    assert "┃ actor" in out and "│ guardian" in out, out


def test_a_long_text_column_is_wrapped_at_spaces_and_the_numbers_stay_whole():
    from rich.table import Table

    t = Table(title="hosts")
    for col in ("name", "cpu free/max", "mem free/max", "reachable", "why"):
        t.add_column(col, no_wrap=col == "name")
    t.add_row("bars0", "200/200", "24105/24105", "False", "no Ray node of this cluster has label sc_host=bars0")
    t.add_row("vm", "135/200", "8026/8192", "True", "-")
    out = _printed([t], terminal=True)
    assert "│ bars0" in out and "24105/24105" in out and "sc_host=bars0" in out, out
    assert "…" not in out and max(len(line) for line in out.splitlines()) <= 80, out
