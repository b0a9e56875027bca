"""Splitting an application's amount over its containers (reference §4.8, §10.6).

The amount is cut into slices of 5 shares (1 for energy). Each slice of a scale-up goes
to the container that needs it most (the lowest priority tuple), each slice of a
scale-down to the one that can spare it most (the highest); a container leaves the
scale-down once it reaches its lower limit.
"""
from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Optional

from ..model import Container, Resource, ScaledField

SLICE = 5
ENERGY_SLICE = 1


def field_value(resource: Resource, field: ScaledField) -> Optional[float]:
    """The resource's `current` or `max`, as `field` names."""
    return resource.current if field == "current" else resource.max


def _sign(amount: float) -> int:
    return -1 if amount < 0 else 1


def split_amount_in_slices(total: int, slice_amount: int) -> list[int]:
    """Slices of `slice_amount` and a smaller rest, with the sign of `total`.

    (23, 5) → [5, 5, 5, 5, 3]; (20, 5) → [5, 5, 5, 5]. NOTE: the original returned [2]
    for (−23, 5); we return [−5, −5, −5, −5, −3].
    """
    if slice_amount <= 0:
        raise ValueError(f"slice amount must be positive, got {slice_amount}")
    count, rest = divmod(abs(total), slice_amount)
    return [_sign(total) * slice_amount] * count + ([_sign(total) * rest] if rest else [])


def split_amount_in_num_slices(total: int, number_of_slices: int) -> list[int]:
    """`total` in `number_of_slices` near-equal parts, the larger first, zeros dropped.

    (7, 3) → [3, 2, 2]; (−2, 3) → [−1, −1].
    """
    if number_of_slices <= 0:
        raise ValueError(f"number of slices must be positive, got {number_of_slices}")
    base, rest = divmod(abs(total), number_of_slices)
    sizes = [base + 1] * rest + [base] * (number_of_slices - rest)
    return [_sign(total) * s for s in sizes if s]


@dataclass(frozen=True)
class Candidate:
    """A container that may receive (or give up) slices."""

    name: str
    base: float
    """Its value before the split (the field being scaled, usually `current`)."""
    lower: float
    """Its lower limit, `max(min, 1)`."""
    usage: float


def container_priority(value: float, lower: float, usage: float) -> tuple[int, float]:
    """(1, v/lower) if v < lower; (2, v − lower) if v < usage; else (3, v − usage) (§4.8).

    Scale-ups serve the lowest tuple first, scale-downs the highest.
    """
    if value < lower:
        return 1, (value / lower if lower else math.inf)
    if value < usage:
        return 2, value - lower
    return 3, value - usage


def assign_splits(amount: int, candidates: Iterable[Candidate], slice_amount: int = SLICE) -> dict[str, int]:
    """Give each slice of `amount` to the best candidate; returns name → amount (§4.8).

    NOTE: a scale-down slice is cut at the candidate's lower limit and the rest goes to
    the next candidate (the original could take a container below its lower limit).
    """
    live = list(candidates)
    alloc = {c.name: 0 for c in live}

    def value(c: Candidate) -> float:
        return c.base + alloc[c.name]

    def priority(c: Candidate) -> tuple[int, float]:
        return container_priority(value(c), c.lower, c.usage)

    slices = split_amount_in_slices(amount, slice_amount)
    while slices and live:
        piece = slices.pop(0)
        best = min(live, key=priority) if amount > 0 else max(live, key=priority)
        if amount < 0:
            take = max(piece, -math.floor(value(best) - best.lower))
            if take == 0:  # less than one share above its lower limit: no more from it
                live.remove(best)
                slices.insert(0, piece)
                continue
            if take != piece:
                slices.insert(0, piece - take)
            piece = take
        alloc[best.name] += piece
        if amount < 0 and value(best) <= best.lower:
            live.remove(best)
    return {name: a for name, a in alloc.items() if a}


def container_candidates(
    amount: int, containers: Iterable[Container], usages: Mapping[str, Optional[float]], resource: str,
    field: ScaledField,
) -> list[Candidate]:
    """Containers with usage; for a scale-down only those above their lower limit (§4.8)."""
    out = []
    for c in containers:
        r = c.resource(resource)
        usage = usages.get(c.name)
        if r is None or usage is None:
            continue
        lower = max(r.min or 0, 1)
        base = field_value(r, field) or 0
        if amount < 0 and base <= lower:
            continue
        out.append(Candidate(name=c.name, base=base, lower=lower, usage=usage))
    return out


def propagate_application_request(
    app_amount: int,
    containers: Iterable[Container],
    usages: Mapping[str, Optional[float]],
    resource: str = "cpu",
    field: ScaledField = "current",
) -> dict[str, int]:
    """Split an application's amount over its containers: name → amount (§4.8).

    `usages` maps container name → usage of `resource`. E.g. c0 200/190, c1 200/50,
    c2 40/30 (min 50): +30 → c2 15, c0 15; −30 → c1 −30.
    """
    candidates = container_candidates(app_amount, containers, usages, resource, field)
    return assign_splits(app_amount, candidates, ENERGY_SLICE if resource == "energy" else SLICE)
