"""Starting and joining Ray: an embedded local instance, a `ray start` head, or a cluster.

Ray 2.60 turns token auth on by default once `~/.ray/auth_token` exists; a client
must then use the same mode as the cluster. We set `RAY_AUTH_MODE` explicitly in
every process we start (`token` for a persistent head that others join, `disabled`
for the embedded demo Ray that nothing else joins). An explicit address with
nothing listening makes `ray.init` hang for minutes, so the port is checked first.
"""
from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

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


def current_cluster_address() -> str | None:
    """The address of a running local cluster, if one answers."""
    addr = os.environ.get("RAY_ADDRESS")
    if not addr:
        try:
            addr = Path("/tmp/ray/ray_current_cluster").read_text().strip()
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
        logging_level="ERROR",
    )


def start_head(port: int = 6390, host: str | None = None, dashboard_port: int = 8265) -> str:
    """`ray start --head` with our label: a cluster that outlives this process."""
    os.environ["RAY_AUTH_MODE"] = "token"
    quiet_env()
    ray_bin = shutil.which("ray") or str(Path(sys.executable).with_name("ray"))
    cmd = [
        ray_bin, "start", "--head", f"--port={port}",
        f"--object-store-memory={OBJECT_STORE_BYTES}",
        "--labels", f"{HOST_LABEL}={host or default_host_name()}",
        "--dashboard-host=127.0.0.1", f"--dashboard-port={dashboard_port}",
        "--disable-usage-stats",
    ]
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return f"127.0.0.1:{port}"


def connect(address: str) -> Any:
    import ray

    if not address_answers(address):
        raise ConnectionError(f"nothing answers at {address}: is the Ray head running?")
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    quiet_env()
    return ray.init(address=address, namespace=NAMESPACE, log_to_driver=False, logging_level="ERROR")
