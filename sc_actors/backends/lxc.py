"""LXC containers: limits and usage through the `lxc` Python bindings (reference §5.2).

A container NAME is a *running* LXC container of this node's LXC path (`lxc.lxcpath`,
usually /var/lib/lxc), as the original's LXD backend listed only running ones. Its
limits are read and written with the bindings' `get_cgroup_item`/`set_cgroup_item`,
which find the container's cgroup through its monitor (v1
`/sys/fs/cgroup/<controller>/lxc.payload.<name>/`, v2 `/sys/fs/cgroup/lxc.payload.<name>/`),
with the cgroup backends' units and checks:

    cgroup v1 item                         cgroup v2 item         ours
    cpu.cfs_period_us + cpu.cfs_quota_us   cpu.max                shares (−1 unlimited)
    cpuset.cpus                            cpuset.cpus            cpu_num '0,1'
    memory.limit_in_bytes                  memory.max             MiB (−1 unlimited)
    cpuacct.usage                          cpu.stat usage_usec    UsageCounters.cpu_ns
    memory.usage_in_bytes − total_cache    memory.current − file  UsageCounters.mem_bytes

NOTE: `set_cgroup_item` answers only True or False; the kernel's errno is lost. The
check the cgroup backends leave to the kernel (memory below what the container uses,
EBUSY on v1) is therefore made here first, and any other False becomes a
LimitRefused naming the item and the value.

NOTE: liblxc's `start()` daemonizes by forking the *calling* process and runs the
container's monitor in that fork. In a Ray worker (threads, gRPC sockets) that is
unsafe, so the lifecycle (create, start, destroy, attach) runs the `lxc-*` tools as
child processes with argument lists, never a shell string. The bindings do the
discovery and the cgroup items, which do not fork.

All access to LXC is in the "LXC IO" section at the end of the class.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
import time
from typing import Any, Iterable

from .. import units
from ..model import Bounds, ContainerLimits, LimitChange, check_name
from . import base
from .base import ContainerNotFound, LimitRefused, UsageCounters
from .cgroup_v2 import parse_max

CREATE_CONFIG = (
    # No bridge on a bare host: the container gets a loopback only.
    "lxc.net.0.type = empty\n"
    # Hosts without AppArmor (or with a restrictive one) cannot load the generated profile.
    "lxc.apparmor.profile = unconfined\n"
)
"""Base configuration of the containers `create` makes (demo and tests): offline, no bridge."""

TEMPLATE = "busybox"
"""The offline template: it copies the host's busybox (Debian `busybox-static`)."""

READ_RETRIES = 5
"""The bindings ask a value's size, then read it: a counter that grew a digit in
between fails the read (ValueError), so reads are retried."""


class LxcBackend:
    """Running LXC containers of one LXC path, through the `lxc` bindings."""

    kind = "lxc"

    def __init__(
        self,
        root: str = "/sys/fs/cgroup",
        lxc_path: str | None = None,
        cgroup_v1: bool | None = None,
        timeout_s: float = 30.0,
        lxc_module: Any = None,
    ) -> None:
        """`cgroup_v1`: None to detect it from the mounts under `root`.

        `lxc_module`: the bindings module (a fake in unit tests); imported here,
        not at module level, so nodes without LXC can use the cgroup backends.
        """
        if lxc_module is None:
            try:
                import lxc as lxc_module  # type: ignore[import-not-found, no-redef]
            except ImportError as e:
                raise RuntimeError(
                    "the lxc backend needs the `lxc` Python bindings: apt install lxc-dev, "
                    "then pip install -e '.[lxc]'"
                ) from e
        self._lxc = lxc_module
        self.lxc_path = lxc_path or self._lxc.default_config_path
        if cgroup_v1 is None:
            from . import is_cgroup_v1_root

            cgroup_v1 = is_cgroup_v1_root(root)
        self.cgroup_v1 = cgroup_v1
        self.timeout_s = timeout_s
        self._objects: dict[str, Any] = {}

    # ----------------------------------------------------------------- limits

    def list_containers(self) -> list[str]:
        return sorted(n for n in self._running_names() if base.is_container_name(n))

    def read_limits(self, name: str) -> ContainerLimits:
        self._require(name)
        if self.cgroup_v1:
            quota_us = int(self._get(name, "cpu.cfs_quota_us"))
            period_us = int(self._get(name, "cpu.cfs_period_us"))
            limit_bytes = int(self._get(name, "memory.limit_in_bytes"))
        else:
            quota, period = self._get(name, "cpu.max").split()
            quota_us, period_us = parse_max(quota), int(period)
            limit_bytes = parse_max(self._get(name, "memory.max"))
        cpus = self._get(name, "cpuset.cpus")
        if not cpus.strip() and not self.cgroup_v1:
            # v2: an empty cpuset.cpus means the parent's, which is what applies.
            cpus = self._get(name, "cpuset.cpus.effective")
        mem_mib = units.UNLIMITED if limit_bytes < 0 else units.bytes_to_mib(limit_bytes)
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
        base.check_memory_above_use(name, change, self.read_counters)
        # Memory first, as in the cgroup backends: a refusal then leaves the container untouched.
        if change.mem_limit is not None:
            mem = change.mem_limit
            if self.cgroup_v1:
                value = str(units.UNLIMITED) if mem == units.UNLIMITED else str(units.mib_to_bytes(mem))
                self._set(name, "memory.limit_in_bytes", value, f"memory limit {mem} MiB")
            else:
                value = "max" if mem == units.UNLIMITED else str(units.mib_to_bytes(mem))
                self._set(name, "memory.max", value, f"memory limit {mem} MiB")
        if change.cpu_num is not None:
            self._set(name, "cpuset.cpus", base.canonical_cpu_list(change.cpu_num), f"cpu_num {change.cpu_num!r}")
        if change.cpu_allowance_limit is not None:
            shares = change.cpu_allowance_limit
            what = f"cpu limit {shares} shares"
            if self.cgroup_v1:
                self._set(name, "cpu.cfs_period_us", str(units.CPU_PERIOD_US), what)
                self._set(name, "cpu.cfs_quota_us", str(units.quota_us(shares)), what)
            else:
                quota = "max" if shares == units.UNLIMITED else str(units.quota_us(shares))
                self._set(name, "cpu.max", f"{quota} {units.CPU_PERIOD_US}", what)
        return self.read_limits(name)

    # ----------------------------------------------------------------- usage

    def read_counters(self, name: str) -> UsageCounters:
        if self.cgroup_v1:
            cpu_ns = int(self._get(name, "cpuacct.usage"))
            t = time.monotonic()
            usage_bytes = int(self._get(name, "memory.usage_in_bytes"))
            stat = base.parse_keyed(self._get(name, "memory.stat"))
            cache_bytes = stat.get("total_cache", stat.get("cache", 0))
            cpu_stat = base.parse_keyed(self._get(name, "cpu.stat"))
        else:
            cpu_stat = base.parse_keyed(self._get(name, "cpu.stat"))
            cpu_ns = cpu_stat["usage_usec"] * 1000
            t = time.monotonic()
            usage_bytes = int(self._get(name, "memory.current"))
            cache_bytes = base.parse_keyed(self._get(name, "memory.stat")).get("file", 0)
        return UsageCounters(cpu_ns=cpu_ns, mem_bytes=max(0, usage_bytes - cache_bytes), t=t,
                             periods=cpu_stat.get("nr_periods", 0),
                             throttled_periods=cpu_stat.get("nr_throttled", 0),
                             throttled_ns=cpu_stat.get("throttled_time", cpu_stat.get("throttled_usec", 0) * 1000))

    def read_counters_many(self, names: Iterable[str]) -> dict[str, UsageCounters]:
        return base.counters_of(self.read_counters, names)

    # ----------------------------------------------------------------- lifecycle

    def create(self, name: str, cpu_num: str | None = None) -> None:
        """Create and start a busybox container (offline, no network); an existing one is started.

        For the demo and the tests: real deployments create their containers
        themselves and this backend only finds them.
        """
        cpus = base.check_cpu_num(cpu_num, base.host_cpus()) if cpu_num is not None else None
        check_name(name)
        if not self._defined(name):
            with tempfile.NamedTemporaryFile("w", prefix="sc-lxc-", suffix=".conf") as conf:
                conf.write(CREATE_CONFIG)
                conf.flush()
                self._tool("lxc-create", "-n", name, "-P", self.lxc_path, "-t", TEMPLATE, "-f", conf.name)
        if not self._is_running(name):
            self._tool("lxc-start", "-n", name, "-P", self.lxc_path)
            self._tool("lxc-wait", "-n", name, "-P", self.lxc_path, "-s", "RUNNING", "-t", str(int(self.timeout_s)))
        if cpus is not None:
            self._set(name, "cpuset.cpus", cpus, f"cpu_num {cpus!r}")

    def attach(self, name: str, pid: int) -> None:
        """Not for LXC: a container runs its own processes (`attach_argv` starts one inside)."""
        raise NotImplementedError(
            f"LXC container {name!r} runs its own processes: start one inside with "
            "`lxc-attach` (LxcBackend.attach_argv) instead of moving host pid "
            f"{pid} into it"
        )

    def attach_argv(self, name: str, argv: list[str]) -> list[str]:
        """The command that runs `argv` inside the container (`lxc-attach`), for Popen."""
        check_name(name)
        return [self._tool_path("lxc-attach"), "-n", name, "-P", self.lxc_path, "--", *argv]

    def remove(self, name: str) -> None:
        """Stop (killing its processes) and destroy the container. Idempotent."""
        check_name(name)
        if not self._defined(name):
            return
        self._tool("lxc-destroy", "-n", name, "-P", self.lxc_path, "-f")
        self._objects.pop(name, None)

    # ----------------------------------------------------------------- host

    def host_cores(self) -> int:
        return base.host_cores()

    def host_mem_mib(self) -> int:
        return base.host_mem_mib()

    def cpu_topology(self) -> dict[str, dict[str, list[int]]]:
        return base.cpu_topology()

    # ----------------------------------------------------------------- checks

    def _require(self, name: str) -> None:
        if not self._is_running(name):
            raise ContainerNotFound(f"no running LXC container {name!r} in {self.lxc_path}")

    # ----------------------------------------------------------------- LXC IO
    # The only methods that touch LXC (bindings or tools).

    def _container(self, name: str) -> Any:
        check_name(name)
        c = self._objects.get(name)
        if c is None:
            c = self._objects[name] = self._lxc.Container(name, self.lxc_path)
        return c

    def _running_names(self) -> list[str]:
        return list(self._lxc.list_containers(active=True, defined=False, config_path=self.lxc_path))

    def _defined(self, name: str) -> bool:
        # A fresh object: a cached one keeps the config it loaded before a destroy or create.
        self._objects.pop(name, None)
        return bool(self._container(name).defined)

    def _is_running(self, name: str) -> bool:
        return bool(self._container(name).running)

    def _get(self, name: str, item: str) -> str:
        c = self._container(name)
        last: Exception | None = None
        for _ in range(READ_RETRIES):
            try:
                return str(c.get_cgroup_item(item)).strip()
            except ValueError as e:
                last = e
            except KeyError as e:
                if not c.running:
                    raise ContainerNotFound(f"LXC container {name!r} stopped or disappeared") from None
                raise RuntimeError(f"cgroup item {item} of LXC container {name!r} is not readable") from e
        raise RuntimeError(f"cgroup item {item} of LXC container {name!r} kept changing while read") from last

    def _set(self, name: str, item: str, value: str, what: str) -> None:
        c = self._container(name)
        if c.set_cgroup_item(item, value):
            return
        if not c.running:
            raise ContainerNotFound(f"LXC container {name!r} stopped or disappeared")
        raise LimitRefused(f"{what} for {name} refused: liblxc could not write {item} = {value}")

    def _tool_path(self, tool: str) -> str:
        # A Ray worker may run with a short PATH; the Debian tools live in /usr/bin.
        path = shutil.which(tool, path=f"{os.environ.get('PATH', '')}:/usr/bin:/bin")
        if path is None:
            raise RuntimeError(f"{tool} not found: install the LXC tools (apt install lxc)")
        return path

    def _tool(self, tool: str, *args: str) -> None:
        cmd = [self._tool_path(tool), *args]
        try:
            p = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s,
                               stdin=subprocess.DEVNULL)
        except subprocess.TimeoutExpired:
            raise RuntimeError(f"{' '.join(cmd)} did not finish within {self.timeout_s:g} s") from None
        if p.returncode != 0:
            detail = (p.stderr or p.stdout).strip().splitlines()[-3:]
            raise RuntimeError(f"{' '.join(cmd)} failed ({p.returncode}): {' | '.join(detail)}")
