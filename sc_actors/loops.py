"""The loop every background actor runs: one step, then sleep, until told to stop (STYLE §6.5).

NOTE: the loop must never die of one bad step: a step that raises is logged with
its traceback and the next one runs on time.
"""
from __future__ import annotations

import asyncio
import logging
from typing import Awaitable, Callable


async def every(period_s: Callable[[], float], step: Callable[[], Awaitable[object]], stop: asyncio.Event,
                log: logging.Logger, what: str) -> None:
    """Run `step` now and then every `period_s()` seconds until `stop` is set; `what` names a failed step."""
    while not stop.is_set():
        try:
            await step()
        except Exception:
            log.exception("%s failed", what)
        try:
            await asyncio.wait_for(stop.wait(), timeout=period_s())
        except asyncio.TimeoutError:
            pass
