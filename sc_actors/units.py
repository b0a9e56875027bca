"""Units of the original NodeRescaler, and the only place that converts them.

CPU is counted in *shares*: 100 shares = one core (reference §0). A CFS quota of
1000 µs per share on a 100 000 µs period gives exactly that many cores.
Memory is counted in MiB; the kernel speaks bytes. −1 means "unlimited" in both.
"""
from __future__ import annotations

CPU_PERIOD_US = 100_000
"""CFS period written with every quota, µs (original: cpu.cfs_period_us = 100000)."""

QUOTA_US_PER_SHARE = 1000
"""CFS quota per share, µs: 100 shares → 100 000 µs per 100 000 µs = one core."""

SHARES_PER_CORE = 100

MEM_MIN_MIB = 64
"""The NodeRescaler refuses memory limits below this, MiB."""

MEM_UNLIMITED_ABOVE_MIB = 262_144
"""cgroup v1 reports 'no limit' as a huge byte count; above 256 GiB we say −1."""

UNLIMITED = -1

BYTES_PER_MIB = 1_048_576
NS_PER_S = 1_000_000_000


def quota_us(shares: float) -> int:
    """CFS quota for a CPU limit in shares; −1 (unlimited) stays −1.

    NOTE: the original turned the string "-1" into −1000 (reference §11.4); we never do.
    """
    if shares == UNLIMITED:
        return UNLIMITED
    if shares <= 0:
        raise ValueError(f"cpu limit must be positive shares or -1, got {shares}")
    return int(round(shares * QUOTA_US_PER_SHARE))


def shares_from_quota(quota: int, period_us: int = CPU_PERIOD_US) -> float:
    """CPU limit in shares from a CFS quota and period; −1 stays −1."""
    if quota < 0:
        return UNLIMITED
    return quota * SHARES_PER_CORE / period_us


def mib_to_bytes(mib: float) -> int:
    return int(mib * BYTES_PER_MIB)


def bytes_to_mib(n_bytes: float) -> float:
    return n_bytes / BYTES_PER_MIB


def cpu_ns_to_shares(delta_ns: float, elapsed_s: float) -> float:
    """Average CPU use over an interval, in shares: 1 s of CPU per s = 100 shares."""
    if elapsed_s <= 0:
        return 0.0
    return delta_ns / NS_PER_S / elapsed_s * SHARES_PER_CORE


def parse_cpu_list(text: str) -> list[str]:
    """'0-2,5' → ['0', '1', '2', '5'], keeping the order given (reference §10.1)."""
    out: list[str] = []
    for part in text.strip().split(","):
        part = part.strip()
        if not part:
            continue
        if "-" in part:
            lo, hi = part.split("-", 1)
            out.extend(str(i) for i in range(int(lo), int(hi) + 1))
        else:
            out.append(str(int(part)))
    return out


def format_cpu_list(cores: list[str] | list[int]) -> str:
    """['0', '2', '3'] → '0,2,3' (the cpuset.cpus form the original writes)."""
    return ",".join(str(c) for c in cores)
