"""Scaler: applies requests as they arrive, against the hosts' free resources.

Requests are pushed by the Guardian (`submit`); the Scaler dedups them (§4.2),
orders them (§4.5), plans each with the pure `plan_container_request` against a
working copy of its host (free shares, per-core map, memory), applies it through
the container's node's ContainerScaler, and records the new `current` and the host
accounting in the StateDB in one call. A write the node refuses is rolled back to
the previous limits and leaves the accounting untouched.

All host accounting goes through this actor (subscriptions too), under one lock,
so the Orchestrator never races the Scaler over a host's free resources (the
original disabled its Scaler and slept to avoid that, reference §11.3).
"""
from __future__ import annotations

import asyncio
import collections
import copy
import logging
import time
from typing import Any

from .errors import Conflict, Invalid, NotFound, Unavailable
from .model import Container, ContainerLimits, Host, Limits, Request, check_name
from .policy.cores import allocate_cores, core_distribution
from .policy.limits import margin
from .policy.planning import plan_container_request
from .policy.requests import filter_requests, sort_requests
from .settings import NAMESPACE, STATEDB_NAME, ScalerSettings, container_scaler_name

log = logging.getLogger(__name__)

APPLY_TIMEOUT_S = 5.0
DEFAULT_LIMITS = {"cpu": {"boundary": 10, "boundary_type": "percentage_of_max"},
                  "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}}


def request_key(r: Request) -> tuple[str, str]:
    return (r.structure, f"{r.action}_{r.field}_{r.pair_structure or 'system'}")


def distribution_of(host: Host) -> list[str]:
    topology = getattr(host, "topology", None)
    if topology:
        return core_distribution(topology, "Group_PP_LL")
    return sorted(host.resources["cpu"].core_usage_mapping or {}, key=int)


def physical_of(container: Container, host: Host) -> ContainerLimits:
    """The container's limits as the accounting says they are on its node."""
    cores = [c for c, m in (host.resources["cpu"].core_usage_mapping or {}).items() if m.get(container.name, 0) > 0]
    return ContainerLimits(
        cpu_allowance_limit=container.resources["cpu"].current or -1,
        cpu_num=",".join(sorted(cores, key=int)),
        mem_limit=container.resources["mem"].current or -1,
    )


def bounds_of(container: Container) -> dict[str, Any]:
    cpu, mem = container.resources["cpu"], container.resources["mem"]
    return {"cpu": (cpu.min or 0, cpu.max), "mem": (mem.min or 64, mem.max)}


class Scaler:
    def __init__(self) -> None:
        self.pending: list[Request] = []
        self._wake = asyncio.Event()
        self._lock = asyncio.Lock()
        self._statedb = None
        self._node_scalers: dict[str, Any] = {}
        self.outcomes: collections.Counter[str] = collections.Counter()
        self.apply_s: collections.deque[float] = collections.deque(maxlen=1000)
        self._task = asyncio.get_event_loop().create_task(self._loop())

    # ------------------------------------------------------------------ handles

    def _db(self) -> Any:
        import ray

        if self._statedb is None:
            self._statedb = ray.get_actor(STATEDB_NAME, namespace=NAMESPACE)
        return self._statedb

    def _node(self, host: str) -> Any:
        import ray

        h = self._node_scalers.get(host)
        if h is None:
            try:
                h = ray.get_actor(container_scaler_name(host), namespace=NAMESPACE)
            except ValueError:
                raise Unavailable(f"no ContainerScaler for host {host!r}") from None
            self._node_scalers[host] = h
        return h

    async def ping(self) -> dict[str, Any]:
        return {"pending": len(self.pending), "outcomes": dict(self.outcomes), "apply_s": list(self.apply_s)[-100:]}

    # ------------------------------------------------------------------ requests

    async def submit(self, requests: list[dict[str, Any]]) -> int:
        """Queue requests; the newest per (structure, action) wins (§4.2)."""
        self.pending.extend(Request.model_validate(r) for r in requests)
        self._wake.set()
        return len(self.pending)

    async def _loop(self) -> None:
        # NOTE: never let one bad batch stop the Scaler.
        while True:
            try:
                await asyncio.wait_for(self._wake.wait(), timeout=1.0)
            except asyncio.TimeoutError:
                pass
            self._wake.clear()
            if not self.pending:
                continue
            batch, self.pending = self.pending, []
            try:
                await self._process(batch)
            except Exception:
                log.exception("scaler batch failed")

    async def _process(self, batch: list[Request]) -> None:
        db = self._db()
        names = sorted({r.structure for r in batch})
        view = await db.scaler_view.remote(names)
        settings = ScalerSettings.from_config(view["config"])
        now = time.time()
        kept, purged = filter_requests(batch, now, settings.request_timeout_s)
        entries = [self._entry(r, "expired" if now - r.timestamp > settings.request_timeout_s else "superseded", "")
                   for r in purged]
        if not settings.active:
            # Inactive Scaler: requests wait (until they expire), as in the original.
            self.pending = kept + self.pending
            if entries:
                await db.log_requests.remote(entries)
            return
        if settings.apply_delay_s > 0:
            # The original's clock-aligned polling tick, for side-by-side benchmarks.
            p = settings.polling_frequency_s
            await asyncio.sleep(p - (time.time() % p))
        async with self._lock:
            entries += await self._apply_all(sort_requests(kept), view)

    async def _apply_all(self, requests: list[Request], view: dict[str, Any]) -> list[dict[str, Any]]:
        db = self._db()
        structures = view["structures"]
        hosts = {n: Host.model_validate(d) for n, d in view["hosts"].items()}
        currents: dict[str, dict[str, float]] = {}
        entries = []
        for req in requests:
            t0 = time.perf_counter()
            doc = structures.get(req.structure)
            if doc is None or doc.get("subtype") != "container":
                entries.append(self._entry(req, "refused", "not a subscribed container"))
                continue
            container = Container.model_validate(doc)
            for res, value in currents.get(container.name, {}).items():
                container.resources[res].current = value
            host = hosts.get(container.host)
            if host is None:
                entries.append(self._entry(req, "refused", f"host {container.host!r} unknown"))
                continue
            if not host.reachable:
                entries.append(self._entry(req, "dropped", f"host {container.host!r} unreachable"))
                continue
            ldoc = view["limits"].get(container.name)
            mem_margin = 0.0
            if ldoc and "mem" in ldoc.get("resources", {}):
                lm = Limits.model_validate(ldoc).resources["mem"]
                m = container.resources["mem"]
                mem_margin = margin(lm.boundary, lm.boundary_type, m.max, m.current)
            plan = plan_container_request(
                req,
                container,
                host,
                physical_of(container, host),
                view["usages"].get(container.name, {}).get("mem"),
                mem_margin,
                distribution_of(host),
            )
            if plan.outcome == "refused":
                entries.append(self._entry(req, "refused", plan.reason))
                continue
            try:
                await self._write(container, plan.change)
            except Exception as e:
                await self._rollback(container, host)
                entries.append(self._entry(req, "failed", _reason(e)))
                continue
            # Accounting follows only a write that succeeded.
            hosts[host.name] = plan.host
            currents.setdefault(container.name, {})[req.resource] = plan.new_current
            self.apply_s.append(time.perf_counter() - t0)
            entries.append(self._entry(req, plan.outcome, plan.reason, plan.amount, plan.new_current))
        host_updates = {
            n: {r: h.resources[r].model_dump(exclude_none=True) for r in ("cpu", "mem")}
            for n, h in hosts.items()
            if h.model_dump() != view["hosts"].get(n)
        }
        if currents or host_updates or entries:
            await db.record_scaling.remote(currents, host_updates, entries)
        return entries

    async def _write(self, container: Container, change: Any) -> None:
        node = self._node(container.host)
        await asyncio.wait_for(
            node.apply.remote(container.name, change.model_dump(exclude_none=True), bounds_of(container)),
            timeout=APPLY_TIMEOUT_S,
        )

    async def _rollback(self, container: Container, host: Host) -> None:
        """Put back the limits the accounting holds, undoing any partial write."""
        try:
            before = physical_of(container, host)
            await asyncio.wait_for(
                self._node(container.host).apply.remote(container.name, before.model_dump(), None),
                timeout=APPLY_TIMEOUT_S,
            )
        except Exception as e:
            log.warning("rollback of %s failed: %s", container.name, _reason(e))

    def _entry(self, r: Request, outcome: str, reason: str, amount: float | None = None,
               new_current: float | None = None) -> dict[str, Any]:
        self.outcomes[outcome] += 1
        d = r.model_dump(exclude_none=True)
        d.update(outcome=outcome, reason=reason, applied_at=time.time())
        if amount is not None:
            d["amount_applied"] = amount
        if new_current is not None:
            d["new_current"] = new_current
        return d

    async def reapply(self, names: list[str]) -> list[str]:
        """Write the recorded limits of these containers back to their nodes (drift repair)."""
        db = self._db()
        done = []
        async with self._lock:
            view = await db.scaler_view.remote(names)
            for name in names:
                doc = view["structures"].get(name)
                if doc is None or doc.get("subtype") != "container":
                    continue
                c = Container.model_validate(doc)
                host = view["hosts"].get(c.host)
                if host is None:
                    continue
                want = physical_of(c, Host.model_validate(host))
                try:
                    await asyncio.wait_for(self._node(c.host).apply.remote(name, want.model_dump(), bounds_of(c)),
                                           timeout=APPLY_TIMEOUT_S)
                    done.append(name)
                except Exception as e:
                    log.warning("could not restore the limits of %s: %s", name, _reason(e))
        return done

    # ------------------------------------------------------------------ subscriptions

    async def subscribe_container(self, container: dict[str, Any], limits: dict[str, Any] | None = None) -> dict[str, Any]:
        """Place a container on its host: cores, memory, limits on the node, documents.

        Checks before anything changes: the name, no structure of that name, the
        host exists and its node lists the container, the host has the free CPU
        and memory. Then writes the limits on the node, then the documents and the
        host accounting in one StateDB record.
        """
        try:
            check_name(container.get("name", ""))
            c = Container.model_validate(container)
        except Exception as e:
            raise Invalid(str(e)) from None
        lim = Limits.model_validate({"name": c.name, "resources": (limits or {}).get("resources") or DEFAULT_LIMITS})
        db = self._db()
        async with self._lock:
            if await db.exists.remote("structures", c.name):
                raise Conflict(f"structure {c.name!r} already subscribed")
            try:
                host = Host.model_validate(await db.get.remote("structures", c.host))
            except KeyError:
                raise NotFound(f"host {c.host!r} not found") from None
            if host.subtype != "host":
                raise Invalid(f"{c.host!r} is not a host")
            node = self._node(c.host)
            if c.name not in await node.list_containers.remote():
                raise NotFound(f"container {c.name!r} not found on host {c.host!r}")
            cpu, mem = c.resources["cpu"], c.resources["mem"]
            if cpu.current is None:
                cpu.current = cpu.max
            if mem.current is None:
                mem.current = mem.max
            hmem = host.resources["mem"]
            if hmem.free < mem.current:
                raise Invalid(f"host {host.name} has {hmem.free:g} MiB free, {mem.current:g} needed")
            try:
                cores = allocate_cores(host.resources["cpu"].core_usage_mapping, c.name, cpu.current,
                                       distribution_of(host))
            except ValueError as e:
                raise Invalid(str(e)) from None
            new_host = host.model_copy(deep=True)
            new_host.resources["cpu"].core_usage_mapping = cores.core_map
            new_host.resources["cpu"].free = host.resources["cpu"].free - cpu.current
            new_host.resources["mem"].free = hmem.free - mem.current
            change = {"cpu_allowance_limit": cpu.current, "cpu_num": cores.cpu_num, "mem_limit": mem.current}
            try:
                await asyncio.wait_for(node.apply.remote(c.name, change, bounds_of(c)), timeout=APPLY_TIMEOUT_S)
            except Exception as e:
                raise Invalid(f"node refused the limits: {_reason(e)}") from None
            await db.transact.remote(
                puts=[("structures", c.model_dump(mode="json", exclude_none=True)),
                      ("limits", lim.model_dump(mode="json", exclude_none=True)),
                      ("structures", new_host.model_dump(mode="json", exclude_none=True))]
            )
            return c.model_dump(mode="json", exclude_none=True)

    async def desubscribe_container(self, name: str) -> None:
        """Give the container's cores and memory back to its host and forget it."""
        db = self._db()
        async with self._lock:
            try:
                c = Container.model_validate(await db.get.remote("structures", name))
            except KeyError:
                raise NotFound(f"container {name!r} not found") from None
            except Exception:
                raise Invalid(f"{name!r} is not a container") from None
            puts: list[tuple[str, dict[str, Any]]] = []
            try:
                host = Host.model_validate(await db.get.remote("structures", c.host))
                cmap = copy.deepcopy(host.resources["cpu"].core_usage_mapping or {})
                freed = 0.0
                for core in cmap.values():
                    held = core.pop(name, 0)
                    core["free"] = core.get("free", 0) + held
                    freed += held
                host.resources["cpu"].core_usage_mapping = cmap
                host.resources["cpu"].free += freed
                host.resources["mem"].free = min(host.resources["mem"].max,
                                                 host.resources["mem"].free + (c.resources["mem"].current or 0))
                puts.append(("structures", host.model_dump(mode="json", exclude_none=True)))
            except KeyError:
                log.warning("host %s of %s is gone; nothing to give back", c.host, name)
            for app in await db.list.remote("structures", "application"):
                if name in app.get("containers", []):
                    app["containers"] = [x for x in app["containers"] if x != name]
                    puts.append(("structures", app))
            deletes = [("structures", name)]
            if await db.exists.remote("limits", name):
                deletes.append(("limits", name))
            await db.transact.remote(puts=puts, deletes=deletes)


def _reason(e: BaseException) -> str:
    cause = getattr(e, "cause", None)
    return str(cause if cause is not None else e) or type(e).__name__
