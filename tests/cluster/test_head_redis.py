"""The Redis of `sc up --gcs-redis` and what `sc up` checks before it starts a head with one.

A real redis-server (Debian's, installed by cluster/bootstrap.sh) on a free port with its
data in a temp state dir; no Ray starts.
"""
from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

from cluster.local import (REDIS_DIR, RedisFailed, forget_dead_head, free_port, redis_answers, redis_serves,
                           start_redis, stop_redis)

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def redis(tmp_path):
    started: list[tuple[int, int]] = []

    def start(password: str | None = None) -> tuple[str, int, int]:
        port = free_port()
        address, pid = start_redis(tmp_path, port, password)
        started.append((pid, port))
        return address, pid, port

    yield start
    for pid, port in started:
        stop_redis(pid, port)


def test_start_redis_serves_on_loopback_with_an_append_only_file_under_the_state_dir(redis, tmp_path):
    address, pid, port = redis()
    assert address == f"127.0.0.1:{port}"
    assert redis_answers(address) and redis_serves(pid, port)
    conf = (tmp_path / REDIS_DIR / "redis.conf").read_text()
    assert "bind 127.0.0.1" in conf and "appendonly yes" in conf
    # Redis 7 keeps its append-only file in a directory of its own.
    assert (tmp_path / REDIS_DIR / "appendonlydir").is_dir()


def test_a_password_is_in_a_file_only_root_reads_and_redis_asks_for_it(redis, tmp_path):
    _, pid, port = redis(password="s3cret")
    conf = tmp_path / REDIS_DIR / "redis.conf"
    assert conf.stat().st_mode & 0o777 == 0o600
    assert "s3cret" not in Path(f"/proc/{pid}/cmdline").read_text()
    assert subprocess.run(["redis-cli", "-p", str(port), "get", "x"], capture_output=True,
                          text=True).stdout.startswith("NOAUTH")


def test_stop_redis_stops_that_server_and_no_other_process(redis):
    _, pid, port = redis()
    assert not stop_redis(os.getpid(), port)      # this process is not that redis-server
    assert stop_redis(pid, port)
    assert not redis_serves(pid, port)
    assert not stop_redis(pid, port)


def test_a_taken_port_fails_and_says_so(redis, tmp_path):
    _, _, port = redis()
    with pytest.raises(RedisFailed, match="already in use"):
        start_redis(tmp_path / "other", port)


def test_forget_dead_head_removes_ray_current_cluster_only_when_its_head_is_gone(tmp_path, monkeypatch):
    monkeypatch.setenv("RAY_TMPDIR", str(tmp_path))
    (tmp_path / "ray").mkdir()
    f = tmp_path / "ray" / "ray_current_cluster"
    dead = free_port()
    f.write_text(f"192.0.2.2:{dead}")
    assert not forget_dead_head(dead + 1) and f.exists()   # another head's port: left alone
    assert forget_dead_head(dead) and not f.exists()
    import socket

    with socket.socket() as s:                               # a head that answers: left alone
        s.bind(("127.0.0.1", 0))
        s.listen()
        f.write_text(f"127.0.0.1:{s.getsockname()[1]}")
        assert not forget_dead_head(s.getsockname()[1]) and f.exists()


@pytest.mark.parametrize("args, says", [
    (["--gcs-redis", "--redis-address", "127.0.0.1:1"], "not both"),
    (["--gcs-redis", "--address", "127.0.0.1:1"], "apply to the head `sc up` starts"),
])
def test_sc_up_refuses_redis_options_it_cannot_honour_before_starting_anything(tmp_path, args, says):
    env = {**os.environ, "SC_HOME": str(tmp_path / "home"), "RAY_TMPDIR": str(tmp_path)}
    proc = subprocess.run([sys.executable, "-m", "cli", "up", "--state-dir", str(tmp_path / "state"), *args],
                          cwd=REPO, env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1
    assert says in " ".join(proc.stderr.split())
    assert not (tmp_path / "state").exists() and not (tmp_path / "home" / "up.json").exists()


def _ray_start_head(tmp_path, **env):
    """`ray-start.sh head` with a stand-in `ray` that records its arguments and environment."""
    import json

    out, exe = tmp_path / "called.json", tmp_path / "ray"
    exe.write_text(f"#!{sys.executable}\nimport json, os, sys\n"
                   f"json.dump({{'argv': sys.argv[1:], 'env': dict(os.environ)}}, open({str(out)!r}, 'w'))\n")
    exe.chmod(0o755)
    base = {k: v for k, v in os.environ.items() if not k.startswith(("RAY_", "SC_"))}
    proc = subprocess.run(["bash", str(REPO / "cluster" / "configs" / "ray-start.sh"), "head"],
                          env={**base, "RAY": str(exe), "SC_HOST": "h1", **env}, capture_output=True, text=True,
                          timeout=30)
    assert proc.returncode == 0, proc.stderr
    return json.loads(out.read_text())


def test_ray_start_sh_head_keeps_the_gcs_in_the_redis_sc_gcs_redis_names(tmp_path):
    called = _ray_start_head(tmp_path, SC_GCS_REDIS="10.0.0.5:6391", SC_REDIS_PASSWORD="pw")
    assert called["env"]["RAY_REDIS_ADDRESS"] == "10.0.0.5:6391"
    assert "--redis-password=pw" in called["argv"]
    plain = _ray_start_head(tmp_path)
    assert "RAY_REDIS_ADDRESS" not in plain["env"]
    assert not any(a.startswith("--redis-password") for a in plain["argv"])
