"""The `sc bench` verbs, one per module; cli.py registers them under `sc bench`."""
from __future__ import annotations

from typing import Callable

from . import api
from . import apps, efficiency, idle, journal, reaction, rebalance, scale

COMMANDS: dict[str, Callable[..., None]] = {
    "efficiency": efficiency.command,
    "api": api.command,
    "reaction": reaction.command,
    "scale": scale.command,
    "apps": apps.command,
    "journal": journal.command,
    "rebalance": rebalance.command,
    "idle": idle.command,
}
