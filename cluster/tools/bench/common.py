"""What every `sc bench` shares: the machine, percentiles, waiting on a condition, profiles."""
from __future__ import annotations

import contextlib
import os
import platform
import shutil
import tempfile
import time
from typing import TYPE_CHECKING, Any, Callable, Iterator, NoReturn

import typer
from rich.console import Console

from pathlib import Path

if TYPE_CHECKING:
    from sc_actors.backends.cgroup_v1 import CgroupV1Backend


REPO = Path(__file__).resolve().parents[3]


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(xs)

    def p(q: float) -> float:
        k = (len(s) - 1) * q
        lo, hi = int(k), min(int(k) + 1, len(s) - 1)
        return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 3)

    return {"n": len(s), "p50": p(0.5), "p95": p(0.95), "p99": p(0.99), "max": round(s[-1], 3)}


def poll_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.02) -> float | None:
    """Seconds until `predicate` holds, or None on time-out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval_s)
    return None


def set_profile(db: Any, name: str, timing: str = "ours") -> dict[str, dict[str, Any]]:
    """Apply scaling profile `name` (adaptive, original) with `timing` (ours, original), as
    `sc profile NAME --timing TIMING` does; returns the services' configs now in force."""
    import ray

    from sc_actors.profiles import profile_documents

    puts = profile_documents(name, timing, ray.get(db.list.remote("services")), ray.get(db.list.remote("limits")))
    if puts:
        ray.get(db.transact.remote(puts))
    return {s["name"]: s["config"] for s in ray.get(db.list.remote("services")) if s["name"] in ("guardian", "scaler")}


def fmt_s(x: float | None) -> str:
    return "timeout" if x is None else f"{x:.2f}s"


def settle(read: Callable[[], float], quiet_s: float, timeout_s: float) -> None:
    """Wait until `read()` has not changed for `quiet_s` (or `timeout_s` passes)."""
    t0 = time.monotonic()
    last, since = read(), time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        v = read()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)


def pyplot() -> Any:
    """matplotlib's pyplot on the Agg backend (files only, no display needed)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def save_figure(fig: Any, path: Path) -> None:
    """Lay out, write at 100 dpi and free a figure."""
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    pyplot().close(fig)


# ---------------------------------------------------------------------------- CLI output

console = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """One error line on stderr and a non-zero exit, like every `sc` verb."""
    Console(stderr=True).print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def positive_ints(option: str, text: str) -> tuple[int, ...]:
    """A comma-separated option of integers ≥ 1 ("1,4,16"); one error line and exit otherwise."""
    try:
        values = tuple(int(x) for x in text.split(","))
    except ValueError:
        fail(f"{option} must be integers separated by commas, got {text!r}")
    if not values or min(values) < 1:
        fail(f"{option} must be at least 1, got {text!r}")
    return values


def out_dir(out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    return str(out)


# ---------------------------------------------------------------------------- real-cgroup benches


@contextlib.contextmanager
def real_cgroup_cluster(parent: str, verb: str) -> Iterator[dict[str, Any]]:
    """An embedded Ray with the control plane deployed, its node's containers under `parent`.

    Yields `backend` (cgroup v1, read by the bench itself), `db`, `scaler`, `host` and
    `node` (the host's ContainerScaler). On exit, also on an exception: undeploy, Ray
    shut down, the parent cgroup and the StateDB's directory removed (the containers are the
    caller's).
    """
    import ray

    from sc_actors.backends import make_backend
    from sc_actors.settings import NAMESPACE, container_scaler_name

    from cluster.deploy import deploy, undeploy
    from cluster.local import default_host_name, init_embedded

    host = default_host_name()
    state_dir = tempfile.mkdtemp(prefix="sc-bench-")
    init_embedded(host, parent=parent)
    try:
        backend = make_backend("auto", "/sys/fs/cgroup", parent)
        if backend.kind != "cgroup_v1":
            raise RuntimeError(f"sc bench {verb} reads cgroup v1 files; this machine has {backend.kind}")
        try:
            actors = deploy(state_dir, node_defaults={"parent": parent})
            yield {"backend": backend, "db": actors["statedb"], "scaler": actors["scaler"], "host": host,
                   "node": ray.get_actor(container_scaler_name(host), namespace=NAMESPACE)}
        finally:
            undeploy()
    finally:
        ray.shutdown()
        remove_parent(parent)
        shutil.rmtree(state_dir, ignore_errors=True)


def remove_parent(parent: str) -> None:
    """Remove the (empty) parent cgroup of a bench's containers in every v1 controller."""
    for controller in ("cpu", "cpuacct", "cpuset", "memory"):
        try:
            (Path("/sys/fs/cgroup") / controller / parent).rmdir()
        except OSError:
            pass


def wait_window(node: Any, window_s: float, timeout_s: float) -> bool:
    """Wait until the node pushes usage windows every `window_s` (the profile is in effect)."""
    import ray

    deadline = time.monotonic() + timeout_s
    seen: list[float] = []
    last = None
    while time.monotonic() < deadline:
        n = ray.get(node.ping.remote())["windows_pushed"]
        if last is not None and n != last:
            seen.append(time.monotonic())
            if len(seen) >= 3 and 0.5 * window_s <= seen[-1] - seen[-2] <= 1.5 * window_s:
                return True
        last = n
        time.sleep(min(0.05, window_s / 8))
    return False


def cpu_stat(backend: CgroupV1Backend, name: str) -> dict[str, int]:
    """`cpu.stat` of a cgroup v1 container (the backend has no reader for it)."""
    from sc_actors.backends import base

    return base.parse_keyed(backend._read(name, "cpu.stat"))


def host_busy_s() -> float:
    """CPU-seconds the whole machine has been busy (all cores), from /proc/stat."""
    fields = [int(x) for x in Path("/proc/stat").read_text().split("\n", 1)[0].split()[1:9]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields) - idle) / os.sysconf("SC_CLK_TCK")


def tree_cpu(skip: set[int]) -> dict[int, float]:
    """CPU-seconds so far of every process below this one (the embedded Ray: the control
    plane), except the trees rooted at `skip` (the loads)."""
    import psutil

    out: dict[int, float] = {}
    try:
        procs = psutil.Process().children(recursive=True)
    except psutil.Error:
        return out
    skipped = set(skip)
    for pid in skip:
        try:
            skipped.update(c.pid for c in psutil.Process(pid).children(recursive=True))
        except psutil.Error:
            continue
    for p in procs:
        if p.pid in skipped:
            continue
        try:
            t = p.cpu_times()
            out[p.pid] = t.user + t.system
        except psutil.Error:
            continue
    return out


def pct(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:.1f} %"


def num(x: float | None) -> str:
    return "–" if x is None else f"{x:.1f}"


def signed(x: float | None) -> str:
    return "–" if x is None else f"{x * 100:+.1f} %"


def secs(x: float | None) -> str:
    return "–" if x is None else f"{x:.2f}s"

