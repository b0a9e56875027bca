"""`sc history` and `sc report`: the time series dataset for people, read directly (no Ray needed).

`sc history NAME` pivots one structure's rows (container, application or user) into
one line per window: usage, current, upper, lower, min, max — as a table, CSV or JSON,
and the original documentation's figure with `--plot` (reference §3.10).

`sc report` gives, per container and application, utilization = ∫usage / ∫current
(how much of what was allocated was used) and ∫usage / ∫max, against the "reserved"
baseline of a never-scaled instance (reference §3.10: an ideal serverless platform
reaches 100 %, the reserved area is the worst case), as a table and a bar chart.
Integrals are trapezoids over the windows where usage, current and max are all
known.

The dataset is found at `--dataset`, else `$SC_DATASET`, else `<state dir of sc up>/timeseries`,
else `./demo-out/timeseries` (what `sc demo` leaves), else `/var/lib/serverless-containers/timeseries`.
"""
from __future__ import annotations

import csv
import datetime as dt
import io
import json
import os
import re
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Optional

import typer

DEFAULT_DATASET = Path("/var/lib/serverless-containers/timeseries")
DEMO_DATASET = Path("demo-out/timeseries")
"""Where `sc demo` leaves its series (relative to where it ran)."""
SERIES_FIELDS = ("usage", "current", "upper", "lower", "min", "max")
FORMATS = ("table", "csv", "json")
_UNITS = {"cpu": "shares (100 = 1 core)", "mem": "MiB"}


class HistoryError(Exception):
    """A problem the user can fix (no dataset, no rows, a bad duration)."""


# --------------------------------------------------------------------------- inputs


def default_dataset() -> Path:
    if os.environ.get("SC_DATASET"):
        return Path(os.environ["SC_DATASET"])
    try:
        from cluster.local import STATE_FILE

        state_dir = json.loads(Path(STATE_FILE).read_text()).get("state_dir")
        if state_dir and (Path(state_dir) / "timeseries").is_dir():
            return Path(state_dir) / "timeseries"
    except (OSError, ValueError, ImportError):
        pass
    if DEMO_DATASET.is_dir():
        return DEMO_DATASET
    return DEFAULT_DATASET


_DURATION = re.compile(r"(\d+(?:\.\d+)?)\s*(ms|s|m|h|d)")
_UNIT_S = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: Optional[str], now: float) -> Optional[float]:
    """Epoch seconds from "10m", "90s", "1h30m", "2d", an ISO date-time or epoch seconds; None for ""/"all"."""
    if text is None or text.strip() in ("", "all"):
        return None
    s = text.strip()
    pos, total = 0, 0.0
    for m in _DURATION.finditer(s):
        if m.start() != pos:
            break
        total += float(m.group(1)) * _UNIT_S[m.group(2)]
        pos = m.end()
    if pos == len(s) and pos:
        return now - total
    try:
        return float(s)
    except ValueError:
        pass
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        raise HistoryError(f"cannot read {text!r}: use 10m, 90s, 2h, 1d or an ISO date-time") from None
    return (t if t.tzinfo else t.replace(tzinfo=dt.timezone.utc)).timestamp()


def _check_dataset(dataset: Path) -> None:
    from sc_actors.store.timeseries import data_files

    if not data_files(dataset):
        raise HistoryError(f"no time series in {dataset} (give --dataset, or start the control plane with `sc up`)")


# --------------------------------------------------------------------------- history


def series(dataset: Path, name: str, resource: str = "cpu", since: Optional[float] = None,
           until: Optional[float] = None) -> list[dict[str, Any]]:
    """One line per window of `name`: {"t": epoch s, "usage", "current", "upper", "lower", "min", "max"}."""
    from sc_actors.store.timeseries import read

    _check_dataset(dataset)
    table = read(dataset, structures=[name], since=since, until=until, resources=[resource])
    by_t: dict[float, dict[str, Any]] = {}
    cols = table.select(["timestamp", "kind", "field", "value"]).to_pydict()
    for ts, kind, fieldname, value in zip(cols["timestamp"], cols["kind"], cols["field"], cols["value"]):
        if fieldname not in SERIES_FIELDS or kind == "service":
            continue
        t = ts.timestamp()
        by_t.setdefault(t, {"t": t, **{f: None for f in SERIES_FIELDS}})[fieldname] = value
    if not by_t:
        raise HistoryError(f"no {resource} rows for {name!r} in {dataset}" + (" in that time range" if since else ""))
    return [by_t[t] for t in sorted(by_t)]


def plot_series(name: str, resource: str, points: Sequence[dict[str, Any]], path: Path) -> Path:
    """The original documentation's figure: usage filled, current, upper, lower, min, max."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    t0 = points[0]["t"]
    t = [p["t"] - t0 for p in points]
    fig, ax = plt.subplots(figsize=(10, 4.5))
    for key, style, label in (("max", ":", "max"), ("current", "-", "current (limit)"), ("upper", "--", "upper"),
                              ("lower", "--", "lower"), ("min", ":", "min")):
        ax.plot(t, [p[key] if p[key] is not None else float("nan") for p in points], style, label=label, linewidth=1.6)
    ax.fill_between(t, [p["usage"] or 0 for p in points], alpha=0.35, label="usage", color="tab:green")
    start = dt.datetime.fromtimestamp(t0, tz=dt.timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")
    ax.set(xlabel=f"time (s) since {start}", ylabel=f"{resource} {_UNITS.get(resource, '')}",
           title=f"{name}: {resource} usage and limits")
    ax.legend(loc="upper right", fontsize=8, ncols=3)
    ax.grid(alpha=0.3)
    return _save(fig, path)


def _save(fig: Any, path: str | Path) -> Path:
    """Write a figure as PNG (its directory made if missing) and free it."""
    import matplotlib.pyplot as plt

    fig.tight_layout()
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


# --------------------------------------------------------------------------- report


def _trapezoid(t: Any, v: Any) -> float:
    import numpy as np

    if len(t) < 2:
        return 0.0
    return float(np.sum((v[1:] + v[:-1]) * 0.5 * np.diff(t)))


def utilization(dataset: Path, resource: str = "cpu", since: Optional[float] = None,
                until: Optional[float] = None) -> list[dict[str, Any]]:
    """Per container and application: ∫usage, ∫current, ∫max and their ratios.

    `utilization` = ∫usage / ∫current, `vs_reserved` = ∫usage / ∫max, over the windows
    where all three are known (trapezoids; time in seconds, values in the resource's unit).
    """
    import numpy as np
    import pyarrow as pa
    import pyarrow.compute as pc

    from sc_actors.store.timeseries import read

    _check_dataset(dataset)
    table = read(dataset, since=since, until=until, resources=[resource], kinds=["structure"])
    table = table.filter(pc.is_in(table["subtype"], pa.array(["container", "application"])))
    cols: dict[str, pa.Table] = {}
    for f in ("usage", "current", "max"):
        part = table.filter(pc.equal(table["field"], f)).select(["structure", "subtype", "timestamp", "value"])
        cols[f] = part.rename_columns(["structure", "subtype", "timestamp", f])
    keys = ["structure", "timestamp"]
    joined = (
        cols["usage"]
        .join(cols["current"].drop_columns(["subtype"]), keys, join_type="inner")
        .join(cols["max"].drop_columns(["subtype"]), keys, join_type="inner")
        .sort_by([("structure", "ascending"), ("timestamp", "ascending")])
    )
    out = []
    names = joined["structure"].to_numpy(zero_copy_only=False)
    subtypes = joined["subtype"].to_numpy(zero_copy_only=False)
    t = pc.divide(pc.cast(pc.cast(joined["timestamp"], pa.timestamp("ms")), pa.int64()), 1000.0).to_numpy()
    u, c, m = (joined[f].to_numpy() for f in ("usage", "current", "max"))
    edges = np.flatnonzero(names[1:] != names[:-1]) + 1 if len(names) else np.array([], dtype=int)
    for lo, hi in zip(np.concatenate([[0], edges]), np.concatenate([edges, [len(names)]])):
        if hi - lo < 2:
            continue
        used, allocated, reserved = (_trapezoid(t[lo:hi], a[lo:hi]) for a in (u, c, m))
        out.append({
            "structure": str(names[lo]),
            "subtype": str(subtypes[lo]),
            "seconds": float(t[hi - 1] - t[lo]),
            "used": used,
            "allocated": allocated,
            "reserved": reserved,
            "utilization": used / allocated if allocated else None,
            "vs_reserved": used / reserved if reserved else None,
        })
    if not out:
        raise HistoryError(f"no {resource} usage with current and max in {dataset}")
    return sorted(out, key=lambda r: (r["subtype"] != "application", r["structure"]))


def plot_report(rows: Sequence[dict[str, Any]], resource: str, path: Path) -> Path:
    """Bars per structure: utilization against current (serverless) and against max (reserved)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    x = np.arange(len(rows))
    fig, ax = plt.subplots(figsize=(max(6, 1.2 * len(rows) + 2), 4.5))
    for offset, key, label in ((-0.2, "utilization", "∫usage / ∫current (serverless)"),
                               (0.2, "vs_reserved", "∫usage / ∫max (reserved)")):
        bars = ax.bar(x + offset, [100 * (r[key] or 0) for r in rows], 0.4, label=label)
        ax.bar_label(bars, fmt="%.0f %%", fontsize=8)
    ax.set_xticks(x, [f"{r['structure']}\n({r['subtype']})" for r in rows], fontsize=8)
    ax.set(ylabel="utilization (%)", ylim=(0, 105), title=f"{resource} utilization")
    ax.legend(fontsize=8)
    ax.grid(axis="y", alpha=0.3)
    return _save(fig, path)


# --------------------------------------------------------------------------- output


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, tz=dt.timezone.utc).isoformat(timespec="milliseconds")


def render(rows: Sequence[dict[str, Any]], fmt: str, title: str = "") -> str:
    """Rows as a rich table (text), CSV or JSON."""
    if fmt == "json":
        return json.dumps(list(rows), indent=None)
    if fmt == "csv":
        buf = io.StringIO()
        w = csv.DictWriter(buf, fieldnames=list(rows[0].keys()), lineterminator="\n")
        w.writeheader()
        w.writerows(rows)
        return buf.getvalue()
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    for col in rows[0].keys():
        table.add_column(col, justify="left" if col in ("time", "structure", "subtype") else "right")
    for r in rows:
        table.add_row(*(_cell(k, v) for k, v in r.items()))
    console = Console(file=io.StringIO(), width=160, force_terminal=False)
    console.print(table)
    return console.file.getvalue()  # type: ignore[attr-defined,no-any-return]


def _cell(key: str, v: Any) -> str:
    if v is None:
        return "-"
    if key in ("utilization", "vs_reserved"):
        return f"{100 * v:.1f} %"
    if isinstance(v, float):
        return f"{v:.1f}"
    return str(v)


def _fail(message: str) -> None:
    typer.echo(f"error: {message}", err=True)
    raise typer.Exit(1)


def _check_format(fmt: str) -> None:
    if fmt not in FORMATS:
        _fail(f"--format must be one of {', '.join(FORMATS)}, not {fmt!r}")


# --------------------------------------------------------------------------- commands


def history_command(
    name: str = typer.Argument(..., help="container, application or user"),
    resource: str = typer.Option("cpu", help="cpu (shares) or mem (MiB)"),
    since: str = typer.Option("10m", help="how far back: 10m, 90s, 2h, 1d, an ISO date-time, or 'all'"),
    until: Optional[str] = typer.Option(None, help="end of the range (same forms as --since); default now"),
    plot: Optional[Path] = typer.Option(None, help="also draw the figure into this PNG"),
    fmt: str = typer.Option("table", "--format", help="table, csv or json"),
    dataset: Optional[Path] = typer.Option(None, help="the Parquet dataset (default: see `sc report --help`)"),
) -> None:
    """Usage, current, upper, lower, min and max of one structure over time, from the dataset."""
    _check_format(fmt)
    ds = dataset or default_dataset()
    now = time.time()
    try:
        points = series(ds, name, resource, parse_since(since, now), parse_since(until, now) if until else None)
    except HistoryError as e:
        _fail(str(e))
    rows = [{"time": _iso(p["t"]), "t": round(p["t"], 3), **{f: p[f] for f in SERIES_FIELDS}} for p in points]
    if fmt == "table":
        for r in rows:
            r.pop("t")
    sys.stdout.write(render(rows, fmt, f"{name}: {resource} ({_UNITS.get(resource, '')})"))
    if fmt == "json":
        sys.stdout.write("\n")
    if plot is not None:
        typer.echo(f"figure: {plot_series(name, resource, points, plot)}", err=True)


def report_command(
    resource: str = typer.Option("cpu", help="cpu (shares) or mem (MiB)"),
    since: str = typer.Option("all", help="how far back: 10m, 2h, 1d, an ISO date-time, or 'all'"),
    until: Optional[str] = typer.Option(None, help="end of the range; default now"),
    plot: Optional[Path] = typer.Option(None, help="bar chart PNG (default: utilization-<resource>.png)"),
    fmt: str = typer.Option("table", "--format", help="table, csv or json"),
    dataset: Optional[Path] = typer.Option(
        None, help="the Parquet dataset; default $SC_DATASET, else <sc up state dir>/timeseries, "
                   "else ./demo-out/timeseries, else /var/lib/serverless-containers/timeseries"),
) -> None:
    """Utilization per container and application: ∫usage/∫current, and against max (reserved)."""
    _check_format(fmt)
    ds = dataset or default_dataset()
    now = time.time()
    try:
        rows = utilization(ds, resource, parse_since(since, now), parse_since(until, now) if until else None)
    except HistoryError as e:
        _fail(str(e))
    sys.stdout.write(render(rows, fmt, f"{resource} utilization (∫ over time: {_UNITS.get(resource, '')} × s)"))
    if fmt == "json":
        sys.stdout.write("\n")
    path = plot_report(rows, resource, plot or Path(f"utilization-{resource}.png"))
    typer.echo(f"bar chart: {path}", err=True)


app = typer.Typer(help="Time series: history and utilization report, read from the Parquet dataset.")
app.command("history")(history_command)
app.command("report")(report_command)
