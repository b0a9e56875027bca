"""Schemathesis over /openapi.json: no request the schema allows gets a 5xx.

The fuzzed API is a second deployment of the same app, at /fuzz, talking to its own
StateDB in its own namespace: random subscriptions, rule edits and service changes
must not disturb the control plane the other tests use. It has no Scaler and no
ContainerScaler, so host subscriptions are refused (400) and container ones find no
host (404) before any actor of a node would be needed.
"""
from __future__ import annotations

import tempfile
import time
import uuid

import pytest
import ray
import schemathesis
from hypothesis import HealthCheck, Phase, given, settings
from schemathesis.checks import not_a_server_error

EXAMPLES_PER_OPERATION = 12


@pytest.fixture(scope="module")
def fuzz_url(api, stack):
    from cluster.serve_deploy import deploy_api, undeploy_api
    from sc_actors.settings import STATEDB_NAME
    from sc_actors.statedb import StateDB

    namespace = f"sc_fuzz_{uuid.uuid4().hex[:6]}"
    db = ray.remote(StateDB).options(name=STATEDB_NAME, namespace=namespace, num_cpus=0).remote(
        tempfile.mkdtemp(prefix="sc-fuzz-state-"), False)
    ray.get(db.ping.remote())
    url = deploy_api(port=api.port, token=api.token, namespace=namespace, app_name="orchestrator-fuzz",
                     route_prefix="/fuzz")
    try:
        yield url
    finally:
        undeploy_api("orchestrator-fuzz", shutdown=False)
        ray.kill(db, no_restart=True)


def test_no_operation_of_the_schema_answers_a_server_error(fuzz_url, api):
    schema = schemathesis.openapi.from_url(fuzz_url + "/openapi.json")
    headers = {"Authorization": f"Bearer {api.token}"}
    t0 = time.monotonic()
    calls: dict[str, int] = {}
    operations = [r.ok() for r in schema.get_all_operations()]
    assert len(operations) >= 40
    for op in operations:
        @settings(max_examples=EXAMPLES_PER_OPERATION, deadline=None, database=None, derandomize=True,
                  suppress_health_check=list(HealthCheck), phases=[Phase.explicit, Phase.generate])
        @given(case=op.as_strategy())
        def run(case):
            response = case.call_and_validate(base_url=fuzz_url, headers=headers, checks=[not_a_server_error])
            assert response.status_code < 500, (case.method, case.formatted_path, response.text)
            calls[op.label] = calls.get(op.label, 0) + 1

        run()
    elapsed = time.monotonic() - t0
    print(f"{sum(calls.values())} requests over {len(calls)} operations in {elapsed:.1f}s")
    assert len(calls) == len(operations)
