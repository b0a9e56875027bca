"""Scaling profiles: which limits a new subscription gets, and the timing of the services.

A profile names a way of scaling that one command restores (`sc profile NAME`):

  adaptive   (the default) margins of 4 % (cpu) and 10 % (mem) of the current limit with
             a floor (`policy.limits.ADAPTIVE_MARGIN_FLOOR`), served by the fit-to-demand
             rules: one window above `upper` raises the limit to the demand seen through
             throttling, two (cpu) or five (mem) windows below `lower` fit it to usage.
  original   the original's limits, 10 % of max, served by the original's rules
             (CpuRescaleUp +75 after two events, CpuRescaleDown fit to usage after six, …).

Rules are not switched on and off: each request rule serves the boundary types it names
(`Rule.boundary_types`), so a container subscribed with `boundary_type:
percentage_of_max` gets exactly the original's semantics under either profile. The
profile decides the limits of subscriptions that do not name theirs and, when applied,
rewrites the boundary of every subscribed container. Timing is apart: `ours` (0.4 s
windows) or `original` (10 s windows, 10 s delay, a Scaler ticking every 5 s).

Pure: documents in, documents out; the API writes them in one StateDB record.
"""
from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping

from typing_extensions import TypedDict

from .model import BoundaryType, Document, JsonObject, JsonValue
from .settings import ORIGINAL_PROFILE, GuardianSettings, ScalerSettings, StructuresSnapshoterSettings


class Boundary(TypedDict):
    """The margin a profile gives one resource of a subscription's limits."""

    boundary: int
    boundary_type: BoundaryType


PROFILES: dict[str, dict[str, Boundary]] = {
    "adaptive": {"cpu": {"boundary": 4, "boundary_type": "adaptive"},
                 "mem": {"boundary": 10, "boundary_type": "adaptive"}},
    "original": {"cpu": {"boundary": 10, "boundary_type": "percentage_of_max"},
                 "mem": {"boundary": 10, "boundary_type": "percentage_of_max"}},
}
"""Profile → the limits (boundary, boundary_type per resource) a subscription gets."""
DEFAULT_PROFILE = "adaptive"

TIMINGS: dict[str, dict[str, JsonObject]] = {
    "ours": {
        "guardian": {k: v for k, v in GuardianSettings().to_config().items()
                     if k in ("WINDOW_TIMELAPSE", "WINDOW_DELAY", "EVENT_TIMEOUT")},
        "scaler": {k: v for k, v in ScalerSettings().to_config().items()
                   if k in ("POLLING_FREQUENCY", "REQUEST_TIMEOUT", "ALIGNED_POLLING")},
        "structures_snapshoter": {"POLLING_FREQUENCY": StructuresSnapshoterSettings().polling_frequency_s},
    },
    "original": ORIGINAL_PROFILE,
}
"""Timing → service config keys, with the original's names."""


def check_profile(name: str) -> str:
    if name not in PROFILES:
        raise ValueError(f"unknown profile {name!r}: one of {', '.join(PROFILES)}")
    return name


def check_timing(name: str) -> str:
    if name not in TIMINGS:
        raise ValueError(f"unknown timing {name!r}: one of {', '.join(TIMINGS)}")
    return name


def subscription_limits(profile: str, given: Mapping[str, JsonValue] | None) -> dict[str, JsonObject]:
    """The limits' resources of a new subscription: the profile's, key by key under `given`.

    E.g. adaptive with {"cpu": {"boundary": 8}} → cpu 8 % adaptive, mem 10 % adaptive.
    A resource given with another boundary_type starts from the model's defaults
    instead (the original's 10 %): {"cpu": {"boundary_type": "percentage_of_max"}} →
    cpu 10 % of max, exactly the original's.
    """
    out: dict[str, JsonObject] = {res: {"boundary": b["boundary"], "boundary_type": b["boundary_type"]}
                                  for res, b in PROFILES[check_profile(profile)].items()}
    for res, values in (given or {}).items():
        v = dict(values) if isinstance(values, dict) else {}
        base = out.get(res, {})
        if "boundary_type" in v and v["boundary_type"] != base.get("boundary_type"):
            base = {}
        out[res] = {**base, **v}
    return out


def profile_documents(profile: str, timing: str | None, services: Iterable[Document],
                      limits: Iterable[Document]) -> list[tuple[str, Document]]:
    """(collection, document) puts that apply `profile` (and `timing`, if given).

    The Scaler's `PROFILE` names it for new subscriptions; every limits document gets
    the profile's boundary and boundary_type for the resources it has (upper and lower
    follow at the Guardian's next window); `timing` sets the services' periods.
    """
    check_profile(profile)
    if timing is not None:
        check_timing(timing)
    puts: list[tuple[str, Document]] = []
    for s in services:
        doc = copy.deepcopy(dict(s))
        config = doc.setdefault("config", {})
        before = dict(config)
        if doc["name"] == "scaler":
            config["PROFILE"] = profile
        if timing is not None:
            config.update(TIMINGS[timing].get(doc["name"], {}))
        if config != before:
            puts.append(("services", doc))
    wanted = PROFILES[profile]
    for lim in limits:
        doc = copy.deepcopy(dict(lim))
        changed = False
        for res, r in (doc.get("resources") or {}).items():
            if res in wanted and any(r.get(k) != v for k, v in wanted[res].items()):
                r.update(wanted[res])
                changed = True
        if changed:
            puts.append(("limits", doc))
    return puts
