"""A CPU load process with a phased demand, for the demo, the tests and benchmarks.

`python -m cluster.load --phases 0:8,150:20,60:20,0:30` waits for a line on stdin
(so it can be put in its cgroup first), then runs the phases: demand in shares
(100 = one core) for so many seconds. It forks one worker per started core (the
children inherit the cgroup); each worker runs a duty cycle in 20 ms slices. On
stdout it prints one JSON line per phase start: {"phase": i, "demand": d, "t": epoch}.
`--mem-mib-per-s R --mem-max-mib M` also grows resident memory at R MiB/s up to M.
"""
from __future__ import annotations

import argparse
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import time

SLICE_S = 0.02


def parse_phases(text: str) -> list[tuple[float, float]]:
    """'0:8,150:20' → [(0.0, 8.0), (150.0, 20.0)]: (demand in shares, seconds)."""
    out = []
    for part in text.split(","):
        demand, seconds = part.split(":")
        out.append((float(demand), float(seconds)))
    return out


def _worker(index: int, n_workers: int, phases: list[tuple[float, float]], t0: float) -> None:
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    parent = os.getppid()
    ends = []
    acc = t0
    for demand, seconds in phases:
        acc += seconds
        ends.append((acc, demand))
    for end, demand in ends:
        # This worker's share of the demand, in cores (0..1).
        mine = min(max(demand / 100.0 - index, 0.0), 1.0)
        while True:
            now = time.time()
            if now >= end:
                break
            if os.getppid() != parent:  # the load process was killed: stop too
                os._exit(0)
            busy_until = now + SLICE_S * mine
            while time.time() < busy_until:
                pass
            rest = SLICE_S * (1 - mine)
            if rest > 0:
                time.sleep(min(rest, max(end - time.time(), 0)))
    os._exit(0)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--phases", required=True)
    p.add_argument("--no-wait", action="store_true", help="start at once, without waiting for stdin")
    p.add_argument("--mem-mib-per-s", type=float, default=0.0)
    p.add_argument("--mem-max-mib", type=float, default=0.0)
    args = p.parse_args(argv)
    phases = parse_phases(args.phases)
    if not args.no_wait:
        sys.stdin.readline()
    n_workers = max(1, math.ceil(max(d for d, _ in phases) / 100.0))
    t0 = time.time()
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(i, n_workers, phases, t0), daemon=True) for i in range(n_workers)]
    for w in workers:
        w.start()
    signal.signal(signal.SIGTERM, lambda *_: (_stop(workers), os._exit(0)))
    hold = []
    acc = t0
    for i, (demand, seconds) in enumerate(phases):
        print(json.dumps({"phase": i, "demand": demand, "t": acc}), flush=True)
        acc += seconds
        while time.time() < acc:
            if args.mem_mib_per_s > 0 and len(hold) < args.mem_max_mib:
                hold.append(bytearray(os.urandom(1024)) * 1024)  # 1 MiB, touched
                time.sleep(1.0 / args.mem_mib_per_s)
            else:
                time.sleep(min(0.1, max(acc - time.time(), 0)))
    print(json.dumps({"phase": len(phases), "demand": 0, "t": acc, "end": True}), flush=True)
    for w in workers:
        w.join(timeout=2)
    return 0


def _stop(workers: list) -> None:
    for w in workers:
        if w.is_alive():
            w.terminate()


if __name__ == "__main__":
    sys.exit(main())
