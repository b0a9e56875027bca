"""`/ui`: a live page of hosts and containers, usage against current/upper/lower (issue 8).

Plain HTML with inline SVG drawn by a few lines of inline script: no CDN, no npm.
The page polls `/ui/series` every second; each poll reads the StateDB once (the
same rows as `/status`) and appends one sample per container and resource to a
small ring kept in this replica's memory (at most `RING` samples, one per
`MIN_STEP_S`, however many pages poll). The ring starts with the first poll, so a
chart shows the minutes since some page was opened on this replica.
"""
from __future__ import annotations

import asyncio
import collections
import time
from typing import Optional

from typing_extensions import TypedDict

from fastapi import APIRouter, Depends
from fastapi.responses import HTMLResponse

from sc_actors.model import Document

from ..deps import StateDBApi, get_statedb
from ..answers import Number, StatusRow
from .heartbeat import status_rows

router = APIRouter(tags=["heartbeat"])

RING = 600
"""Samples kept per container and resource (10 minutes at one a second)."""
MIN_STEP_S = 0.9
FIELDS = ("usage", "current", "upper", "lower")

Sample = list[Optional[Number]]
"""[time, usage, current, upper, lower] of one container and resource."""

_rings: dict[tuple[str, str], collections.deque[Sample]] = {}
_last_sample = 0.0


class ResourceSeries(TypedDict):
    guard: bool
    min: Optional[Number]
    max: Optional[Number]
    fields: list[str]
    samples: list[Sample]


class ContainerSeries(TypedDict):
    name: str
    host: Optional[str]
    resources: dict[str, ResourceSeries]


class FreeMax(TypedDict):
    free: Optional[Number]
    max: Optional[Number]


class HostRow(TypedDict):
    name: str
    reachable: bool
    cpu: FreeMax
    mem: FreeMax


class Series(TypedDict):
    """`GET /ui/series`: the hosts, and each container's recent samples."""

    time: float
    hosts: list[HostRow]
    containers: list[ContainerSeries]


def _sample(rows: list[StatusRow], now: float) -> None:
    """Append one sample per row (deduplicated in time) and forget containers that are gone."""
    global _last_sample
    if now - _last_sample >= MIN_STEP_S:
        _last_sample = now
        for r in rows:
            ring = _rings.setdefault((r["container"], r["resource"]), collections.deque(maxlen=RING))
            ring.append([round(now, 3), r["usage"], r["current"], r["upper"], r["lower"]])  # as FIELDS
    alive = {(r["container"], r["resource"]) for r in rows}
    for key in set(_rings) - alive:
        del _rings[key]


def _free_max(host: Document, res: str) -> FreeMax:
    r = host.get("resources", {}).get(res, {})
    return {"free": r.get("free"), "max": r.get("max")}


@router.get("/ui/series", summary="Hosts, and recent samples of every container (the /ui page polls it)")
async def ui_series(db: StateDBApi = Depends(get_statedb)) -> Series:
    containers, limits, hosts = await asyncio.gather(
        db.list("structures", "container"), db.list("limits"), db.list("structures", "host"))
    rows = status_rows(containers, limits)
    now = time.time()
    _sample(rows, now)
    out: dict[str, ContainerSeries] = {}
    for r in rows:
        c = out.setdefault(r["container"], {"name": r["container"], "host": r["host"], "resources": {}})
        c["resources"][r["resource"]] = {
            "guard": r["guard"], "min": r["min"], "max": r["max"],
            "fields": list(FIELDS), "samples": list(_rings.get((r["container"], r["resource"]), ())),
        }
    return {
        "time": now,
        "hosts": [{"name": h["name"], "reachable": h.get("reachable", True),
                   "cpu": _free_max(h, "cpu"), "mem": _free_max(h, "mem")}
                  for h in sorted(hosts, key=lambda d: d["name"])],
        "containers": [out[n] for n in sorted(out)],
    }


PAGE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Serverless Containers</title>
<style>
body{font:14px system-ui,sans-serif;margin:1em 2em;color:#222;background:#fafafa}
h1{font-size:20px;margin:0 0 .3em}h2{font-size:16px;margin:1em 0 .3em}
table{border-collapse:collapse}td,th{padding:2px 10px;border-bottom:1px solid #ddd;text-align:right}
th:first-child,td:first-child{text-align:left}
.grid{display:flex;flex-wrap:wrap;gap:12px}
.card{background:#fff;border:1px solid #ddd;border-radius:6px;padding:8px}
.card h3{font-size:14px;margin:0 0 4px}.muted{color:#888}
svg{background:#fff;border:1px solid #eee}
.usage{stroke:#d62728;fill:none;stroke-width:2}.current{stroke:#1f77b4;fill:none;stroke-width:2}
.upper{stroke:#2ca02c;fill:none;stroke-dasharray:4 3}.lower{stroke:#ff7f0e;fill:none;stroke-dasharray:4 3}
.legend span{margin-right:12px}.legend i{display:inline-block;width:14px;height:3px;vertical-align:middle;margin-right:4px}
</style></head><body>
<h1>Serverless Containers</h1>
<div class="legend"><span><i style="background:#d62728"></i>usage</span><span><i style="background:#1f77b4"></i>current</span>
<span><i style="background:#2ca02c"></i>upper</span><span><i style="background:#ff7f0e"></i>lower</span>
<span class="muted" id="updated">waiting for data…</span></div>
<h2>Hosts</h2><table id="hosts"><thead><tr><th>host</th><th>reachable</th><th>cpu free / max (shares)</th>
<th>mem free / max (MiB)</th></tr></thead><tbody></tbody></table>
<h2>Containers</h2><div class="grid" id="containers"></div>
<script>
"use strict";
const W = 360, H = 120, P = 4, SPAN_S = 300, FIELDS = ["usage", "current", "upper", "lower"];
const NS = "http://www.w3.org/2000/svg";
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({"&":"&amp;","<":"&lt;",">":"&gt;",'"':"&quot;"}[c])); }
function fmt(v) { return v === null || v === undefined ? "-" : Math.round(v); }
function chart(card, name, res, r, now) {
  const id = "chart-" + name + "-" + res;
  let svg = document.getElementById(id);
  if (!svg) {
    const label = document.createElement("div");
    label.className = "muted"; label.id = id + "-label";
    card.appendChild(label);
    svg = document.createElementNS(NS, "svg");
    svg.setAttribute("id", id); svg.setAttribute("width", W); svg.setAttribute("height", H);
    svg.setAttribute("data-container", name); svg.setAttribute("data-resource", res);
    for (const f of FIELDS) {
      const pl = document.createElementNS(NS, "polyline");
      pl.setAttribute("class", f); pl.setAttribute("data-series", f); pl.setAttribute("points", "");
      svg.appendChild(pl);
    }
    const ax = document.createElementNS(NS, "text");
    ax.setAttribute("x", P + 2); ax.setAttribute("y", 14); ax.setAttribute("font-size", "11"); ax.setAttribute("fill", "#888");
    ax.setAttribute("data-axis", "y");
    svg.appendChild(ax);
    card.appendChild(svg);
  }
  svg.querySelector('[data-axis="y"]').textContent = "max " + fmt(r.max) + (res === "cpu" ? " shares" : " MiB") +
    ", last " + Math.round(Math.max(30, Math.min(SPAN_S, now - (r.samples.length ? r.samples[0][0] : now)))) + " s";
  const s = r.samples, top = (r.max || 1) * 1.05;
  // The last SPAN_S seconds at most; a shorter history fills the width (at least 30 s).
  const first = s.length ? s[0][0] : now, span = Math.max(30, Math.min(SPAN_S, now - first)), t0 = now - span;
  for (let k = 0; k < FIELDS.length; k++) {
    const pts = [];
    for (const row of s) {
      const v = row[k + 1];
      if (v === null || v === undefined || row[0] < t0) continue;
      const x = P + (W - 2 * P) * (row[0] - t0) / span, y = H - P - (H - 2 * P) * Math.min(v, top) / top;
      pts.push(x.toFixed(1) + "," + y.toFixed(1));
    }
    svg.querySelector('[data-series="' + FIELDS[k] + '"]').setAttribute("points", pts.join(" "));
  }
  const last = s.length ? s[s.length - 1] : [];
  document.getElementById(id + "-label").textContent = res + (r.guard ? " (guarded)" : "") +
    ": usage " + fmt(last[1]) + ", current " + fmt(last[2]) + ", upper " + fmt(last[3]) + ", lower " +
    fmt(last[4]) + "  [" + fmt(r.min) + ".." + fmt(r.max) + "]  " + s.length + " samples";
}
function render(d) {
  document.querySelector("#hosts tbody").innerHTML = d.hosts.map(h =>
    "<tr><td>" + esc(h.name) + "</td><td>" + (h.reachable ? "yes" : "no") + "</td><td>" + fmt(h.cpu.free) +
    " / " + fmt(h.cpu.max) + "</td><td>" + fmt(h.mem.free) + " / " + fmt(h.mem.max) + "</td></tr>").join("");
  const grid = document.getElementById("containers"), seen = new Set();
  for (const c of d.containers) {
    const cid = "card-" + c.name; seen.add(cid);
    let card = document.getElementById(cid);
    if (!card) {
      card = document.createElement("div"); card.className = "card"; card.id = cid;
      card.innerHTML = "<h3>" + esc(c.name) + " <span class='muted'>on " + esc(c.host) + "</span></h3>";
      grid.appendChild(card);
    }
    for (const res of Object.keys(c.resources)) chart(card, c.name, res, c.resources[res], d.time);
  }
  for (const card of Array.from(grid.children)) if (!seen.has(card.id)) card.remove();
  document.getElementById("updated").textContent = "updated " + new Date(d.time * 1000).toLocaleTimeString();
}
async function poll() {
  try {
    const r = await fetch(location.pathname.replace(/\/$/, "") + "/series", {cache: "no-store"});
    if (r.ok) render(await r.json());
  } catch (e) { document.getElementById("updated").textContent = "error: " + e; }
  setTimeout(poll, 1000);
}
poll();
</script></body></html>
"""


@router.get("/ui", response_class=HTMLResponse, summary="A live page: hosts, containers, usage against limits")
async def ui_page() -> HTMLResponse:
    return HTMLResponse(PAGE)
