"""The README's main command, shortened: `sc demo` runs, scales, writes its files, cleans up."""
from __future__ import annotations

import pytest

import json
import subprocess
import sys
from pathlib import Path

import pyarrow.parquet as pq

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]  # runs `sc demo`: its own Ray, real cgroups

REPO = Path(__file__).resolve().parents[2]


def test_the_demo_scales_both_containers_writes_plots_and_series_and_removes_its_cgroups(tmp_path):
    out = tmp_path / "demo"
    # Its own embedded Ray, in its own process, as a user runs it.
    proc = subprocess.run([sys.executable, "cli.py", "demo", "--scale", "0.4", "--out", str(out)],
                          cwd=REPO, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    summary = json.loads((out / "summary.json").read_text())
    for name in ("demo-a", "demo-b"):
        assert summary[name]["scale_up_s"], summary  # the limit followed the burst up …
        assert summary[name]["scale_down_s"], summary  # … and came back down
        assert (out / f"{name}.png").stat().st_size > 10_000
    rows = pq.read_table(out / "series.parquet").to_pylist()
    limits = {r["cpu_limit"] for r in rows if r["structure"] == "demo-a"}
    assert max(limits) > 50 and min(limits) <= 50  # started at 50, was raised
    assert all(25 <= r["cpu_limit"] <= 200 for r in rows)
    assert not Path("/sys/fs/cgroup/cpu/serverless/demo-a").exists()
    assert not Path("/sys/fs/cgroup/cpu/serverless/demo-b").exists()
