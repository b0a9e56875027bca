"""Fixtures of the multi-node tests: extra nodes on the session cluster."""
from __future__ import annotations

import pytest


@pytest.fixture
def extra_nodes(stack):
    """Nodes this test adds to the session cluster; removed (with their hosts) after it.

    Ask for it before `containers`, so that the containers go first.
    """
    from tests.cluster.nodes import ExtraNodes

    nodes = ExtraNodes(stack)
    try:
        yield nodes
    finally:
        nodes.cleanup()
