"""A newcomer's first `sc up`, on a machine where Ray never ran (issue 14, item 1).

`sc up`, `sc status` and `sc down` run as separate processes with `HOME` an empty
directory (no `~/.ray/auth_token`, no record of an earlier `sc up`) and a Ray temp
dir of their own, on ports nothing else uses, so the Ray head they start is not
the test session's. `sc down` must stop that head and no other Ray process.
"""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import uuid
from pathlib import Path

import pytest

from cluster.local import _group_cmdlines, stop_head
from tests.conftest import _remove_parent

pytestmark = [pytest.mark.ray, pytest.mark.cgroup]  # runs `sc up`: its own Ray, real cgroups

REPO = Path(__file__).resolve().parents[2]
SC = [sys.executable, str(REPO / "cli.py")]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


def _ray_pids_outside(pgid: int | None) -> set[int]:
    """Live Ray processes (GCS, raylets) that are not in process group `pgid`."""
    out = set()
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            cmd = (proc / "cmdline").read_bytes()
        except (OSError, IndexError):
            continue
        if fields[0] != "Z" and int(fields[2]) != pgid and (b"gcs_server" in cmd or b"raylet/raylet" in cmd):
            out.add(int(proc.name))
    return out


@pytest.fixture
def newcomer(tmp_path):
    """The environment of a user on a fresh machine: empty HOME, nothing of Ray's."""
    home = tmp_path / "home"
    home.mkdir()
    # NOTE: short, because Ray's unix sockets live under it (108-byte limit).
    ray_tmp = tempfile.mkdtemp(prefix="scup", dir="/tmp")
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("RAY_", "SC_")) and k not in ("TMPDIR",)}
    env.update(HOME=str(home), RAY_TMPDIR=ray_tmp, RAY_USAGE_STATS_ENABLED="0", COLUMNS="80")
    parent = f"sc-firstup-{uuid.uuid4().hex[:6]}"
    heads: list[tuple[int, int]] = []
    """(process group, GCS port) of each head a test saw started: stopped whatever the test did."""
    yield env, home, tmp_path, parent, heads
    record = home / ".serverless-containers" / "up.json"
    if record.exists():
        rec = json.loads(record.read_text())
        if rec.get("head_pgid"):
            heads.append((int(rec["head_pgid"]), int(rec["head_port"])))
    for pgid, port in heads:
        stop_head(pgid, port)
    _remove_parent(parent)
    shutil.rmtree(ray_tmp, ignore_errors=True)


def _sc(env, *args, timeout=240):
    return subprocess.run([*SC, *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout)


@pytest.mark.cgroup
def test_sc_up_status_and_down_work_where_ray_never_ran(newcomer):
    env, home, tmp, parent, heads = newcomer
    others_before = _ray_pids_outside(None)
    port, dash, api = _free_port(), _free_port(), _free_port()

    up = _sc(env, "up", "--port", str(port), "--dashboard-port", str(dash), "--api-port", str(api),
             "--state-dir", str(tmp / "state"), "--parent", parent)
    assert up.returncode == 0, up.stdout + up.stderr
    assert "Traceback" not in up.stdout + up.stderr
    # The token was made the way Ray documents it, and said so.
    assert (home / ".ray" / "auth_token").stat().st_size == 64
    assert "ray get-auth-token --generate" in up.stdout
    rec = json.loads((home / ".serverless-containers" / "up.json").read_text())
    pgid = rec["head_pgid"]
    heads.append((pgid, port))
    assert any(f"--gcs_server_port={port}" in c for c in _group_cmdlines(pgid))

    # `sc up` again finds its head running: it deploys onto it and still owns it.
    again = _sc(env, "up", "--port", str(port), "--dashboard-port", str(dash), "--api-port", str(api),
                "--state-dir", str(tmp / "state"), "--parent", parent)
    assert again.returncode == 0, again.stdout + again.stderr
    assert json.loads((home / ".serverless-containers" / "up.json").read_text())["head_pgid"] == pgid

    status = _sc(env, "status", timeout=60)
    assert status.returncode == 0, status.stdout + status.stderr
    hosts = _sc(env, "host", "list", "--json", timeout=60)
    assert hosts.returncode == 0, hosts.stderr
    assert [h["name"] for h in json.loads(hosts.stdout)] == rec["hosts"]

    down = _sc(env, "down")
    assert down.returncode == 0, down.stdout + down.stderr
    assert "Traceback" not in down.stdout + down.stderr
    # Our head is gone, and every other Ray process of the machine is still there.
    assert _group_cmdlines(pgid) == []
    assert others_before - _ray_pids_outside(pgid) == set()
    assert not (home / ".serverless-containers" / "up.json").exists()


def test_a_failing_ray_start_prints_rays_error_line_and_exits_non_zero(newcomer):
    env, home, tmp, parent, heads = newcomer
    with socket.socket() as taken:
        taken.bind(("0.0.0.0", 0))
        taken.listen()
        port = taken.getsockname()[1]
        up = _sc(env, "up", "--port", str(port), "--dashboard-port", str(_free_port()),
                 "--api-port", str(_free_port()), "--state-dir", str(tmp / "state"), "--parent", parent,
                 timeout=120)
    assert up.returncode != 0
    lines = [line for line in up.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, up.stderr
    assert lines[0].startswith("error: ray start failed: RuntimeError: Failed to start GCS"), lines
    assert "Traceback" not in up.stdout + up.stderr
    # Nothing recorded as running, nothing left of the half-started head.
    record = home / ".serverless-containers" / "up.json"
    assert not record.exists()
