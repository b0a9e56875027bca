"""Counters of many containers of one host as columns: what a node reads each sample.

A `CounterFrame` holds one `UsageCounters` field per array, in the order of its
names. The synthetic backend produces one directly from its arrays; the cgroup
backends' per-container reads are turned into one (`CounterFrame.of`). The node
agent then builds a host's window from two frames and its memory samples with a
few array operations (`container_scaler.host_window`), never container by container.

Every value is a float64 (a counter of 2^53 ns is 104 days of CPU: exact enough for
differences); NaN marks a container a frame lacks (removed between two reads).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping, Sequence

import numpy as np

from .base import UsageCounters

FIELDS = ("t", "cpu_ns", "mem_bytes", "periods", "throttled_periods", "throttled_ns")
"""The arrays of a frame: `UsageCounters`' fields."""


@dataclass(frozen=True, eq=False)
class CounterFrame:
    """One read of the counters of `names`, one float array per `UsageCounters` field."""

    names: tuple[str, ...]
    t: np.ndarray
    """`time.monotonic()` of each container's read, seconds."""
    cpu_ns: np.ndarray
    mem_bytes: np.ndarray
    periods: np.ndarray
    throttled_periods: np.ndarray
    throttled_ns: np.ndarray

    @classmethod
    def of(cls, counters: Mapping[str, UsageCounters], names: Sequence[str] | None = None) -> "CounterFrame":
        """The frame of per-container counters, in the order of `names` (NaN where one is absent)."""
        order = tuple(counters) if names is None else tuple(names)
        cols = {f: np.full(len(order), np.nan) for f in FIELDS}
        for i, n in enumerate(order):
            c = counters.get(n)
            if c is not None:
                for f in FIELDS:
                    cols[f][i] = getattr(c, f)
        return cls(order, **cols)

    def __len__(self) -> int:
        return len(self.names)

    def take(self, names: tuple[str, ...]) -> "CounterFrame":
        """This frame in the order of `names`: NaN for a name it lacks. Itself when the names match."""
        if names == self.names:
            return self
        index = {n: i for i, n in enumerate(self.names)}
        pos = np.array([index.get(n, -1) for n in names], dtype=np.int64)
        have = pos >= 0
        cols = {}
        for f in FIELDS:
            a = np.full(len(names), np.nan)
            a[have] = getattr(self, f)[pos[have]]
            cols[f] = a
        return CounterFrame(names, **cols)

    def or_else(self, other: "CounterFrame") -> "CounterFrame":
        """Each container's counters from this frame, or from `other` where this one lacks it
        (same names, same order)."""
        if other.names != self.names:
            raise ValueError("frames of different containers")
        missing = np.isnan(self.cpu_ns)
        if not missing.any():
            return self
        return CounterFrame(self.names, **{f: np.where(missing, getattr(other, f), getattr(self, f))
                                          for f in FIELDS})

    def counters(self, name: str) -> UsageCounters | None:
        """One container's counters, as the per-container API gives them (None if absent)."""
        try:
            i = self.names.index(name)
        except ValueError:
            return None
        return self.counters_at(i)

    def counters_at(self, i: int) -> UsageCounters | None:
        """The counters of the `i`-th container (None if this frame lacks it)."""
        if np.isnan(self.cpu_ns[i]):
            return None
        return UsageCounters(cpu_ns=int(self.cpu_ns[i]), mem_bytes=int(self.mem_bytes[i]), t=float(self.t[i]),
                             periods=int(self.periods[i]), throttled_periods=int(self.throttled_periods[i]),
                             throttled_ns=int(self.throttled_ns[i]))
