"""The garbage collector's settings of the actors that handle every window or scaling.

The StateDB, the Guardian and the Scaler make and drop thousands of small acyclic dicts
and arrays per call (documents, their copies, the arguments, the decisions). With
Python's default thresholds (700, 10, 10) the collector walked the young objects about
once a millisecond and the long-lived ones (every document, every prepared container)
often: about a tenth of the StateDB's CPU at 10 000 containers. Reference counting frees
these objects; the collector is only for cycles, which they do not make.
"""
from __future__ import annotations

import gc

GC_THRESHOLD = (20_000, 20, 20)
"""`gc.set_threshold` of such an actor's process."""


def relax_collector() -> None:
    """Collect less often in this process (`GC_THRESHOLD`)."""
    gc.set_threshold(*GC_THRESHOLD)


def freeze_loaded() -> None:
    """What the process holds now (documents loaded at start) is left out of every collection."""
    gc.freeze()
