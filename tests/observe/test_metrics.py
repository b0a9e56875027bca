"""Issue 8: the control plane's custom metrics, scraped from Ray's metrics export port, match the StateDB."""
from __future__ import annotations

import collections
from pathlib import Path

import ray

from cluster.deploy import wait_for
from tests.observe.scrape import first_line, node_port_of, samples, scrape, value

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"


def test_container_gauges_and_request_counters_match_the_statedb(stack, containers):
    name = containers.create("obs")
    containers.subscribe(name, cpu=(25, 50, 200))
    containers.guard(name, "cpu")
    proc = containers.busy_loop(name)
    try:
        wait_for(lambda: stack.backend.read_limits(name).cpu_allowance_limit > 50, 20, what="the quota to be raised")
        tags = {"structure": name, "resource": "cpu", "host": stack.host}

        def gauges_match():
            db = stack.statedb
            before = ray.get(db.recent_usage.remote(name)).get("cpu")
            text = scrape(node_port_of(stack.guardian))
            after = ray.get(db.recent_usage.remote(name)).get("cpu")
            doc = ray.get(db.get.remote("structures", name))["resources"]["cpu"]
            lim = ray.get(db.get.remote("limits", name))["resources"]["cpu"]
            got = {k: value(text, f"ray_sc_container_{k}", **tags) for k in ("usage", "current", "upper", "lower")}
            want = {"current": doc["current"], "upper": lim["upper"], "lower": lim["lower"]}
            ok = all(got[k] == want[k] for k in want) and got["usage"] in (before, after)
            return ok and got

        got = wait_for(gauges_match, 30, interval_s=0.2, what="the container gauges to equal the StateDB")
        assert got["lower"] <= got["upper"] and got["current"] > 50

        def counters_match():
            logged = ray.get(stack.statedb.recent_requests.remote(name, 10_000))
            want = collections.Counter(e["outcome"] for e in logged)
            text = scrape(node_port_of(stack.scaler))
            have: collections.Counter[str] = collections.Counter()
            for labels, v in samples(text, "ray_sc_requests_total", structure=name):
                have[labels["outcome"]] += int(v)
                assert labels["rule"] and labels["action"] and labels["resource"] == "cpu"
            return want and want == have and (want, text)

        want, scaler_text = wait_for(counters_match, 30, interval_s=0.2,
                                     what="the request counters to equal the StateDB's request log")
        assert want["applied"] + want["trimmed"] >= 1
        assert samples(scaler_text, "ray_sc_scaler_apply_seconds_count")

        guardian_text = scrape(node_port_of(stack.guardian))
        assert sum(v for _, v in samples(guardian_text, "ray_sc_events_total", structure=name)) >= 1
        assert sum(v for _, v in samples(guardian_text, "ray_sc_guardian_epoch_seconds_count", host=stack.host)) >= 1
        assert value(guardian_text, "ray_sc_guardian_lag_seconds", host=stack.host) is not None
        # One scraped line of each metric, kept as a test artifact.
        statedb_text = scrape(node_port_of(stack.statedb))
        lines = [first_line(t, n) for t, names in (
            (guardian_text, ["ray_sc_container_usage", "ray_sc_container_current", "ray_sc_container_upper",
                             "ray_sc_container_lower", "ray_sc_events_total", "ray_sc_guardian_epoch_seconds_bucket",
                             "ray_sc_guardian_epoch_seconds_count", "ray_sc_guardian_lag_seconds"]),
            (scaler_text, ["ray_sc_requests_total", "ray_sc_scaler_apply_seconds_bucket",
                           "ray_sc_scaler_apply_seconds_sum"]),
            (statedb_text, ["ray_sc_statedb_journal_bytes", "ray_sc_statedb_checkpoint_age_seconds"])) for n in names]
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / "metrics-sample.txt").write_text("\n".join(lines) + "\n")
    finally:
        proc.kill()
        proc.wait()


def test_statedb_journal_and_checkpoint_gauges(stack):
    ping = ray.get(stack.statedb.ping.remote())
    port = node_port_of(stack.statedb)

    def exported():
        text = scrape(port)
        journal = value(text, "ray_sc_statedb_journal_bytes")
        age = value(text, "ray_sc_statedb_checkpoint_age_seconds")
        return journal is not None and age is not None and (journal, age)

    journal, age = wait_for(exported, 20, interval_s=0.2, what="the StateDB gauges")
    # Set on ping and on every window's commit, so it is the journal of now or of a moment ago.
    assert journal > 0 and ping["journal_bytes"] > 0
    assert 0 <= age < 3600


def test_the_requests_counter_names_only_the_first_structures_a_scaler_logs():
    """Past PER_CONTAINER_GAUGES_MAX structures a Scaler's requests are counted without the
    structure label (one series per container would outgrow a Prometheus scrape)."""
    import types

    from sc_actors.metrics import PER_CONTAINER_GAUGES_MAX
    from sc_actors.scaler import Scaler

    scaler = types.SimpleNamespace(_labeled_structures=set())
    labeled = [Scaler._labeled(scaler, f"c{i}") for i in range(PER_CONTAINER_GAUGES_MAX + 5)]  # type: ignore[arg-type]
    assert labeled.count(False) == 5 and labeled[-5:] == [False] * 5
    assert Scaler._labeled(scaler, "c0") and not Scaler._labeled(scaler, "another")  # type: ignore[arg-type]
