"""A small real cluster whose head a test may kill: `sc up` on a head of its own, one
controlled worker host joined with `ray start --address`, plain-cgroup containers on it.

Everything runs as separate processes with their own `SC_HOME`, Ray temp dir, token and
free ports, so the test's own process never connects to this Ray (a driver of a head that
dies is ended by Ray's core after its reconnect timeout) and nothing collides with the
session's test cluster or another Ray on the machine. The nodes are `ray start` processes
on this machine's address; the worker is started the way `ray-start.sh worker` starts a
host (`cluster.local.worker_command`), so moving it into a network namespace later is a
change of the command's prefix.

`down()` kills every process it started (by process group and descendants, never
`ray stop`), the Redis of `sc up --gcs-redis`, the cgroup parents and the temp dir.
"""
from __future__ import annotations

import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from cluster.deploy import wait_for
from cluster.local import address_answers, free_port, quiet_node_env, worker_command
from cluster.tools.bench.idle import _cmdline, _read_stats, members, role
from sc_actors.backends import make_backend
from serve.client import Client, app_body, container_body
from tests.conftest import _remove_parent

REPO = Path(__file__).resolve().parents[2]


def _sc() -> str:
    return shutil.which("sc") or str(Path(sys.executable).with_name("sc"))


def _kill_all(pids: set[int]) -> None:
    for pid in pids:
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def _cwd(pid: int) -> str:
    try:
        return os.readlink(f"/proc/{pid}/cwd")
    except OSError:
        return ""


def _alive(pids: set[int]) -> set[int]:
    stats = _read_stats()
    return {p for p in pids if p in stats and stats[p].state != "Z"}


@dataclass
class LimitsWatch:
    """Samples containers' limits from the cgroup files in a thread, every `interval_s`."""

    backend: Any
    names: list[str]
    probe: Callable[[], bool] = lambda: True
    """Asked at each sample too (e.g. whether the GCS answers); see `first`."""
    interval_s: float = 0.1
    samples: list[tuple[float, dict[str, Any]]] = field(default_factory=list)
    probes: list[tuple[float, bool]] = field(default_factory=list)
    _stop: threading.Event = field(default_factory=threading.Event)
    _thread: threading.Thread | None = None

    def start(self) -> "LimitsWatch":
        def run() -> None:
            while not self._stop.is_set():
                try:
                    self.probes.append((time.monotonic(), self.probe()))
                except Exception:  # noqa: BLE001  (a probe that fails answered no)
                    self.probes.append((time.monotonic(), False))
                try:
                    self.samples.append((time.monotonic(), {n: self.backend.read_limits(n) for n in self.names}))
                except LookupError:  # removed: the test is over
                    return
                self._stop.wait(self.interval_s)

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def first_change(self, name: str, changed: Callable[[Any], bool]) -> float:
        """When the first sample saw `changed(limits of name)`; raises LookupError if none did."""
        for t, limits in self.samples:
            if changed(limits[name]):
                return t
        raise LookupError(f"no sample of {name} changed ({len(self.samples)} samples)")

    def first(self, value: bool, after: float) -> float | None:
        """When the probe first answered `value` after `after` (monotonic), if it did."""
        return next((t for t, v in self.probes if t > after and v == value), None)

    def seen(self, name: str, until: float | None = None) -> list[Any]:
        """The distinct limits `name` had in the samples taken before `until` (monotonic)."""
        out: list[Any] = []
        for t, limits in self.samples:
            if (until is None or t <= until) and limits[name] not in out:
                out.append(limits[name])
        return out


class HeadCluster:
    """`sc up` (with `--gcs-redis` when `redis`) on a head of its own, plus one worker host."""

    def __init__(self, redis: bool) -> None:
        # Short: Ray's Unix sockets live under it (107 bytes at most).
        self.tmp = Path(tempfile.mkdtemp(prefix="sc-h7-", dir="/tmp"))
        self.redis = redis
        sid = uuid.uuid4().hex[:6]
        self.head_parent = f"sc-h7-{sid}-head"
        self.worker_host = f"h7w{sid}"
        self.worker_parent = f"sc-h7-{sid}-w"
        self.token = secrets.token_hex(16)
        self.port, self.api_port, self.dashboard_port = free_port(), free_port(), free_port()
        self.state_dir = self.tmp / "state"
        self.worker_pgids: list[int] = []
        self.redis_pid: int | None = None
        self.head_pgids: list[int] = []
        self.backend = make_backend("cgroup_v1", "/sys/fs/cgroup", self.worker_parent)
        self.containers: list[str] = []
        self.procs: list[subprocess.Popen[bytes]] = []

    # ------------------------------------------------------------------ bring-up

    def env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in ("RAY_ADDRESS", "SC_URL", "SC_API_TOKEN")}
        env.update(SC_HOME=str(self.tmp / "home"), RAY_TMPDIR=str(self.tmp), RAY_AUTH_MODE="token",
                   RAY_AUTH_TOKEN=self.token, RAY_USAGE_STATS_ENABLED="0")
        return env

    def up_command(self) -> list[str]:
        return [_sc(), "up", "--port", str(self.port), "--dashboard-port", str(self.dashboard_port),
                "--api-port", str(self.api_port), "--state-dir", str(self.state_dir), "--parent", self.head_parent,
                "--backend", "cgroup_v1", *(["--gcs-redis"] if self.redis else [])]

    def up(self) -> float:
        """`sc up` (again, after a crash: the same command); seconds it took."""
        t0 = time.monotonic()
        proc = subprocess.run(self.up_command(), env=self.env(), cwd=REPO, stdout=subprocess.PIPE,
                              stderr=subprocess.STDOUT, text=True, timeout=300)
        took = time.monotonic() - t0
        rec = self.record()
        if "head_pgid" in rec and int(rec["head_pgid"]) not in self.head_pgids:
            self.head_pgids.append(int(rec["head_pgid"]))
        if rec.get("redis_pid"):
            self.redis_pid = int(rec["redis_pid"])
        assert proc.returncode == 0, f"sc up failed ({proc.returncode}):\n{proc.stdout[-3000:]}"
        self.up_output = proc.stdout
        return took

    def record(self) -> dict[str, Any]:
        try:
            return json.loads((self.tmp / "home" / "up.json").read_text())  # type: ignore[no-any-return]
        except (OSError, ValueError):
            return {}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def client(self) -> Client:
        return Client(self.record()["url"], timeout_s=30)

    def join_worker(self) -> float:
        """The worker host joins (`ray start --address`, as `ray-start.sh worker`: its flags and quiet
        settings, `cluster.local.quiet_node_env`); seconds."""
        cmd = worker_command(self.address, self.worker_host, object_store_bytes=100 * 2**20)
        i = cmd.index("--labels")
        cmd[i + 1] += f",sc_cgroup_parent={self.worker_parent}"
        cmd += [f"--dashboard-agent-listen-port={free_port()}", f"--metrics-export-port={free_port()}",
                "--num-cpus=1"]
        t0 = time.monotonic()
        env = self.env()
        proc = subprocess.Popen(cmd, env={**env, **quiet_node_env(env)}, cwd=REPO, stdout=subprocess.PIPE,
                                stderr=subprocess.STDOUT, text=True, start_new_session=True)
        self.worker_pgids.append(proc.pid)
        out, _ = proc.communicate(timeout=120)
        assert proc.returncode == 0, f"ray start --address failed:\n{out[-2000:]}"
        return time.monotonic() - t0

    # ------------------------------------------------------------------ processes

    def head_pids(self) -> set[int]:
        """Every live process of the head's session: gcs_server, raylet, dashboard, agents,
        and the workers of its actors (children of its raylet, each in a group of its own)."""
        return members(_read_stats(), self.head_pgids[-1:])

    def worker_pids(self) -> set[int]:
        return members(_read_stats(), self.worker_pgids[-1:])

    def worker_raylet(self) -> int | None:
        for pid in self.worker_pids():
            if role(_cmdline(pid)) == "raylet":
                return pid
        return None

    def actor_pids(self, actor: str, pids: set[int]) -> set[int]:
        return {p for p in pids if role(_cmdline(p)) == f"ray::{actor}"}

    def kill_head(self) -> int:
        """SIGKILL every process of the head at once (a crash: no goodbye); returns how many."""
        pids = self.head_pids()
        assert pids, "no head processes"
        _kill_all(pids)
        wait_for(lambda: not _alive(pids), 30, what="head processes gone")
        return len(pids)

    def gcs_answers(self) -> bool:
        return address_answers(self.address, timeout_s=0.2)

    # ------------------------------------------------------------------ containers, changes

    def container(self, name: str, cpu: tuple[int, int, int] = (25, 25, 200),
                  mem: tuple[int, int, int] = (64, 64, 512)) -> None:
        """A plain-cgroup container on the worker host, subscribed and guarded through the API."""
        self.backend.create(name)
        self.containers.append(name)
        self.client().subscribe("container", name, container_body(name, self.worker_host, cpu, mem, 10, True))

    def busy_loop(self, name: str) -> subprocess.Popen[bytes]:
        p = subprocess.Popen([sys.executable, "-c", "while True: pass"])
        self.procs.append(p)
        self.backend.attach(name, p.pid)
        return p

    def acknowledged_changes(self, n: int, prefix: str = "ack") -> dict[str, int]:
        """`n` applications subscribed through the API, each answered 2xx: name → its cpu max."""
        client = self.client()
        done = {}
        for i in range(n):
            name, cpu_max = f"{prefix}{i}", 100 + i
            client.subscribe("apps", name, app_body(name, (10, cpu_max), (64, 1000 + i), 10))
            done[name] = cpu_max
        return done

    def lost(self, acked: dict[str, int]) -> list[str]:
        """The acknowledged applications the API no longer has, or has with another cpu max."""
        client = self.client()
        out = []
        for name, cpu_max in acked.items():
            try:
                doc = client.structure(name)
            except Exception:
                out.append(name)
                continue
            if doc["resources"]["cpu"]["max"] != cpu_max:
                out.append(name)
        return out

    # ------------------------------------------------------------------ teardown

    def down(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        stats = _read_stats()
        # Every Ray process of this cluster names our temp dir (its session dir) on its command
        # line: also those of a head whose `ray start` failed half-way.
        # The Redis of `sc up --gcs-redis` works in its data dir, under our temp dir.
        pids = members(stats, [*self.head_pgids, *self.worker_pgids]) | {
            p for p in stats if str(self.tmp) in " ".join(_cmdline(p)) or _cwd(p).startswith(str(self.tmp))}
        _kill_all(pids)
        try:
            wait_for(lambda: not _alive(pids), 30, what="processes gone")
        except TimeoutError:
            pass
        for name in self.containers:
            try:
                self.backend.remove(name)
            except Exception:
                pass
        for parent in (self.worker_parent, self.head_parent):
            b = make_backend("cgroup_v1", "/sys/fs/cgroup", parent)
            for name in b.list_containers():
                b.remove(name)
            _remove_parent(parent)
        shutil.rmtree(self.tmp, ignore_errors=True)
