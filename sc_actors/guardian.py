"""Guardian: turns each pushed usage window into limits, events and requests.

Thin: for each `UsageBatch` a node pushes, it fetches the structures, limits, rules
and config in one StateDB call, runs the pure `evaluate_window` per container, then
writes the new boundaries and the window's usage in one StateDB call and sends the
requests to the Scaler as one message. Events live here, in memory (volatile by
design, as in ARCHITECTURE "StateDB").
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from pydantic import TypeAdapter

from .model import Event, Limits, Rule, Structure, UsageBatch
from .policy.serverless import evaluate_window
from .settings import NAMESPACE, SCALER_NAME, STATEDB_NAME, GuardianSettings

log = logging.getLogger(__name__)
_STRUCTURE = TypeAdapter(Structure)


class Guardian:
    def __init__(self) -> None:
        self.events: dict[str, list[Event]] = {}
        self.last_window_end: dict[str, float] = {}
        self.settings = GuardianSettings()
        self.epoch_s: collections.deque[float] = collections.deque(maxlen=1000)
        self.windows = 0
        self.requests_sent = 0
        self._rules_key: Any = None
        self._rules: list[Rule] = []
        self._statedb = None
        self._scaler = None

    def _handles(self) -> tuple[Any, Any]:
        import ray

        if self._statedb is None:
            self._statedb = ray.get_actor(STATEDB_NAME, namespace=NAMESPACE)
        if self._scaler is None:
            self._scaler = ray.get_actor(SCALER_NAME, namespace=NAMESPACE)
        return self._statedb, self._scaler

    async def ping(self) -> dict[str, Any]:
        return {
            "windows": self.windows,
            "requests_sent": self.requests_sent,
            "pending_events": sum(len(v) for v in self.events.values()),
            "epoch_s": list(self.epoch_s)[-100:],
        }

    async def on_usage(self, batch: dict[str, Any]) -> float:
        """Evaluate one window of one node; returns the window length the node should use."""
        b = UsageBatch.model_validate(batch)
        # Windows of a node arrive in order; an older one than the last accepted is stale.
        if b.window_end <= self.last_window_end.get(b.host, 0.0):
            return self.settings.window_s
        self.last_window_end[b.host] = b.window_end
        if self.settings.window_delay_s > 0:
            # The original's WINDOW_DELAY, for side-by-side benchmarks only.
            await asyncio.sleep(self.settings.window_delay_s)
        t0 = time.perf_counter()
        try:
            await self._evaluate(b)
        except Exception:
            log.exception("guardian window of %s failed", b.host)
        self.epoch_s.append(time.perf_counter() - t0)
        self.windows += 1
        return self.settings.window_s

    async def _evaluate(self, b: UsageBatch) -> None:
        statedb, scaler = self._handles()
        view = await statedb.guardian_view.remote(list(b.usages))
        self.settings = GuardianSettings.from_config(view["config"])
        rules = self._parse_rules(view["rules"])
        usages = {n: {"cpu": u.cpu, "mem": u.mem} for n, u in b.usages.items()}
        bounds: dict[str, dict[str, tuple[float, float]]] = {}
        new_events: list[dict[str, Any]] = []
        requests: list[dict[str, Any]] = []
        if self.settings.active and self.settings.structure_guarded == "container":
            now = b.window_end
            for doc in view["structures"]:
                name = doc["name"]
                try:
                    structure = _STRUCTURE.validate_python(doc)
                    ldoc = view["limits"].get(name)
                    limits = Limits.model_validate(ldoc) if ldoc else None
                    step = evaluate_window(
                        structure, limits, rules, usages.get(name, {}), self.events.get(name, []), now, self.settings
                    )
                except Exception:
                    log.exception("guardian: %s skipped this window", name)
                    continue
                self.events[name] = step.pending_events
                if step.bounds:
                    bounds[name] = step.bounds
                new_events += [e.model_dump() for e in step.new_events]
                requests += [r.model_dump() for r in step.requests]
        # Forget events of structures no longer in the view.
        for name in set(self.events) - {d["name"] for d in view["structures"]}:
            if name in b.usages:
                self.events.pop(name, None)
        await statedb.guardian_report.remote(usages, bounds, new_events, b.window_end)
        if requests:
            self.requests_sent += len(requests)
            await scaler.submit.remote(requests)

    def _parse_rules(self, docs: list[dict[str, Any]]) -> list[Rule]:
        if docs != self._rules_key:
            self._rules = [Rule.model_validate(d) for d in docs]
            self._rules_key = docs
        return self._rules
