"""Real-cgroup containers with real processes, removed after each test."""
from __future__ import annotations

import itertools
import subprocess
import sys
from pathlib import Path
from typing import Any

import ray

REPO = Path(__file__).resolve().parents[2]
_ids = itertools.count()


def container_doc(name: str, host: str, cpu=(25, 50, 200), mem=(64, 256, 512), guard: bool = False) -> dict[str, Any]:
    return {
        "name": name,
        "host": host,
        "guard": guard,
        "resources": {
            "cpu": {"min": cpu[0], "current": cpu[1], "max": cpu[2], "guard": guard},
            "mem": {"min": mem[0], "current": mem[1], "max": mem[2], "guard": guard},
        },
    }


class Containers:
    """Creates plain-cgroup containers on the test nodes and cleans them all up."""

    def __init__(self, stack):
        self.stack = stack
        self.names: list[str] = []
        self.hosts: dict[str, str] = {}
        """Container → the host it was created on (the head's host unless told)."""
        self.procs: list[subprocess.Popen] = []

    def create(self, prefix: str = "c", host: str | None = None) -> str:
        name = f"{prefix}{next(_ids)}"
        host = host or self.stack.host
        ray.get(self.stack.node_of(host).create_container.remote(name))
        self.names.append(name)
        self.hosts[name] = host
        return name

    def host_of(self, name: str) -> str:
        return self.hosts.get(name, self.stack.host)

    def run(self, name: str, args: list[str], wait_for_go: bool = False) -> subprocess.Popen:
        """Start a process and put it in the container's cgroup before it does work."""
        p = subprocess.Popen(args, cwd=REPO, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        self.procs.append(p)
        ray.get(self.stack.node_of(self.host_of(name)).attach.remote(name, p.pid))
        return p

    def busy_loop(self, name: str) -> subprocess.Popen:
        return self.run(name, [sys.executable, "-c", "while True: pass"])

    def load(self, name: str, phases: str, *extra: str) -> subprocess.Popen:
        p = self.run(name, [sys.executable, "-m", "cluster.tools.load", "--phases", phases, *extra])
        assert p.stdin is not None
        p.stdin.write("go\n")
        p.stdin.flush()
        return p

    def subscribe(self, name: str, **kw: Any) -> dict[str, Any]:
        return ray.get(self.stack.scaler.subscribe_container.remote(container_doc(name, self.host_of(name), **kw)))

    def guard(self, name: str, *resources: str) -> None:
        changes = {"guard": True, **{f"resources.{r}.guard": True for r in resources}}
        ray.get(self.stack.statedb.patch.remote("structures", name, changes))

    def cleanup(self) -> None:
        for p in self.procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        for name in self.names:
            try:
                if ray.get(self.stack.statedb.exists.remote("structures", name)):
                    ray.get(self.stack.scaler.desubscribe_container.remote(name))
            finally:
                self.stack.backend_of(self.host_of(name)).remove(name)
