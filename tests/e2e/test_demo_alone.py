"""Two demos on one machine do not remove each other's containers (issue 14, README walk).

Both use demo-a and demo-b under the cgroup parent `serverless`: a second demo
started while one runs removed the first one's cgroups as leftovers, and the first
one died with a traceback (`ContainerNotFound: no container 'demo-a'`). The demo
now holds a lock for its whole run; a second one says so in one line and exits 1,
and a container removed from outside ends the demo with one line too.
"""
from __future__ import annotations

import pytest
from typer.testing import CliRunner

import cli
from cluster.tools import demo
from sc_actors.backends.base import ContainerNotFound


def test_a_second_demo_is_refused_while_the_first_holds_the_lock(tmp_path):
    lock = tmp_path / "demo.lock"
    first = demo._exclusive(lock)
    try:
        with pytest.raises(demo.DemoBusy, match="another `sc demo` is running"):
            demo._exclusive(lock)
    finally:
        first.close()
    demo._exclusive(lock).close()  # free again once the first has ended


@pytest.mark.parametrize(
    "error, words",
    [
        pytest.param(demo.DemoBusy("another `sc demo` is running on this machine"), "another `sc demo`", id="busy"),
        pytest.param(ContainerNotFound("no container 'demo-a' under 'serverless'"), "removed from outside",
                     id="container-vanished"),
    ],
)
def test_sc_demo_ends_with_one_line_and_exit_1(monkeypatch, error, words):
    def run(**kwargs):
        raise error

    monkeypatch.setattr(demo, "run", run)
    result = CliRunner().invoke(cli.app, ["demo"])
    assert result.exit_code == 1, result.output
    assert words in result.output and "Traceback" not in result.output
    assert len([line for line in result.output.splitlines() if line.strip()]) == 1, result.output
