"""LXC containers: limits and usage through the `lxc` Python bindings (reference §5.2).

A container NAME is a *running* LXC container of this node's LXC path (`lxc.lxcpath`,
usually /var/lib/lxc), as the original's LXD backend listed only running ones. Its
limits are read and written with the bindings' `get_cgroup_item`/`set_cgroup_item`,
which find the container's cgroup through its monitor (v1
`/sys/fs/cgroup/<controller>/lxc.payload.<name>/`, v2 `/sys/fs/cgroup/lxc.payload.<name>/`),
with the cgroup backends' units and checks: the items are parsed by `cgroup_files`,
which has the table of v1 and v2 items and our units.

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
from contextlib import contextmanager
from typing import Any, Iterator

from .. import units
from ..model import ContainerLimits, check_name
from . import base, cgroup_files
from .base import ContainerNotFound, LimitRefused, UsageCounters

CREATE_CONFIG = (
    # No bridge on a bare host: the container gets a loopback only.
    "lxc.net.0.type = empty\n"
    # Hosts without AppArmor (or with a restrictive one) cannot load the generated profile.
    "lxc.apparmor.profile = unconfined\n"
)
"""Base configuration of the containers `create` makes (demo and tests): offline, no bridge."""

TEMPLATE = "busybox"
"""The offline template: it copies the host's busybox (Debian `busybox-static`)."""

class _NotWritten(Exception):
    """`set_cgroup_item` answered False for a running container (`_refused` names the limit)."""


READ_RETRIES = 5
"""The bindings ask a value's size, then read it: a counter that grew a digit in
between fails the read (ValueError), so reads are retried."""


class LxcBackend(base.NodeBackend):
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
                import lxc as lxc_module  # type: ignore[no-redef]  # the parameter of the same name is the fake
            except ImportError as e:
                raise RuntimeError(
                    "the lxc backend needs the `lxc` Python bindings: apt install lxc-dev, "
                    "then pip install -e '.[lxc]'"
                ) from e
        self._lxc = lxc_module
        self.lxc_path = lxc_path or self._lxc.default_config_path
        self.cgroup_v1 = base.is_cgroup_v1_root(root) if cgroup_v1 is None else cgroup_v1
        self.timeout_s = timeout_s
        self._objects: dict[str, Any] = {}

    # ----------------------------------------------------------------- limits

    def list_containers(self) -> list[str]:
        return sorted(n for n in self._running_names() if base.is_container_name(n))

    def read_limits(self, name: str) -> ContainerLimits:
        self._require(name)
        read = cgroup_files.read_limits_v1 if self.cgroup_v1 else cgroup_files.read_limits_v2
        return read(lambda item: self._get(name, item))

    # NOTE: the memory check runs here on v1 too: `set_cgroup_item` loses v1's EBUSY.

    def _write_memory(self, name: str, mem_mib: float) -> None:
        if self.cgroup_v1:
            self._set(name, "memory.limit_in_bytes", cgroup_files.memory_value_v1(mem_mib))
        else:
            self._set(name, "memory.max", cgroup_files.memory_value_v2(mem_mib))

    def _write_cpuset(self, name: str, cpus: str) -> None:
        self._set(name, "cpuset.cpus", cpus)

    def _write_cpu(self, name: str, shares: float) -> None:
        if self.cgroup_v1:
            self._set(name, "cpu.cfs_period_us", str(units.CPU_PERIOD_US))
            self._set(name, "cpu.cfs_quota_us", str(units.quota_us(shares)))
        else:
            self._set(name, "cpu.max", cgroup_files.cpu_max_v2(shares))

    # ----------------------------------------------------------------- usage

    def read_counters(self, name: str) -> UsageCounters:
        read = cgroup_files.read_counters_v1 if self.cgroup_v1 else cgroup_files.read_counters_v2
        return read(lambda item: self._get(name, item))

    def read_memory(self, name: str) -> int:
        read = cgroup_files.read_memory_v1 if self.cgroup_v1 else cgroup_files.read_memory_v2
        return read(lambda item: self._get(name, item))

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
            with self._refused(f"cpu_num {cpus!r} for {name}"):
                self._set(name, "cpuset.cpus", cpus)

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

    @contextmanager
    def _refused(self, what: str) -> Iterator[None]:
        """A write liblxc would not make becomes LimitRefused naming `what` (the errno is lost)."""
        try:
            yield
        except _NotWritten as e:
            raise LimitRefused(f"{what} refused: {e}") from None

    def _set(self, name: str, item: str, value: str) -> None:
        c = self._container(name)
        if c.set_cgroup_item(item, value):
            return
        if not c.running:
            raise ContainerNotFound(f"LXC container {name!r} stopped or disappeared")
        raise _NotWritten(f"liblxc could not write {item} = {value}")

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
