"""Checks every backend must pass, called by each backend's test module with its own fixture."""
from __future__ import annotations

import pytest

from sc_actors.backends.base import ContainerBackend, ContainerNotFound
from sc_actors.model import LimitChange


def unknown_container_raises_container_not_found(backend: ContainerBackend) -> None:
    """Reads and writes of a name the node does not have raise ContainerNotFound (a KeyError)."""
    with pytest.raises(ContainerNotFound):
        backend.read_limits("nope")
    with pytest.raises(ContainerNotFound):
        backend.write_limits("nope", LimitChange(mem_limit=256))
    with pytest.raises(ContainerNotFound):
        backend.read_counters("nope")
    with pytest.raises(KeyError):
        backend.read_limits("nope")


def memory_alone_matches_the_counters(backend: ContainerBackend, name: str) -> None:
    """`read_memory_many` gives what `read_counters` says of memory (the same files), and leaves
    out a container it does not have, as `read_counters_many` does."""
    from cluster.deploy import wait_for

    # Memory may move between two reads: they are compared until a pair agrees within 1 MiB.
    wait_for(lambda: abs(backend.read_memory_many([name])[name] - backend.read_counters(name).mem_bytes) <= 2**20,
             10, what="a memory read alone to agree with the counters'")
    assert set(backend.read_memory_many([name, "nope"])) == {name}
