"""`sc`: the command line of Serverless Containers on Ray.

`sc demo` runs the whole loop on an embedded Ray; `sc up` / `sc down` start and
stop the control plane on a local or existing Ray cluster; `sc status` shows every
container's usage against its limits. Errors print one line and exit non-zero.
"""
from __future__ import annotations

import json
import os
import sys
from pathlib import Path
from typing import Any, Optional

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(no_args_is_help=True, add_completion=True, help=__doc__)
console = Console()
err = Console(stderr=True)


def fail(message: str, code: int = 1) -> None:
    err.print(f"[red]error:[/] {message}")
    raise typer.Exit(code)


def _state_file() -> Path:
    from cluster.local import STATE_FILE

    return STATE_FILE


def _recorded() -> dict[str, Any]:
    try:
        return json.loads(_state_file().read_text())
    except (FileNotFoundError, ValueError):
        return {}


def _connect(address: Optional[str]) -> None:
    from cluster.local import connect, current_cluster_address

    addr = address or _recorded().get("address") or current_cluster_address()
    if not addr:
        fail("no running control plane found: start one with `sc up`")
    try:
        connect(addr)
    except ConnectionError as e:
        fail(str(e))


@app.command()
def demo(
    out: Path = typer.Option(Path("demo-out"), help="where the PNG plots, Parquet series and summary go"),
    scale: float = typer.Option(1.0, min=0.2, max=10, help="stretch (>1) or shrink (<1) the load phases"),
) -> None:
    """Scale two real-cgroup containers under a phased load, on an embedded Ray (~90 s)."""
    from cluster.demo import run

    try:
        summary = run(duration_scale=scale, out_dir=str(out))
    except PermissionError as e:
        fail(str(e))
    except KeyboardInterrupt:
        fail("interrupted; cgroups and processes removed", 130)
    t = Table(title="reaction times (from the cgroup files)")
    for col in ("container", "scale-up (s)", "scale-down (s)", "plot"):
        t.add_column(col)
    for name, s in summary.items():
        if isinstance(s, dict):
            t.add_row(name, ", ".join(f"{x:.2f}" for x in s["scale_up_s"]) or "-",
                      ", ".join(f"{x:.2f}" for x in s["scale_down_s"]) or "-", s["plot"])
    console.print(t)
    console.print(f"series: {summary['parquet']}")


@app.command()
def up(
    address: Optional[str] = typer.Option(None, help="join this Ray cluster (host:port or 'auto') instead of starting one"),
    port: int = typer.Option(6390, help="GCS port of the Ray head `sc up` starts"),
    state_dir: Optional[Path] = typer.Option(None, help="where the StateDB keeps its journal and checkpoints"),
    backend: str = typer.Option("auto", help="cgroup_v1, cgroup_v2, lxc or auto (per node)"),
    parent: str = typer.Option("serverless", help="cgroup parent of plain-cgroup containers"),
) -> None:
    """Start (or join) Ray and deploy the control plane; returns when every actor answers."""
    from cluster.deploy import deploy
    from cluster.local import connect, current_cluster_address, default_state_dir, start_head

    started_head = False
    if address in (None, "") and not current_cluster_address():
        console.print("starting a Ray head …")
        address = start_head(port=port)
        started_head = True
    addr = address if address and address != "auto" else current_cluster_address()
    if not addr:
        fail("no Ray cluster answers; give --address host:port")
    try:
        connect(addr)
    except ConnectionError as e:
        fail(str(e))
    sd = str(state_dir or default_state_dir())
    actors = deploy(sd, node_defaults={"backend": backend, "parent": parent},
                    progress=lambda m: console.print(f"  {m}"))
    f = _state_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps({"address": addr, "started_head": started_head, "state_dir": sd,
                             "hosts": actors["hosts"]}))
    console.print(f"[green]ready[/]: {len(actors['hosts'])} host(s) {', '.join(actors['hosts'])}; state in {sd}")


@app.command()
def down(keep_ray: bool = typer.Option(False, help="leave the Ray head running")) -> None:
    """Stop what `sc up` started: the actors, and the Ray head if `sc up` started it."""
    import subprocess

    import ray

    from cluster.deploy import undeploy

    rec = _recorded()
    _connect(None)
    undeploy()
    ray.shutdown()
    if rec.get("started_head") and not keep_ray:
        subprocess.run([str(Path(sys.executable).with_name("ray")), "stop"], check=False,
                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    _state_file().unlink(missing_ok=True)
    console.print("[green]stopped[/]")


@app.command()
def status(
    address: Optional[str] = typer.Option(None, help="Ray address (default: what `sc up` recorded)"),
    as_json: bool = typer.Option(False, "--json", help="print JSON for scripts"),
) -> None:
    """A table of containers: usage, current, upper, lower, min, max per resource."""
    import ray

    from sc_actors.settings import NAMESPACE, STATEDB_NAME

    _connect(address)
    db = ray.get_actor(STATEDB_NAME, namespace=NAMESPACE)
    containers = ray.get(db.list.remote("structures", "container"))
    limits = {c["name"]: ray.get(db.get.remote("limits", c["name"])) for c in containers}
    rows = []
    for c in containers:
        for res in ("cpu", "mem"):
            r = c["resources"].get(res, {})
            lr = (limits.get(c["name"]) or {}).get("resources", {}).get(res, {})
            rows.append({"container": c["name"], "host": c["host"], "resource": res, "guard": c.get("guard") and r.get("guard"),
                         "usage": r.get("usage"), "current": r.get("current"), "upper": lr.get("upper"),
                         "lower": lr.get("lower"), "min": r.get("min"), "max": r.get("max")})
    if as_json:
        print(json.dumps(rows))
        return
    t = Table(title="containers (cpu in shares: 100 = 1 core; mem in MiB)")
    for col in rows[0].keys() if rows else ("container",):
        t.add_column(col, justify="right")
    for r in rows:
        t.add_row(*("-" if v is None else f"{v:.0f}" if isinstance(v, float) else str(v) for v in r.values()))
    console.print(t)


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    app()


if __name__ == "__main__":
    main()
