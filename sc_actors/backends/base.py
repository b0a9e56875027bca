"""What a node backend offers the ContainerScaler, and the checks every backend shares.

Reference §5 (NodeRescaler): a backend reads and writes one container's CPU limit
(shares, −1 unlimited), cpuset and memory limit (MiB, −1 unlimited), and samples its
usage. Unlike the original, a write outside the bounds it is given, below 64 MiB, or
naming cores the host lacks is refused with `LimitRefused`, never clamped (STYLE §6.3).
The host description (`host_cores`, `host_mem_mib`, `cpu_topology`) is the
original's `GET /host/cpu_topology`, parsed from /proc/cpuinfo.
"""
from __future__ import annotations

import errno
import functools
import math
import os
import signal
import time
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator, Protocol, TypeVar

from .. import units
from ..model import Bounds, ContainerLimits, LimitChange, check_name

T = TypeVar("T")


class LimitRefused(ValueError):
    """A limit write that the node will not (or the kernel could not) apply."""


class ContainerNotFound(KeyError):
    """No container of that name on this node."""

    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class UsageCounters:
    """One sample of a container's counters.

    `cpu_ns` is cumulative CPU time (ns, only differences mean anything),
    `mem_bytes` current memory use without page cache, `t` the `time.monotonic()`
    of the read, so two samples give a rate with `units.cpu_ns_to_shares`.
    `periods`, `throttled_periods` and `throttled_ns` are the CFS bandwidth counters of
    `cpu.stat` (`nr_periods`, `nr_throttled`, `throttled_time` / `throttled_usec`;
    cumulative, 0 where the backend has none): the share of periods in which the
    container hit its quota, and the runnable time the quota held back (summed over
    CPUs: how much more CPU it would have used).
    """

    cpu_ns: int
    mem_bytes: int
    t: float
    periods: int = 0
    throttled_periods: int = 0
    throttled_ns: int = 0


class ContainerBackend(Protocol):
    """The node side of the ContainerScaler: the only code that touches containers."""

    kind: str

    def list_containers(self) -> list[str]:
        """Names of the containers this backend manages on this node."""
        ...

    def read_limits(self, name: str) -> ContainerLimits:
        """The limits as the kernel has them. ContainerNotFound if unknown."""
        ...

    def write_limits(
        self, name: str, change: LimitChange, bounds: Bounds | None = None
    ) -> ContainerLimits:
        """Write the fields present in `change`, then re-read and return the limits.

        LimitRefused (nothing written) for a CPU limit ≤ 0 other than −1 or outside
        `bounds.cpu`, a memory limit below 64 MiB other than −1 or outside
        `bounds.mem`, or a cpuset naming cores this host lacks; −1 counts as
        infinite against the bounds. LimitRefused also when the kernel rejects the
        value (e.g. memory below what the container uses).
        """
        ...

    def read_counters(self, name: str) -> UsageCounters:
        """Sample the usage counters. ContainerNotFound if unknown."""
        ...

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        """Sample several containers, leaving out those that disappeared."""
        ...

    def read_memory_many(self, names: Iterable[str]) -> dict[str, int]:
        """`UsageCounters.mem_bytes` of several containers, leaving out those that disappeared:
        what a sample within a window needs (its CPU counters are read at the window's ends)."""
        ...

    def create(self, name: str, cpu_num: str | None = None) -> None:
        """Create an empty plain cgroup container (demo and tests)."""
        ...

    def attach(self, name: str, pid: int) -> None:
        """Move process `pid` (all its threads) into the container."""
        ...

    def remove(self, name: str) -> None:
        """SIGKILL the container's tasks, wait for them to leave, remove it. Idempotent."""
        ...

    def host_cores(self) -> int:
        ...

    def host_mem_mib(self) -> int:
        ...

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        ...


# --------------------------------------------------------------------------- checks

MIN_QUOTA_US = 1000
"""The kernel refuses a CFS quota below 1 ms (EINVAL): 1 share, with units' 1000 µs/share."""


def burst_us(quota_us: int, percent: float) -> int:
    """The CFS burst that goes with a quota: `percent` of it, 0 without a quota.

    Quota a container left unused may pile up to the burst and be spent in a later
    period, so a spike shorter than a period is not throttled while the long-run
    usage stays at the quota. The kernel refuses a burst above the quota, so it is
    at most 100 %: quota 50 000 µs at 100 % → 50 000; at 40 % → 20 000; -1 → 0.
    """
    if quota_us <= 0:
        return 0
    return int(quota_us * min(max(percent, 0.0), 100.0) / 100)


def check_change(change: LimitChange, bounds: Bounds | None, cpus: Iterable[int]) -> None:
    """Raise LimitRefused if any field of `change` may not be written.

    Runs before the first write, so a refused change leaves the container as it was.
    `cpus` are the logical CPUs that exist on this host.
    """
    cpu = change.cpu_allowance_limit
    if cpu is not None:
        if cpu != units.UNLIMITED and not cpu > 0:
            raise LimitRefused(f"cpu limit must be > 0 shares or -1 (unlimited), got {cpu}")
        if cpu != units.UNLIMITED and units.quota_us(cpu) < MIN_QUOTA_US:
            raise LimitRefused(f"cpu limit {cpu} shares is below the kernel's minimum quota")
        if bounds is not None:
            _check_bounds("cpu", cpu, bounds.cpu, "shares")
    mem = change.mem_limit
    if mem is not None:
        if mem != units.UNLIMITED and not mem >= units.MEM_MIN_MIB:
            raise LimitRefused(
                f"memory limit must be >= {units.MEM_MIN_MIB} MiB or -1 (unlimited), got {mem}"
            )
        if bounds is not None:
            _check_bounds("mem", mem, bounds.mem, "MiB")
    if change.cpu_num is not None:
        check_cpu_num(change.cpu_num, cpus)


def check_memory_above_use(name: str, change: LimitChange, read_counters: Callable[[str], UsageCounters]) -> None:
    """LimitRefused when the change sets a memory limit under the container's use (without page cache).

    For backends whose kernel interface would not refuse it (cgroup v2's memory.max
    reclaims or kills instead; cgroup v1 answers EBUSY by itself).
    """
    if change.mem_limit is not None and change.mem_limit != units.UNLIMITED:
        used_bytes = read_counters(name).mem_bytes
        if units.mib_to_bytes(change.mem_limit) < used_bytes:
            raise LimitRefused(
                f"memory limit {change.mem_limit} MiB for {name} is below its use "
                f"({units.bytes_to_mib(used_bytes):.1f} MiB without page cache)"
            )


def counters_of(read_counters: Callable[[str], T], names: Iterable[str]) -> dict[str, T]:
    """Each container's counters (or memory), by name; a container gone meanwhile is left out."""
    out: dict[str, T] = {}
    for name in names:
        try:
            out[name] = read_counters(name)
        except ContainerNotFound:
            continue
    return out


def check_cpu_num(cpu_num: str, cpus: Iterable[int]) -> str:
    """`cpu_num` in canonical form ('0-2' → '0,1,2') if every core exists; else LimitRefused."""
    try:
        wanted = units.parse_cpu_list(cpu_num)
    except ValueError:
        raise LimitRefused(f"cpu_num {cpu_num!r} is not a cpu list like '0,1' or '0-3'") from None
    if not wanted:
        raise LimitRefused("cpu_num is empty: a container needs at least one core")
    have = cpus if isinstance(cpus, (range, set, frozenset)) else set(cpus)  # a host's range: no set per write
    missing = [c for c in wanted if int(c) not in have]
    if missing:
        raise LimitRefused(
            f"cpu_num {cpu_num!r} names cores {','.join(missing)} that this host lacks "
            f"(it has {units.format_cpu_list(sorted(have))})"
        )
    return units.format_cpu_list(wanted)


def _check_bounds(resource: str, value: float, bound: tuple[float, float], unit: str) -> None:
    lo, hi = bound
    # −1 is "unlimited": within bounds only when the upper bound is unbounded too.
    v = math.inf if value == units.UNLIMITED else value
    if not lo <= v <= hi:
        raise LimitRefused(f"{resource} limit {value} {unit} is outside [{lo}, {hi}]")


def canonical_cpu_list(text: str) -> str:
    """The kernel's '0-1' as the original's '0,1' (the form the Scaler compares)."""
    return units.format_cpu_list(units.parse_cpu_list(text)) if text.strip() else ""


# --------------------------------------------------------------------------- tasks


def kill_and_wait(read_pids: Callable[[], list[int]], timeout_s: float, what: str) -> None:
    """SIGKILL every pid `read_pids` lists until it lists none; TimeoutError at the deadline.

    Re-reads and re-kills each round: a task may fork between the read and the kill.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        pids = read_pids()
        if not pids:
            return
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if time.monotonic() >= deadline:
            raise TimeoutError(f"tasks {pids} still in {what} after {timeout_s} s")
        time.sleep(0.01)


# --------------------------------------------------------------------------- host


class NodeBackend:
    """What the backends of real containers share: how a limit change is checked and
    written, sampling many containers, and this machine's description.

    A subclass gives `_require`, `read_limits`, `read_counters` and the three writes
    `_write_memory`, `_write_cpuset`, `_write_cpu`, each of one field, in our units.
    """

    refuses_below_use: bool = True
    """Refuse a memory limit under the container's use before writing (cgroup v2 and
    LXC on v2 would reclaim or OOM-kill instead); False where the kernel refuses it
    itself (cgroup v1: EBUSY)."""

    def _require(self, name: str) -> None:
        """ContainerNotFound unless the container exists."""
        raise NotImplementedError

    def read_limits(self, name: str) -> ContainerLimits:
        raise NotImplementedError

    def read_counters(self, name: str) -> UsageCounters:
        raise NotImplementedError

    def read_memory(self, name: str) -> int:
        """`UsageCounters.mem_bytes` alone (the memory files only). ContainerNotFound if unknown."""
        raise NotImplementedError

    def _write_memory(self, name: str, mem_mib: float) -> None:
        raise NotImplementedError

    def _write_cpuset(self, name: str, cpus: str) -> None:
        raise NotImplementedError

    def _write_cpu(self, name: str, shares: float) -> None:
        raise NotImplementedError

    def _refused(self, what: str) -> AbstractContextManager[None]:
        """Where a write's failure becomes LimitRefused naming `what`: the kernel's errno here."""
        return refused_by_kernel(what)

    def write_limits(self, name: str, change: LimitChange, bounds: Bounds | None = None) -> ContainerLimits:
        """See `ContainerBackend.write_limits`: checked first, then written field by field, then re-read."""
        self._require(name)
        check_change(change, bounds, host_cpus())
        if self.refuses_below_use:
            check_memory_above_use(name, change, self.read_counters)
        # Memory first: it is the one write the kernel refuses for load reasons (EBUSY
        # when usage cannot be reclaimed below the new limit), and a refusal before any
        # other write leaves the container untouched.
        if change.mem_limit is not None:
            with self._refused(f"memory limit {change.mem_limit} MiB for {name}"):
                self._write_memory(name, change.mem_limit)
        if change.cpu_num is not None:
            with self._refused(f"cpu_num {change.cpu_num!r} for {name}"):
                self._write_cpuset(name, canonical_cpu_list(change.cpu_num))
        if change.cpu_allowance_limit is not None:
            with self._refused(f"cpu limit {change.cpu_allowance_limit} shares for {name}"):
                self._write_cpu(name, change.cpu_allowance_limit)
        return self.read_limits(name)

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        return counters_of(self.read_counters, names)

    def read_memory_many(self, names: Iterable[str]) -> dict[str, int]:
        return counters_of(self.read_memory, names)

    def host_cores(self) -> int:
        return host_cores()

    def host_mem_mib(self) -> int:
        return host_mem_mib()

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        return cpu_topology()


def mount_table(mounts_path: str = "/proc/mounts") -> list[tuple[Path, str]]:
    """(mount point, filesystem type) of each mount; none when the table cannot be read."""
    try:
        lines = Path(mounts_path).read_text().splitlines()
    except OSError:
        return []
    # /proc/mounts escapes spaces and friends as octal (\040).
    return [(Path(f[1].encode().decode("unicode_escape")), f[2]) for f in (line.split() for line in lines) if len(f) >= 3]


def is_cgroup_v1_root(root: str, mounts_path: str = "/proc/mounts") -> bool:
    """Whether `<root>/cpu` (or a combined `cpu,cpuacct`) is a cgroup v1 mount."""
    wanted = {Path(root) / "cpu", Path(root) / "cpu,cpuacct", Path(root) / "cpuacct,cpu"}
    return any(kind == "cgroup" and point in wanted for point, kind in mount_table(mounts_path))


def host_cpus(online_path: str = "/sys/devices/system/cpu/online") -> list[int]:
    """Logical CPUs online on this host."""
    try:
        return [int(c) for c in units.parse_cpu_list(Path(online_path).read_text())]
    except (OSError, ValueError):
        return list(range(os.cpu_count() or 1))


def host_cores() -> int:
    """Logical CPUs of this host (100 shares each)."""
    return len(host_cpus())


def host_mem_mib(meminfo_path: str = "/proc/meminfo") -> int:
    """Total memory of this host, MiB."""
    for line in Path(meminfo_path).read_text().splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) // 1024  # the value is in kB
    raise RuntimeError(f"no MemTotal in {meminfo_path}")


def cpu_topology(cpuinfo_path: str = "/proc/cpuinfo") -> dict[str, dict[str, list[int]]]:
    """{socket: {core id: [logical cpus]}} of this host (original GET /host/cpu_topology)."""
    try:
        text = Path(cpuinfo_path).read_text()
    except OSError:
        text = ""
    return parse_cpu_topology(text) or {"0": {str(c): [c] for c in host_cpus()}}


def parse_cpu_topology(cpuinfo: str) -> dict[str, dict[str, list[int]]]:
    """Parse /proc/cpuinfo blocks (`processor`, `physical id`, `core id`).

    A block without `physical id` or `core id` (some VMs, non-x86) counts as socket
    0 and a core of its own, numbered by its processor.
    """
    topology: dict[str, dict[str, list[int]]] = {}
    for block in cpuinfo.strip().split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.splitlines():
            key, sep, value = line.partition(":")
            if sep:
                fields[key.strip()] = value.strip()
        if "processor" not in fields or not fields["processor"].isdigit():
            continue
        cpu = int(fields["processor"])
        if "physical id" in fields and "core id" in fields:
            socket, core = fields["physical id"], fields["core id"]
        else:
            socket, core = "0", str(cpu)
        topology.setdefault(socket, {}).setdefault(core, []).append(cpu)
    return topology


# --------------------------------------------------------------------------- cgroupfs IO
# Shared by the cgroup backends; each class keeps its own file access beside these.

_KERNEL_REFUSALS = {errno.EBUSY, errno.EINVAL, errno.ENOSPC, errno.ERANGE}
_REFUSAL_HINTS = {
    errno.EBUSY: "the container uses more memory than that and it cannot be reclaimed",
    errno.EINVAL: "the kernel rejects the value",
    errno.ENOSPC: "no cpus or memory nodes available there",
}


@contextmanager
def refused_by_kernel(what: str) -> Iterator[None]:
    """Turn the kernel's refusal of a value (EBUSY, EINVAL, …) into LimitRefused."""
    try:
        yield
    except OSError as e:
        if e.errno not in _KERNEL_REFUSALS:
            raise
        hint = _REFUSAL_HINTS.get(e.errno, os.strerror(e.errno))
        raise LimitRefused(f"{what} refused by the kernel: {hint} ({errno.errorcode[e.errno]})") from e


def write_cgroup_file(path: Path, value: str) -> None:
    """Write one value with a single write(2), so the kernel's errno surfaces here
    (a buffered file would report it at a later flush)."""
    fd = os.open(path, os.O_WRONLY)
    try:
        os.write(fd, value.encode())
    finally:
        os.close(fd)


def cgroup_pids(d: Path) -> list[int]:
    """Pids in cgroup `d` (none if it is gone)."""
    try:
        return [int(p) for p in (d / "cgroup.procs").read_text().split()]
    except FileNotFoundError:
        return []


def tree_deepest_first(d: Path) -> list[Path]:
    """`d` and any nested cgroups, children before parents (rmdir order)."""
    return [Path(top) for top, _, _ in os.walk(d, topdown=False)] if d.is_dir() else []


def remove_cgroups(dirs: Iterable[Path], timeout_s: float) -> None:
    """SIGKILL the tasks of `dirs` and of the cgroups nested in them, wait for them to leave, rmdir all.

    Every task is gone before the first rmdir, so no cgroup is busy when removed.
    """
    trees = [t for d in dirs for t in tree_deepest_first(d)]
    for d in trees:
        kill_and_wait(functools.partial(cgroup_pids, d), timeout_s, str(d))
    for d in trees:
        rmdir_cgroup(d, timeout_s)


def rmdir_cgroup(d: Path, timeout_s: float) -> None:
    """rmdir `d`, retrying EBUSY until the deadline; a missing `d` is fine.

    NOTE: a killed task can keep its cgroup populated for a moment after it
    left cgroup.procs.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            d.rmdir()
            return
        except FileNotFoundError:
            return
        except OSError as e:
            if e.errno != errno.EBUSY or time.monotonic() >= deadline:
                raise
            time.sleep(0.01)


def parse_keyed(text: str) -> dict[str, int]:
    """'key value' lines (memory.stat, cpu.stat) as a dict of ints."""
    out: dict[str, int] = {}
    for line in text.splitlines():
        key, _, value = line.partition(" ")
        value = value.strip()
        if value.lstrip("-").isdigit():
            out[key] = int(value)
    return out


def is_container_name(name: str) -> bool:
    """Whether a directory found on disk is a name we could address."""
    try:
        check_name(name)
    except ValueError:
        return False
    return True


@contextmanager
def container_file(name: str, path: Path) -> Iterator[Path]:
    """Read or write one cgroup file of a container; its directory gone → ContainerNotFound."""
    try:
        yield path
    except FileNotFoundError:
        if not path.parent.is_dir():
            raise ContainerNotFound(f"container {name!r} disappeared") from None
        raise


def subdirs(d: Path) -> list[str]:
    """Names of the directories inside `d` (none if `d` is missing)."""
    return [p.name for p in d.iterdir() if p.is_dir()] if d.is_dir() else []
