"""Which cores a container's CPU shares sit on (reference §1.2, §4.6, §6, §10.3, §10.6).

A host's `core_usage_mapping` gives each logical core `"free"` plus the shares each
container holds there; the sum per core is 100. Scaling a container's CPU moves shares
between `free` and the container, core by core, in the order of a core distribution,
and the container's cpuset (`cpu_num`) is the cores where it holds shares.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from ..units import SHARES_PER_CORE, format_cpu_list

CoreMap = dict[str, dict[str, float]]
Topology = Mapping[str, Mapping[str, Sequence[int]]]
"""socket → core id → logical CPUs, as `GET /host/cpu_topology` answers (§5.1)."""

FREE = "free"
_EPS = 1e-9


# --------------------------------------------------------------------------- distributions


def _group_p_and_l(topology: Topology) -> list[int]:
    """Pairs of physical and logical cores, one socket at a time."""
    return [cpu for cores in topology.values() for threads in cores.values() for cpu in threads]


def _group_1p_2l(topology: Topology) -> list[int]:
    """First physical cores, then logical cores, one socket at a time."""
    out: list[int] = []
    for cores in topology.values():
        out += [threads[0] for threads in cores.values() if threads]
        out += [cpu for threads in cores.values() for cpu in threads[1:]]
    return out


def _group_pp_ll(topology: Topology) -> list[int]:
    """First the physical cores of every socket, then the logical cores."""
    physical = [threads[0] for cores in topology.values() for threads in cores.values() if threads]
    logical = [cpu for cores in topology.values() for threads in cores.values() for cpu in threads[1:]]
    return physical + logical


def _spread_sockets(topology: Topology) -> tuple[str, list[str]]:
    # The socket with the most cores leads (the last of equals, as in the original).
    ordered = sorted(topology, key=lambda socket: len(topology[socket]))
    return ordered[-1], ordered[:-1]


def _spread_p_and_l(topology: Topology) -> list[int]:
    """Pairs of physical and logical cores, alternating between sockets."""
    lead, others = _spread_sockets(topology)
    out: list[int] = []
    for core_id, threads in topology[lead].items():
        out += threads
        for socket in others:
            out += topology[socket].get(core_id, [])
    return out


def _spread_pp_ll(topology: Topology) -> list[int]:
    """Physical cores alternating between sockets, then logical cores alike."""
    lead, others = _spread_sockets(topology)
    physical: list[int] = []
    logical: list[int] = []
    for core_id, threads in topology[lead].items():
        for socket in [lead, *others]:
            sibling = topology[socket].get(core_id, [])
            physical += sibling[:1]
            logical += sibling[1:]
    return physical + logical


DISTRIBUTIONS: dict[str, Callable[[Topology], list[int]]] = {
    "Group_P&L": _group_p_and_l,
    "Group_1P_2L": _group_1p_2l,
    "Group_PP_LL": _group_pp_ll,
    "Spread_P&L": _spread_p_and_l,
    "Spread_PP_LL": _spread_pp_ll,
}


def core_distribution(topology: Topology, order: str) -> list[str]:
    """The host's logical CPUs in the order they are handed out (§4.6, §10.6).

    For `{"0": {"0": [0,4], "1": [1,5]}, "1": {"0": [2,6], "1": [3,7]}}`:
    Group_P&L 0,4,1,5,2,6,3,7; Group_1P_2L 0,1,4,5,2,3,6,7; Group_PP_LL 0,1,2,3,4,5,6,7;
    Spread_P&L 2,6,0,4,3,7,1,5; Spread_PP_LL 2,0,3,1,6,4,7,5.
    NOTE: CPUs a spread order skips (a core id the leading socket lacks) are appended
    at the end; the original dropped them.
    """
    if order not in DISTRIBUTIONS:
        raise ValueError(f"unknown core distribution {order!r}; use one of {sorted(DISTRIBUTIONS)}")
    if not topology:
        return []
    cpus = DISTRIBUTIONS[order](topology) + _group_p_and_l(topology)
    return list(dict.fromkeys(str(cpu) for cpu in cpus))


# --------------------------------------------------------------------------- core maps


def new_core_map(n_cores: int) -> CoreMap:
    """Every core completely free: `{"0": {"free": 100}, ...}` (Orchestrator host subscription, §6)."""
    return {str(i): {FREE: float(SHARES_PER_CORE)} for i in range(n_cores)}


@dataclass(frozen=True)
class CpuScaling:
    """The result of moving a container's shares on a host's cores."""

    core_map: CoreMap
    """The new map (a new dict; the input map is left untouched)."""
    cpu_num: str
    """The container's cores after the change, e.g. "0,2,3"."""
    shares: float
    """Shares granted: signed, and less than asked when a scale-up could not get them all."""
    host_free_delta: float
    """Change of the host's cpu `free` (−shares)."""
    held: float
    """Shares the container holds on the host after the change."""


def _copy(core_map: CoreMap) -> CoreMap:
    """A new map sharing the cores' entries: `_move` copies an entry before changing it,
    so only the cores a change touches are copied (a host may have thousands)."""
    return dict(core_map)


class CoreOrder(tuple[str, ...]):
    """Every core of a host's map once, in the order its distribution hands them out
    (`core_order`). `scale_cpu` takes it as its distribution without ordering the map
    again, as long as the map still has exactly these cores: a planner working through
    many requests of one host orders its cores once."""

    cores: frozenset[str]


def core_order(core_map: Mapping[str, object], distribution: Sequence[str]) -> CoreOrder:
    """The cores of `core_map` in distribution order, those it does not list after them in
    numeric order (what `scale_cpu` walks)."""
    order = CoreOrder(_order(core_map, distribution))
    order.cores = frozenset(order)
    return order


def _order(core_map: Mapping[str, object], distribution: Sequence[str]) -> list[str]:
    if isinstance(distribution, CoreOrder) and core_map.keys() == distribution.cores:
        return list(distribution)
    listed = list(dict.fromkeys(core for core in distribution if core in core_map))
    seen = set(listed)
    return listed + sorted((core for core in core_map if core not in seen), key=_core_key)


def _core_key(core: str) -> tuple[int, str]:
    return (int(core), core) if core.isdigit() else (1 << 30, core)


def _free(core_map: CoreMap, core: str) -> float:
    return core_map[core].get(FREE, 0.0)


def _move(core_map: CoreMap, core: str, src: str, dst: str, wanted: float) -> float:
    take = min(core_map[core].get(src, 0.0), wanted)
    if take <= 0:
        return 0.0
    entry = core_map[core] = dict(core_map[core])  # copy on write (see _copy)
    entry[src] = entry.get(src, 0.0) - take
    entry[dst] = entry.get(dst, 0.0) + take
    if src != FREE and entry[src] <= _EPS:
        del entry[src]
    return take


def _take(core_map: CoreMap, cores: Sequence[str], src: str, dst: str, wanted: float) -> float:
    got = 0.0
    for core in cores:
        if wanted - got <= _EPS:
            break
        got += _move(core_map, core, src, dst, wanted - got)
    return got


def held_shares(core_map: Mapping[str, Mapping[str, float]], container: str) -> float:
    """Shares the container holds on the host, all cores together."""
    return sum(entry.get(container, 0.0) for entry in core_map.values())


def container_cores(core_map: Mapping[str, Mapping[str, float]], container: str) -> list[str]:
    """The cores where the container holds shares, in numeric order."""
    return sorted((c for c, entry in core_map.items() if entry.get(container, 0.0) > 0), key=_core_key)


def _scale_up(core_map: CoreMap, container: str, amount: float, order: list[str]) -> float:
    # 1) free shares on the cores the container already uses,
    used = [c for c in order if core_map[c].get(container, 0.0) > 0]
    got = _take(core_map, used, FREE, container, amount)
    # 2) then completely free cores, 3) then the other partially free cores,
    # all in distribution order (a step is skipped once the amount is reached:
    # `_take` would take nothing).
    if amount - got > _EPS:
        in_use = set(used)
        empty = [c for c in order if c not in in_use and core_map[c].get(FREE, 0.0) >= SHARES_PER_CORE]
        got += _take(core_map, empty, FREE, container, amount - got)
    if amount - got > _EPS:
        partial = [c for c in order
                   if core_map[c].get(container, 0.0) <= 0 and core_map[c].get(FREE, 0.0) > 0]
        got += _take(core_map, partial, FREE, container, amount - got)
    return got


def _scale_down(core_map: CoreMap, container: str, amount: float, order: list[str]) -> float:
    held = held_shares(core_map, container)
    if amount > held + _EPS:
        raise ValueError(f"{container} holds {held:g} shares on this host, cannot release {amount:g}")
    # Reverse distribution order, the cores where it holds the fewest shares first,
    # so whole cores leave the cpuset as soon as possible.
    cores = [c for c in reversed(order) if core_map[c].get(container, 0.0) > 0]
    cores.sort(key=lambda c: core_map[c][container])
    return _take(core_map, cores, container, FREE, amount)


def _result(core_map: CoreMap, container: str, shares: float) -> CpuScaling:
    # `container_cores` and `held_shares` in one walk over the cores.
    held = 0.0
    cores: list[str] = []
    for core, entry in core_map.items():
        v = entry.get(container, 0.0)
        held += v
        if v > 0:
            cores.append(core)
    cores.sort(key=_core_key)
    return CpuScaling(
        core_map=core_map,
        cpu_num=format_cpu_list(cores),
        shares=shares,
        host_free_delta=-shares,
        held=held,
    )


def scale_cpu(core_map: CoreMap, container: str, amount: float, distribution: Sequence[str]) -> CpuScaling:
    """Move `amount` shares between `free` and the container (§4.6, §10.3).

    Scale-up takes free shares (1) on the cores the container already uses, (2) on
    completely free cores, (3) on other partially free cores, each in distribution
    order, and may grant less than asked. Scale-down walks the container's cores in
    reverse distribution order, fewest shares first; a core left with 0 shares leaves
    `cpu_num`. ValueError when releasing more than the container holds.
    """
    new = _copy(core_map)
    order = _order(new, distribution)
    if amount > 0:
        granted = _scale_up(new, container, amount, order)
    elif amount < 0:
        granted = -_scale_down(new, container, -amount, order)
    else:
        granted = 0.0
    return _result(new, container, granted)


def allocate_cores(core_map: CoreMap, container: str, shares: float, distribution: Sequence[str]) -> CpuScaling:
    """Place a newly subscribed container's shares (Orchestrator, §6).

    Completely free cores first, then the cores with the most free shares (distribution
    order among equals). ValueError if the host is short or the container already has shares.
    """
    if shares <= 0:
        raise ValueError(f"a container needs a positive number of shares, got {shares:g}")
    if held_shares(core_map, container) > 0:
        raise ValueError(f"{container} already holds shares on this host")
    new = _copy(core_map)
    order = _order(new, distribution)
    free = sum(_free(new, c) for c in order)
    if free + _EPS < shares:
        raise ValueError(f"the host has {free:g} free CPU shares, {shares:g} needed")
    empty = [c for c in order if _free(new, c) >= SHARES_PER_CORE]
    partial = sorted((c for c in order if 0 < _free(new, c) < SHARES_PER_CORE), key=lambda c: -_free(new, c))
    granted = _take(new, empty + partial, FREE, container, shares)
    return _result(new, container, granted)
