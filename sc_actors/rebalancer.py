"""ReBalancer actor: on a node's pushed window, the swaps of the applications anchored there (reference §7.4).

Thin: the Guardian tells it each window is in the StateDB (`on_window`, never
awaited); at most once per `WINDOW_TIMELAPSE` per node, and never while its last
round is still running, it asks the StateDB in one call for those applications
(with the Refeeder's sums and their containers' last windows) and the users anchored
there, runs the pure `round_requests`, and hands the swaps to the Scaler as requests:
the Scaler applies each pair all or nothing, keeps host accounting its own, and puts
every swap in the decision log. The original polled every 30 s on usage 10–40 s old.
"""
from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing_extensions import TypedDict

from .handles import Handles
from .loops import every
from .model import Application, Container, User
from .policy.health import HEARTBEAT_S
from .policy.rebalancing import round_requests
from .settings import RebalancerSettings
from .store.views import RebalancerView

log = logging.getLogger(__name__)

CONFIG_REFRESH_S = 2.0
"""How often the service document is read while the ReBalancer is inactive, seconds."""


class Decision(TypedDict):
    """One application's (or user's) last round: who gives, who takes, the swaps sent."""

    donors: list[str]
    receivers: list[str]
    swaps: list[tuple[str, str, float]]


class RebalancerStatus(TypedDict):
    """`ReBalancer.ping`: rounds and swaps so far, whether active, round times, last decisions."""

    rounds: int
    swaps_sent: int
    active: bool
    round_s: list[float]
    decisions: dict[str, Decision]


class ReBalancer:
    def __init__(self) -> None:
        self.settings = RebalancerSettings()
        self._config_at = -CONFIG_REFRESH_S
        self._last_round: dict[str, float] = {}
        self._busy: set[str] = set()
        self._actors = Handles()
        self.rounds = 0
        self.swaps_sent = 0
        self.round_s: collections.deque[float] = collections.deque(maxlen=1000)
        self.last_decisions: dict[str, Decision] = {}
        try:
            self._beating: asyncio.Task[None] | None = asyncio.get_running_loop().create_task(
                every(lambda: HEARTBEAT_S, self._beat, asyncio.Event(), log, "rebalancer heartbeat"))
        except RuntimeError:
            self._beating = None

    async def _beat(self) -> None:
        await self._actors.statedb.heartbeat.remote("rebalancer")

    async def ping(self) -> RebalancerStatus:
        return {"rounds": self.rounds, "swaps_sent": self.swaps_sent, "active": self.settings.active,
                "round_s": list(self.round_s)[-100:], "decisions": self.last_decisions}

    async def on_windows(self, hosts: list[str], window_end: float) -> None:
        """Windows of these hosts (one node's push) are in the StateDB: `on_window` of each."""
        for host in hosts:
            await self.on_window(host, window_end)

    async def on_window(self, host: str, window_end: float) -> None:
        """A window of `host` is in the StateDB: balance what is anchored there, if due."""
        now = time.monotonic()
        if not self.settings.active and now - self._config_at < CONFIG_REFRESH_S:
            return
        if host in self._busy or now - self._last_round.get(host, -1e9) < self.settings.window_s:
            return
        self._busy.add(host)
        t0 = time.perf_counter()
        try:
            await self._round(host)
        except Exception:
            log.exception("rebalancer round of %s failed", host)
        finally:
            self._busy.discard(host)
            self._last_round[host] = time.monotonic()
        self.round_s.append(time.perf_counter() - t0)

    async def _round(self, host: str) -> None:
        view: RebalancerView = await self._actors.statedb.rebalancer_view.remote(host)
        self._config_at = time.monotonic()
        self.settings = RebalancerSettings.from_config(view["config"])
        if not self.settings.active:
            return
        structures = view["structures"]
        apps = {n: Application.model_validate(d) for n, d in structures.items() if d.get("subtype") == "application"}
        containers = {n: Container.model_validate(d) for n, d in structures.items() if d.get("subtype") == "container"}
        users = [User.model_validate(view["users"][n]) for n in view["user_names"] if n in view["users"]]
        requests, decisions = round_requests(
            self.settings, [apps[n] for n in view["applications"] if n in apps], containers, view["usages"],
            view["rules"], time.time(), users, apps,
        )
        self.rounds += 1
        self.last_decisions.update({n: {"donors": b.donors, "receivers": b.receivers,
                                        "swaps": [(s.donor, s.receiver, s.amount) for s in b.swaps]}
                                    for n, b in decisions.items()})
        if requests:
            self.swaps_sent += len(requests)
            await self._actors.scaler.submit.remote(requests)
