"""Read Ray's metrics export port of the node hosting an actor (Prometheus text format)."""
from __future__ import annotations

import re
import urllib.request
from typing import Any

import ray

_LINE = re.compile(r'^([a-zA-Z_:][a-zA-Z0-9_:]*)(?:\{(.*)\})?\s+(\S+)$')
_LABEL = re.compile(r'(\w+)="((?:[^"\\]|\\.)*)"')


def node_port_of(handle: Any) -> int:
    """MetricsExportPort of the node the actor lives on now (custom metrics are there only)."""
    from ray._private import state

    info = state.actors(actor_id=handle._actor_id.hex())
    node_id = info["Address"]["NodeID"]
    for n in ray.nodes():
        if n["NodeID"] == node_id and n["Alive"]:
            return int(n["MetricsExportPort"])
    raise LookupError(f"no alive node {node_id}")


def scrape(port: int) -> str:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as r:
        return r.read().decode()


def samples(text: str, name: str, **tags: str) -> list[tuple[dict[str, str], float]]:
    """(labels, value) of every line of metric `name` whose labels include `tags`."""
    out = []
    for line in text.splitlines():
        if not line.startswith(name):
            continue
        m = _LINE.match(line)
        if not m or m.group(1) != name:
            continue
        labels = dict(_LABEL.findall(m.group(2) or ""))
        if all(labels.get(k) == v for k, v in tags.items()):
            out.append((labels, float(m.group(3))))
    return out


def value(text: str, name: str, **tags: str) -> float | None:
    found = samples(text, name, **tags)
    return found[0][1] if len(found) == 1 else None


def first_line(text: str, name: str) -> str:
    return next((line for line in text.splitlines() if line.startswith(name + "{") or line.startswith(name + " ")), "")
