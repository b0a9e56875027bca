"""Real LXC containers (busybox template, offline, no network) for the LXC tests.

Needs root, the Debian packages lxc, lxc-dev and busybox-static, and the `lxc`
Python bindings (cluster/bootstrap.sh installs all of them). Every container a test
creates is destroyed after it, also when the test fails.
"""
from __future__ import annotations

import itertools
import subprocess
import uuid

import pytest

_SESSION = uuid.uuid4().hex[:6]
_ids = itertools.count()


class LxcContainers:
    """Busybox containers of one test, made through `backend`, with the processes run inside."""

    def __init__(self, backend):
        self.backend = backend
        self.names: list[str] = []
        self.procs: list[subprocess.Popen] = []

    def new_name(self, prefix: str = "sclxc") -> str:
        name = f"{prefix}-{_SESSION}-{next(_ids)}"
        self.names.append(name)
        return name

    def create(self, prefix: str = "sclxc") -> str:
        name = self.new_name(prefix)
        self.backend.create(name)
        return name

    def run(self, name: str, script: str) -> subprocess.Popen:
        """`sh -c script` inside the container, through lxc-attach."""
        p = subprocess.Popen(self.backend.attach_argv(name, ["sh", "-c", script]),
                             stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.procs.append(p)
        return p

    def busy_loop(self, name: str) -> subprocess.Popen:
        return self.run(name, "while :; do :; done")

    def cleanup(self) -> None:
        errors = []
        for name in self.names:
            try:
                # Destroying the container kills what runs inside; lxc-attach then exits.
                self.backend.remove(name)
            except Exception as e:
                errors.append(f"{name}: {e}")
        for p in self.procs:
            if p.poll() is None:
                p.kill()
            p.wait(timeout=10)
        assert not errors, errors


@pytest.fixture(scope="session")
def lxc_backend():
    from sc_actors.backends import make_backend

    return make_backend("lxc")


@pytest.fixture
def lxc_containers(lxc_backend):
    c = LxcContainers(lxc_backend)
    try:
        yield c
    finally:
        c.cleanup()
