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

The files are parsed by `cgroup_files` (shared with the LXC backend). All file access
is in the "Cgroupfs IO" section at the end of the class.
"""
from __future__ import annotations

from pathlib import Path

from .. import units
from ..model import ContainerLimits
from . import base, cgroup_files
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


class CgroupV1Backend(base.NodeBackend):
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
        return cgroup_files.read_limits_v1(lambda file: self._read(name, file))

    refuses_below_use = False  # the v1 kernel refuses a memory limit under the use itself (EBUSY)

    def _write_memory(self, name: str, mem_mib: float) -> None:
        self._write("memory", name, "memory.limit_in_bytes", cgroup_files.memory_value_v1(mem_mib))

    def _write_cpuset(self, name: str, cpus: str) -> None:
        self._write("cpuset", name, "cpuset.cpus", cpus)

    def _write_cpu(self, name: str, shares: float) -> None:
        quota = units.quota_us(shares)
        # The kernel refuses a quota below the burst: the burst goes to 0 first and
        # follows the new quota after (kernels without cpu.cfs_burst_us: no burst).
        has_burst = (self._dir("cpu", name) / "cpu.cfs_burst_us").exists()
        if has_burst:
            self._write("cpu", name, "cpu.cfs_burst_us", "0")
        self._write("cpu", name, "cpu.cfs_period_us", str(units.CPU_PERIOD_US))
        self._write("cpu", name, "cpu.cfs_quota_us", str(quota))
        if has_burst and base.burst_us(quota, self.cpu_burst_percent):
            self._write("cpu", name, "cpu.cfs_burst_us", str(base.burst_us(quota, self.cpu_burst_percent)))

    # ----------------------------------------------------------------- usage

    def read_counters(self, name: str) -> UsageCounters:
        return cgroup_files.read_counters_v1(lambda file: self._read(name, file))

    def read_memory(self, name: str) -> int:
        return cgroup_files.read_memory_v1(lambda file: self._read(name, file))

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
        base.remove_cgroups([self._dir(c, name) for c in self._distinct_controllers()], self.remove_timeout_s)

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

    def _read(self, name: str, file: str) -> str:
        """One file of the container, in the controller its name starts with (`cpuacct.usage`: cpuacct)."""
        with base.container_file(name, self._dir(file.partition(".")[0], name) / file) as path:
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
