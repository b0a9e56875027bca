"""Fixtures of the store's tests."""
from __future__ import annotations

import importlib.util
import os

import pytest

from sc_actors.store.journal import Journal


@pytest.fixture
def journal_cls():
    """Our `Journal`, or with `SC_JOURNAL_IMPL=<file>` that file's, e.g. the old journal:

        git show HEAD~N:sc_actors/store/journal.py > /tmp/old_journal.py
        SC_JOURNAL_IMPL=/tmp/old_journal.py pytest tests/store -k seen   # the seen bugs fail
    """
    impl = os.environ.get("SC_JOURNAL_IMPL")
    if not impl:
        return Journal
    spec = importlib.util.spec_from_file_location("old_journal", impl)
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod.Journal


# --------------------------------------------------------------------------- a plain State (no Ray)


class Clock:
    """A clock the test moves by hand: `clock()` is now, `clock.t = ...` moves it."""

    def __init__(self, t: float = 1000.0) -> None:
        self.t = t

    def __call__(self) -> float:
        return self.t


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def state(tmp_path, clock):
    """A fresh `State` on a journal in tmp_path (defaults seeded), its clock in the test's hands."""
    from sc_actors.store.state import State

    s = State.open(tmp_path, fsync=False, clock=clock)
    yield s
    s.docs.close()
