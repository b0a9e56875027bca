"""Guardian: turns each pushed usage window into limits, events and requests.

Thin: for each `UsageBatch` a node pushes, it fetches the structures, limits, rules
and config in one StateDB call, runs the pure `evaluate_window` per container, then
writes the new boundaries and the window's usage in one StateDB call and sends the
requests to the Scaler as one message. Events live here, in memory (volatile by
design, as in ARCHITECTURE "StateDB"). With `STRUCTURE_GUARDED` `application` (or
`user`) the applications (users) anchored at the node are evaluated instead, on the
Refeeder's sums, right after the window's usage is reported. Each window is then
announced to the DatabaseSnapshoter, without waiting for it.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import Any

from pydantic import TypeAdapter

from . import metrics
from .model import Application, Event, Limits, Rule, Structure, UsageBatch, User
from .policy.serverless import evaluate_window
from .settings import DATABASE_SNAPSHOTER_NAME, NAMESPACE, SCALER_NAME, STATEDB_NAME, GuardianSettings

log = logging.getLogger(__name__)
_STRUCTURE = TypeAdapter(Structure)
SNAPSHOTER_LOOKUP_S = 10.0
"""How often a missing DatabaseSnapshoter is looked up again, seconds."""


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
        self._delayed: set[asyncio.Task[None]] = set()
        self._snapshoter: Any = None
        self._snapshoter_looked_up = -SNAPSHOTER_LOOKUP_S
        self._snapshots: set[asyncio.Task[None]] = set()

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
            # The original's WINDOW_DELAY, for side-by-side benchmarks only: the
            # window is evaluated that much later, without holding up the node.
            delayed = asyncio.get_running_loop().create_task(self._evaluate_timed(b, self.settings.window_delay_s))
            self._delayed.add(delayed)
            delayed.add_done_callback(self._delayed.discard)
        else:
            await self._evaluate_timed(b)
        return self.settings.window_s

    async def _evaluate_timed(self, b: UsageBatch, delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        t0 = time.perf_counter()
        try:
            await self._evaluate(b)
        except Exception:
            log.exception("guardian window of %s failed", b.host)
        self.epoch_s.append(time.perf_counter() - t0)
        metrics.guardian_epoch(b.host, self.epoch_s[-1], time.time() - b.window_end)
        self.windows += 1

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
            bounds, new_events, requests = self._step_all(
                view["structures"], view["limits"], usages, rules, b.window_end, _STRUCTURE.validate_python
            )
        # Forget events of structures no longer in the view.
        for name in set(self.events) - {d["name"] for d in view["structures"]}:
            if name in b.usages:
                self.events.pop(name, None)
        await statedb.guardian_report.remote(usages, bounds, new_events, b.window_end)
        metrics.container_window(b.host, view["structures"], view["limits"], bounds, usages)
        metrics.events(new_events)
        if self.settings.active and self.settings.structure_guarded != "container":
            requests += await self._evaluate_groups(statedb, b, rules)
        self._notify_snapshoter(b)
        if requests:
            self.requests_sent += len(requests)
            await scaler.submit.remote(requests)

    async def _evaluate_groups(self, statedb: Any, b: UsageBatch, rules: list[Rule]) -> list[dict[str, Any]]:
        """Applications (or users) on the Refeeder's sums, in the same window flow (reference §3.8).

        Each is evaluated once per window of its anchor node (the host of its first
        container), after this window's usage is in the StateDB, so its sum holds
        this window and the other nodes' last ones.
        """
        subtype = self.settings.structure_guarded
        view = await statedb.group_guardian_view.remote(b.host, subtype)
        model: Any = User if subtype == "user" else Application
        bounds, new_events, requests = self._step_all(
            view["structures"], view["limits"], view["usages"], rules, b.window_end, model.model_validate
        )
        if bounds or new_events:
            await statedb.guardian_report.remote({}, bounds, new_events, b.window_end)
        return requests

    def _step_all(
        self,
        docs: list[dict[str, Any]],
        limit_docs: dict[str, Any],
        usages: dict[str, dict[str, float]],
        rules: list[Rule],
        now: float,
        parse: Any,
    ) -> tuple[dict[str, dict[str, tuple[float, float]]], list[dict[str, Any]], list[dict[str, Any]]]:
        """One window for each structure: new bounds, new events and requests (events kept here)."""
        bounds: dict[str, dict[str, tuple[float, float]]] = {}
        new_events: list[dict[str, Any]] = []
        requests: list[dict[str, Any]] = []
        for doc in docs:
            name = doc["name"]
            try:
                ldoc = limit_docs.get(name)
                step = evaluate_window(parse(doc), Limits.model_validate(ldoc) if ldoc else None, rules,
                                       usages.get(name, {}), self.events.get(name, []), now, self.settings)
            except Exception:
                log.exception("guardian: %s skipped this window", name)
                continue
            self.events[name] = step.pending_events
            if step.bounds:
                bounds[name] = step.bounds
            new_events += [e.model_dump() for e in step.new_events]
            requests += [r.model_dump() for r in step.requests]
        return bounds, new_events, requests

    def _notify_snapshoter(self, b: UsageBatch) -> None:
        """Tell the DatabaseSnapshoter this window is in the StateDB; never wait for it."""
        import ray

        if len(self._snapshots) >= 100:
            return  # a stuck snapshoter loses windows, the Guardian loses nothing
        if self._snapshoter is None:
            # Looked up now and then, not every window, when it is not deployed.
            if time.monotonic() - self._snapshoter_looked_up < SNAPSHOTER_LOOKUP_S:
                return
            self._snapshoter_looked_up = time.monotonic()
            try:
                self._snapshoter = ray.get_actor(DATABASE_SNAPSHOTER_NAME, namespace=NAMESPACE)
            except ValueError:
                return
        ref = self._snapshoter.on_window.remote(b.host, list(b.usages), b.window_end)

        async def wait() -> None:
            try:
                await asyncio.wait_for(ref, timeout=30)
            except Exception as e:
                log.debug("snapshot of %s's window lost: %s", b.host, e)

        task = asyncio.get_running_loop().create_task(wait())
        self._snapshots.add(task)
        task.add_done_callback(self._snapshots.discard)

    def _parse_rules(self, docs: list[dict[str, Any]]) -> list[Rule]:
        if docs != self._rules_key:
            self._rules = [Rule.model_validate(d) for d in docs]
            self._rules_key = docs
        return self._rules
