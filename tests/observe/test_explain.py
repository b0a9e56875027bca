"""Issue 8: `sc events --explain NAME` prints the decision log of NAME's requests, from the API."""
from __future__ import annotations

import json

import ray
from typer.testing import CliRunner

import cli
from cluster.deploy import wait_for

runner = CliRunner()


def test_explain_prints_usage_rule_amounts_outcome_and_reason_of_each_request(stack, busy_guarded, api):
    with busy_guarded("why") as name:
        logged = wait_for(lambda: [e for e in ray.get(stack.statedb.recent_requests.remote(name))
                                   if e["outcome"] in ("applied", "trimmed")], 20, what="a request applied")

    def sc(*args: str):
        r = runner.invoke(cli.app, ["--url", api.url, "events", "--explain", name, *args], catch_exceptions=False,
                          env={"SC_API_TOKEN": "", "COLUMNS": "250"})
        assert r.exit_code == 0, r.output
        return r.output

    rows = json.loads(sc("--json"))
    assert rows and all(r["structure"] == name for r in rows)
    first = next(r for r in rows if r["timestamp"] == logged[0]["timestamp"] and r["action"] == logged[0]["action"])
    for key in ("usage", "rule", "amount_requested", "amount", "amount_applied", "outcome", "reason"):
        assert key in first, (key, first)
    text = sc()
    print(text)
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == len(rows)
    line = lines[rows.index(first)]
    assert f"rule {first['rule']} fired" in line and f"; {first['outcome']}" in line
    assert "window usage" in line and "asked" in line and "after trimming" in line and "applied" in line
