"""Plain cgroup v1 containers: limits and usage through the per-controller files (reference §5.2).

A container NAME is the directory `<root>/<controller>/<parent>/NAME` in each of the
controllers cpu, cpuacct, cpuset and memory; cpu and cpuacct may be separate
mounts or one combined `cpu,cpuacct` mount. Files and units:

    cpu.cfs_period_us   = units.CPU_PERIOD_US          (written with every quota)
    cpu.cfs_quota_us    = units.quota_us(shares)       (−1 unlimited)
    cpuset.cpus         = cpu_num                      (read back as '0,1', not '0-1')
    memory.limit_in_bytes = MiB in bytes               (−1 unlimited; > 256 GiB reads as −1)
    cpuacct.usage       → UsageCounters.cpu_ns
    memory.usage_in_bytes − total_cache (memory.stat) → UsageCounters.mem_bytes
    cpu.stat nr_periods, nr_throttled, throttled_time → UsageCounters.periods, throttled_periods, throttled_ns
    cpu.cfs_burst_us    ← cpu_burst_percent of the quota (where the kernel has it)

All file access is in the "Cgroupfs IO" section at the end of the class.
"""
from __future__ import annotations

import time
from pathlib import Path
from typing import Iterable

from .. import units
from ..model import Bounds, ContainerLimits, LimitChange
from . import base
from .base import ContainerNotFound, UsageCounters
from .paths import container_dir

CONTROLLERS = ("cpu", "cpuacct", "cpuset", "memory")

_MARKER = {
    "cpu": "cpu.cfs_quota_us",
    "cpuacct": "cpuacct.usage",
    "cpuset": "cpuset.cpus",
    "memory": "memory.limit_in_bytes",
}
"""A file that proves a directory is a mount of that controller."""


class CgroupV1Backend:
    """Plain cgroup v1 containers under `<root>/<controller>/<parent>/`."""

    kind = "cgroup_v1"

    def __init__(
        self, root: str = "/sys/fs/cgroup", parent: str = "serverless", remove_timeout_s: float = 5.0,
        cpu_burst_percent: float = 0.0,
    ) -> None:
        self.root = Path(root)
        self.parent = parent
        self.cpu_burst_percent = cpu_burst_percent
        """`cpu.cfs_burst_us` written with each quota, percent of it (`base.burst_us`)."""
        self.remove_timeout_s = remove_timeout_s
        self._controller_dirs = {c: _find_controller(self.root, c) for c in CONTROLLERS}
        self._parent_dirs = {c: container_dir(d, parent) for c, d in self._controller_dirs.items()}

    # ----------------------------------------------------------------- limits

    def list_containers(self) -> list[str]:
        return sorted(n for n in base.subdirs(self._parent_dirs["cpu"]) if base.is_container_name(n))

    def read_limits(self, name: str) -> ContainerLimits:
        self._require(name)
        quota_us = int(self._read("cpu", name, "cpu.cfs_quota_us"))
        period_us = int(self._read("cpu", name, "cpu.cfs_period_us"))
        cpus = self._read("cpuset", name, "cpuset.cpus")
        limit_bytes = int(self._read("memory", name, "memory.limit_in_bytes"))
        mem_mib = units.bytes_to_mib(limit_bytes)
        return ContainerLimits(
            cpu_allowance_limit=units.shares_from_quota(quota_us, period_us),
            cpu_num=base.canonical_cpu_list(cpus),
            mem_limit=units.UNLIMITED if mem_mib > units.MEM_UNLIMITED_ABOVE_MIB else mem_mib,
        )

    def write_limits(
        self, name: str, change: LimitChange, bounds: Bounds | None = None
    ) -> ContainerLimits:
        self._require(name)
        base.check_change(change, bounds, base.host_cpus())
        # Memory first: it is the one write the kernel refuses for load reasons
        # (EBUSY when usage cannot be reclaimed below the new limit), and a refusal
        # before any other write leaves the container untouched.
        if change.mem_limit is not None:
            mem = change.mem_limit
            value = str(units.UNLIMITED) if mem == units.UNLIMITED else str(units.mib_to_bytes(mem))
            with base.refused_by_kernel(f"memory limit {mem} MiB for {name}"):
                self._write("memory", name, "memory.limit_in_bytes", value)
        if change.cpu_num is not None:
            with base.refused_by_kernel(f"cpu_num {change.cpu_num!r} for {name}"):
                self._write("cpuset", name, "cpuset.cpus", base.canonical_cpu_list(change.cpu_num))
        if change.cpu_allowance_limit is not None:
            shares = change.cpu_allowance_limit
            quota = units.quota_us(shares)
            # The kernel refuses a quota below the burst: the burst goes to 0 first and
            # follows the new quota after (kernels without cpu.cfs_burst_us: no burst).
            has_burst = (self._dir("cpu", name) / "cpu.cfs_burst_us").exists()
            with base.refused_by_kernel(f"cpu limit {shares} shares for {name}"):
                if has_burst:
                    self._write("cpu", name, "cpu.cfs_burst_us", "0")
                self._write("cpu", name, "cpu.cfs_period_us", str(units.CPU_PERIOD_US))
                self._write("cpu", name, "cpu.cfs_quota_us", str(quota))
                if has_burst and base.burst_us(quota, self.cpu_burst_percent):
                    self._write("cpu", name, "cpu.cfs_burst_us", str(base.burst_us(quota, self.cpu_burst_percent)))
        return self.read_limits(name)

    # ----------------------------------------------------------------- usage

    def read_counters(self, name: str) -> UsageCounters:
        cpu_ns = int(self._read("cpuacct", name, "cpuacct.usage"))
        t = time.monotonic()
        usage_bytes = int(self._read("memory", name, "memory.usage_in_bytes"))
        stat = base.parse_keyed(self._read("memory", name, "memory.stat"))
        cache_bytes = stat.get("total_cache", stat.get("cache", 0))
        cpu_stat = base.parse_keyed(self._read("cpu", name, "cpu.stat"))
        return UsageCounters(cpu_ns=cpu_ns, mem_bytes=max(0, usage_bytes - cache_bytes), t=t,
                             periods=cpu_stat.get("nr_periods", 0), throttled_periods=cpu_stat.get("nr_throttled", 0),
                             throttled_ns=cpu_stat.get("throttled_time", 0))

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        return base.counters_of(self.read_counters, names)

    # ----------------------------------------------------------------- lifecycle

    def create(self, name: str, cpu_num: str | None = None) -> None:
        """Create the container in every controller; an existing one is kept.

        A new cpuset is unusable until it has cpus and mems: it inherits the
        parent's unless `cpu_num` is given.
        """
        cpus = base.check_cpu_num(cpu_num, base.host_cpus()) if cpu_num is not None else None
        for c in self._distinct_controllers():
            self._parent_dirs[c].mkdir(exist_ok=True)
        self._init_cpuset(self._parent_dirs["cpuset"], None)
        for c in self._distinct_controllers():
            self._dir(c, name).mkdir(exist_ok=True)
        self._init_cpuset(self._dir("cpuset", name), cpus)

    def attach(self, name: str, pid: int) -> None:
        self._require(name)
        for c in self._distinct_controllers():
            self._write(c, name, "cgroup.procs", str(pid))

    def remove(self, name: str) -> None:
        dirs = [self._dir(c, name) for c in self._distinct_controllers()]
        trees = [t for d in dirs for t in base.tree_deepest_first(d)]
        for d in trees:
            base.kill_and_wait(lambda d=d: base.cgroup_pids(d), self.remove_timeout_s, str(d))
        for d in trees:
            base.rmdir_cgroup(d, self.remove_timeout_s)

    # ----------------------------------------------------------------- host

    def host_cores(self) -> int:
        return base.host_cores()

    def host_mem_mib(self) -> int:
        return base.host_mem_mib()

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        return base.cpu_topology()

    # ----------------------------------------------------------------- paths

    def _dir(self, controller: str, name: str) -> Path:
        return container_dir(self._parent_dirs[controller], name)

    def _require(self, name: str) -> None:
        if not all(self._dir(c, name).is_dir() for c in CONTROLLERS):
            raise ContainerNotFound(f"no container {name!r} under {self.parent!r}")

    def _distinct_controllers(self) -> list[str]:
        """One controller per real directory (cpu and cpuacct may share a mount)."""
        seen: set[Path] = set()
        out = []
        for c in CONTROLLERS:
            if self._controller_dirs[c] not in seen:
                seen.add(self._controller_dirs[c])
                out.append(c)
        return out

    # ----------------------------------------------------------------- Cgroupfs IO
    # The only methods that touch the filesystem.

    def _read(self, controller: str, name: str, file: str) -> str:
        with base.container_file(name, self._dir(controller, name) / file) as path:
            return path.read_text()

    def _write(self, controller: str, name: str, file: str, value: str) -> None:
        with base.container_file(name, self._dir(controller, name) / file) as path:
            base.write_cgroup_file(path, value)

    @staticmethod
    def _init_cpuset(d: Path, cpus: str | None) -> None:
        """Give cpuset `d` cpus and mems (from its parent where not given).

        NOTE: a new v1 cpuset starts with both empty (cgroup.clone_children = 0),
        and the kernel refuses tasks in it (ENOSPC) until they are set.
        """
        for file, value in (("cpuset.cpus", cpus), ("cpuset.mems", None)):
            if value is None:
                if (d / file).read_text().strip():
                    continue
                value = (d.parent / file).read_text().strip()
            with base.refused_by_kernel(f"{file} {value!r} in {d}"):
                base.write_cgroup_file(d / file, value)


def _find_controller(root: Path, controller: str) -> Path:
    """The mount of `controller` under `root`: `cpu`, or a combined `cpu,cpuacct`."""
    candidates = [root / controller]
    if root.is_dir():
        candidates += sorted(p for p in root.iterdir() if controller in p.name.split(","))
    for d in candidates:
        if (d / _MARKER[controller]).is_file():
            return d.resolve()
    raise RuntimeError(f"cgroup v1 controller {controller!r} is not mounted under {root}")
