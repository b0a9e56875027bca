"""Starting and joining Ray: an embedded local instance, a `ray start` head, or a cluster.

Ray 2.60 turns token auth on by default once `~/.ray/auth_token` exists; a client
must then use the same mode as the cluster. We set `RAY_AUTH_MODE` explicitly in
every process we start (`token` for a persistent head that others join, `disabled`
for the embedded demo Ray that nothing else joins). An explicit address with
nothing listening makes `ray.init` hang for minutes, so the port is checked first.
"""
from __future__ import annotations

import logging
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any, Mapping

from sc_actors.settings import HOST_LABEL, NAMESPACE

OBJECT_STORE_BYTES = 150 * 1024 * 1024
"""Without it each raylet takes 30 % of RAM for its object store."""

STATE_FILE = Path(os.environ.get("SC_HOME", Path.home() / ".serverless-containers")) / "up.json"


def quiet_env() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    os.environ.setdefault("RAY_DEDUP_LOGS", "0")


def default_host_name() -> str:
    return socket.gethostname().split(".")[0] or "host0"


def default_state_dir() -> str:
    if os.geteuid() == 0:
        return "/var/lib/serverless-containers"
    return str(Path.home() / ".local/state/serverless-containers")


def address_answers(address: str, timeout_s: float = 1.0) -> bool:
    host, port = address.rsplit(":", 1)
    try:
        socket.create_connection((host, int(port)), timeout=timeout_s).close()
        return True
    except (OSError, ValueError):
        return False


def ray_temp_dir() -> Path:
    """Where Ray keeps its sessions and `ray_current_cluster`: Ray's own rule
    (`RAY_TMPDIR`, else `TMPDIR`, else /tmp; then `ray/`), without importing Ray."""
    return Path(os.environ.get("RAY_TMPDIR") or os.environ.get("TMPDIR") or "/tmp") / "ray"


def current_cluster_address() -> str | None:
    """The address of a running local cluster, if one answers."""
    addr = os.environ.get("RAY_ADDRESS")
    if not addr:
        try:
            addr = (ray_temp_dir() / "ray_current_cluster").read_text().strip()
        except FileNotFoundError:
            return None
    return addr if addr and address_answers(addr) else None


def init_embedded(host: str, parent: str | None = None, num_cpus: int | None = None,
                  dashboard_port: int | None = None) -> Any:
    """A private one-node Ray for this process only (the demo); gone when it exits.

    With `dashboard_port` the Ray dashboard runs on 127.0.0.1 at that port (no token:
    nothing else can join this Ray)."""
    import ray

    os.environ["RAY_AUTH_MODE"] = "disabled"
    quiet_env()
    labels = {HOST_LABEL: host}
    if parent:
        labels["sc_cgroup_parent"] = parent
    return ray.init(
        address="local",
        namespace=NAMESPACE,
        labels=labels,
        num_cpus=num_cpus or os.cpu_count(),
        object_store_memory=OBJECT_STORE_BYTES,
        include_dashboard=dashboard_port is not None,
        dashboard_host="127.0.0.1",
        dashboard_port=dashboard_port or 8265,
        log_to_driver=False,
        logging_level=logging.ERROR,
    )


class HeadFailed(RuntimeError):
    """`ray start --head` (or making its token) failed; the message is Ray's own error line."""


def token_source() -> str | None:
    """Where Ray will read its auth token from, if anywhere (Ray's order, §4 of the reference)."""
    if os.environ.get("RAY_AUTH_TOKEN"):
        return "RAY_AUTH_TOKEN"
    path = os.environ.get("RAY_AUTH_TOKEN_PATH")
    if path:
        return path if Path(path).is_file() else None
    default = Path.home() / ".ray" / "auth_token"
    return str(default) if default.is_file() else None


def ray_binary() -> str:
    return shutil.which("ray") or str(Path(sys.executable).with_name("ray"))


def ensure_token(ray_bin: str | None = None) -> str | None:
    """Make the Ray token the way Ray documents it (`ray get-auth-token --generate`) when
    there is none; returns the file made, or None when one was there already.

    A head with `RAY_AUTH_MODE=token` and no token refuses to start, and on a machine
    where Ray never ran there is none.
    """
    if token_source() is not None:
        return None
    # NOTE: stdout is the token itself: never shown, never logged.
    proc = subprocess.run([ray_bin or ray_binary(), "get-auth-token", "--generate"], stdout=subprocess.DEVNULL,
                          stderr=subprocess.PIPE, text=True)
    made = token_source()
    if proc.returncode != 0 or made is None:
        raise HeadFailed(f"{ray_error_line(proc.stderr)} (make a token with `ray get-auth-token --generate`)")
    return made


def ray_error_line(output: str) -> str:
    """The line of Ray's output that says what went wrong: the exception of its traceback,
    else its last `Error`/`error:` line, else its last line."""
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    for i in range(len(lines) - 1, -1, -1):
        line, head = lines[i], lines[i].split(":", 1)[0]
        if ":" in line and " " not in head and (head.endswith("Error") or head.endswith("Exception")):
            # "Failed to start GCS.  Last 1 lines of error files:" says what follows is the cause.
            if line.endswith(":") and i + 1 < len(lines):
                line = f"{line} {lines[i + 1][:400]}"
            return line
    for line in reversed(lines):
        if "error" in line.lower():
            return line
    return lines[-1] if lines else "no output"


def free_port(preferred: int | None = None) -> int:
    """`preferred` if nothing listens there, else a port the kernel picks (outside Ray's
    worker port range 10002-19999)."""
    if preferred is not None:
        with socket.socket() as s:
            try:
                s.bind(("", preferred))
                return preferred
            except OSError:
                pass
    with socket.socket() as s:
        s.bind(("", 0))
        return int(s.getsockname()[1])


HEAD_ENV = {
    "RAY_health_check_period_ms": "1000",
    "RAY_health_check_failure_threshold": "5",
}
"""A node that dies without a goodbye is declared dead after the GCS's health checks fail
every 1 s, 5 times (Ray's default takes about 15 s): its actors are restarted elsewhere that
much sooner, a head's own after a head restart too. `ray-start.sh head` sets the same; a
value in the environment wins."""


def start_head(port: int = 6390, host: str | None = None, dashboard_port: int = 8265,
               redis_address: str | None = None, redis_password: str | None = None) -> tuple[str, int]:
    """`ray start --head` with our label: a cluster that outlives this process.

    Returns its address and the process group of everything it started (the head runs
    in a session of its own), so `sc down` can stop this head and no other Ray.
    Raises HeadFailed with Ray's own error line.

    With `redis_address` the GCS keeps its tables in that Redis (Ray's GCS fault
    tolerance, `RAY_REDIS_ADDRESS`): a head started again on the same port and Redis
    after a crash takes the cluster back, its worker nodes and detached actors included.
    """
    os.environ["RAY_AUTH_MODE"] = "token"
    quiet_env()
    ray_bin = ray_binary()
    ensure_token(ray_bin)
    forget_dead_head(port)
    cmd = [
        ray_bin, "start", "--head", f"--port={port}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--labels", f"{HOST_LABEL}={host or default_host_name()}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        # Ray's fixed defaults for these two collide with any other Ray on the machine.
        f"--dashboard-agent-listen-port={free_port(52365)}", f"--ray-client-server-port={free_port(10001)}",
        "--disable-usage-stats",
    ]
    env = {**HEAD_ENV, **os.environ}
    if redis_address:
        env["RAY_REDIS_ADDRESS"] = redis_address
        if redis_password:
            cmd.append(f"--redis-password={redis_password}")
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, env=env)
    out, errs = proc.communicate()
    if proc.returncode != 0:
        # What a half-started head left behind is ours alone (its own session): gone with it.
        if _group_cmdlines(proc.pid):
            import signal

            os.killpg(proc.pid, signal.SIGKILL)
        raise HeadFailed(ray_error_line(errs + "\n" + out if errs.strip() else out))
    return f"127.0.0.1:{port}", proc.pid


def forget_dead_head(port: int) -> bool:
    """Remove Ray's `ray_current_cluster` when it names a head on `port` that no longer answers.

    `ray start --head` refuses a port that this file names while any raylet of this
    machine still points at it: after a head crash, the raylet of a worker node on the
    same machine (a test host, a namespace) waits for that very head to come back.
    Returns whether the file was removed.
    """
    f = ray_temp_dir() / "ray_current_cluster"
    try:
        recorded = f.read_text().strip()
    except FileNotFoundError:
        return False
    if recorded.rsplit(":", 1)[-1] != str(port) or address_answers(recorded):
        return False
    f.unlink(missing_ok=True)
    return True


def _group_cmdlines(pgid: int) -> list[str]:
    """Command lines of the live (not zombie) processes of one process group."""
    out = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            fields = (proc / "stat").read_text().rsplit(")", 1)[1].split()
            if int(fields[2]) != pgid or fields[0] == "Z":
                continue
            out.append((proc / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace"))
        except (OSError, IndexError, ValueError):
            continue
    return out


def head_serves(pgid: int, address: str) -> bool:
    """Whether process group `pgid` still runs a GCS on the port of `address` (a head we started)."""
    port = address.rsplit(":", 1)[-1]
    return any("gcs_server" in c and f"--gcs_server_port={port}" in c for c in _group_cmdlines(pgid))


def stop_head(pgid: int, port: int, timeout_s: float = 20.0) -> bool:
    """Stop the head `start_head` started: SIGTERM to its process group, SIGKILL to what is
    left after `timeout_s`. Never `ray stop`, which stops every Ray on the machine.

    Only a group whose GCS still serves `port` is signalled (a process group id can be
    reused once the head is gone); returns whether one was.
    """
    import signal
    import time

    if not head_serves(pgid, f":{port}"):
        return False
    os.killpg(pgid, signal.SIGTERM)

    def alive() -> bool:
        return bool(_group_cmdlines(pgid))

    deadline = time.monotonic() + timeout_s
    while alive() and time.monotonic() < deadline:
        time.sleep(0.2)
    if alive():
        try:
            os.killpg(pgid, signal.SIGKILL)
        except ProcessLookupError:
            pass
    return True


# ---------------------------------------------------------------------------- a Redis for the GCS

REDIS_DIR = "gcs-redis"
"""The local Redis's data dir, under the state dir: it is on the head's disk, beside the journal."""

REDIS_PORT = 6391
"""The port `sc up --gcs-redis` prefers for the Redis it starts (the GCS has 6390)."""


class RedisFailed(RuntimeError):
    """redis-server did not start; the message is its own last log line."""


def redis_config(data_dir: Path, port: int, password: str | None = None) -> str:
    """A redis-server config for the GCS: loopback only (only the head's GCS talks to it),
    every write in its append-only file (fsync each second), no RDB snapshots."""
    lines = [f"port {port}", "bind 127.0.0.1", "protected-mode yes", f'dir "{data_dir}"',
             "appendonly yes", "appendfsync everysec", 'save ""', "daemonize no",
             f'logfile "{data_dir / "redis.log"}"']
    if password:
        lines.append(f'requirepass "{password}"')
    return "\n".join(lines) + "\n"


def redis_answers(address: str, timeout_s: float = 1.0) -> bool:
    """Whether a Redis answers PING at `address` (a password-protected one answers NOAUTH)."""
    host, port = address.rsplit(":", 1)
    try:
        with socket.create_connection((host, int(port)), timeout=timeout_s) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith((b"+PONG", b"-NOAUTH"))
    except (OSError, ValueError):
        return False


def redis_serves(pid: int, port: int) -> bool:
    """Whether process `pid` is a redis-server on `port` (a pid can be reused once it is gone)."""
    try:
        cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
    except OSError:
        return False
    return "redis-server" in cmd and f":{port}" in cmd


def start_redis(state_dir: str | Path, port: int = REDIS_PORT, password: str | None = None,
                timeout_s: float = 20.0) -> tuple[str, int]:
    """Start a redis-server for the GCS, its data in `<state_dir>/gcs-redis`; returns its
    address and pid. It runs in a session of its own, apart from the head's processes, so
    a head that crashes (or is stopped) leaves it, and the head started next finds the
    cluster in it. Raises RedisFailed with redis-server's own last log line."""
    import time

    exe = shutil.which("redis-server")
    if exe is None:
        raise RedisFailed("redis-server is not installed (apt-get install redis-server, or "
                          "`bash cluster/bootstrap.sh setup`)")
    address = f"127.0.0.1:{port}"
    if address_answers(address):
        # Another server there would answer our PINGs while ours fails to bind.
        raise RedisFailed(f"{address} is already in use")
    data = Path(state_dir) / REDIS_DIR
    data.mkdir(parents=True, exist_ok=True)
    conf = data / "redis.conf"
    # The password, if any, is in the file, not on a command line: mode 0600.
    conf.touch(mode=0o600)
    conf.chmod(0o600)
    conf.write_text(redis_config(data, port, password))
    proc = subprocess.Popen([exe, str(conf)], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)
    deadline = time.monotonic() + timeout_s
    while not (redis_answers(address) and proc.poll() is None):
        if proc.poll() is not None or time.monotonic() > deadline:
            if proc.poll() is None:
                proc.kill()
            _, errs = proc.communicate()
            try:
                log_text = (data / "redis.log").read_text()
            except OSError:
                log_text = ""
            raise RedisFailed(ray_error_line(errs + "\n" + log_text) if (errs + log_text).strip()
                              else f"redis-server exited with {proc.returncode}")
        time.sleep(0.05)
    return address, proc.pid


def stop_redis(pid: int, port: int, timeout_s: float = 10.0) -> bool:
    """Stop the redis-server `start_redis` started (SIGTERM, then SIGKILL); only if `pid` is
    still that server. Returns whether it was."""
    import signal
    import time

    if not redis_serves(pid, port):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + timeout_s
    while redis_serves(pid, port) and time.monotonic() < deadline:
        time.sleep(0.1)
    if redis_serves(pid, port):
        os.kill(pid, signal.SIGKILL)
    return True


def connect(address: str) -> Any:
    import ray

    if not address_answers(address):
        raise ConnectionError(f"nothing answers at {address}: is the Ray head running?")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    quiet_env()
    return ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level=logging.ERROR)


# ---------------------------------------------------------------------------- a controlled host's Ray

MINIMAL_AGENT_ENV = "SC_RAY_MINIMAL_AGENT"
"""`1`: the node's Python processes see Ray's dashboard extras as missing (cluster/node_site)."""

LAZY_IMPORTS_ENV = "SC_RAY_LAZY_IMPORTS"
"""`1`: the node's Python processes import pyarrow (Ray's Arrow serializers), requests,
jsonschema and yaml at their first use, not at start (cluster/node_site)."""

NODE_SITE_DIR = Path(__file__).resolve().parent / "node_site"
"""First on a controlled host's PYTHONPATH: its `sitecustomize` acts on MINIMAL_AGENT_ENV and LAZY_IMPORTS_ENV."""

QUIET_NODE_ENV: dict[str, str] = {
    # The dashboard agent gathers this node's per-process stats every 60 s instead of 5 s:
    # the dashboard's node view (CPU, memory per worker) refreshes once a minute.
    "REPORTER_UPDATE_INTERVAL_MS": "60000",
    # No Prometheus metrics from this node's raylet, workers and agent (its metrics export
    # port serves none; Grafana shows nothing for it). Our own time series are not Ray metrics.
    "RAY_enable_metrics_collection": "0",
    # The raylet's 100 ms timers at 1 s: it reports its resources to the GCS, checks the
    # object store for GC, the spill disk for space, retries object transfers and reaps idle
    # workers once a second (the control plane's actors take no CPU slot and move no objects).
    "RAY_raylet_report_resources_period_milliseconds": "1000",
    "RAY_raylet_check_gc_period_milliseconds": "1000",
    "RAY_local_fs_monitor_interval_ms": "1000",
    "RAY_object_manager_timer_freq_ms": "1000",
    "RAY_kill_idle_workers_interval_ms": "1000",
    # Ray's OOM killer off on this node: the containers are not Ray workers, so under memory
    # pressure the only worker it could kill is the host's own ContainerScaler.
    "RAY_memory_monitor_refresh_ms": "0",
    # The node's dashboard agent in Ray's minimal mode (cluster/node_site/sitecustomize.py, on the
    # node's PYTHONPATH, makes Ray's dashboard-deps check fail in the node's processes only): it
    # runs no module and serves nothing, it only watches its raylet. Turned off for this node: its
    # stats in the dashboard's node view (CPU, memory, disk, per-worker), Ray metrics, its log files
    # in the dashboard and `ray logs`, its Ray events in the dashboard, the agent's health endpoint
    # (/api/local_raylet_healthz) and job submission through this node's agent. The node still
    # registers, is listed, runs workers, and the head's dashboard and jobs are unchanged.
    MINIMAL_AGENT_ENV: "1",
    # The node's Python processes import some of Ray's dependencies at their first use, not at
    # start (cluster/node_site/sitecustomize.py): pyarrow, which Ray imports in every worker only to
    # register Ray Data's Arrow serializers (~10 MB of the ContainerScaler's memory; registered
    # right after a worker's first pyarrow import instead), and requests, jsonschema and yaml,
    # which `import ray` loads for code that uses them only inside functions (~7 MB in each of
    # the node's three Python processes). Nothing is turned off: the same code runs at first use.
    LAZY_IMPORTS_ENV: "1",
}
"""What a controlled host's `ray start` runs with (issue 16: its idle cost), each the
Ray setting and what it turns off; `sc bench idle --ray-defaults` measures with and
without. `cluster/configs/ray-start.sh worker` exports the same."""

QUIET_NODE_ARGS = ("--include-log-monitor=False",)
"""No log monitor on the host: its workers' prints stay in the node's log files
(`ray logs`, the dashboard's log view) instead of being streamed to drivers."""

RAY_DEFAULTS_ENV = "SC_RAY_DEFAULTS"
"""`SC_RAY_DEFAULTS=1`: start a host with Ray's own defaults (its metrics and log streaming back)."""


def quiet_node_env(environ: Mapping[str, str] | None = None) -> dict[str, str]:
    """The settings a controlled host adds to its environment: QUIET_NODE_ENV but for what
    `environ` (default: this process's) sets itself, and its PYTHONPATH with NODE_SITE_DIR
    first; none with SC_RAY_DEFAULTS=1."""
    env = os.environ if environ is None else environ
    if env.get(RAY_DEFAULTS_ENV) == "1":
        return {}
    return {**{k: v for k, v in QUIET_NODE_ENV.items() if k not in env},
            "PYTHONPATH": node_pythonpath(env.get("PYTHONPATH"))}


def node_pythonpath(current: str | None = None) -> str:
    """NODE_SITE_DIR first, then what `current` holds."""
    return os.pathsep.join([str(NODE_SITE_DIR), *([current] if current else [])])


def worker_command(address: str, host: str, *, quiet: bool = True, object_store_bytes: int = 200 * 1024 * 1024,
                   ray_bin: str | None = None) -> list[str]:
    """`ray start --address` for controlled host `host`, as `ray-start.sh worker` runs it
    (with QUIET_NODE_ARGS unless `quiet` is False); give it `quiet_node_env()` too."""
    return [ray_bin or ray_binary(), "start", f"--address={address}", "--labels", f"{HOST_LABEL}={host}",
            f"--object-store-memory={object_store_bytes}", "--disable-usage-stats",
            *(QUIET_NODE_ARGS if quiet else ())]
