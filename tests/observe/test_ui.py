"""Issue 8: the live `/ui` page, loaded in headless Chromium after a short scaling run."""
from __future__ import annotations

import html.parser
import shutil
import subprocess
import tempfile
from pathlib import Path

import httpx

from cluster.deploy import wait_for

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")


class _Charts(html.parser.HTMLParser):
    """svg id -> {series: points} of every chart in the DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.charts: dict[str, dict[str, str]] = {}
        self._svg: str | None = None

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "svg" and (a.get("id") or "").startswith("chart-"):
            self._svg = a["id"]
            self.charts[self._svg] = {}
        elif tag == "polyline" and self._svg:
            self.charts[self._svg][a.get("data-series") or ""] = a.get("points") or ""

    def handle_endtag(self, tag):
        if tag == "svg":
            self._svg = None


def chromium(url: str, *args: str) -> subprocess.CompletedProcess:
    assert CHROMIUM, "chromium is not installed (cluster/bootstrap.sh installs it)"
    with tempfile.TemporaryDirectory(prefix="sc-chromium-") as profile:
        return subprocess.run(
            [CHROMIUM, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
             "--disable-background-networking", "--disable-component-update", "--disable-sync",
             "--disable-dev-shm-usage", f"--user-data-dir={profile}", "--virtual-time-budget=5000", *args, url],
            capture_output=True, text=True, timeout=120)


def test_ui_page_draws_a_chart_with_data_points_for_a_scaled_container(stack, busy_guarded, api):
    with busy_guarded("ui") as name:
        with httpx.Client(base_url=api.url, timeout=30) as client:
            page = client.get("/ui")
            assert page.status_code == 200 and "<svg" not in page.text.split("<script>")[0]

            def scaled_and_sampled():
                # Each poll of the page's JSON route adds a sample (as an open page would).
                d = client.get("/ui/series").json()
                c = next((c for c in d["containers"] if c["name"] == name), None)
                samples = c["resources"]["cpu"]["samples"] if c else []
                raised = any(s[2] is not None and s[2] > 50 for s in samples)
                return raised and len(samples) >= 5 and d

            data = wait_for(scaled_and_sampled, 30, interval_s=1.0, what="the quota raised and seen by /ui/series")
        assert any(h["name"] == stack.host for h in data["hosts"])

        run = chromium(f"{api.url}/ui", "--dump-dom")
        assert run.returncode == 0, run.stderr[-2000:]
        charts = _Charts()
        charts.feed(run.stdout)
        chart = charts.charts.get(f"chart-{name}-cpu")
        assert chart is not None, f"no chart of {name} in the page: {sorted(charts.charts)}"
        for series in ("usage", "current", "upper", "lower"):
            points = chart[series].split()
            assert len(points) >= 2, (series, chart)
            assert all(len(p.split(",")) == 2 for p in points)
        assert f"card-{name}" in run.stdout and stack.host in run.stdout

        ARTIFACTS.mkdir(exist_ok=True)
        shot = ARTIFACTS / "ui.png"
        shot.unlink(missing_ok=True)
        run = chromium(f"{api.url}/ui", f"--screenshot={shot}", "--window-size=1280,1400", "--hide-scrollbars")
        assert run.returncode == 0, run.stderr[-2000:]
        assert shot.exists() and shot.stat().st_size > 10_000 and shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
