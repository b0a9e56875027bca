"""Each container's usage of its last window, kept as the hosts' windows themselves.

The Guardian reports one `HostWindow` per host and window. Stored as it came (one
reference per host), a window of any size costs the StateDB the same; a container's
usage is read out of its host's arrays when someone asks for it (a view, the
Refeeder's sums, the API). A usage reported for one container alone (a test, a
tool, an older caller) is kept beside them and wins until its host's next window.

Volatile by design, like the events (ARCHITECTURE "StateDB").
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Optional

from ..columns import HostWindow

Usage = Mapping[str, float]


class UsageTable(Mapping[str, Usage]):
    """container name → its usage of its last window (resource → value)."""

    def __init__(self) -> None:
        self._windows: dict[str, HostWindow] = {}
        self._host_of: dict[str, str] = {}
        self._single: dict[str, Usage] = {}
        self._single_t: dict[str, float] = {}
        self._dropped: set[str] = set()
        self.times = UsageTimes(self)
        """container name → the end of its last window."""

    # ------------------------------------------------------------------ writes

    def put_window(self, w: HostWindow) -> None:
        """The host's newest window replaces its last one."""
        old = self._windows.get(w.host)
        self._windows[w.host] = w
        if old is None or old.names != w.names:
            for n in old.names if old is not None else ():
                if self._host_of.get(n) == w.host:
                    del self._host_of[n]
            for n in w.names:
                self._host_of[n] = w.host
        if self._dropped:
            index = w.index()
            for n in [n for n in self._dropped if n in index]:
                self._dropped.discard(n)
                self._host_of[n] = w.host
        if self._single:
            index = w.index()
            for n in [n for n in self._single if n in index]:
                del self._single[n]
                self._single_t.pop(n, None)

    def put(self, name: str, usage: Usage, t: float) -> None:
        """One container's usage (reported alone)."""
        self._single[name] = usage
        self._single_t[name] = t

    def pop(self, name: str) -> Optional[Usage]:
        """Forget a container's usage until it is reported again."""
        u = self.get(name)
        self._single.pop(name, None)
        self._single_t.pop(name, None)
        if self._host_of.pop(name, None) is not None:
            self._dropped.add(name)
        return u

    # ------------------------------------------------------------------ reads

    def __getitem__(self, name: str) -> Usage:
        u = self._single.get(name)
        if u is not None:
            return u
        host = self._host_of.get(name)
        if host is not None:
            found = self._windows[host].usage(name)
            if found is not None:
                return dict(found)
        raise KeyError(name)

    def time_of(self, name: str) -> Optional[float]:
        t = self._single_t.get(name)
        if t is not None:
            return t
        host = self._host_of.get(name)
        return self._windows[host].window_end if host is not None else None

    def window(self, host: str) -> Optional[HostWindow]:
        """The host's last window as it was reported."""
        return self._windows.get(host)

    def __iter__(self) -> Iterator[str]:
        yield from self._single
        yield from (n for n in self._host_of if n not in self._single)

    def __len__(self) -> int:
        return len(self._single) + sum(1 for n in self._host_of if n not in self._single)

    def __contains__(self, name: object) -> bool:
        return name in self._single or name in self._host_of


class UsageTimes(Mapping[str, float]):
    """container name → the end of the window its usage is from."""

    def __init__(self, table: UsageTable) -> None:
        self._table = table

    def __getitem__(self, name: str) -> float:
        t = self._table.time_of(name)
        if t is None:
            raise KeyError(name)
        return t

    def __iter__(self) -> Iterator[str]:
        return iter(self._table)

    def __len__(self) -> int:
        return len(self._table)
