"""Node backends: the only code that reads and writes container limits (STYLE §6.9).

`make_backend` picks one by the ContainerScaler's `backend` setting.
"""
from __future__ import annotations

from .base import ContainerBackend, ContainerNotFound, LimitRefused, UsageCounters, is_cgroup_v1_root
from .cgroup_v1 import CgroupV1Backend
from .cgroup_v2 import CgroupV2Backend

__all__ = [
    "ContainerBackend",
    "ContainerNotFound",
    "LimitRefused",
    "UsageCounters",
    "CgroupV1Backend",
    "CgroupV2Backend",
    "is_cgroup_v1_root",
    "make_backend",
]

KINDS = ("cgroup_v1", "cgroup_v2", "lxc", "synthetic", "auto")


def make_backend(kind: str, root: str = "/sys/fs/cgroup", parent: str = "serverless",
                 cpu_burst_percent: float = 0.0) -> ContainerBackend:
    """The backend of `kind`; "auto" is v1 when `root` has a cgroup v1 cpu mount, else v2.

    "auto" never picks "lxc": a node scales LXC containers only when configured so
    (`sc up --backend lxc`, or the node label `sc_backend=lxc`). `parent` is for the
    plain-cgroup backends; the LXC backend finds containers by their LXC names.
    `cpu_burst_percent`: the CFS burst each quota write sets on the cgroup backends.
    """
    if kind == "auto":
        kind = "cgroup_v1" if is_cgroup_v1_root(root) else "cgroup_v2"
    if kind == "cgroup_v1":
        return CgroupV1Backend(root=root, parent=parent, cpu_burst_percent=cpu_burst_percent)
    if kind == "cgroup_v2":
        return CgroupV2Backend(root=root, parent=parent, cpu_burst_percent=cpu_burst_percent)
    if kind == "lxc":
        # Imported here: only nodes configured for LXC need the `lxc` bindings.
        from .lxc import LxcBackend

        return LxcBackend(root=root, cgroup_v1=is_cgroup_v1_root(root))
    if kind == "synthetic":
        from .synthetic import SyntheticBackend  # simulated containers, scale benchmark only

        return SyntheticBackend(seed=parent)
    raise ValueError(f"unknown backend kind {kind!r}; expected one of {', '.join(KINDS)}")

