"""What every `sc bench` shares: the machine, percentiles, waiting on a condition, profiles."""
from __future__ import annotations

import os
import platform
import time
from typing import Any, Callable, NoReturn

import typer
from rich.console import Console

from pathlib import Path

from sc_actors.settings import GuardianSettings, ScalerSettings

REPO = Path(__file__).resolve().parents[2]


def machine() -> dict[str, Any]:
    import psutil

    return {
        "cores": os.cpu_count(),
        "mem_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "python": platform.python_version(),
        "kernel": platform.release(),
    }


def percentiles(xs: list[float]) -> dict[str, float | None]:
    if not xs:
        return {"n": 0, "p50": None, "p95": None, "p99": None, "max": None}
    s = sorted(xs)

    def p(q: float) -> float:
        k = (len(s) - 1) * q
        lo, hi = int(k), min(int(k) + 1, len(s) - 1)
        return round(s[lo] + (s[hi] - s[lo]) * (k - lo), 3)

    return {"n": len(s), "p50": p(0.5), "p95": p(0.95), "p99": p(0.99), "max": round(s[-1], 3)}


def poll_until(predicate: Callable[[], Any], timeout_s: float, interval_s: float = 0.02) -> float | None:
    """Seconds until `predicate` holds, or None on time-out."""
    t0 = time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        if predicate():
            return time.monotonic() - t0
        time.sleep(interval_s)
    return None


def set_profile(db: Any, profile: dict[str, dict[str, Any]]) -> None:
    import ray

    for service, config in profile.items():
        ray.get(db.patch.remote("services", service, {f"config.{k}": v for k, v in config.items()}))


OURS = {
    "guardian": GuardianSettings().to_config(),
    "scaler": ScalerSettings().to_config(),
}


def fmt_s(x: float | None) -> str:
    return "timeout" if x is None else f"{x:.2f}s"


def settle(read: Callable[[], float], quiet_s: float, timeout_s: float) -> None:
    """Wait until `read()` has not changed for `quiet_s` (or `timeout_s` passes)."""
    t0 = time.monotonic()
    last, since = read(), time.monotonic()
    while time.monotonic() - t0 < timeout_s:
        v = read()
        if v != last:
            last, since = v, time.monotonic()
        elif time.monotonic() - since >= quiet_s:
            return
        time.sleep(0.05)


# ---------------------------------------------------------------------------- CLI output

console = Console()


def fail(message: str, code: int = 1) -> NoReturn:
    """One error line on stderr and a non-zero exit, like every `sc` verb."""
    Console(stderr=True).print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def out_dir(out: Path) -> str:
    out.mkdir(parents=True, exist_ok=True)
    return str(out)
