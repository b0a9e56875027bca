"""Plain cgroup v2 containers: limits and usage on the unified tree (reference §5.2).

A container NAME is the directory `<root>/<parent>/NAME`. Files and units:

    cpu.max        "<units.quota_us(shares)> <units.CPU_PERIOD_US>", or "max <period>" (−1)
    cpuset.cpus    cpu_num (read back as '0,1'; empty means the parent's, read from
                   cpuset.cpus.effective)
    memory.max     MiB in bytes, or "max" (−1)
    cpu.stat       usage_usec → UsageCounters.cpu_ns
    memory.current − `file` of memory.stat → UsageCounters.mem_bytes

NOTE: the original parsed the first token of these files as a number and broke on
"max" (reference §11.4); here "max" always parses to −1 (`parse_max`).

On a real cgroup2 mount the kernel makes the files; a *fake* tree (a temp dir, used by
the tests because this project's test machine has no v2 controllers) gets them from
`create()` with the values a fresh kernel cgroup would show. The v2 kernel accepts a
memory.max below usage and then OOM-kills; we refuse it instead, as v1's kernel does
with EBUSY, so that a limit write never kills a container.

All file access is in the "Cgroupfs IO" section at the end of the class.
"""
from __future__ import annotations

import shutil
import time
from pathlib import Path
from typing import Iterable

from .. import units
from ..model import Bounds, ContainerLimits, LimitChange
from . import base
from .base import ContainerNotFound, UsageCounters
from .paths import container_dir

CONTROLLERS = ("cpu", "cpuset", "memory")


def parse_max(token: str) -> int:
    """A cgroup v2 value: "max" → −1 (unlimited), otherwise the integer."""
    token = token.strip()
    return units.UNLIMITED if token == "max" else int(token)


def is_cgroup2_mount(path: str | Path, mounts_path: str = "/proc/mounts") -> bool:
    """Whether `path` lies on a cgroup2 filesystem (its longest mount prefix)."""
    real = Path(path).resolve()
    best, best_type = Path("/"), ""
    try:
        lines = Path(mounts_path).read_text().splitlines()
    except OSError:
        return False
    for line in lines:
        fields = line.split()
        if len(fields) < 3:
            continue
        # /proc/mounts escapes spaces and friends as octal (\040).
        point = Path(fields[1].encode().decode("unicode_escape"))
        if real.is_relative_to(point) and len(point.parts) >= len(best.parts):
            best, best_type = point, fields[2]
    return best_type == "cgroup2"


class CgroupV2Backend:
    """Plain cgroup v2 containers under `<root>/<parent>/`."""

    kind = "cgroup_v2"

    def __init__(
        self,
        root: str = "/sys/fs/cgroup",
        parent: str = "serverless",
        fake: bool | None = None,
        remove_timeout_s: float = 5.0,
        cpu_burst_percent: float = 0.0,
    ) -> None:
        """`fake`: True for a plain directory tree, None to detect it from /proc/mounts."""
        self.root = Path(root)
        self.parent = parent
        self.cpu_burst_percent = cpu_burst_percent
        """`cpu.max.burst` written with each quota, percent of it (`base.burst_us`)."""
        self.fake = (not is_cgroup2_mount(self.root)) if fake is None else fake
        self.remove_timeout_s = remove_timeout_s
        self._parent_dir = container_dir(self.root, parent)

    # ----------------------------------------------------------------- limits

    def list_containers(self) -> list[str]:
        return sorted(n for n in base.subdirs(self._parent_dir) if base.is_container_name(n))

    def read_limits(self, name: str) -> ContainerLimits:
        self._require(name)
        quota, period = self._read(name, "cpu.max").split()
        quota_us = parse_max(quota)
        cpus = self._read(name, "cpuset.cpus").strip()
        if not cpus:
            cpus = self._read(name, "cpuset.cpus.effective")
        limit_bytes = parse_max(self._read(name, "memory.max"))
        mem_mib = units.bytes_to_mib(limit_bytes) if limit_bytes != units.UNLIMITED else -1
        return ContainerLimits(
            cpu_allowance_limit=units.shares_from_quota(quota_us, int(period)),
            cpu_num=base.canonical_cpu_list(cpus),
            mem_limit=units.UNLIMITED if mem_mib > units.MEM_UNLIMITED_ABOVE_MIB else mem_mib,
        )

    def write_limits(
        self, name: str, change: LimitChange, bounds: Bounds | None = None
    ) -> ContainerLimits:
        self._require(name)
        base.check_change(change, bounds, base.host_cpus())
        base.check_memory_above_use(name, change, self.read_counters)
        # Memory first, as in v1: a refusal then leaves the container untouched.
        if change.mem_limit is not None:
            mem = change.mem_limit
            value = "max" if mem == units.UNLIMITED else str(units.mib_to_bytes(mem))
            with base.refused_by_kernel(f"memory limit {mem} MiB for {name}"):
                self._write(name, "memory.max", value)
        if change.cpu_num is not None:
            with base.refused_by_kernel(f"cpu_num {change.cpu_num!r} for {name}"):
                self._write(name, "cpuset.cpus", base.canonical_cpu_list(change.cpu_num))
        if change.cpu_allowance_limit is not None:
            shares = change.cpu_allowance_limit
            quota = "max" if shares == units.UNLIMITED else str(units.quota_us(shares))
            burst = base.burst_us(units.quota_us(shares), self.cpu_burst_percent) if quota != "max" else 0
            has_burst = (container_dir(self._parent_dir, name) / "cpu.max.burst").exists()
            with base.refused_by_kernel(f"cpu limit {shares} shares for {name}"):
                if has_burst:
                    self._write(name, "cpu.max.burst", "0")  # never above the new quota
                self._write(name, "cpu.max", f"{quota} {units.CPU_PERIOD_US}")
                if has_burst and burst:
                    self._write(name, "cpu.max.burst", str(burst))
        return self.read_limits(name)

    # ----------------------------------------------------------------- usage

    def read_counters(self, name: str) -> UsageCounters:
        cpu_stat = base.parse_keyed(self._read(name, "cpu.stat"))
        t = time.monotonic()
        current_bytes = int(self._read(name, "memory.current"))
        file_bytes = base.parse_keyed(self._read(name, "memory.stat")).get("file", 0)
        return UsageCounters(
            cpu_ns=cpu_stat["usage_usec"] * 1000,
            mem_bytes=max(0, current_bytes - file_bytes),
            t=t,
            periods=cpu_stat.get("nr_periods", 0),
            throttled_periods=cpu_stat.get("nr_throttled", 0),
            throttled_ns=cpu_stat.get("throttled_usec", 0) * 1000,
        )

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        return base.counters_of(self.read_counters, names)

    # ----------------------------------------------------------------- lifecycle

    def create(self, name: str, cpu_num: str | None = None) -> None:
        """Create the container; an existing one is kept (its cpuset set if `cpu_num`)."""
        cpus = base.check_cpu_num(cpu_num, base.host_cpus()) if cpu_num is not None else None
        d = container_dir(self._parent_dir, name)
        if self.fake:
            self._parent_dir.mkdir(exist_ok=True)
            d.mkdir(exist_ok=True)
            self._fake_files(d, cpus)
            return
        self._enable_controllers(self.root)
        self._parent_dir.mkdir(exist_ok=True)
        self._enable_controllers(self._parent_dir)
        d.mkdir(exist_ok=True)
        if cpus is not None:
            self._write(name, "cpuset.cpus", cpus)

    def attach(self, name: str, pid: int) -> None:
        self._require(name)
        if self.fake:
            self._append(container_dir(self._parent_dir, name) / "cgroup.procs", f"{pid}\n")
        else:
            self._write(name, "cgroup.procs", str(pid))

    def remove(self, name: str) -> None:
        """Kill the tasks, wait for them to leave, rmdir. Idempotent.

        NOTE: on a fake tree cgroup.procs is a plain file whose pids confine
        nothing, so nothing is killed: the directory is just deleted.
        """
        d = container_dir(self._parent_dir, name)
        if self.fake:
            self._rmtree(d)
            return
        trees = base.tree_deepest_first(d)
        for sub in trees:
            base.kill_and_wait(lambda sub=sub: base.cgroup_pids(sub), self.remove_timeout_s, str(sub))
        for sub in trees:
            base.rmdir_cgroup(sub, self.remove_timeout_s)

    # ----------------------------------------------------------------- host

    def host_cores(self) -> int:
        return base.host_cores()

    def host_mem_mib(self) -> int:
        return base.host_mem_mib()

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        return base.cpu_topology()

    # ----------------------------------------------------------------- paths

    def _require(self, name: str) -> None:
        if not container_dir(self._parent_dir, name).is_dir():
            raise ContainerNotFound(f"no container {name!r} under {self.parent!r}")

    # ----------------------------------------------------------------- Cgroupfs IO
    # The only methods that touch the filesystem.

    def _read(self, name: str, file: str) -> str:
        with base.container_file(name, container_dir(self._parent_dir, name) / file) as path:
            return path.read_text()

    def _write(self, name: str, file: str, value: str) -> None:
        with base.container_file(name, container_dir(self._parent_dir, name) / file) as path:
            if self.fake:
                path.write_text(value + "\n")
            else:
                base.write_cgroup_file(path, value)

    @staticmethod
    def _append(path: Path, text: str) -> None:
        with path.open("a") as f:
            f.write(text)

    @staticmethod
    def _fake_files(d: Path, cpus: str | None) -> None:
        """The files a fresh kernel cgroup shows, where they do not exist yet."""
        host = units.format_cpu_list(base.host_cpus())
        defaults = {
            "cpu.max": f"max {units.CPU_PERIOD_US}",
            "cpu.stat": "usage_usec 0\nuser_usec 0\nsystem_usec 0",
            "cpuset.cpus": "",
            "cpuset.cpus.effective": host,
            "memory.max": "max",
            "memory.current": "0",
            "memory.stat": "anon 0\nfile 0",
            "cgroup.procs": "",
        }
        for file, value in defaults.items():
            if not (d / file).exists():
                (d / file).write_text(value + "\n" if value else "")
        if cpus is not None:
            (d / "cpuset.cpus").write_text(cpus + "\n")
            (d / "cpuset.cpus.effective").write_text(cpus + "\n")

    @staticmethod
    def _enable_controllers(d: Path) -> None:
        """Delegate cpu, cpuset and memory to the children of `d`."""
        available = (d / "cgroup.controllers").read_text().split()
        missing = [c for c in CONTROLLERS if c not in available]
        if missing:
            raise RuntimeError(f"cgroup v2 controllers {missing} are not available in {d}")
        enabled = (d / "cgroup.subtree_control").read_text().split()
        for c in CONTROLLERS:
            if c not in enabled:
                base.write_cgroup_file(d / "cgroup.subtree_control", f"+{c}")

    @staticmethod
    def _rmtree(d: Path) -> None:
        if d.is_dir():
            shutil.rmtree(d)
