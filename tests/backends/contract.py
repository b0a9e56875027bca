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
