"""The entries of the StateDB's volatile logs: the Guardian's events and the decision log.

Kept apart from `views.py` (which re-exports them) because the `State` holds the logs
and the views read the `State`: one module below both.
"""
from __future__ import annotations

from typing import Literal, Optional

from typing_extensions import TypedDict

from ..model import JsonObject

EVENT_LOG_SIZE = 20_000
REQUEST_LOG_SIZE = 20_000
"""The newest entries each log keeps (volatile: a restarted StateDB starts them empty)."""


class EventEntry(TypedDict):
    """One event of the Guardian (`model.Event` dumped), kept in the volatile event log."""

    type: Literal["event"]
    name: str
    resource: str
    structure: str
    action: JsonObject
    """The event rule's action, e.g. `{"events": {"scale": {"up": 1}}}`."""
    timestamp: float


class RequestEntry(TypedDict, total=False):
    """One entry of the decision log: a request (`model.Request` dumped) and what became of it,
    or a container's own life (`ContainerMissing`, `ContainerBack`, `ContainerReleased`)."""

    type: Literal["request"]
    resource: str
    amount: int
    priority: int
    structure: str
    action: str
    field: Literal["current", "max"]
    timestamp: float
    structure_type: str
    host: Optional[str]
    host_rescaler_ip: str
    host_rescaler_port: str
    pair_structure: str
    rule: str
    usage: float
    window_end: float
    amount_requested: int
    tx: str
    """A request applied across Scaler shards: its transaction (`ops.decide_tx`)."""
    outcome: str
    reason: str
    applied_at: float
    amount_applied: float
    new_current: float
    new_max: float
    swap_with: str




def lifecycle_entry(name: str, host: str, outcome: str, now: float, reason: str) -> RequestEntry:
    """A decision-log entry about a container itself (gone, back, released), not a request."""
    return {"structure": name, "structure_type": "container", "host": host, "action": "Container" + outcome.title(),
            "outcome": outcome, "reason": reason, "timestamp": now, "applied_at": now}
