"""`sc` verbs through Typer's runner against the live API (reference §8 scripts → verbs)."""
from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

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


@pytest.mark.parametrize(
    "args, check",
    [
        pytest.param(["structure", "list", "--json"], lambda d: any(s["subtype"] == "host" for s in d), id="structures"),
        pytest.param(["host", "list", "--json"], lambda d: all(s["subtype"] == "host" for s in d), id="hosts"),
        pytest.param(["rule", "list", "--json"], lambda d: "CpuRescaleUp" in {r["name"] for r in d}, id="rules"),
        pytest.param(["rule", "get", "CpuRescaleUp", "--json"], lambda d: d["amount"] == 75, id="rule"),
        pytest.param(["service", "list", "--json"], lambda d: "guardian" in {s["name"] for s in d}, id="services"),
        pytest.param(["service", "get", "scaler", "--json"], lambda d: "REQUEST_TIMEOUT" in d["config"], id="service"),
        pytest.param(["user", "list", "--json"], lambda d: isinstance(d, list), id="users"),
        pytest.param(["app", "list", "--json"], lambda d: isinstance(d, list), id="apps"),
        pytest.param(["events", "--json"], lambda d: isinstance(d, list), id="events"),
        pytest.param(["requests", "--json", "--limit", "3"], lambda d: isinstance(d, list) and len(d) <= 3,
                     id="requests"),
    ],
)
def test_every_read_prints_json_for_scripts(sc, args, check):
    assert check(as_json(sc(*args)))


def test_tables_are_printed_without_json(sc):
    out = ok(sc("rule", "list")).stdout
    assert "CpuRescaleUp" in out and "rules" in out
    assert "guardian" in ok(sc("service", "list")).stdout


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


def test_application_and_user_verbs(sc, stack, containers):
    name = containers.create("cliapp")
    ok(sc("container", "subscribe", name, "--host", stack.host, "--cpu", "25,50,200", "--mem", "64,128,512"))
    try:
        ok(sc("app", "subscribe", "cliapp1", "--cpu", "20,400", "--mem", "128,2048"))
        ok(sc("app", "add", "cliapp1", name))
        assert as_json(sc("structure", "get", "cliapp1", "--json"))["containers"] == [name]
        ok(sc("structure", "state", "cliapp1", "running"))
        ok(sc("user", "subscribe", "cliuser1"))
        ok(sc("user", "add", "cliuser1", "cliapp1"))
        assert as_json(sc("user", "get", "cliuser1", "--json"))["clusters"] == ["cliapp1"]
        ok(sc("user", "set", "cliuser1", "cpu", "max", "3000"))
        ok(sc("user", "remove", "cliuser1", "cliapp1"))
        ok(sc("user", "desubscribe", "cliuser1"))
        ok(sc("app", "remove", "cliapp1", name))
        ok(sc("app", "desubscribe", "cliapp1"))
        assert not ray.get(stack.statedb.exists.remote("structures", "cliapp1"))
    finally:
        for coll, n in (("users", "cliuser1"), ("structures", "cliapp1"), ("limits", "cliapp1")):
            if ray.get(stack.statedb.exists.remote(coll, n)):
                ray.get(stack.statedb.delete.remote(coll, n))


def test_service_verbs_as_the_scripts(sc, stack):
    before = ray.get(stack.statedb.get.remote("services", "guardian"))["config"]
    try:
        out = ok(sc("service", "set", "guardian", "WINDOW_TIMELAPSE", "0.75")).stdout
        assert "0.75" in out
        ok(sc("service", "set", "guardian", "GUARDABLE_RESOURCES", "cpu", "mem"))
        ok(sc("service", "deactivate", "scaler"))
        assert ray.get(stack.statedb.get.remote("services", "scaler"))["config"]["ACTIVE"] is False
        ok(sc("service", "activate", "scaler"))
        cfg = ray.get(stack.statedb.get.remote("services", "guardian"))["config"]
        assert cfg["WINDOW_TIMELAPSE"] == 0.75 and cfg["GUARDABLE_RESOURCES"] == ["cpu", "mem"]
        assert ray.get(stack.statedb.get.remote("services", "scaler"))["config"]["ACTIVE"] is True
    finally:
        ray.get(stack.statedb.patch.remote("services", "guardian", {f"config.{k}": v for k, v in before.items()}))


def test_rule_verbs_as_the_scripts(sc, stack):
    before = ray.get(stack.statedb.get.remote("rules", "MemRescaleUp"))
    try:
        ok(sc("rule", "deactivate", "MemRescaleUp"))
        ok(sc("rule", "activate", "MemRescaleUp"))
        ok(sc("rule", "amount", "MemRescaleUp", "300"))
        ok(sc("rule", "policy", "MemRescaleUp", "proportional"))
        out = ok(sc("rule", "events", "MemRescaleUp", "down", "5")).stdout
        assert "removes 2" in out
        rule = ray.get(stack.statedb.get.remote("rules", "MemRescaleUp"))
        assert (rule["amount"], rule["rescale_policy"], rule["active"]) == (300, "proportional", True)
    finally:
        ray.get(stack.statedb.put.remote("rules", before))


def test_mode_untreated_then_serverless(sc, stack, containers):
    name = containers.create("climode")
    ok(sc("container", "subscribe", name, "--host", stack.host, "--cpu", "25,50,200", "--mem", "64,128,512",
          "--guard"))
    try:
        ok(sc("mode", "untreated"))
        doc = ray.get(stack.statedb.get.remote("structures", name))
        assert not doc["guard"] and not doc["resources"]["cpu"]["guard"] and not doc["resources"]["mem"]["guard"]
        assert ray.get(stack.statedb.get.remote("services", "scaler"))["config"]["ACTIVE"] is False
        assert ray.get(stack.statedb.get.remote("rules", "CpuRescaleUp"))["active"] is False
    finally:
        ok(sc("mode", "serverless"))
    doc = ray.get(stack.statedb.get.remote("structures", name))
    assert doc["guard"] and doc["resources"]["cpu"]["guard"] and doc["resources"]["mem"]["guard"]
    for service in ("guardian", "scaler"):
        assert ray.get(stack.statedb.get.remote("services", service))["config"]["ACTIVE"] is True
    assert ray.get(stack.statedb.get.remote("rules", "CpuRescaleDown"))["active"] is True
    assert ray.get(stack.statedb.get.remote("services", "guardian"))["config"]["STRUCTURE_GUARDED"] == "container"


def test_watch_renders_a_frame(sc, stack, containers):
    name = containers.create("cliwatch")
    ok(sc("container", "subscribe", name, "--host", stack.host, "--cpu", "25,50,200", "--mem", "64,128,512"))
    out = ok(sc("watch", "--count", "1")).stdout
    assert name in out and "│" in out


# ---------------------------------------------------------------- errors


def test_an_api_error_is_one_line_on_stderr_and_exit_1(sc):
    r = sc("structure", "get", "nosuch")
    assert r.exit_code == 1
    assert r.stderr.strip().count("\n") == 0 and "not found" in r.stderr


def test_a_change_without_the_token_says_how_to_give_it(sc):
    r = sc("service", "activate", "guardian", token=False)
    assert r.exit_code == 1 and "SC_API_TOKEN" in r.stderr


def test_an_unreachable_api_exits_2():
    r = runner.invoke(cli.app, ["--url", "http://127.0.0.1:9", "status"])
    assert r.exit_code == 2 and "cannot reach" in r.stderr


def test_bad_arguments_are_refused_before_any_request(sc):
    r = sc("container", "subscribe", "x", "--host", "h", "--cpu", "1")
    assert r.exit_code == 1 and "MIN" in r.stderr


def test_the_state_file_is_the_one_sc_up_writes():
    from cluster.local import STATE_FILE

    assert cli._state_file() == STATE_FILE


def test_api_verbs_do_not_import_ray_and_answer_fast(api):
    code = ("import sys, time; t = time.perf_counter(); import cli\n"
            "try:\n    cli.app(['--url', sys.argv[1], 'status', '--json'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "assert 'ray' not in sys.modules and 'fastapi' not in sys.modules, 'heavy import'\n"
            "print(time.perf_counter() - t, file=sys.stderr)")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, api.url], capture_output=True, text=True,
                         cwd=Path(cli.__file__).parent, timeout=60)
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    json.loads(out.stdout)
    assert wall < 3.0, wall  # generous for a loaded 2-core machine; measured median is reported in the note


def test_shell_completion_is_offered_and_completes_verbs():
    r = runner.invoke(cli.app, ["--show-completion", "bash"])
    assert r.exit_code == 0 and "complete" in r.stdout
    env = {"_SC_COMPLETE": "complete_bash", "COMP_WORDS": "sc service act", "COMP_CWORD": "2"}
    r = runner.invoke(cli.app, [], prog_name="sc", env=env)
    assert r.exit_code == 0 and r.stdout.split() == ["activate"]


def test_mode_serverless_for_applications_guards_them_and_switches_the_guardian(sc, stack):
    ok(sc("app", "subscribe", "climodeapp", "--cpu", "20,400", "--mem", "128,2048"))
    try:
        ok(sc("mode", "serverless", "--scope", "application", "--resources", "cpu"))
        doc = ray.get(stack.statedb.get.remote("structures", "climodeapp"))
        assert doc["guard"] and doc["resources"]["cpu"]["guard"] and not doc["resources"]["mem"]["guard"]
        cfg = ray.get(stack.statedb.get.remote("services", "guardian"))["config"]
        assert cfg["STRUCTURE_GUARDED"] == "application"
    finally:
        ok(sc("mode", "serverless"))
        ok(sc("app", "desubscribe", "climodeapp"))
    assert ray.get(stack.statedb.get.remote("services", "guardian"))["config"]["STRUCTURE_GUARDED"] == "container"


def test_profile_shows_the_one_in_force_and_refuses_an_unknown_one(sc):
    out = ok(sc("profile")).stdout
    assert "profile: adaptive" in out and "original: cpu 10 % (percentage_of_max)" in out
    assert as_json(sc("profile", "--json"))["profile"] == "adaptive"
    r = sc("profile", "fastest")
    assert r.exit_code == 1 and "unknown profile" in r.stderr
    assert as_json(sc("profile", "--json"))["profile"] == "adaptive"
