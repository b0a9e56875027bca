"""Guardian: turns each pushed usage window into limits, events and requests.

Thin: for each `UsageBatch` a node pushes, it asks the StateDB in one call for the
documents that changed since that node's last window, runs the pure
`evaluate_prepared` per container, then writes the window's usage and the
boundaries that moved in one StateDB call and sends the requests to the Scaler as
one message. It keeps each container prepared (parsed, limit chain computed) in a
mirror until the StateDB says its documents changed: the StateDB stays the one
place of every fact, the mirror is a cache keyed by the StateDB's write seq. Events live here, in memory (volatile by
design, as in ARCHITECTURE "StateDB"): a host's containers' as arrays (`policy.event_columns`), so a window is a few
array operations and only the containers a request rule may act on are evaluated one at a time. With `STRUCTURE_GUARDED` `application` (or
`user`) the applications (users) anchored at the node are evaluated instead, on the
Refeeder's sums, right after the window's usage is reported. Each window is then
announced to the DatabaseSnapshoter and the ReBalancer, without waiting for them.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from collections.abc import Mapping
from typing import Any, Optional, Union, cast

import numpy as np
from pydantic import TypeAdapter
from typing_extensions import TypedDict

from . import metrics
from .collector import relax_collector
from .columns import HostWindow, SeriesFrame
from .errors import Invalid, Unavailable
from .handles import ActorHandle, Handles
from .loops import every
from .model import Application, Container, Document, Event, Limits, Request, Rule, Structure, UsageBatch, User
from .policy.health import HEARTBEAT_S
from .policy.columnar import HostColumns, fire_host, host_inputs, usage_of
from .policy.event_columns import FitInputs, HostEvents, RequestGate, event_entries, may_request, shapes_of
from .policy.serverless import Prepared, RuleSet, evaluate_prepared, fire_window, prepare
from .settings import DATABASE_SNAPSHOTER_NAME, REBALANCER_NAME, GuardianSettings, guardian_name, scaler_name
from .store.views import Bound, EventEntry, GroupGuardianView, GuardianChanges, Usage, WindowQuery

log = logging.getLogger(__name__)
_STRUCTURE = TypeAdapter(Structure)
SNAPSHOTER_LOOKUP_S = 10.0
"""How often a missing DatabaseSnapshoter (or ReBalancer) is looked up again, seconds."""
SUBMITS_IN_FLIGHT = 10
"""Submissions to the Scaler not yet taken, beyond which a window's requests are dropped."""
MIRROR_PRUNE_WINDOWS = 200
"""Every so many windows, prepared containers no node reported in its last window are dropped."""
EVENTS_KEPT_S = 60.0
"""Pending events of a host (or group of hosts) no window stepped for this long are dropped, seconds."""

Bounds = dict[str, dict[str, Bound]]
"""Structure → resource → (upper, lower) that moved in this window."""


class GuardianStatus(TypedDict):
    """`Guardian.ping`: windows evaluated, requests sent and dropped, the last evaluation times."""

    windows: int
    requests_sent: int
    requests_dropped: int
    pending_events: int
    prepared: int
    decided: int
    prepares: int
    epoch_s: list[float]
    window_lag_s: list[float]


class Guardian:
    def __init__(self, shard: int = 0) -> None:
        # Shard `shard` of the Guardian (issue 16): the nodes push it the windows of the hosts
        # `policy.shards.shard_of` gives it, and it submits to the Scaler shard of the same index.
        relax_collector()
        self.shard = shard
        self.name = guardian_name(shard)
        self._scaler_name = scaler_name(shard)
        self.events: dict[str, list[Event]] = {}
        """Pending events of applications and users; a host's containers' are in `_events`."""
        self._events: dict[str, HostEvents] = {}
        """The pending events of each host's containers, as arrays (`policy.event_columns`); of the
        hosts whose windows are stepped together (a node's), under the group's name (`_step_windows`)."""
        self._group_of: dict[str, str] = {}
        """The host or group whose `_events` hold each host's containers' pending events."""
        self._events_used: dict[str, float] = {}
        """When each of `_events` was last stepped (`time.monotonic`)."""
        self._alone: set[str] = set()
        """Hosts whose last window failed: stepped alone until one does not."""
        self.last_window_end: dict[str, float] = {}
        self.settings = GuardianSettings()
        self.epoch_s: collections.deque[float] = collections.deque(maxlen=1000)
        self.window_lag_s: collections.deque[float] = collections.deque(maxlen=1000)
        self.windows = 0
        self.requests_sent = 0
        self.requests_dropped = 0
        self.decided = 0
        """Containers evaluated one at a time (a rule fired, events pending, boundaries moved)."""
        self.prepares = 0
        """Containers prepared (again) from their documents."""
        self._submits: set[asyncio.Task[None]] = set()
        self._rules_key: Optional[list[Document]] = None
        self._rules: list[Rule] = []
        self._ruleset = RuleSet.of([])
        self._shapes = shapes_of(self._ruleset)
        self._gate = RequestGate.of(self._ruleset)
        # The mirror: prepared containers, the StateDB instance and seq each host's view is at,
        # and each host's window as columns (HostColumns, in the order of its last window).
        self._prepared: dict[str, Prepared] = {}
        self._stored_bounds: dict[str, dict[str, tuple[Optional[float], Optional[float]]]] = {}
        self._sources: dict[str, tuple[Document, Optional[Document]]] = {}
        """The documents each container was prepared from, limits without upper/lower: the limit
        chain recomputes those from `current`, so the Guardian's own bounds writes change nothing."""
        self._dirty: set[str] = set()
        """Containers prepared again since their boundaries were last compared with the stored ones."""
        self._instance = ""
        self._seen_seq: dict[str, int] = {}
        self._hosts: dict[str, HostColumns] = {}
        self._guardable = tuple(self.settings.guardable_resources)
        self._actors = Handles()
        self._delayed: set[asyncio.Task[None]] = set()
        # Peers told of each window (DatabaseSnapshoter, ReBalancer), their calls in flight.
        self._peers: dict[str, ActorHandle] = {}
        self._peer_looked_up: dict[str, float] = {}
        self._peer_calls: dict[str, set[asyncio.Task[None]]] = {}
        try:
            self._beating: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
                every(lambda: HEARTBEAT_S, self._beat, asyncio.Event(), log, "guardian heartbeat"))
        except RuntimeError:
            self._beating = None  # built outside an event loop (tests of the mirror): nothing to beat for

    async def _beat(self) -> None:
        """Beat every HEARTBEAT_S even with no window to evaluate (no container anywhere
        yet), so an old heartbeat means a stuck or dead Guardian, as for the Scaler."""
        await self._actors.statedb.heartbeat.remote(self.name)

    async def ping(self, last: int = 100) -> GuardianStatus:
        """Counters, and the seconds of the `last` host windows (at most 1000): the time the
        evaluation of their batch took, and from each window's end to its evaluation's end."""
        return {
            "windows": self.windows,
            "requests_sent": self.requests_sent,
            "requests_dropped": self.requests_dropped,
            "pending_events": sum(len(v) for v in self.events.values()) + sum(he.total() for he in self._events.values()),
            "prepared": len(self._prepared),
            "decided": self.decided,
            "prepares": self.prepares,
            "epoch_s": list(self.epoch_s)[-last:] if last > 0 else [],
            "window_lag_s": list(self.window_lag_s)[-last:] if last > 0 else [],
        }

    async def on_usage(self, batch: UsageBatch) -> float:
        """Evaluate one window of one node; returns the window length the node should use."""
        b = UsageBatch.model_validate(batch)  # a node's batch as it is; a dict (a test, a tool) validated
        return await self.on_windows([HostWindow.from_batch(b)])

    async def on_windows(self, windows: list[HostWindow]) -> float:
        """Evaluate the windows of the hosts a node serves, pushed as one message;
        returns the window length the node should use."""
        fresh = []
        for w in windows:
            if not isinstance(w, HostWindow):
                raise Invalid(f"a window is a HostWindow, not {type(w).__name__}")
            # Windows of a host arrive in order; an older one than the last accepted is stale.
            if w.window_end <= self.last_window_end.get(w.host, 0.0):
                continue
            self.last_window_end[w.host] = w.window_end
            fresh.append(w)
        if not fresh:
            return self.settings.window_s
        if self.settings.window_delay_s > 0:
            # The original's WINDOW_DELAY, for side-by-side benchmarks only: the
            # window is evaluated that much later, without holding up the node.
            delayed = asyncio.get_running_loop().create_task(self._evaluate_timed(fresh, self.settings.window_delay_s))
            self._delayed.add(delayed)
            delayed.add_done_callback(self._delayed.discard)
        else:
            await self._evaluate_timed(fresh)
        return self.settings.window_s

    async def _evaluate_timed(self, windows: list[HostWindow], delay_s: float = 0.0) -> None:
        if delay_s:
            await asyncio.sleep(delay_s)
        t0 = time.perf_counter()
        try:
            await self._evaluate(windows)
        except Exception:
            log.exception("guardian windows of %s failed", ", ".join(w.host for w in windows))
        spent, now = time.perf_counter() - t0, time.time()
        for w in windows:
            self.epoch_s.append(spent)
            self.window_lag_s.append(now - w.window_end)
            metrics.guardian_epoch(w.host, spent, now - w.window_end)
        self.windows += len(windows)

    async def _evaluate(self, windows: list[HostWindow]) -> None:
        statedb, scaler = self._actors.statedb, self._actors.get(self._scaler_name)
        await self._refresh(statedb, windows)
        bounds: Bounds = {}
        new_events: list[EventEntry] = []
        requests: list[Request] = []
        if self.settings.active and self.settings.structure_guarded == "container":
            self._step_windows(windows, bounds, new_events, requests)
        await statedb.guardian_report_windows.remote(windows, bounds, new_events)
        if len(self._prepared) <= metrics.PER_CONTAINER_GAUGES_MAX:
            for w in windows:
                metrics.container_window(w.host, self._prepared, w.names, w.usages())
        metrics.events(new_events, per_structure=len(self._prepared) <= metrics.PER_CONTAINER_GAUGES_MAX)
        if self.settings.active and self.settings.structure_guarded != "container":
            for w in windows:
                requests += await self._evaluate_groups(statedb, w.host, w.window_end)
        self._notify_peers(windows)
        if requests:
            self._submit(scaler, requests)

    def _submit(self, scaler: ActorHandle, requests: list[Request]) -> None:
        """Hand the window's requests to the Scaler without waiting for it.

        A busy Scaler must not hold up the next window. If it has not taken the last
        SUBMITS_IN_FLIGHT submissions, this window's requests are dropped and counted:
        their events are still pending, so the next window asks again.
        """
        if len(self._submits) >= SUBMITS_IN_FLIGHT:
            self.requests_dropped += len(requests)
            return
        self.requests_sent += len(requests)
        ref = scaler.submit.remote(requests)

        async def wait() -> None:
            try:
                await asyncio.wait_for(ref, timeout=30)
            except Exception as e:
                log.warning("%d requests not taken by the scaler: %s", len(requests), e)

        task = asyncio.get_running_loop().create_task(wait())
        self._submits.add(task)
        task.add_done_callback(self._submits.discard)

    async def _refresh(self, statedb: ActorHandle, windows: list[HostWindow]) -> None:
        """Bring the mirror of these hosts' containers up to the StateDB's seq, in one call."""
        queries: list[WindowQuery] = [
            (w.host, list(w.names), self._seen_seq.get(w.host, -1), [n for n in w.names if n not in self._prepared])
            for w in windows]
        changes: GuardianChanges = await statedb.guardian_changes_many.remote(queries, self._instance)
        if changes["instance"] != self._instance:
            # A new StateDB (or a new Guardian): what the mirror holds may be stale.
            self._instance = changes["instance"]
            self._forget_all()
        for w in windows:
            self._seen_seq[w.host] = changes["seq"]
        if changes["config"] is not None:
            self.settings = GuardianSettings.from_config(changes["config"])
        if changes["rules"] is not None and self._parse_rules(changes["rules"]):
            self._hosts.clear()  # the rules read other values: every host's columns again
        if tuple(self.settings.guardable_resources) != self._guardable:
            # What is guarded changed: every prepared container is re-prepared from its documents.
            self._guardable = tuple(self.settings.guardable_resources)
            self._forget_all()
            changes = await statedb.guardian_changes_many.remote(
                [(w.host, list(w.names), -1, list(w.names)) for w in windows], self._instance)
            for w in windows:
                self._seen_seq[w.host] = changes["seq"]
        changed: set[str] = set()
        for name in changes["gone"]:
            self._forget(name)
            changed.add(name)
        for name, doc in changes["structures"].items():
            ldoc = changes["limits"].get(name)
            source = (doc, _without_bounds(ldoc))
            if (name in self._prepared and self._sources.get(name) == source
                    and _bounds_of(ldoc) == self._stored_bounds.get(name)):
                continue  # only the upper/lower this Guardian wrote moved: prepared as it is
            self._sources[name] = source
            changed.add(name)
            try:
                limits = Limits.model_validate(ldoc) if ldoc else None
                structure = _STRUCTURE.validate_python(doc)
                if not isinstance(structure, (Container, Application)):
                    raise ValueError(f"a {structure.subtype} is not guarded")
                self._prepared[name] = prepare(structure, limits, self._guardable)
                self.prepares += 1
            except Exception:
                log.exception("guardian: %s cannot be evaluated until its documents change", name)
                self._forget(name)
                continue
            self._stored_bounds[name] = _bounds_of(ldoc)
            self._dirty.add(name)
        for w in windows:
            hc = self._hosts.get(w.host)
            if hc is None or hc.names != w.names:
                self._hosts[w.host] = HostColumns.build(w.names, [self._prepared.get(n) for n in w.names],
                                                        self._ruleset)
            elif changed:
                index = w.index()
                hc.update_many([(index[name], self._prepared.get(name)) for name in changed if name in index])
        if self.windows % MIRROR_PRUNE_WINDOWS == 0:
            alive = {n for hc in self._hosts.values() for n in hc.names}
            for name in set(self._prepared) - alive:
                self._forget(name)
            # Pending events of hosts and groups no window stepped for a while (a node's hosts
            # joined otherwise since): they would only be counted.
            stale = time.monotonic() - EVENTS_KEPT_S
            for key in [k for k in self._events if self._events_used.get(k, 0.0) < stale]:
                del self._events[key]
                self._events_used.pop(key, None)

    def _forget(self, name: str) -> None:
        self._prepared.pop(name, None)
        self._sources.pop(name, None)
        self._stored_bounds.pop(name, None)
        self._dirty.discard(name)
        self.events.pop(name, None)
        for he in self._events.values():
            i = he.index.get(name)
            if i is not None:
                he.clear(i)

    def _forget_all(self) -> None:
        self._prepared.clear()
        self._sources.clear()
        self._stored_bounds.clear()
        self._dirty.clear()
        self._seen_seq.clear()
        self._hosts.clear()

    def _step_windows(self, windows: list[HostWindow], bounds: Bounds, new_events: list[EventEntry],
                      requests: list[Request]) -> None:
        """The hosts' windows that ended together, joined and stepped as one (a node's hosts: one
        pass of array operations instead of one per host; their pending events are one
        `HostEvents`, under the group's name). If the joined step fails, each host is stepped
        alone in this window; a host that fails alone is stepped alone until it does not."""
        together: dict[float, list[HostWindow]] = {}
        for w in windows:
            if w.host in self._hosts and w.host not in self._alone:
                together.setdefault(w.window_end, []).append(w)
        grouped = {w.host for group in together.values() if len(group) > 1 for w in group}
        for group in together.values():
            if len(group) < 2:
                continue
            key = " ".join(w.host for w in group)  # a space is in no host's name (`check_name`)
            mine: tuple[Bounds, list[EventEntry], list[Request]] = ({}, [], [])
            try:
                joined = HostWindow.concat(group, key)
                self._step_host(joined, HostColumns.concat([self._hosts[w.host] for w in group]), *mine,
                                carried=group[0].host)
            except Exception:
                log.exception("guardian: the joined window of %s failed; each is evaluated alone", key)
                self._events.pop(key, None)
                bounds.update(mine[0])  # computed and marked written (`_report_moved`): written
                grouped -= {w.host for w in group}
                continue
            bounds.update(mine[0])
            new_events += mine[1]
            requests += mine[2]
            for w in group:
                self._events_of(w, key)
        for w in windows:
            if w.host not in grouped:
                self._step_alone(w, bounds, new_events, requests)

    def _step_alone(self, w: HostWindow, bounds: Bounds, new_events: list[EventEntry], requests: list[Request]
                    ) -> None:
        """One host's window on its own (its pending events under its own name)."""
        try:
            self._step_host(w, self._hosts[w.host], bounds, new_events, requests, carried=w.host)
            self._alone.discard(w.host)
            self._events_of(w, w.host)
        except Exception:
            # One host's failure neither stops the others' windows nor sticks: its
            # columns and pending events are built again from the next window.
            log.exception("guardian: the window of %s failed; its pending events are dropped", w.host)
            self._hosts.pop(w.host, None)
            self._events.pop(w.host, None)
            self._alone.add(w.host)

    def _events_of(self, w: HostWindow, key: str) -> None:
        """Host `w.host`'s pending events are now under `key`: those under its last key go
        (the last host to leave a key takes it with it)."""
        before = self._group_of.get(w.host)
        self._group_of[w.host] = key
        if before is None or before == key:
            return
        he = self._events.get(before)
        if he is not None:
            if before in self._group_of.values():
                for name in w.names:
                    i = he.index.get(name)
                    if i is not None:
                        he.clear(i)
            else:
                del self._events[before]

    def _step_host(self, w: HostWindow, hc: HostColumns, bounds: Bounds, new_events: list[EventEntry],
                   requests: list[Request], carried: str = "") -> None:
        """One host's window: the rules over its columns, the pending events as arrays
        (`policy.event_columns`), then one at a time only the containers on whose events a
        request rule may hold, whose boundaries may have moved, or that the columns cannot
        decide; what moved goes into the accumulators."""
        try:
            fired: Mapping[int, Optional[list[Rule]]] = fire_host(hc, self._ruleset, w)
        except Exception:
            log.exception("guardian: the window of %s is evaluated one container at a time", w.host)
            fired = {i: None for i in range(len(hc.names))}
        he = self._host_events(w.host, hc, carried)
        before = he.copy()
        now, timeout = w.window_end, self.settings.event_timeout_s
        currents, usages, usable, cpu_idle = host_inputs(hc, w)
        he.step(usable, {i: f for i, f in fired.items() if f}, currents, usages, now, timeout)
        fit = FitInputs(usages, currents, {r: hc.series[f"{r}.lower"] for r in currents},
                        {r: hc.series[f"{r}.boundary"] for r in currents})
        must, removes = may_request(self._gate, he.counts(now, timeout, currents), hc.boundary_types, cpu_idle,
                                    len(hc.names), fit)
        dirty = self._dirty
        # A container prepared again (its `current` moved) on which no request rule acts needs
        # no evaluation either: its stale events went with the step, and its boundaries are
        # the prepared ones. Without usage it goes the one-at-a-time way, as before.
        chosen = [i for i, name in enumerate(hc.names)
                  if hc.prepared[i] is not None
                  and (must[i] or fired.get(i, []) is None or (name in dirty and not usable[i]))]
        alone = set(chosen)
        for i, name in enumerate(hc.names):
            p = hc.prepared[i]
            if p is not None and name in dirty and i not in alone:
                self._report_moved(name, p.bounds, bounds)
        for name, counts in removes.items():
            he.remove_oldest(name, np.where(usable & ~must, counts, 0))
        for i, rules in fired.items():
            if rules and i not in alone and usable[i]:
                new_events += cast(list[EventEntry], event_entries(hc.names[i], rules, he.shapes, now, currents,
                                                                   usages, i))
        for i in chosen:
            p = hc.prepared[i]
            assert p is not None
            pending = self._decide(hc.names[i], p, usage_of(w, i), now, fired.get(i, []), before.events(i), bounds,
                                   new_events, requests)
            if not he.put(i, pending):
                log.warning("guardian: pending events of %s dropped: their rules changed", hc.names[i])

    def _host_events(self, host: str, hc: HostColumns, carried: str = "") -> HostEvents:
        """The pending events of this host's (or group's) containers, in the window's order; a
        new group starts from those of the group `carried` was in (what the others had is lost)."""
        self._events_used[host] = time.monotonic()
        he = self._events.get(host)
        if he is None:
            before = self._events.get(self._group_of.get(carried, ""))
            if before is not None and before.shapes == self._shapes:
                he = self._events[host] = before.regrid(hc.names)
            else:
                he = self._events[host] = HostEvents(hc.names, self._shapes)
        elif he.shapes != self._shapes:
            he = self._events[host] = he.reshaped(hc.names, self._shapes)  # the rules changed
        elif he.names != hc.names:
            he = self._events[host] = he.regrid(hc.names)
        return he

    def _decide(self, name: str, p: Prepared, usage: Mapping[str, float], now: float, fired: Optional[list[Rule]],
                events: list[Event], bounds: Bounds, new_events: list[EventEntry], requests: list[Request]
                ) -> list[Event]:
        """One structure's window (`evaluate_prepared`) on its pending `events`; what moved goes
        into the accumulators; returns its pending events after the window."""
        self.decided += 1
        try:
            step = evaluate_prepared(p, self._ruleset, usage, events, now, self.settings, fired=fired)
        except Exception:
            log.exception("guardian: %s skipped this window", name)
            return events
        self._report_moved(name, step.bounds, bounds)
        new_events += [_event_entry(e) for e in step.new_events]
        requests += step.requests
        return step.pending_events

    def _report_moved(self, name: str, computed: Mapping[str, Bound], bounds: Bounds) -> None:
        """The boundaries of `name` that differ from those stored go into `bounds`; it is clean."""
        self._dirty.discard(name)
        stored = self._stored_bounds.setdefault(name, {})
        moved = {res: ul for res, ul in computed.items() if stored.get(res) != ul}
        if moved:
            bounds[name] = moved
            stored.update(moved)

    def _step_prepared(
        self, prepared: dict[str, Prepared], usages: Mapping[str, Usage], now: float
    ) -> tuple[Bounds, list[EventEntry], list[Request]]:
        """One window for each prepared structure (applications, users): the bounds that moved, new events, requests."""
        bounds: Bounds = {}
        new_events: list[EventEntry] = []
        requests: list[Request] = []
        names = list(prepared)
        try:
            # Every event rule on every structure of the window at once.
            fired: list[Any] = fire_window([prepared[n] for n in names], self._ruleset,
                                           [usages.get(n, {}) for n in names])
        except Exception:
            log.exception("guardian: the window's rules are evaluated one structure at a time")
            fired = [None] * len(names)
        for name, p, f in zip(names, prepared.values(), fired):
            pending = self._decide(name, p, usages.get(name, {}), now, f, self.events.get(name, []), bounds,
                                   new_events, requests)
            if pending:
                self.events[name] = pending
            else:
                self.events.pop(name, None)
        return bounds, new_events, requests

    async def _evaluate_groups(self, statedb: ActorHandle, host: str, window_end: float) -> list[Request]:
        """Applications (or users) on the Refeeder's sums, in the same window flow (reference §3.8).

        Each is evaluated once per window of its anchor node (the host of its first
        container), after this window's usage is in the StateDB, so its sum holds
        this window and the other nodes' last ones.
        """
        subtype = self.settings.structure_guarded
        view: GroupGuardianView = await statedb.group_guardian_view.remote(host, subtype)
        model: Union[type[User], type[Application]] = User if subtype == "user" else Application
        prepared = {}
        for doc in view["structures"]:
            try:
                ldoc = view["limits"].get(doc["name"])
                prepared[doc["name"]] = prepare(model.model_validate(doc), Limits.model_validate(ldoc) if ldoc else None,
                                                self.settings.guardable_resources)
            except Exception:
                log.exception("guardian: %s skipped this window", doc["name"])
        bounds, new_events, requests = self._step_prepared(prepared, view["usages"], window_end)
        if bounds or new_events:
            await statedb.guardian_report.remote({}, bounds, new_events, window_end)
        return requests

    def _notify_peers(self, windows: list[HostWindow]) -> None:
        """Tell the DatabaseSnapshoter (each window with the limits it was evaluated against)
        and the ReBalancer that these windows are in the StateDB; never wait for them."""
        frames = [SeriesFrame(w, self._hosts[w.host].series) for w in windows if w.host in self._hosts]
        self._notify(DATABASE_SNAPSHOTER_NAME, "on_windows", frames)
        self._notify(REBALANCER_NAME, "on_windows", [w.host for w in windows], max(w.window_end for w in windows))

    def _notify(self, name: str, method: str, *args: Any) -> None:
        """Call `name.method(*args)` without waiting; a peer that is not deployed is looked up now and then."""
        calls = self._peer_calls.setdefault(name, set())
        if len(calls) >= 100:
            return  # a stuck peer loses windows, the Guardian loses nothing
        peer = self._peers.get(name)
        if peer is None:
            # Looked up now and then, not every window, when it is not deployed.
            if time.monotonic() - self._peer_looked_up.get(name, -SNAPSHOTER_LOOKUP_S) < SNAPSHOTER_LOOKUP_S:
                return
            self._peer_looked_up[name] = time.monotonic()
            try:
                peer = self._peers[name] = self._actors.get(name)
            except Unavailable:
                return
        try:
            ref = getattr(peer, method).remote(*args)
        except Exception as e:  # a peer of another version without that method: it misses windows
            log.debug("%s.%s not called: %s", name, method, e)
            return

        async def wait() -> None:
            try:
                await asyncio.wait_for(ref, timeout=30)
            except Exception as e:
                log.debug("%s.%s of a window lost: %s", name, method, e)

        task = asyncio.get_running_loop().create_task(wait())
        calls.add(task)
        task.add_done_callback(calls.discard)

    def _parse_rules(self, docs: list[Document]) -> bool:
        """Take the rules the StateDB holds; whether they changed."""
        if docs == self._rules_key:
            return False
        self._rules = [Rule.model_validate(d) for d in docs]
        self._ruleset = RuleSet.of(self._rules)
        self._shapes = shapes_of(self._ruleset)
        self._gate = RequestGate.of(self._ruleset)
        self._rules_key = docs
        return True


def _bounds_of(ldoc: Optional[Document]) -> dict[str, tuple[Optional[float], Optional[float]]]:
    """(upper, lower) of each resource of a limits document, as stored."""
    return {res: (r.get("upper"), r.get("lower")) for res, r in ((ldoc or {}).get("resources") or {}).items()}


def _without_bounds(ldoc: Optional[Document]) -> Optional[Document]:
    """A limits document without each resource's upper and lower."""
    if not ldoc:
        return ldoc
    resources = ldoc.get("resources") or {}
    return {**ldoc, "resources": {res: {k: v for k, v in r.items() if k not in ("upper", "lower")}
                                  if isinstance(r, dict) else r for res, r in resources.items()}}


def _event_entry(e: Event) -> EventEntry:
    """An event as the StateDB's event log holds it."""
    return cast(EventEntry, e.model_dump())
