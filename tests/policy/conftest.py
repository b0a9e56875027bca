"""Policy unit tests: pure functions, no Ray (as Ray Serve's `tests/unit/conftest.py`)."""
from __future__ import annotations

import pathlib
import sys

import pytest

# `tests.builders` must import however pytest was started (plain `pytest` or `python -m pytest`).
_ROOT = str(pathlib.Path(__file__).resolve().parents[2])
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)


@pytest.fixture(autouse=True)
def disallow_ray_init(monkeypatch: pytest.MonkeyPatch) -> None:
    """Any `ray.init` from a policy test fails loudly."""
    try:
        import ray
    except ImportError:  # Ray missing: nothing can start it either.
        return

    def raise_on_init(*args: object, **kwargs: object) -> None:
        raise RuntimeError("Policy unit tests should not depend on Ray being initialized.")

    monkeypatch.setattr(ray, "init", raise_on_init)
