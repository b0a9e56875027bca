"""Deploy the Orchestrator HTTP API on Ray Serve, and take it down.

Serve's HTTP options are fixed when Serve first starts on a cluster; `deploy_api`
starts it with ours (one proxy on the head node), then runs the application and
waits until `GET /heartbeat` answers. The token never leaves this process: the
replica gets its SHA-256 only.
"""
from __future__ import annotations

import ipaddress
import json
import logging
import os
import urllib.error
import urllib.request
from typing import Optional

from sc_actors.settings import NAMESPACE

log = logging.getLogger(__name__)

APP_NAME = "orchestrator"
TOKEN_ENV = "SC_API_TOKEN"


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def api_url(host: str, port: int, route_prefix: str = "/") -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "::", "") else host
    if ":" in shown:
        shown = f"[{shown}]"
    return f"http://{shown}:{port}{route_prefix.rstrip('/')}"


def _answers(url: str, timeout_s: float = 2.0) -> bool:
    try:
        with urllib.request.urlopen(url + "/heartbeat", timeout=timeout_s) as r:
            return bool(json.loads(r.read()).get("status") == "alive")
    except (OSError, ValueError):
        return False


def deploy_api(
    host: str = "127.0.0.1",
    port: int = 8000,
    token: Optional[str] = None,
    *,
    namespace: str = NAMESPACE,
    app_name: str = APP_NAME,
    route_prefix: str = "/",
    timeout_s: float = 60,
) -> str:
    """Start Serve (if needed) and the API; returns its URL once it answers.

    Needs a connected Ray driver. `token` (else the env var SC_API_TOKEN) makes
    every mutating route require `Authorization: Bearer <token>`. `namespace`
    selects which control plane the API talks to (tests use a second one).
    """
    from ray import serve

    from cluster.deploy import wait_for
    from serve.app import build
    from serve.deps import token_digest

    token = token if token is not None else os.environ.get(TOKEN_ENV) or None
    if not is_loopback(host) and not token:
        log.warning("the API listens on %s without a token: anyone who reaches it can change limits "
                    "(give --token or %s)", host, TOKEN_ENV)
    serve.start(http_options={"host": host, "port": port}, proxy_location="HeadOnly")
    serve.run(build(token_digest(token) if token else None, namespace), name=app_name,
              route_prefix=route_prefix, blocking=False)
    url = api_url(host, port, route_prefix)
    wait_for(lambda: _answers(url), timeout_s, interval_s=0.1, what=f"the API at {url}")
    return url


def undeploy_api(app_name: str = APP_NAME, shutdown: bool = True) -> None:
    """Delete the API application; with `shutdown`, stop Serve (its proxy and controller) too."""
    from ray import serve

    try:
        serve.delete(app_name)
    except Exception as e:  # Serve not running: nothing to delete
        log.debug("serve.delete(%s): %s", app_name, e)
    if shutdown:
        serve.shutdown()
