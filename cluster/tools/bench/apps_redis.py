"""The client of `sc bench apps` (redis): fills and empties redis-server in phases, and probes it.

`python -m cluster.tools.bench.apps_redis --port P --phases '[{"name": "fill", "seconds": 10, "mib": 300}, ...]'`
waits for a line on stdin, then runs the phases in order. Each brings the dataset
(values of `VALUE_KIB` KiB under keys k:0, k:1, ...) to `mib` MiB: a rise is spread
evenly over the phase (pipelined SETs, paced every `TICK_S`), a fall happens at the
phase's start (DEL of the newest keys; FLUSHALL at 0). A second connection GETs a
random stored key every 1 / `PROBE_RPS` s on a fixed schedule: open loop, each
latency counted from its scheduled time, so a stalled server delays no probe unseen.

redis-benchmark is closed-loop (as fast as it can) and writes random keys, so it
can neither pace a fill nor bring the dataset to an exact size; this client does both.
It speaks RESP over a socket (no client library) and prints JSON lines:
{"phase", "name", "t", "start": true}; {"phase", "t", "done": true, "latency_ms": [...],
"errors", "dataset_mib", "used_memory_mib"}; and {"end": true, "t"}.
"""
from __future__ import annotations

import argparse
import json
import random
import socket
import sys
import threading
import time
from typing import Any

VALUE_KIB = 64
TICK_S = 0.05
PROBE_RPS = 50.0
RECONNECT_S = 0.5
DEL_BATCH = 64


class Resp:
    """One RESP connection; any error closes it and the next call reconnects."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.sock: socket.socket | None = None
        self.rfile: Any = None

    def _connect(self) -> None:
        self.sock = socket.create_connection(("127.0.0.1", self.port), timeout=10)
        self.rfile = self.sock.makefile("rb")

    def close(self) -> None:
        if self.sock is not None:
            try:
                self.sock.close()
            except OSError:
                pass
        self.sock = self.rfile = None

    def call_many(self, commands: list[list[bytes]]) -> list[Any]:
        """Send commands pipelined and read their replies; raises OSError/ValueError on trouble."""
        try:
            if self.sock is None:
                self._connect()
            assert self.sock is not None
            self.sock.sendall(b"".join(encode(c) for c in commands))
            return [read_reply(self.rfile) for _ in commands]
        except (OSError, ValueError):
            self.close()
            raise


def encode(args: list[bytes]) -> bytes:
    out = [b"*%d\r\n" % len(args)]
    for a in args:
        out.append(b"$%d\r\n%s\r\n" % (len(a), a))
    return b"".join(out)


def read_reply(f: Any) -> Any:
    line = f.readline()
    if not line.endswith(b"\r\n"):
        raise ValueError("connection closed")
    kind, rest = line[:1], line[1:-2]
    if kind == b"+":
        return rest.decode()
    if kind == b"-":
        return RuntimeError(rest.decode())
    if kind == b":":
        return int(rest)
    if kind == b"$":
        n = int(rest)
        if n < 0:
            return None
        data = f.read(n + 2)
        if len(data) != n + 2:
            raise ValueError("connection closed")
        return data[:-2]
    if kind == b"*":
        return [read_reply(f) for _ in range(int(rest))]
    raise ValueError(f"bad reply {line[:40]!r}")


class Probe(threading.Thread):
    """GET a random stored key every 1 / PROBE_RPS s; latencies (ms) kept per phase."""

    def __init__(self, port: int, stored: list[int], t_end: float) -> None:
        super().__init__(daemon=True)
        self.conn = Resp(port)
        self.stored = stored  # [n]: keys k:0 .. k:n-1 exist
        self.t_end = t_end
        self.lock = threading.Lock()
        self.latencies: list[float] = []
        self.errors = 0

    def take(self) -> tuple[list[float], int]:
        with self.lock:
            out, errs = self.latencies, self.errors
            self.latencies, self.errors = [], 0
        return out, errs

    def run(self) -> None:
        rng = random.Random(2)
        t_next = time.time()
        while t_next < self.t_end:
            time.sleep(max(t_next - time.time(), 0))
            key = b"k:%d" % rng.randrange(max(self.stored[0], 1))
            try:
                reply = self.conn.call_many([[b"GET", key]])[0]
                ok = not isinstance(reply, RuntimeError)
            except (OSError, ValueError):
                ok = False
            done = time.time()
            with self.lock:
                if ok:
                    self.latencies.append(round((done - t_next) * 1000, 3))
                else:
                    self.errors += 1
            t_next += 1 / PROBE_RPS
            if not ok:
                time.sleep(RECONNECT_S)
            # Behind by more than a second (server gone): skip, the errors count it.
            t_next = max(t_next, time.time() - 1.0)


def run(port: int, phases: list[dict[str, Any]], out: Any = sys.stdout) -> None:
    value = b"v" * (VALUE_KIB * 1024)
    per_mib = 1024 // VALUE_KIB
    stored = [0]
    total = sum(p["seconds"] for p in phases)
    conn = Resp(port)
    probe = Probe(port, stored, time.time() + total + 60)
    errors = 0

    def emit(**kw: Any) -> None:
        out.write(json.dumps(kw) + "\n")
        out.flush()

    probe.start()
    t_phase = time.time()
    for i, p in enumerate(phases):
        emit(phase=i, name=p["name"], t=time.time(), start=True)
        target = int(p["mib"] * per_mib)
        start_n = stored[0]
        t_end = t_phase + p["seconds"]
        if target < start_n:
            try:
                if target == 0:
                    conn.call_many([[b"FLUSHALL", b"SYNC"]])
                else:
                    for hi in range(start_n, target, -DEL_BATCH):
                        keys = [b"k:%d" % k for k in range(max(hi - DEL_BATCH, target), hi)]
                        conn.call_many([[b"DEL", *keys]])
                        stored[0] = max(hi - DEL_BATCH, target)
                stored[0] = target
            except (OSError, ValueError):
                errors += 1
        while time.time() < t_end:
            # The dataset the phase should hold by now (linear rise over the phase).
            frac = min((time.time() - t_phase) / p["seconds"], 1.0)
            want = start_n + int((target - start_n) * frac) if target > start_n else stored[0]
            batch = [[b"SET", b"k:%d" % k, value] for k in range(stored[0], min(want, stored[0] + 16))]
            if batch:
                try:
                    conn.call_many(batch)
                    stored[0] += len(batch)
                except (OSError, ValueError):
                    errors += 1
                    time.sleep(RECONNECT_S)
                continue
            time.sleep(min(TICK_S, max(t_end - time.time(), 0)))
        used = None
        try:
            info = conn.call_many([[b"INFO", b"memory"]])[0]
            if isinstance(info, bytes):
                kv = dict(x.split(":", 1) for x in info.decode().split("\r\n") if ":" in x)
                used = round(int(kv["used_memory"]) / 2**20, 1)
        except (OSError, ValueError, KeyError):
            errors += 1
        lat, probe_errors = probe.take()
        emit(phase=i, t=time.time(), done=True, latency_ms=lat, errors=errors + probe_errors,
             dataset_mib=round(stored[0] / per_mib, 1), used_memory_mib=used)
        errors = 0
        t_phase = t_end
    probe.t_end = 0
    emit(end=True, t=time.time())


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--phases", required=True, help="JSON list of {name, seconds, mib}")
    a = ap.parse_args()
    phases = json.loads(a.phases)
    sys.stdin.readline()
    run(a.port, phases)


if __name__ == "__main__":
    main()
