"""Who may change what, and what never leaks (reference §11: the original had no auth and an eval()).

The token is checked in constant time on every mutating route, reads stay open;
the API binds to loopback unless told otherwise and warns when it listens beyond
loopback without a token; no module ever starts a shell; the token never appears
in the logs of the session's Ray cluster nor in the StateDB's journal.
"""
from __future__ import annotations

import ast
import inspect
import logging
import os
from pathlib import Path

import pytest

from tests.api.live import api, snapshot, without_usage  # noqa: F401  (session fixture)

REPO = Path(__file__).resolve().parents[2]
PRODUCT = ("sc_actors", "serve", "cluster")


def test_the_token_is_compared_in_constant_time():
    from serve import deps

    src = inspect.getsource(deps.require_token)
    assert "hmac.compare_digest" in src
    tree = ast.parse(src)
    # No `==` / `!=` touches the token or its digest.
    for node in ast.walk(tree):
        if isinstance(node, ast.Compare) and any(isinstance(op, (ast.Eq, ast.NotEq)) for op in node.ops):
            text = ast.unparse(node)
            assert "credentials" not in text and "token_sha256" not in text, text


@pytest.mark.parametrize("header", [None, "Bearer wrong", "Bearer x", "Basic abc", "Bearer {token}x",
                                    "Bearer {token_prefix}"])
def test_a_wrong_token_is_401_and_changes_nothing(api, stack, header):
    import httpx

    before = without_usage(snapshot(stack))
    headers = {} if header is None else {
        "Authorization": header.format(token=api.token, token_prefix=api.token[:-1])}
    with httpx.Client(base_url=api.url, headers=headers, timeout=30) as http:
        for method, path, body in [("PUT", "/rule/CpuRescaleUp/amount", {"value": 60}),
                                   ("PUT", "/service/guardian/EVENT_TIMEOUT", {"value": 5}),
                                   ("DELETE", "/structure/container/nosuch", None)]:
            r = http.request(method, path, json=body)
            assert r.status_code == 401, (path, r.text)
            assert r.json()["message"] and r.headers.get("www-authenticate") == "Bearer"
        # Reads stay open, whatever the header.
        assert http.get("/rule/CpuRescaleUp").status_code == 200
        assert http.get("/heartbeat").status_code == 200
    assert without_usage(snapshot(stack)) == before


def test_the_right_token_is_accepted(api, stack):
    import ray

    with api.client() as http:
        old = http.get("/rule/CpuRescaleUp").json()["amount"]
        try:
            assert http.put("/rule/CpuRescaleUp/amount", json={"value": old + 1}).status_code == 200
            assert ray.get(stack.statedb.get.remote("rules", "CpuRescaleUp"))["amount"] == old + 1
        finally:
            assert http.put("/rule/CpuRescaleUp/amount", json={"value": old}).status_code == 200


def test_the_api_binds_to_loopback_by_default_and_warns_beyond_it_without_a_token(monkeypatch, caplog):
    from ray import serve

    import cluster.deploy
    from cluster import serve_deploy

    assert inspect.signature(serve_deploy.deploy_api).parameters["host"].default == "127.0.0.1"
    started = []
    monkeypatch.setattr(serve, "start", lambda **kw: started.append(kw))
    monkeypatch.setattr(serve, "run", lambda *a, **kw: None)
    monkeypatch.setattr(cluster.deploy, "wait_for", lambda *a, **kw: True)
    monkeypatch.delenv(serve_deploy.TOKEN_ENV, raising=False)
    with caplog.at_level(logging.WARNING, logger=serve_deploy.__name__):
        serve_deploy.deploy_api(port=1)
        assert not caplog.records
        serve_deploy.deploy_api(host="0.0.0.0", port=1, token="s3cret-token")
        assert not caplog.records
        serve_deploy.deploy_api(host="0.0.0.0", port=1)
    assert [r for r in caplog.records if "without a token" in r.getMessage()]
    assert started[0]["http_options"]["host"] == "127.0.0.1"
    assert "s3cret-token" not in repr(started)  # only its digest goes anywhere


def _product_files():
    for pkg in PRODUCT:
        yield from sorted((REPO / pkg).rglob("*.py"))


def test_no_module_ever_starts_a_shell():
    bad = []
    for path in _product_files():
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in ast.walk(tree):
            if not isinstance(node, ast.Call):
                continue
            fn = ast.unparse(node.func)
            where = f"{path.relative_to(REPO)}:{node.lineno}"
            if fn in ("os.system", "os.popen", "system", "popen", "eval", "exec", "os.execl", "os.execlp",
                      "subprocess.getoutput", "subprocess.getstatusoutput", "commands.getoutput"):
                bad.append(f"{where} {fn}()")
            for kw in node.keywords:
                if kw.arg == "shell" and not (isinstance(kw.value, ast.Constant) and kw.value.value is False):
                    bad.append(f"{where} {fn}(shell={ast.unparse(kw.value)})")
    assert not bad, bad
    assert len(list(_product_files())) > 20  # the scan saw the code


def _session_dir() -> Path:
    import ray

    return Path(ray._private.worker.global_worker.node.get_session_dir_path())


def test_the_token_never_appears_in_the_logs_or_the_journal(api, stack):
    import httpx

    # Use the token (and a wrong one) a few times, so a careless log line would have it.
    with api.client() as http:
        http.put("/service/guardian/nosuchkey", json={"value": 1})
        http.put("/structure/nosuch/guard")
    with httpx.Client(base_url=api.url, headers={"Authorization": f"Bearer {api.token}-wrong"}) as http:
        http.put("/structure/nosuch/guard")
    logs = _session_dir() / "logs"
    assert logs.is_dir(), logs
    needle = api.token.encode()
    leaks, scanned = [], 0
    for root in (logs, Path(stack.state_dir)):
        for path in root.rglob("*"):
            if path.is_file() and not path.is_symlink():
                try:
                    data = path.read_bytes()
                except OSError:
                    continue
                scanned += 1
                if needle in data:
                    leaks.append(str(path))
    assert scanned > 5
    assert not leaks, leaks
    assert os.environ.get("SC_API_TOKEN") != api.token
