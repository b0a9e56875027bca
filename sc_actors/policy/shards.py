"""Which shard owns a host, and whether a planned part of a cross-shard request still holds (issue 16).

The control plane runs in shards by host group: Guardian shard `i` evaluates the windows
of the hosts `shard_of(host, shards) == i`, and Scaler shard `i` is the one writer of
those hosts' accounting (free CPU and memory, core map, the `current` of their
containers). Shard 0 keeps the unsharded names (`guardian`, `scaler`) and coordinates
what spans hosts: application and user requests and swaps are planned there, against the
StateDB's view, and applied host by host through the owning Scaler shards (`HostPart`).

The number of shards lives in one place, the `shards` field of the `guardian` service
document (`settings.SHARDS_FIELD`), written by `cluster.deploy`; `shards_of` reads it.

`shard_of` hashes with CRC-32, not `hash()`: Python salts `hash` of a string per
process, and every process (node agents, shards, API replicas) must agree.
"""
from __future__ import annotations

import zlib
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

from ..model import Bounds, Host, JsonValue, LimitChange
from ..settings import GUARDIAN_NAME, MAX_SHARDS, SCALER_NAME, SHARDS_FIELD


def shard_of(host: str, shards: int) -> int:
    """The shard that owns `host`: CRC-32 of its name modulo the number of shards.

    >>> shard_of("any", 1)
    0
    """
    if shards <= 1:
        return 0
    return zlib.crc32(host.encode()) % shards


def shards_of(guardian_doc: Optional[Mapping[str, JsonValue]]) -> int:
    """The number of shards the `guardian` service document says (1 when it says nothing).

    A value that is not a whole number in [1, MAX_SHARDS] is a damaged document: 1, so
    the unsharded names (which always exist) keep serving.
    """
    value = (guardian_doc or {}).get(SHARDS_FIELD)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != int(value):
        return 1
    return int(value) if 1 <= value <= MAX_SHARDS else 1


def check_shards(shards: int) -> int:
    """`shards` if it is a valid number of shards, else ValueError saying the range."""
    if isinstance(shards, bool) or not isinstance(shards, int) or not 1 <= shards <= MAX_SHARDS:
        raise ValueError(f"shards must be a whole number from 1 to {MAX_SHARDS}, got {shards!r}")
    return shards


def hosts_by_shard(hosts: Iterable[str], shards: int) -> dict[int, list[str]]:
    """Shard → the hosts it owns (sorted), for every shard that owns one."""
    out: dict[int, list[str]] = {}
    for h in sorted(set(hosts)):
        out.setdefault(shard_of(h, shards), []).append(h)
    return out


def shard_service(name: str) -> tuple[str, int]:
    """(service, shard) of an actor or heartbeat name: `guardian-2` → ("guardian", 2), `scaler` → ("scaler", 0).

    Any other name is its own service, shard 0.
    """
    for base in (GUARDIAN_NAME, SCALER_NAME):
        if name == base:
            return base, 0
        prefix = base + "-"
        if name.startswith(prefix) and name[len(prefix):].isdigit():
            return base, int(name[len(prefix):])
    return name, 0


# --------------------------------------------------------------------------- cross-shard parts


@dataclass(frozen=True)
class ContainerWrite:
    """One container's write in a part: its limits on the node and its accounting after."""

    name: str
    resource: str
    before: Optional[float]
    """The container's `current` of `resource` the plan was made against."""
    change: Optional[LimitChange]
    """The limits to write on its node (None: nothing to write, accounting only)."""
    bounds: Optional[Bounds]
    new_current: float
    new_max: Optional[float] = None


@dataclass(frozen=True)
class HostPart:
    """One host's share of a request planned by the coordinator, applied by the host's owner."""

    host: str
    before: Host
    """The host's accounting the plan was made against."""
    after: Host
    """The host's accounting once every write of the part is applied."""
    writes: tuple[ContainerWrite, ...]


def _accounting(host: Host) -> dict[str, tuple[Optional[float], Optional[float], object]]:
    return {res: (r.max, r.free, r.core_usage_mapping if res == "cpu" else None)
            for res, r in sorted(host.resources.items())}


def part_still_fits(part: HostPart, host_now: Optional[Host], currents_now: Mapping[str, Optional[float]]) -> str:
    """"" when the host's accounting and its containers' `current` are still what the
    plan was made against, else why the part cannot be applied.

    The owner checks this under its host lock before writing (a compare-and-set): a
    change applied on the host since the coordinator read it (a container request of
    the host's own lane, a subscription) would make the plan's free cores and memory
    wrong, so the part, and with it the whole request, is refused rather than replanned.
    `currents_now`: container → its `current` of the part's resource now (None: gone).
    """
    if host_now is None:
        return f"host {part.host!r} is gone"
    if not host_now.reachable:
        return f"host {part.host!r} is unreachable"
    if _accounting(host_now) != _accounting(part.before):
        return f"the accounting of host {part.host!r} changed since the request was planned"
    for w in part.writes:
        if w.name not in currents_now:
            return f"container {w.name!r} is no longer on host {part.host!r}"
        if currents_now[w.name] != w.before:
            return f"the {w.resource} current of {w.name!r} changed since the request was planned"
    return ""
