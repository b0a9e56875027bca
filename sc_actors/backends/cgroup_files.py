"""What a container's cgroup files say, in our units: one reading per cgroup version.

The plain-cgroup backends read the files from the filesystem and the LXC backend
reads the same items through liblxc; both hand a `Read` (file name → its text) to
the functions here, so the parsing and the units live once (reference §5.2):

    cgroup v1                               cgroup v2                ours
    cpu.cfs_quota_us / cpu.cfs_period_us    cpu.max                  shares (−1 unlimited)
    cpuset.cpus                             cpuset.cpus (empty: the  cpu_num '0,1'
                                            parent's, .effective)
    memory.limit_in_bytes (> 256 GiB: −1)   memory.max ("max": −1)   MiB (−1 unlimited)
    cpuacct.usage                           cpu.stat usage_usec      UsageCounters.cpu_ns
    memory.usage_in_bytes − total_cache     memory.current − file    UsageCounters.mem_bytes
    cpu.stat nr_periods, nr_throttled,      cpu.stat nr_periods,     UsageCounters.periods,
    throttled_time (ns)                     nr_throttled,            throttled_periods,
                                            throttled_usec (µs)      throttled_ns
"""
from __future__ import annotations

import time
from typing import Callable

from .. import units
from ..model import ContainerLimits
from .base import UsageCounters, canonical_cpu_list, parse_keyed

Read = Callable[[str], str]
"""The text of one of the container's cgroup files (v1: the controller is the name's prefix)."""


def parse_max(token: str) -> int:
    """A cgroup v2 value: "max" → −1 (unlimited), otherwise the integer."""
    token = token.strip()
    return units.UNLIMITED if token == "max" else int(token)


def limits(quota_us: int, period_us: int, cpus: str, limit_bytes: int) -> ContainerLimits:
    """Limits in our units from the kernel's: −1 (or more than 256 GiB) is unlimited memory."""
    mem_mib = units.UNLIMITED if limit_bytes < 0 else units.bytes_to_mib(limit_bytes)
    return ContainerLimits(
        cpu_allowance_limit=units.shares_from_quota(quota_us, period_us),
        cpu_num=canonical_cpu_list(cpus),
        mem_limit=units.UNLIMITED if mem_mib > units.MEM_UNLIMITED_ABOVE_MIB else mem_mib,
    )


def read_limits_v1(read: Read) -> ContainerLimits:
    return limits(
        quota_us=int(read("cpu.cfs_quota_us")),
        period_us=int(read("cpu.cfs_period_us")),
        cpus=read("cpuset.cpus"),
        limit_bytes=int(read("memory.limit_in_bytes")),
    )


def read_limits_v2(read: Read) -> ContainerLimits:
    quota, period = read("cpu.max").split()
    # An empty cpuset.cpus means the parent's, which is what applies.
    cpus = read("cpuset.cpus").strip() or read("cpuset.cpus.effective")
    return limits(parse_max(quota), int(period), cpus, parse_max(read("memory.max")))


def counters(cpu_ns: int, t: float, usage_bytes: int, cache_bytes: int, cpu_stat: dict[str, int]) -> UsageCounters:
    """One sample: memory without page cache, the CFS counters of cpu.stat (v1 ns or v2 µs)."""
    return UsageCounters(
        cpu_ns=cpu_ns,
        mem_bytes=max(0, usage_bytes - cache_bytes),
        t=t,
        periods=cpu_stat.get("nr_periods", 0),
        throttled_periods=cpu_stat.get("nr_throttled", 0),
        throttled_ns=cpu_stat.get("throttled_time", cpu_stat.get("throttled_usec", 0) * 1000),
    )


def _memory_v1(read: Read) -> tuple[int, int]:
    """(usage, page cache) bytes on v1."""
    stat = parse_keyed(read("memory.stat"))
    return int(read("memory.usage_in_bytes")), stat.get("total_cache", stat.get("cache", 0))


def _memory_v2(read: Read) -> tuple[int, int]:
    """(usage, page cache) bytes on v2."""
    return int(read("memory.current")), parse_keyed(read("memory.stat")).get("file", 0)


def read_counters_v1(read: Read) -> UsageCounters:
    cpu_ns = int(read("cpuacct.usage"))
    t = time.monotonic()
    return counters(cpu_ns, t, *_memory_v1(read), parse_keyed(read("cpu.stat")))


def read_counters_v2(read: Read) -> UsageCounters:
    cpu_stat = parse_keyed(read("cpu.stat"))
    t = time.monotonic()
    return counters(cpu_stat["usage_usec"] * 1000, t, *_memory_v2(read), cpu_stat)


def read_memory_v1(read: Read) -> int:
    """`UsageCounters.mem_bytes` alone: the two memory files, not the CPU's (a sample within a window)."""
    usage_bytes, cache_bytes = _memory_v1(read)
    return max(0, usage_bytes - cache_bytes)


def read_memory_v2(read: Read) -> int:
    usage_bytes, cache_bytes = _memory_v2(read)
    return max(0, usage_bytes - cache_bytes)


def memory_value_v1(mem_mib: float) -> str:
    """What memory.limit_in_bytes takes for a limit in MiB (−1 unlimited)."""
    return str(units.UNLIMITED) if mem_mib == units.UNLIMITED else str(units.mib_to_bytes(mem_mib))


def memory_value_v2(mem_mib: float) -> str:
    """What memory.max takes for a limit in MiB ("max" unlimited)."""
    return "max" if mem_mib == units.UNLIMITED else str(units.mib_to_bytes(mem_mib))


def cpu_max_v2(shares: float) -> str:
    """What cpu.max takes for a CPU limit in shares ("max" unlimited), with our period."""
    quota = "max" if shares == units.UNLIMITED else str(units.quota_us(shares))
    return f"{quota} {units.CPU_PERIOD_US}"
