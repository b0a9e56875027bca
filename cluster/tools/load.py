"""A CPU load process with a phased demand, for the demo, the tests and benchmarks.

`python -m cluster.tools.load --phases 0:8,150:20,60:20,0:30` waits for a line on stdin
(so it can be put in its cgroup first), then runs the phases: demand in shares
(100 = one core) for so many seconds. It forks one worker per started core (the
children inherit the cgroup); each worker runs a duty cycle in 20 ms slices. On
stdout it prints one JSON line per phase start: {"phase": i, "demand": d, "t": epoch}.
`--mem-mib-per-s R --mem-max-mib M` also grows resident memory at R MiB/s up to M.

`--work` turns every phase `demand:seconds` into a fixed amount of CPU work,
demand/100 × seconds CPU-seconds, instead of a time span. Each worker counts its
own CPU time (`time.thread_time`) and duty-cycles at its share of the demand in
20 ms slices: per slice it runs until it has used its share of the slice in CPU
time, then sleeps for what is left of the slice. Throttled or starved, a slice
stretches and the phase takes longer in wall time; the worker never runs above
its share to catch up, so lost time is neither lost work nor made up for free.
Phases run in order: all workers finish phase i before phase i + 1 starts. A
demand 0 phase is a pause of `seconds` (there is no work to slow down). Lines on
stdout: {"phase", "demand", "t", "work_cpu_s"} when a phase starts, {"phase",
"done": true, "demand", "t", "wall_s", "cpu_s", "planned_s"} when all its workers
finished, and at the end {"phase": n, "demand": 0, "t", "end": true, "wall_s",
"cpu_s", "planned_s"} with the total wall time from the first phase's start.
"""
from __future__ import annotations

import argparse
import functools
import json
import math
import multiprocessing as mp
import os
import signal
import sys
import time
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Sequence, cast

SLICE_S = 0.02
_SPIN = 200
"""Loop turns between two reads of the thread's CPU clock in `--work` mode (a few µs)."""


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


def _share(demand: float, index: int) -> float:
    """Worker `index`'s share of `demand` (shares), in cores (0..1)."""
    return min(max(demand / 100.0 - index, 0.0), 1.0)


def _work_worker(index: int, phases: list[tuple[float, float]], conn: Connection, parent: int) -> None:
    """Fixed-work mode: for each phase, on the parent's go, do this worker's CPU work."""
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
    for i, (demand, seconds) in enumerate(phases):
        while not conn.poll(0.5):
            if os.getppid() != parent:  # the load process was killed: stop too
                os._exit(0)
        try:
            if conn.recv() != i:
                os._exit(1)
        except EOFError:
            os._exit(0)
        mine = _share(demand, index)
        work = mine * seconds
        cpu0, t0 = time.thread_time(), time.monotonic()
        used = 0.0
        while used < work:
            if os.getppid() != parent:
                os._exit(0)
            slice_start = time.monotonic()
            # This slice's CPU budget; the last slice only does what is left.
            target = min(used + SLICE_S * mine, work)
            while used < target:
                for _ in range(_SPIN):  # plain work between clock reads (each is a syscall)
                    pass
                used = time.thread_time() - cpu0
            rest = slice_start + SLICE_S - time.monotonic()
            if rest > 0 and used < work:
                time.sleep(rest)
        # A pipe write is synchronous: the report cannot be lost by the exit below.
        conn.send((i, time.thread_time() - cpu0, time.monotonic() - t0))
    os._exit(0)


def _run_work(phases: list[tuple[float, float]]) -> int:
    """The `--work` mode: phases of fixed CPU work, reported as they finish."""
    from multiprocessing.connection import wait

    n_workers = max(1, math.ceil(max(d for d, _ in phases) / 100.0))
    ctx = mp.get_context("fork")
    pipes = [ctx.Pipe() for _ in range(n_workers)]
    workers = [ctx.Process(target=_work_worker, args=(i, phases, pipes[i][1], os.getpid()), daemon=True)
               for i in range(n_workers)]
    for w in workers:
        w.start()
    conns = [mine for mine, _ in pipes]
    signal.signal(signal.SIGTERM, functools.partial(_stop_and_exit, workers))
    starter = os.getppid()
    t_start = time.monotonic()
    cpu_total = 0.0
    for i, (demand, seconds) in enumerate(phases):
        work = demand / 100.0 * seconds
        print(json.dumps({"phase": i, "demand": demand, "t": time.time(), "work_cpu_s": work}), flush=True)
        m0 = time.monotonic()
        for c in conns:
            c.send(i)
        cpu, waiting = 0.0, set(conns)
        while waiting:
            ready = wait(list(waiting), timeout=0.5)
            if os.getppid() != starter:  # whoever started the load is gone: stop too
                _stop(workers)
                return 1
            for r in ready:
                c = cast(Connection, r)  # `wait` was given connections only
                try:
                    phase, worker_cpu, _ = c.recv()
                except EOFError:
                    phase = None
                if phase != i:
                    print(json.dumps({"phase": i, "error": "a worker died",
                                      "exitcodes": [w.exitcode for w in workers]}), flush=True)
                    _stop(workers)
                    return 1
                cpu += worker_cpu
                waiting.discard(c)
        if demand <= 0:  # a pause: no work, but it lasts its seconds
            time.sleep(max(seconds - (time.monotonic() - m0), 0))
        cpu_total += cpu
        print(json.dumps({"phase": i, "done": True, "demand": demand, "t": time.time(),
                          "wall_s": round(time.monotonic() - m0, 4), "cpu_s": round(cpu, 4),
                          "planned_s": seconds}), flush=True)
    print(json.dumps({"phase": len(phases), "demand": 0, "t": time.time(), "end": True,
                      "wall_s": round(time.monotonic() - t_start, 4), "cpu_s": round(cpu_total, 4),
                      "planned_s": sum(s for _, s in phases)}), flush=True)
    for w in workers:
        w.join(timeout=2)
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--phases", required=True)
    p.add_argument("--no-wait", action="store_true", help="start at once, without waiting for stdin")
    p.add_argument("--mem-mib-per-s", type=float, default=0.0)
    p.add_argument("--mem-max-mib", type=float, default=0.0)
    p.add_argument("--work", action="store_true",
                   help="each phase is demand/100 × seconds CPU-seconds of work, not a time span")
    args = p.parse_args(argv)
    phases = parse_phases(args.phases)
    if args.work and args.mem_mib_per_s > 0:
        p.error("--work does not grow memory (--mem-mib-per-s)")
    if not args.no_wait:
        sys.stdin.readline()
    if args.work:
        return _run_work(phases)
    n_workers = max(1, math.ceil(max(d for d, _ in phases) / 100.0))
    t0 = time.time()
    ctx = mp.get_context("fork")
    workers = [ctx.Process(target=_worker, args=(i, n_workers, phases, t0), daemon=True) for i in range(n_workers)]
    for w in workers:
        w.start()
    signal.signal(signal.SIGTERM, functools.partial(_stop_and_exit, workers))
    hold: list[bytearray] = []
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


def _stop(workers: Sequence[BaseProcess]) -> None:
    for w in workers:
        if w.is_alive():
            w.terminate()


def _stop_and_exit(workers: Sequence[BaseProcess], *_: object) -> None:
    """On SIGTERM: the workers go too."""
    _stop(workers)
    os._exit(0)


if __name__ == "__main__":
    sys.exit(main())
