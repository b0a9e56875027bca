"""One host's usage window as columns: the message from a node to its Guardian shard.

A window carries every container of one host: their names once, and one float
array per measure, in the names' order. It is what a node pushes (several hosts'
windows in one `Guardian.on_windows` call when one node agent serves several
simulated hosts), what the Guardian evaluates with a few array operations, what
the StateDB keeps as the host's last usage, and what the DatabaseSnapshoter turns
into Parquet rows: nobody re-reads or rebuilds it container by container.

Ray-free; numpy arrays pickle out of band, so a window of 150 containers costs a
few hundred bytes of names and four small buffers on the wire.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Mapping, Optional, Sequence

import numpy as np

from .model import ContainerUsage, UsageBatch

MEASURES = ("cpu", "mem", "cpu_throttled", "cpu_held_back")
"""The arrays of a window: cpu in shares, mem in MiB, cpu_throttled 0..1, cpu_held_back in shares."""


def _floats(values: object, n: int, name: str) -> np.ndarray:
    a = np.asarray(values, dtype=np.float64)
    if a.shape != (n,):
        raise ValueError(f"{name}: {a.shape[0] if a.ndim == 1 else a.shape} values for {n} containers")
    if not np.all(np.isfinite(a)) or np.any(a < 0):
        raise ValueError(f"{name}: a value is negative or not finite")
    return a


@dataclass(frozen=True, eq=False)
class HostWindow:
    """Average usage of every container of `host` over [window_start, window_end]."""

    host: str
    window_start: float
    window_end: float
    names: tuple[str, ...]
    cpu: np.ndarray
    mem: np.ndarray
    cpu_throttled: np.ndarray
    cpu_held_back: np.ndarray
    _index: dict[str, int] = field(default_factory=dict, repr=False, compare=False)

    @classmethod
    def of(cls, host: str, window_start: float, window_end: float, names: tuple[str, ...] | list[str],
           cpu: object, mem: object, cpu_throttled: object = None, cpu_held_back: object = None) -> "HostWindow":
        """A checked window: one finite, non-negative value per name in each array."""
        names = tuple(names)
        n = len(names)
        if len(set(names)) != n:
            raise ValueError(f"window of {host!r}: a container is named twice")
        zeros = np.zeros(n)
        return cls(host, float(window_start), float(window_end), names,
                   _floats(cpu, n, "cpu"), _floats(mem, n, "mem"),
                   zeros if cpu_throttled is None else _floats(cpu_throttled, n, "cpu_throttled"),
                   zeros if cpu_held_back is None else _floats(cpu_held_back, n, "cpu_held_back"))

    @classmethod
    def from_batch(cls, batch: UsageBatch) -> "HostWindow":
        """The window of a `UsageBatch` (a container's measures it lacks are 0)."""
        names = tuple(batch.usages)
        u = [batch.usages[n] for n in names]
        return cls.of(batch.host, batch.window_start, batch.window_end, names,
                      [x["cpu"] for x in u], [x["mem"] for x in u],
                      [x.get("cpu_throttled", 0.0) for x in u], [x.get("cpu_held_back", 0.0) for x in u])

    @classmethod
    def concat(cls, windows: Sequence["HostWindow"], host: str) -> "HostWindow":
        """Windows of several hosts that ended together as one window named `host`, in order:
        what the Guardian evaluates in one pass (`Guardian._step_windows`)."""
        names = tuple(n for w in windows for n in w.names)
        if len(set(names)) != len(names):
            raise ValueError(f"windows of {host!r}: a container is in two of them")
        cpu, mem, throttled, held = (np.concatenate([w.column(m) for w in windows]) for m in MEASURES)
        return cls(host, min(w.window_start for w in windows), max(w.window_end for w in windows), names,
                   cpu, mem, throttled, held)

    def __len__(self) -> int:
        return len(self.names)

    def column(self, measure: str) -> np.ndarray:
        if measure not in MEASURES:
            raise KeyError(measure)
        arr: np.ndarray = getattr(self, measure)
        return arr

    def index(self) -> Mapping[str, int]:
        """Position of each container in the arrays (built once per window, on first use)."""
        if not self._index and self.names:
            self._index.update({n: i for i, n in enumerate(self.names)})
        return self._index

    def usage(self, name: str) -> Optional[dict[str, float]]:
        """One container's usage as the per-container views show it, or None if not in this window."""
        i = self.index().get(name)
        if i is None:
            return None
        return {"cpu": float(self.cpu[i]), "mem": float(self.mem[i]),
                "cpu_throttled": float(self.cpu_throttled[i]), "cpu_held_back": float(self.cpu_held_back[i])}

    def usages(self) -> dict[str, dict[str, float]]:
        """Every container's usage as a dict: for the per-container paths (tests, small hosts)."""
        cpu, mem, thr, held = (a.tolist() for a in (self.cpu, self.mem, self.cpu_throttled, self.cpu_held_back))
        return {n: {"cpu": cpu[i], "mem": mem[i], "cpu_throttled": thr[i], "cpu_held_back": held[i]}
                for i, n in enumerate(self.names)}

    def to_batch(self) -> UsageBatch:
        usages: dict[str, ContainerUsage] = {
            n: {"cpu": u["cpu"], "mem": u["mem"], "cpu_throttled": u["cpu_throttled"],
                "cpu_held_back": u["cpu_held_back"]} for n, u in self.usages().items()}
        return UsageBatch(host=self.host, window_start=self.window_start, window_end=self.window_end, usages=usages)


@dataclass(frozen=True, eq=False)
class SeriesFrame:
    """One host's window as the time series keep it: the usage, and the limits the
    Guardian evaluated it against, as columns in the window's order.

    `limits` maps "<resource>.<field>" ("cpu.current", "cpu.max", "cpu.min",
    "cpu.upper", "cpu.lower", "cpu.boundary", "mem.…") to one float per container,
    NaN where a container has no such value. The Guardian sends one per evaluated
    window to the DatabaseSnapshoter, which writes its rows without asking the
    StateDB for them.
    """

    window: HostWindow
    limits: Mapping[str, np.ndarray]

    def __post_init__(self) -> None:
        n = len(self.window)
        for key, a in self.limits.items():
            if a.shape != (n,):
                raise ValueError(f"{key}: {a.shape} values for {n} containers")
