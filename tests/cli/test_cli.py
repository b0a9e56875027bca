"""`sc` verbs through Typer's runner against the live API (reference §8 scripts → verbs).

Every verb is tested against the API in this process (test_cli_fast.py); here what
needs the live stack: a real subscription's limits in its cgroup and in `sc status`,
and the token of the deployed API.
"""
from __future__ import annotations

import json

import pytest
import ray
from typer.testing import CliRunner

import cli

runner = CliRunner()


@pytest.fixture
def sc(api):
    """Run `sc ARGS…` against the live API; returns the result."""
    def run(*args: str, token: bool = True):
        opts = ["--url", api.url] + (["--token", api.token] if token else [])
        return runner.invoke(cli.app, [*opts, *args], catch_exceptions=False,
                             env={"SC_API_TOKEN": "", "COLUMNS": "200"})
    return run


def ok(result):
    assert result.exit_code == 0, (result.output, result.stderr)
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


# ---------------------------------------------------------------- reads and --json


def test_status_json_lists_each_container_resource(sc, stack, containers):
    name = containers.create("clistat")
    ok(sc("container", "subscribe", name, "--host", stack.host, "--cpu", "25,60,200", "--mem", "64,128,512"))
    rows = [r for r in as_json(sc("status", "--json")) if r["container"] == name]
    assert {(r["resource"], r["current"]) for r in rows} == {("cpu", 60), ("mem", 128)}
    table = ok(sc("status")).stdout
    assert name in table and "services:" in table


# ---------------------------------------------------------------- the scripts' verbs


def test_container_verbs_subscribe_guard_set_limits_and_desubscribe(sc, stack, containers):
    name = containers.create("cli")
    out = ok(sc("container", "subscribe", name, "--host", stack.host, "--cpu", "25,50,200", "--mem", "64,128,512"))
    assert "subscribed" in out.stdout
    assert stack.backend.read_limits(name).cpu_allowance_limit == 50
    ok(sc("structure", "guard", name, "cpu", "mem"))
    ok(sc("structure", "guard", name))
    doc = as_json(sc("structure", "get", name, "--json"))
    assert doc["guard"] and doc["resources"]["cpu"]["guard"] and doc["resources"]["mem"]["guard"]
    ok(sc("structure", "unguard", name))
    ok(sc("structure", "unguard", name, "cpu", "mem"))
    ok(sc("structure", "set", name, "cpu", "max", "180"))
    assert as_json(sc("structure", "resources", name, "cpu", "max", "--json")) == 180
    ok(sc("limits", "boundary", name, "cpu", "20"))
    ok(sc("limits", "boundary-type", name, "cpu", "percentage_of_current"))
    lim = as_json(sc("limits", "get", name, "cpu", "--json"))
    assert (lim["boundary"], lim["boundary_type"]) == (20, "percentage_of_current")
    assert "boundary" in ok(sc("limits", "get", name)).stdout
    ok(sc("container", "desubscribe", name))
    assert not ray.get(stack.statedb.exists.remote("structures", name))


# ---------------------------------------------------------------- errors


def test_a_change_without_the_token_says_how_to_give_it(sc):
    r = sc("service", "activate", "guardian", token=False)
    assert r.exit_code == 1 and "SC_API_TOKEN" in r.stderr


def test_an_unreachable_api_exits_2():
    r = runner.invoke(cli.app, ["--url", "http://127.0.0.1:9", "status"])
    assert r.exit_code == 2 and "cannot reach" in r.stderr


def test_the_state_file_is_the_one_sc_up_writes():
    from cluster.local import STATE_FILE

    assert cli._state_file() == STATE_FILE


def test_shell_completion_is_offered_and_completes_verbs():
    assert "--install-completion" in runner.invoke(cli.app, ["--help"], env={"COLUMNS": "200"}).stdout
    # The script --show-completion prints for bash. (`--show-completion bash` detects the shell from
    # the parent processes and ignores the word `bash`: it fails where no shell is among them.)
    r = runner.invoke(cli.app, [], prog_name="sc", env={"_SC_COMPLETE": "source_bash"})
    assert r.exit_code == 0 and "complete -o default -F _sc_completion sc" in r.stdout, r.output[-500:]
    env = {"_SC_COMPLETE": "complete_bash", "COMP_WORDS": "sc service act", "COMP_CWORD": "2"}
    r = runner.invoke(cli.app, [], prog_name="sc", env=env)
    assert r.exit_code == 0 and r.stdout.split() == ["activate"]