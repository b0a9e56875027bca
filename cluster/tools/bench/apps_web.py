"""The CPU-bound handler behind nginx in `sc bench apps` (web): a WSGI app, pre-forked.

`python -m cluster.tools.bench.apps_web --port P --workers 4 --loops N` listens on
127.0.0.1:P. The parent binds the socket and forks the workers; each serves one
request at a time (wsgiref), so up to `workers` requests run at once, on as many
cores as the cgroup allows. Every request runs `burn(N)`: a pure-Python loop, a
fixed amount of CPU work (the bench calibrates N to a few milliseconds).
"""
from __future__ import annotations

import argparse
import os
import signal
import sys
from typing import Any, Callable, Iterable
from wsgiref.simple_server import WSGIRequestHandler, WSGIServer, make_server


def burn(loops: int) -> int:
    """A fixed amount of CPU work: `loops` turns of integer arithmetic."""
    x = 0
    for i in range(loops):
        x = (x * 31 + i) % 1_000_003
    return x


def application(loops: int) -> Callable[..., Iterable[bytes]]:
    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        body = f"{burn(loops)}\n".encode()
        start_response("200 OK", [("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
        return [body]

    return app


class _Server(WSGIServer):
    request_queue_size = 512
    """Listen backlog: nginx opens a connection per request; the default 5 would refuse a burst."""


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 — the stdlib's name
        pass


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--workers", type=int, default=4)
    ap.add_argument("--loops", type=int, required=True)
    a = ap.parse_args()
    server = make_server("127.0.0.1", a.port, application(a.loops), server_class=_Server,
                         handler_class=_QuietHandler)
    kids = []
    for _ in range(a.workers):
        pid = os.fork()
        if pid == 0:
            signal.signal(signal.SIGTERM, signal.SIG_DFL)
            try:
                server.serve_forever()
            finally:
                os._exit(0)
        kids.append(pid)

    def stop(*_: Any) -> None:
        for k in kids:
            try:
                os.kill(k, signal.SIGTERM)
            except ProcessLookupError:
                pass
        sys.exit(0)

    signal.signal(signal.SIGTERM, stop)
    # The parent only waits: when a worker dies, all stop (the bench sees the errors).
    os.wait()
    stop()


if __name__ == "__main__":
    main()
