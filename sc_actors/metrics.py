"""Every custom metric of the control plane, in one place (issue 8).

Exported with `ray.util.metrics` on the metrics export port of the node hosting
the actor that sets them (Prometheus text format, `ray.nodes()[i]["MetricsExportPort"]`),
where Ray prefixes each name with `ray_` and counters get `_total`:

| name (as scraped)                       | kind      | tags                                   | set by    |
|-----------------------------------------|-----------|----------------------------------------|-----------|
| ray_sc_container_usage                  | gauge     | structure, resource, host              | Guardian  |
| ray_sc_container_current                | gauge     | structure, resource, host              | Guardian  |
| ray_sc_container_upper                  | gauge     | structure, resource, host              | Guardian  |
| ray_sc_container_lower                  | gauge     | structure, resource, host              | Guardian  |
| ray_sc_events_total                     | counter   | structure, resource, name              | Guardian  |
| ray_sc_requests_total                   | counter   | structure, resource, action, rule, outcome | Scaler |
| ray_sc_guardian_epoch_seconds           | histogram | host                                   | Guardian  |
| ray_sc_guardian_lag_seconds             | gauge     | host                                   | Guardian  |
| ray_sc_scaler_apply_seconds             | histogram | kind                                   | Scaler    |
| ray_sc_statedb_journal_bytes            | gauge     | -                                      | StateDB   |
| ray_sc_statedb_checkpoint_age_seconds   | gauge     | -                                      | StateDB   |

CPU in shares (100 = one core), memory in MiB, as everywhere else. A node window of
more than `PER_CONTAINER_GAUGES_MAX` containers skips the per-container gauges and
counts events with an empty structure label. The metric
objects are created lazily, in the process of the actor that first sets them; when
Ray is not initialised (pure tests, the CLI) every call is a no-op. A metric never
raises into the control loop: a failure is logged once and the value dropped.
"""
from __future__ import annotations

import collections
import logging
from typing import TYPE_CHECKING, Any, Callable, Iterable, Mapping, Optional

from typing_extensions import Concatenate, ParamSpec, TypedDict

from .model import ResourceName

if TYPE_CHECKING:
    from .policy.serverless import Prepared
    from .store.views import EventEntry, RequestEntry

log = logging.getLogger(__name__)

RESOURCES: tuple[ResourceName, ...] = ("cpu", "mem")
CONTAINER_TAGS = ("structure", "resource", "host")
EPOCH_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5]
APPLY_BOUNDARIES = [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 5.0]

class _Metrics(TypedDict):
    """The metric objects of this process (`ray.util.metrics` Gauge, Counter, Histogram)."""

    usage: Any
    current: Any
    upper: Any
    lower: Any
    events: Any
    requests: Any
    epoch: Any
    lag: Any
    apply: Any
    journal: Any
    checkpoint_age: Any


_m: Optional[_Metrics] = None
_failed = False
P = ParamSpec("P")


def _metrics() -> Optional[_Metrics]:
    """The metric objects of this process, created on first use; None without Ray."""
    global _m, _failed
    if _m is not None or _failed:
        return _m
    try:
        import ray

        if not ray.is_initialized():
            return None
        from ray.util.metrics import Counter, Gauge, Histogram

        _m = {
            "usage": Gauge("sc_container_usage", "Usage of the last window (cpu shares, mem MiB)",
                           tag_keys=CONTAINER_TAGS),
            "current": Gauge("sc_container_current", "Current limit (cpu shares, mem MiB)", tag_keys=CONTAINER_TAGS),
            "upper": Gauge("sc_container_upper", "Upper boundary (cpu shares, mem MiB)", tag_keys=CONTAINER_TAGS),
            "lower": Gauge("sc_container_lower", "Lower boundary (cpu shares, mem MiB)", tag_keys=CONTAINER_TAGS),
            "events": Counter("sc_events", "Guardian events by structure, resource and event rule",
                              tag_keys=("structure", "resource", "name")),
            "requests": Counter("sc_requests", "Scaler requests by structure, action, rule and outcome "
                                "(applied, trimmed, refused, failed, superseded, expired, dropped)",
                                tag_keys=("structure", "resource", "action", "rule", "outcome")),
            "epoch": Histogram("sc_guardian_epoch_seconds", "Guardian evaluation time of one node's window",
                               boundaries=EPOCH_BOUNDARIES, tag_keys=("host",)),
            "lag": Gauge("sc_guardian_lag_seconds", "Seconds from a window's end to the end of its evaluation",
                         tag_keys=("host",)),
            "apply": Histogram("sc_scaler_apply_seconds", "Scaler time to plan and write one request",
                               boundaries=APPLY_BOUNDARIES, tag_keys=("kind",)),
            "journal": Gauge("sc_statedb_journal_bytes", "Size of the StateDB journal, bytes"),
            "checkpoint_age": Gauge("sc_statedb_checkpoint_age_seconds", "Seconds since the last StateDB checkpoint"),
        }
    except Exception:
        _failed = True
        log.exception("metrics disabled in this process")
    return _m


def _safe(fn: Callable[Concatenate[_Metrics, P], None]) -> Callable[P, None]:
    def wrapper(*args: P.args, **kw: P.kwargs) -> None:
        m = _metrics()
        if m is None:
            return
        try:
            fn(m, *args, **kw)
        except Exception as e:  # never break the control loop for a metric
            log.debug("metric %s dropped: %s", fn.__name__, e)

    wrapper.__name__ = fn.__name__
    wrapper.__doc__ = fn.__doc__
    return wrapper


PER_CONTAINER_GAUGES_MAX = 1000
"""A node window with more containers sets no per-container gauges and counts its
events without the structure label: one series per container, resource and field
would grow past what Prometheus scrapes comfortably (and costs the Guardian more
than the window itself). The requests counter keeps the names of the first this many
structures a Scaler logs, and counts the others' requests under an empty structure
label. The per-host epoch and lag, `sc` and `/ui` still cover every container."""


@_safe
def container_window(m: _Metrics, host: str, prepared: Mapping[str, Prepared], names: Iterable[str],
                     usages: Mapping[str, Mapping[str, float]]) -> None:
    """Gauges of one window: usage, current, upper, lower of each container and resource.

    `prepared` maps a name to the Guardian's `Prepared` entry (structure, limits, bounds).
    """
    names = list(names)
    if len(names) > PER_CONTAINER_GAUGES_MAX:
        return
    for name in names:
        p = prepared.get(name)
        if p is None:
            continue
        for res in RESOURCES:
            r = p.structure.resources.get(res)
            if r is None:
                continue
            tags = {"structure": name, "resource": res, "host": str(getattr(p.structure, "host", None) or host)}
            upper, lower = p.bounds.get(res) or (None, None)
            if upper is None and p.limits is not None and res in p.limits.resources:
                upper, lower = p.limits.resources[res].upper, p.limits.resources[res].lower
            values = ((m["usage"], usages.get(name, {}).get(res)), (m["current"], r.current),
                      (m["upper"], upper), (m["lower"], lower))
            for gauge, value in values:
                if value is not None:
                    gauge.set(float(value), tags=tags)


@_safe
def events(m: _Metrics, new_events: Iterable[EventEntry], per_structure: bool = True) -> None:
    """Count a window's events; without `per_structure` the structure label is left empty."""
    counts: collections.Counter[tuple[str, str, str]] = collections.Counter(
        (str(e.get("structure")) if per_structure else "", str(e.get("resource")), str(e.get("name")))
        for e in new_events)
    for (structure, resource, name), n in counts.items():
        m["events"].inc(n, tags={"structure": structure, "resource": resource, "name": name})


@_safe
def requests(m: _Metrics, entries: Iterable[RequestEntry], labeled: Callable[[str], bool]) -> None:
    """Count logged requests (the Scaler's decision-log entries), one `inc` per label set;
    the structure label only where `labeled(structure)` (bounded: see PER_CONTAINER_GAUGES_MAX)."""
    counts: collections.Counter[tuple[str, str, str, str, str]] = collections.Counter()
    for e in entries:
        structure = str(e.get("structure"))
        counts[(structure if labeled(structure) else "", str(e.get("resource")), str(e.get("action")),
                str(e.get("rule") or ""), str(e.get("outcome")))] += 1
    for (structure, resource, action, rule, outcome), n in counts.items():
        m["requests"].inc(n, tags={"structure": structure, "resource": resource, "action": action, "rule": rule,
                                   "outcome": outcome})


@_safe
def guardian_epoch(m: _Metrics, host: str, seconds: float, lag_s: float) -> None:
    m["epoch"].observe(seconds, tags={"host": host})
    m["lag"].set(lag_s, tags={"host": host})


@_safe
def scaler_apply(m: _Metrics, seconds: float, kind: str = "container") -> None:
    m["apply"].observe(seconds, tags={"kind": kind})


@_safe
def statedb(m: _Metrics, journal_bytes: float, checkpoint_age_s: float) -> None:
    m["journal"].set(float(journal_bytes))
    m["checkpoint_age"].set(float(checkpoint_age_s))
