"""Subscription accounting: what a container takes from its host and gives back (reference §6).

The Orchestrator's container subscription, as pure functions of model objects. A
subscription takes the container's `current` CPU shares on whole free cores first
(`policy.cores.allocate_cores`) and its `current` memory from the host's free MiB;
a missing `current` is its `max`, as in the original. A desubscription gives back
every share the host's core map holds for the container and its `current` memory,
never past the host's `max`. The Scaler looks the documents up, calls these, writes
the limits on the node and records the result: it plans and applies, nothing more.

Also here, because the Scaler's planning and its put-backs need the same facts: a
container's memory margin (`mem_margin_of`), the limits its node should hold by
the accounting (`physical_of`) and the [min, max] its node checks writes against
(`bounds_of`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Optional

from ..model import Bounds, Container, ContainerLimits, Host, LimitChange, Limits
from .cores import allocate_cores
from .limits import margin

MIN_MEM_MIB = 64.0
"""The smallest memory limit a node writes, MiB (a container without a `mem` min gets it)."""


@dataclass(frozen=True)
class Subscription:
    """What subscribing a container takes from its host, or why it cannot.

    When `fits` is False, `reason` says why and the other fields are None: nothing
    is to be written.
    """

    fits: bool
    reason: str = ""
    container: Optional[Container] = None
    """The container with its `current` CPU and memory filled in (from `max` when absent)."""
    host: Optional[Host] = None
    """The host after the subscription: its core map, free shares and free MiB."""
    change: Optional[LimitChange] = None
    """The limits its node is to write: quota, cpuset, memory."""


@dataclass(frozen=True)
class Release:
    """What desubscribing a container gives back to its host."""

    host: Host
    """The host after the release."""
    cpu_shares: float
    """Shares freed on the host's cores (what its core map held for the container)."""
    mem_mib: float
    """MiB added to the host's free memory (capped so free never exceeds max)."""


def subscribe(container: Container, host: Host, distribution: list[str]) -> Subscription:
    """Place `container` on `host`: its memory first, then its shares on the cores.

    `distribution` is the host's core order (§4.6). Refused (fits False) when the
    host lacks the memory or the free shares, or the container already holds shares
    there. Neither input is changed.
    """
    c = container.model_copy(deep=True)
    cpu, mem = c.resources["cpu"], c.resources["mem"]
    if cpu.current is None:
        cpu.current = cpu.max
    if mem.current is None:
        mem.current = mem.max
    shares, mib = cpu.current or 0.0, mem.current or 0.0
    hcpu, hmem = host.resources["cpu"], host.resources["mem"]
    if hmem.free < mib:
        return Subscription(False, f"host {host.name} has {hmem.free:g} MiB free, {mib:g} needed")
    try:
        cores = allocate_cores(hcpu.core_usage_mapping or {}, c.name, shares, distribution)
    except ValueError as e:
        return Subscription(False, str(e))
    new_host = host.model_copy(deep=True)
    new_host.resources["cpu"].core_usage_mapping = cores.core_map
    new_host.resources["cpu"].free = hcpu.free - shares
    new_host.resources["mem"].free = hmem.free - mib
    change = LimitChange(cpu_allowance_limit=shares, cpu_num=cores.cpu_num, mem_limit=mib)
    return Subscription(True, "", c, new_host, change)


def release(container: Container, host: Host) -> Release:
    """Give the container's shares on every core and its `current` memory back to `host`.

    The shares are what the core map holds (the accounting's truth), not the
    container's `current`; the memory is its `current`, the host's free never above
    its max. `host` is not changed.
    """
    new_host = host.model_copy(deep=True)
    hcpu, hmem = new_host.resources["cpu"], new_host.resources["mem"]
    cmap = {core: dict(entry) for core, entry in (hcpu.core_usage_mapping or {}).items()}
    freed = 0.0
    for entry in cmap.values():
        held = entry.pop(container.name, 0.0)
        entry["free"] = entry.get("free", 0.0) + held
        freed += held
    hcpu.core_usage_mapping = cmap
    hcpu.free += freed
    mem_free = min(hmem.max, hmem.free + (container.resources["mem"].current or 0.0))
    given = mem_free - hmem.free
    hmem.free = mem_free
    return Release(new_host, freed, given)


def mem_margin_of(container: Container, limits: Optional[Limits]) -> float:
    """The container's memory margin from its limits' `mem` boundary, MiB; 0 without one.

    The planner keeps a memory limit at least this far above usage (§3.3, `policy.limits.margin`).
    """
    if limits is None or "mem" not in limits.resources:
        return 0.0
    lm = limits.resources["mem"]
    m = container.resources["mem"]
    return float(margin(lm.boundary, lm.boundary_type, m.max, m.current, "mem"))


def physical_of(container: Container, host: Host) -> ContainerLimits:
    """The limits the container's node should hold by the accounting: `current` quota and
    memory, and the cores the host's core map gives it (−1 where `current` is unset)."""
    cmap = host.resources["cpu"].core_usage_mapping or {}
    cores = [c for c, m in cmap.items() if m.get(container.name, 0) > 0]
    return ContainerLimits(
        cpu_allowance_limit=container.resources["cpu"].current or -1,
        cpu_num=",".join(sorted(cores, key=int)),
        mem_limit=container.resources["mem"].current or -1,
    )


def quota_and_memory_of(container: Container) -> ContainerLimits:
    """`physical_of` without the cores (no cpuset): what planning bases a change on. Looking
    the cores up walks the host's core map, which the planner does not need to."""
    return ContainerLimits(
        cpu_allowance_limit=container.resources["cpu"].current or -1,
        mem_limit=container.resources["mem"].current or -1,
    )


def bounds_of(container: Container) -> Bounds:
    """[min, max] of the container's CPU and memory, which its node checks every write against."""
    cpu, mem = container.resources["cpu"], container.resources["mem"]
    return Bounds(cpu=(cpu.min or 0.0, cpu.max if cpu.max is not None else float("inf")),
                  mem=(mem.min or MIN_MEM_MIB, mem.max if mem.max is not None else float("inf")))


__all__ = ["MIN_MEM_MIB", "Release", "Subscription", "bounds_of", "mem_margin_of", "physical_of",
           "quota_and_memory_of", "release", "subscribe"]
