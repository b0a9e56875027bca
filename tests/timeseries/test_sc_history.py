"""`sc history` and `sc report` on a recorded dataset, against numbers worked out by hand."""
from __future__ import annotations

import csv
import io
import json

import pytest
import typer
from typer.testing import CliRunner

from cluster.tools.history import history_command, parse_since, report_command
from sc_actors.store import timeseries as ts

T0 = 1_714_557_600.0  # 2024-05-01 10:00:00 UTC
PNG = b"\x89PNG\r\n\x1a\n"


def _cli() -> typer.Typer:
    # The way cli.py wires them.
    app = typer.Typer()
    app.command("history")(history_command)
    app.command("report")(report_command)
    return app


@pytest.fixture
def dataset(tmp_path):
    """60 s of 1-s windows of linear series, so a trapezoid is the exact integral.

    c0:   usage 2t, current 150, max 200, min 25; upper 130, lower 110.
    app1: usage 60 + t, current 100 + 2t, max 400.
    """
    w = ts.TimeseriesWriter(tmp_path / "ds", flush_rows=500)
    for i in range(61):
        t = T0 + i
        w.append([
            ts.Row(t, "c0", "container", "structure", "cpu", "usage", 2.0 * i),
            ts.Row(t, "c0", "container", "structure", "cpu", "current", 150.0),
            ts.Row(t, "c0", "container", "structure", "cpu", "max", 200.0),
            ts.Row(t, "c0", "container", "structure", "cpu", "min", 25.0),
            ts.Row(t, "c0", "container", "limit", "cpu", "upper", 130.0),
            ts.Row(t, "c0", "container", "limit", "cpu", "lower", 110.0),
            ts.Row(t, "c0", "container", "structure", "mem", "current", 256.0),
            ts.Row(t, "app1", "application", "structure", "cpu", "usage", 60.0 + i),
            ts.Row(t, "app1", "application", "structure", "cpu", "current", 100.0 + 2 * i),
            ts.Row(t, "app1", "application", "structure", "cpu", "max", 400.0),
            ts.Row(t, "guardian", "service", "service", None, "window_timelapse", 1.0),
        ])
        if w.due():
            w.flush()
    w.flush()
    return tmp_path / "ds"


def test_history_prints_one_line_per_window_as_csv(dataset):
    r = CliRunner().invoke(_cli(), ["history", "c0", "--since", "all", "--format", "csv", "--dataset", str(dataset)])
    assert r.exit_code == 0, r.output
    rows = list(csv.DictReader(io.StringIO(r.stdout)))
    assert len(rows) == 61
    assert rows[10] == {"time": "2024-05-01T10:00:10.000+00:00", "t": str(T0 + 10), "usage": "20.0",
                        "current": "150.0", "upper": "130.0", "lower": "110.0", "min": "25.0", "max": "200.0"}


def test_history_filters_by_time_and_draws_the_figure(dataset, tmp_path):
    png = tmp_path / "c0.png"
    r = CliRunner().invoke(_cli(), ["history", "c0", "--since", "2024-05-01T10:00:30+00:00", "--format", "json",
                                    "--plot", str(png), "--dataset", str(dataset)])
    assert r.exit_code == 0, r.output
    rows = json.loads(r.stdout)
    assert [x["usage"] for x in rows] == [2.0 * i for i in range(30, 61)]
    assert png.read_bytes().startswith(PNG) and png.stat().st_size > 10_000


def test_history_of_an_application_shows_its_sums(dataset):
    r = CliRunner().invoke(_cli(), ["history", "app1", "--since", "all", "--dataset", str(dataset)])
    assert r.exit_code == 0, r.output
    assert "app1: cpu" in r.stdout and "220.0" in r.stdout  # current at t = 60: 100 + 2 × 60


def test_report_gives_utilization_against_current_and_against_max(dataset, tmp_path):
    png = tmp_path / "report.png"
    r = CliRunner().invoke(_cli(), ["report", "--format", "json", "--plot", str(png), "--dataset", str(dataset)])
    assert r.exit_code == 0, r.output
    by = {x["structure"]: x for x in json.loads(r.stdout)}
    assert set(by) == {"c0", "app1"}
    c0, app = by["c0"], by["app1"]
    # c0 over 60 s: ∫2t = 60² = 3600; ∫150 = 9000; ∫200 = 12000.
    assert (c0["used"], c0["allocated"], c0["reserved"]) == (3600, 9000, 12000)
    assert c0["utilization"] == pytest.approx(0.4) and c0["vs_reserved"] == pytest.approx(0.3)
    # app1: ∫(60 + t) = 3600 + 1800 = 5400; ∫(100 + 2t) = 6000 + 3600 = 9600; ∫400 = 24000.
    assert (app["used"], app["allocated"], app["reserved"]) == (5400, 9600, 24000)
    assert app["utilization"] == pytest.approx(0.5625) and app["vs_reserved"] == pytest.approx(0.225)
    assert app["subtype"] == "application" and app["seconds"] == 60
    assert png.read_bytes().startswith(PNG)


def test_report_prints_a_table_by_default(dataset, tmp_path):
    r = CliRunner().invoke(_cli(), ["report", "--plot", str(tmp_path / "r.png"), "--dataset", str(dataset)])
    assert r.exit_code == 0, r.output
    assert "40.0 %" in r.stdout and "30.0 %" in r.stdout and "56.2 %" in r.stdout


@pytest.mark.parametrize("args, words", [
    pytest.param(["history", "nobody", "--since", "all"], "no cpu rows for 'nobody'", id="unknown name"),
    pytest.param(["history", "c0", "--since", "yesterday-ish"], "cannot read", id="bad duration"),
    pytest.param(["history", "c0", "--format", "xml"], "--format must be", id="bad format"),
])
def test_mistakes_print_one_line_and_exit_non_zero(dataset, args, words):
    r = CliRunner().invoke(_cli(), [*args, "--dataset", str(dataset)])
    assert r.exit_code == 1
    assert words in r.stderr and r.stderr.count("\n") == 1


def test_a_missing_dataset_says_where_it_looked(tmp_path):
    r = CliRunner().invoke(_cli(), ["report", "--dataset", str(tmp_path / "none")])
    assert r.exit_code == 1 and "no time series in" in r.stderr


@pytest.mark.parametrize("text, expected", [
    ("10m", 1000 - 600), ("90s", 1000 - 90), ("1h30m", 1000 - 5400), ("all", None), ("", None),
    ("2024-05-01T10:00:00", T0), ("1714557600", T0),
])
def test_since_reads_durations_dates_and_epochs(text, expected):
    assert parse_since(text, now=1000) == expected
