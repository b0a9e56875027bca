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


@pytest.fixture(scope="module")
def netns_cluster():
    """Three hosts in network namespaces (tests/cluster/netns.py), one Ray cluster, `sc up`.

    head, w1 and w2 each run Ray with cluster/configs/ray-start.sh on their own address
    (sc_host = the host's name, its own cgroup parent); `sc up --address` deploys from
    the head, and a Ray driver on the head answers the tests. Everything is removed
    after the session, also when a test fails or the bring-up does.
    """
    from tests.cluster.netns import NetnsCluster

    c = NetnsCluster(("head", "w1", "w2"))
    try:
        c.up()
        yield c
    finally:
        c.down()
