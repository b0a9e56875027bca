"""`sc` verbs through Typer's runner against the real API app in this process (no Ray).

The app runs over a real StateDB on a real HTTP port (tests/api/inprocess.py), so
each verb goes through `serve.client` and urllib as it does against `sc up`'s API;
what each verb changed is read back from the StateDB. What needs the real stack (a
cgroup's limits, `sc doctor` on live services) stays in test_cli.py / test_doctor.py.
"""
from __future__ import annotations

import json
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest
from typer.testing import CliRunner

import cli
from serve.client import Client, container_body
from tests.api.inprocess import Listening, Served

runner = CliRunner()


@pytest.fixture
def served(tmp_path):
    s = Served(str(tmp_path), token="s3cret")
    s.nodes["h0"].containers.add("c1")
    return s


@pytest.fixture
def url(served):
    listening = Listening(served)
    yield listening.url
    listening.close()


def _sc(url):
    def run(*args: str, token: bool = True):
        opts = ["--url", url] + (["--token", "s3cret"] if token else [])
        return runner.invoke(cli.app, [*opts, *args], catch_exceptions=False,
                             env={"SC_API_TOKEN": "", "COLUMNS": "200"})
    return run


@pytest.fixture
def sc(url):
    """Run `sc ARGS…` against the in-process API; returns the result."""
    return _sc(url)


@pytest.fixture(scope="module")
def read(tmp_path_factory):
    """`sc` against one API for the module's reads (they change nothing)."""
    listening = Listening(Served(str(tmp_path_factory.mktemp("reads")), token="s3cret", own_app=True))
    yield _sc(listening.url)
    listening.close()


def ok(result):
    assert result.exit_code == 0, (result.output, result.stderr)
    return result


def as_json(result):
    return json.loads(ok(result).stdout)


# ---------------------------------------------------------------- reads and --json


@pytest.mark.parametrize(
    "args, check",
    [
        pytest.param(["status", "--json"], lambda d: {(r["container"], r["resource"]) for r in d}
                     == {("c0", "cpu"), ("c0", "mem")}, id="status"),
        pytest.param(["structure", "list", "--json"], lambda d: {s["name"] for s in d} == {"h0", "c0"},
                     id="structures"),
        pytest.param(["structure", "get", "c0", "--json"], lambda d: d["host"] == "h0", id="structure"),
        pytest.param(["structure", "resources", "c0", "--json"], lambda d: d["cpu"]["max"] == 200, id="resources"),
        pytest.param(["structure", "resources", "c0", "cpu", "min", "--json"], lambda d: d == 10, id="parameter"),
        pytest.param(["container", "list", "--json"], lambda d: [s["name"] for s in d] == ["c0"], id="containers"),
        pytest.param(["host", "list", "--json"], lambda d: [s["name"] for s in d] == ["h0"], id="hosts"),
        pytest.param(["limits", "get", "c0", "--json"], lambda d: d["cpu"]["boundary"] == 10, id="limits"),
        pytest.param(["limits", "get", "c0", "mem", "--json"], lambda d: d["boundary"] == 10, id="limit"),
        pytest.param(["rule", "list", "--json"], lambda d: "CpuRescaleUp" in {r["name"] for r in d}, id="rules"),
        pytest.param(["rule", "get", "CpuRescaleUp", "--json"], lambda d: d["amount"] == 75, id="rule"),
        pytest.param(["service", "list", "--json"], lambda d: "guardian" in {s["name"] for s in d}, id="services"),
        pytest.param(["service", "get", "scaler", "--json"], lambda d: "REQUEST_TIMEOUT" in d["config"], id="service"),
        pytest.param(["user", "list", "--json"], lambda d: d == [], id="users"),
        pytest.param(["app", "list", "--json"], lambda d: d == [], id="apps"),
        pytest.param(["events", "--json"], lambda d: d == [], id="events"),
        pytest.param(["requests", "--json", "--limit", "3"], lambda d: d == [], id="requests"),
        pytest.param(["doctor", "--json"], lambda d: d["ok"] is True and d["problems"] == [], id="doctor"),
        pytest.param(["profile", "--json"], lambda d: d["profile"] == "adaptive", id="profile"),
    ],
)
def test_every_read_prints_json_for_scripts(read, args, check):
    assert check(as_json(read(*args)))


def test_tables_are_printed_without_json(read):
    out = ok(read("status")).stdout
    assert "c0" in out and "services: guardian on" in out and "health: no problem found" in out
    assert "CpuRescaleUp" in ok(read("rule", "list")).stdout
    assert "guardian" in ok(read("service", "list")).stdout
    assert "percentage_of_max" in ok(read("limits", "get", "c0")).stdout
    assert "400" in ok(read("host", "list")).stdout
    assert "original: cpu 10 % (percentage_of_max)" in ok(read("profile")).stdout


def test_watch_renders_a_frame(read):
    out = ok(read("watch", "--count", "1")).stdout
    assert "c0" in out and "│" in out


# ---------------------------------------------------------------- the scripts' verbs


def test_container_verbs_subscribe_guard_set_limits_and_desubscribe(sc, served):
    out = ok(sc("container", "subscribe", "c1", "--host", "h0", "--cpu", "25,50,200", "--mem", "64,128,512"))
    assert "c1 subscribed on h0: cpu 50 shares, mem 128 MiB" in out.stdout
    assert served.doc("limits", "c1")["resources"]["cpu"] == {"boundary": 10, "boundary_type": "percentage_of_max"}
    ok(sc("structure", "guard", "c1", "cpu", "mem"))
    ok(sc("structure", "guard", "c1"))
    doc = served.doc("structures", "c1")
    assert doc["guard"] and doc["resources"]["cpu"]["guard"] and doc["resources"]["mem"]["guard"]
    ok(sc("structure", "unguard", "c1"))
    ok(sc("structure", "unguard", "c1", "cpu", "mem"))
    doc = served.doc("structures", "c1")
    assert not doc["guard"] and not doc["resources"]["cpu"]["guard"] and not doc["resources"]["mem"]["guard"]
    ok(sc("structure", "set", "c1", "cpu", "max", "180"))
    assert served.doc("structures", "c1")["resources"]["cpu"]["max"] == 180
    ok(sc("limits", "boundary", "c1", "cpu", "20"))
    ok(sc("limits", "boundary-type", "c1", "cpu", "percentage_of_current"))
    assert served.doc("limits", "c1")["resources"]["cpu"] == {"boundary": 20, "boundary_type": "percentage_of_current"}
    ok(sc("container", "desubscribe", "c1"))
    assert not served.db.exists("structures", "c1")


def test_a_whole_body_is_sent_as_given(sc, served, tmp_path):
    body = tmp_path / "c1.json"
    body.write_text(json.dumps(container_body("c1", "h0", (25, 60, 200), (64, 128, 512), 15, True)))
    ok(sc("container", "subscribe", "c1", "--body", f"@{body}"))
    assert served.doc("structures", "c1")["resources"]["cpu"]["current"] == 60
    assert served.doc("limits", "c1")["resources"]["mem"]["boundary"] == 15


def test_host_verbs_subscribe_with_the_nodes_warning_and_desubscribe(sc, served):
    from tests.api.inprocess import LocalNode

    served.nodes["h1"] = LocalNode("h1", cores=2, mem_mib=4096)
    r = ok(sc("host", "subscribe", "h1", "--cpu", "800", "--mem", "2048"))
    assert "warning: cpu max 800 shares cut to 200" in r.stderr and "host h1 subscribed" in r.stdout
    assert served.doc("structures", "h1")["resources"]["cpu"]["max"] == 200
    ok(sc("host", "desubscribe", "h1"))
    assert not served.db.exists("structures", "h1")


def test_application_and_user_verbs(sc, served):
    ok(sc("app", "subscribe", "app1", "--cpu", "20,400", "--mem", "128,2048"))
    assert served.doc("limits", "app1")["resources"]["cpu"]["boundary"] == 5
    ok(sc("app", "add", "app1", "c0"))
    assert served.doc("structures", "app1")["containers"] == ["c0"]
    ok(sc("structure", "state", "app1", "running"))
    assert served.doc("structures", "app1")["state"] == "running"
    ok(sc("user", "subscribe", "user1"))
    ok(sc("user", "add", "user1", "app1"))
    assert served.doc("users", "user1")["clusters"] == ["app1"]
    ok(sc("user", "set", "user1", "cpu", "max", "3000"))
    assert served.doc("users", "user1")["resources"]["cpu"]["max"] == 3000
    ok(sc("user", "remove", "user1", "app1"))
    assert served.doc("users", "user1")["clusters"] == []
    ok(sc("user", "desubscribe", "user1"))
    assert not served.db.exists("users", "user1")
    ok(sc("app", "remove", "app1", "c0"))
    assert served.doc("structures", "app1")["containers"] == []
    ok(sc("app", "desubscribe", "app1"))
    assert not served.db.exists("structures", "app1")


def test_service_verbs_as_the_scripts(sc, served):
    out = ok(sc("service", "set", "guardian", "WINDOW_TIMELAPSE", "0.75")).stdout
    assert "guardian: WINDOW_TIMELAPSE = 0.75" in out
    ok(sc("service", "set", "guardian", "GUARDABLE_RESOURCES", "cpu", "mem"))
    ok(sc("service", "deactivate", "scaler"))
    assert served.doc("services", "scaler")["config"]["ACTIVE"] is False
    ok(sc("service", "activate", "scaler"))
    cfg = served.doc("services", "guardian")["config"]
    assert cfg["WINDOW_TIMELAPSE"] == 0.75 and cfg["GUARDABLE_RESOURCES"] == ["cpu", "mem"]
    assert served.doc("services", "scaler")["config"]["ACTIVE"] is True


def test_a_setting_under_which_a_rule_can_never_fire_is_warned_about_and_reported(sc):
    r = ok(sc("service", "set", "guardian", "WINDOW_TIMELAPSE", "1"))
    assert "warning: rule CpuRescaleDown can never fire: it needs 6 down cpu events" in r.stderr
    doctor = sc("doctor")
    assert doctor.exit_code == 3
    assert any(line.startswith("rule CpuRescaleDown can never fire") for line in doctor.stdout.splitlines())


def test_rule_verbs_as_the_scripts(sc, served):
    r = ok(sc("rule", "deactivate", "cpu_dropped_lower"))
    assert "warning: rule CpuRescaleDown can never fire" in r.stderr
    ok(sc("rule", "activate", "cpu_dropped_lower"))
    ok(sc("rule", "amount", "MemRescaleUp", "300"))
    ok(sc("rule", "policy", "MemRescaleUp", "proportional"))
    out = ok(sc("rule", "events", "MemRescaleUp", "down", "5")).stdout
    assert "removes 2 when it fires" in out
    rule = served.doc("rules", "MemRescaleUp")
    assert (rule["amount"], rule["rescale_policy"], rule["active"]) == (300, "proportional", True)
    assert served.doc("rules", "cpu_dropped_lower")["active"] is True


def test_a_negative_amount_reaches_the_api_which_refuses_it(sc, served):
    r = sc("rule", "amount", "CpuRescaleUp", "-5")
    assert r.exit_code == 1 and "must be > 0" in r.stderr and "No such option" not in r.output
    assert served.doc("rules", "CpuRescaleUp")["amount"] == 75


def test_mode_untreated_then_serverless_for_applications(sc, served):
    ok(sc("app", "subscribe", "app1"))
    ok(sc("mode", "untreated"))
    doc = served.doc("structures", "c0")
    assert not doc["guard"] and not doc["resources"]["cpu"]["guard"] and not doc["resources"]["mem"]["guard"]
    assert served.doc("services", "scaler")["config"]["ACTIVE"] is False
    assert served.doc("rules", "CpuRescaleUp")["active"] is False
    ok(sc("mode", "serverless", "--scope", "application", "--resources", "cpu"))
    doc = served.doc("structures", "app1")
    assert doc["guard"] and doc["resources"]["cpu"]["guard"] and not doc["resources"]["mem"]["guard"]
    assert served.doc("services", "guardian")["config"]["STRUCTURE_GUARDED"] == "application"
    assert served.doc("rules", "CpuRescaleUp")["active"] and not served.doc("rules", "MemRescaleUp")["active"]
    ok(sc("mode", "serverless"))
    doc = served.doc("structures", "c0")
    assert doc["guard"] and doc["resources"]["cpu"]["guard"] and doc["resources"]["mem"]["guard"]
    assert served.doc("services", "guardian")["config"]["STRUCTURE_GUARDED"] == "container"
    assert served.doc("services", "scaler")["config"]["ACTIVE"] is True


def test_profile_is_applied_and_an_unknown_one_refused(sc, served):
    out = ok(sc("profile", "original", "--timing", "original")).stdout
    assert "profile original, timing original: 0 containers' limits changed" in out
    assert as_json(sc("profile", "--json"))["profile"] == "original"
    r = sc("profile", "fastest")
    assert r.exit_code == 1 and "unknown profile" in r.stderr
    assert as_json(sc("profile", "--json"))["profile"] == "original"


# ---------------------------------------------------------------- errors


def test_an_api_error_is_one_line_on_stderr_and_exit_1(read):
    r = read("structure", "get", "nosuch")
    assert r.exit_code == 1
    assert r.stderr.strip().count("\n") == 0 and "structure 'nosuch' not found [404 GET /structure/nosuch]" in r.stderr


def test_a_change_without_the_token_says_how_to_give_it_and_changes_nothing(sc, served):
    before = served.snapshot()
    r = sc("service", "activate", "guardian", token=False)
    assert r.exit_code == 1 and "SC_API_TOKEN" in r.stderr and "401" in r.stderr
    assert served.snapshot() == before


@pytest.mark.parametrize(
    "args, words",
    [
        pytest.param(["container", "subscribe", "x", "--host", "h", "--cpu", "1"], "MIN", id="cpu-not-a-triple"),
        pytest.param(["container", "subscribe", "x"], "--host", id="no-host"),
        pytest.param(["host", "subscribe", "x", "--cpu", "100"], "--mem", id="no-mem"),
        pytest.param(["structure", "set", "c0", "cpu", "max", "lots"], "not a number", id="not-a-number"),
        pytest.param(["container", "subscribe", "x", "--body", "{nope"], "not JSON", id="body-not-json"),
        pytest.param(["mode", "sideways"], "unknown mode", id="unknown-mode"),
    ],
)
def test_bad_arguments_are_refused_before_any_request(sc, served, args, words):
    before = served.snapshot()
    r = sc(*args)
    assert r.exit_code == 1 and words in r.stderr
    assert served.snapshot() == before


# ---------------------------------------------------------------- the client


def test_the_client_quotes_every_name_it_puts_in_a_url(served, url):
    # A name with '/' or '?' would reach another route or a query if not quoted: the API
    # sees one path segment and refuses the name itself.
    c = Client(url, "s3cret")
    for name in ("c0/guard", "c0?subtype=host", "../h0"):
        with pytest.raises(Exception) as e:
            c.guard(name)
        assert getattr(e.value, "status", None) in (404, 422), e.value
    assert served.doc("structures", "c0")["guard"] is True
    assert c.structure("c0")["name"] == "c0"


def test_api_verbs_do_not_import_ray_and_answer_fast(url):
    code = ("import sys, time; t = time.perf_counter(); import cli\n"
            "try:\n    cli.app(['--url', sys.argv[1], 'status', '--json'])\n"
            "except SystemExit as e:\n    assert not e.code, e.code\n"
            "heavy = {'ray', 'fastapi', 'serve.app', 'serve.deps'} & set(sys.modules)\n"
            "assert not heavy, heavy\n")
    t0 = time.perf_counter()
    out = subprocess.run([sys.executable, "-c", code, url], capture_output=True, text=True,
                         cwd=Path(cli.__file__).parent, timeout=60)
    wall = time.perf_counter() - t0
    assert out.returncode == 0, out.stderr
    assert [r["container"] for r in json.loads(out.stdout)] == ["c0", "c0"]
    assert wall < 3.0, wall  # generous for a loaded 2-core machine


def test_the_api_answers_the_cli_over_plain_http(url):
    with urllib.request.urlopen(f"{url}/heartbeat", timeout=10) as r:
        assert json.loads(r.read()) == {"status": "alive"}
