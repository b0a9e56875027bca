"""Plain cgroup v2 containers: limits and usage on the unified tree (reference §5.2).

A container NAME is the directory `<root>/<parent>/NAME`. Files and units:

    cpu.max        "<units.quota_us(shares)> <units.CPU_PERIOD_US>", or "max <period>" (−1)
    cpuset.cpus    cpu_num (read back as '0,1'; empty means the parent's, read from
                   cpuset.cpus.effective)
    memory.max     MiB in bytes, or "max" (−1)
    cpu.stat       usage_usec → UsageCounters.cpu_ns
    memory.current − `file` of memory.stat → UsageCounters.mem_bytes

NOTE: the original parsed the first token of these files as a number and broke on
"max" (reference §11.4); here "max" always parses to −1 (`cgroup_files.parse_max`).

On a real cgroup2 mount the kernel makes the files; a *fake* tree (a temp dir, used by
the tests because this project's test machine has no v2 controllers) gets them from
`create()` with the values a fresh kernel cgroup would show. The v2 kernel accepts a
memory.max below usage and then OOM-kills; we refuse it instead, as v1's kernel does
with EBUSY, so that a limit write never kills a container.

The files are parsed by `cgroup_files` (shared with the LXC backend). All file access
is in the "Cgroupfs IO" section at the end of the class.
"""
from __future__ import annotations

import shutil
from pathlib import Path

from .. import units
from ..model import ContainerLimits
from . import base, cgroup_files
from .base import ContainerNotFound, UsageCounters
from .cgroup_files import parse_max
from .paths import container_dir

__all__ = ["CgroupV2Backend", "is_cgroup2_mount", "parse_max"]

CONTROLLERS = ("cpu", "cpuset", "memory")


def is_cgroup2_mount(path: str | Path, mounts_path: str = "/proc/mounts") -> bool:
    """Whether `path` lies on a cgroup2 filesystem (its longest mount prefix)."""
    real = Path(path).resolve()
    best, best_type = Path("/"), ""
    for point, kind in base.mount_table(mounts_path):
        if real.is_relative_to(point) and len(point.parts) >= len(best.parts):
            best, best_type = point, kind
    return best_type == "cgroup2"


class CgroupV2Backend(base.NodeBackend):
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
        return cgroup_files.read_limits_v2(lambda file: self._read(name, file))

    def _write_memory(self, name: str, mem_mib: float) -> None:
        self._write(name, "memory.max", cgroup_files.memory_value_v2(mem_mib))

    def _write_cpuset(self, name: str, cpus: str) -> None:
        self._write(name, "cpuset.cpus", cpus)

    def _write_cpu(self, name: str, shares: float) -> None:
        burst = base.burst_us(units.quota_us(shares), self.cpu_burst_percent) if shares != units.UNLIMITED else 0
        has_burst = (container_dir(self._parent_dir, name) / "cpu.max.burst").exists()
        if has_burst:
            self._write(name, "cpu.max.burst", "0")  # never above the new quota
        self._write(name, "cpu.max", cgroup_files.cpu_max_v2(shares))
        if has_burst and burst:
            self._write(name, "cpu.max.burst", str(burst))

    # ----------------------------------------------------------------- usage

    def read_counters(self, name: str) -> UsageCounters:
        return cgroup_files.read_counters_v2(lambda file: self._read(name, file))

    def read_memory(self, name: str) -> int:
        return cgroup_files.read_memory_v2(lambda file: self._read(name, file))

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
        base.remove_cgroups([d], self.remove_timeout_s)

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
