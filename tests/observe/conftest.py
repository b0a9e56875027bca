import contextlib
from typing import Iterator

import pytest

from tests.api.live import api, http  # noqa: F401  (session fixtures shared with tests/api and tests/cli)


@pytest.fixture
def busy_guarded(containers):
    """A context: a new container, subscribed at 50 CPU shares (25..200) with its CPU guarded,
    running a CPU loop; yields its name, the loop killed at the end."""

    @contextlib.contextmanager
    def start(prefix: str) -> Iterator[str]:
        name = containers.create(prefix)
        containers.subscribe(name, cpu=(25, 50, 200))
        containers.guard(name, "cpu")
        proc = containers.busy_loop(name)
        try:
            yield name
        finally:
            proc.kill()
            proc.wait()

    return start
