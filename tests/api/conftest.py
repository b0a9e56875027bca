"""Fixtures of the route tests: the live API on the session's Ray (`api`, `http`, from
tests/api/live.py, shared with tests/cli) and the same app in this process (`served`)."""
from __future__ import annotations

import pytest

from tests.api.inprocess import Served
from tests.api.live import api, http  # noqa: F401  (session fixtures shared with tests/cli)


@pytest.fixture
def served(tmp_path):
    """The API app over a real StateDB in this process (tests/api/inprocess.py)."""
    with Served(str(tmp_path)) as served:
        yield served


@pytest.fixture
def unchanged(served):
    """Call `unchanged(response, status, words)`: the status, the message, and nothing stored changed."""
    before = served.snapshot()

    def check(response, status, words=""):
        assert response.status_code == status, response.text
        message = response.json()["message"]
        assert isinstance(message, str) and words.lower() in message.lower(), response.json()
        assert served.snapshot() == before
    return check
