"""`sc`: the command line of Serverless Containers on Ray.

`sc up` / `sc down` start and stop the control plane and its HTTP API; `sc demo`
runs the whole loop on an embedded Ray. Every other verb talks to the API over
HTTP (`serve/client.py`) and never starts or joins Ray, so it answers at once: one
verb per original script of `scripts/orchestrator/` (`sc structure …`,
`sc rule …`, `sc service …`, `sc limits …`, `sc user …`, `sc app …`,
`sc host …`, `sc container …`), plus `sc status`, `sc watch`, `sc events`,
`sc requests`, `sc doctor` and `sc mode`. Reads take `--json`. The API is found from `--url`,
`SC_URL`, or what `sc up` recorded; the token from `--token` or `SC_API_TOKEN`.
Errors print one line on stderr and exit 1 (the API refused) or 2 (no API).
"""
from __future__ import annotations

import json
import os
import sys
import time
from pathlib import Path
from typing import Any, Callable, NoReturn, Optional

import typer
from rich.console import Console
from rich.table import Table

from cluster.tools.tables import fit, print_table
from serve.answers import ProblemJson, StatusRow
from serve.client import (DEFAULT_URL, ApiError, Client, Params, Unreachable, Verb, app_body, container_body,
                          host_body, user_body)

app = typer.Typer(no_args_is_help=True, add_completion=True, help=__doc__, rich_markup_mode=None)
console = Console()
err = Console(stderr=True)

structure_app = typer.Typer(no_args_is_help=True, help="Structures: read, guard, set resource parameters.")
container_app = typer.Typer(no_args_is_help=True, help="Subscribe and desubscribe containers.")
host_app = typer.Typer(no_args_is_help=True, help="Subscribe and desubscribe hosts.")
app_app = typer.Typer(no_args_is_help=True, help="Applications and their containers.")
limits_app = typer.Typer(no_args_is_help=True, help="Limits: boundary and boundary type per resource.")
rule_app = typer.Typer(no_args_is_help=True, help="Rules: activate, amount, policy, events required.")
service_app = typer.Typer(no_args_is_help=True, help="Services (guardian, scaler, snapshoters, …): config keys.")
user_app = typer.Typer(no_args_is_help=True, help="Users and the applications they own.")
for _sub, _name in ((structure_app, "structure"), (container_app, "container"), (host_app, "host"),
                    (app_app, "app"), (limits_app, "limits"), (rule_app, "rule"), (service_app, "service"),
                    (user_app, "user")):
    app.add_typer(_sub, name=_name)

_opts: dict[str, Optional[str]] = {"url": None, "token": None}

JSON_OPT = typer.Option(False, "--json", help="print JSON for scripts")


def fail(message: str, code: int = 1) -> NoReturn:
    err.print(f"[red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


# ---------------------------------------------------------------- where the API is


def _state_file() -> Path:
    # NOTE: the same path as cluster.local.STATE_FILE, computed here because importing
    # cluster.local pulls in pydantic, which would double the start-up time of a verb.
    return Path(os.environ.get("SC_HOME", Path.home() / ".serverless-containers")) / "up.json"


def _recorded() -> dict[str, Any]:
    try:
        return json.loads(_state_file().read_text())  # type: ignore[no-any-return]
    except (FileNotFoundError, ValueError):
        return {}


def api_url() -> str:
    return _opts["url"] or os.environ.get("SC_URL") or _recorded().get("url") or DEFAULT_URL


class CliClient(Client):
    """The API's client, whose errors end the command with one line on stderr."""

    def request(self, method: Verb, path: str, body: Any = None, params: Optional[Params] = None) -> Any:
        try:
            return super().request(method, path, body, params)
        except ApiError as e:
            hint = " (give --token or SC_API_TOKEN)" if e.status == 401 else ""
            fail(f"{e.message}{hint} [{e.status} {e.method} {e.path}]")
        except Unreachable as e:
            fail(f"{e} (is it up? `sc up`, or give --url / SC_URL)", 2)


def api() -> CliClient:
    """The client of the API `--url`, `SC_URL` or `sc up` names, with the token given."""
    return CliClient(api_url(), _opts["token"] or os.environ.get("SC_API_TOKEN") or None)


@app.callback()
def _root(
    url: Optional[str] = typer.Option(None, "--url", envvar="SC_URL", help="the API (default: what `sc up` recorded)"),
    token: Optional[str] = typer.Option(None, "--token", envvar="SC_API_TOKEN",
                                        help="bearer token for changes", show_envvar=True),
) -> None:
    _opts["url"], _opts["token"] = url, token


# ---------------------------------------------------------------- output


def show_json(data: Any, as_json: bool) -> None:
    if as_json:
        print(json.dumps(data))
    else:
        console.print_json(data=data)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        return f"{v:.0f}" if abs(v) >= 10 else f"{v:.2f}".rstrip("0").rstrip(".")
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def show_table(rows: list[dict[str, Any]], columns: list[str], title: str, as_json: bool) -> None:
    if as_json:
        print(json.dumps(rows))
        return
    t = Table(title=title)
    for i, col in enumerate(columns):
        # The first column names the row: never cut it, shrink the others.
        t.add_column(col, no_wrap=i == 0, justify="left" if col in ("name", "container", "host", "resource", "structure", "action",
                                                    "outcome", "reason", "rule", "config", "subtype", "why") else "right")
    for r in rows:
        t.add_row(*(_cell(r.get(c)) for c in columns))
    print_table(console, t)


def done(message: str) -> None:
    console.print(f"[green]ok[/] {message}", highlight=False)


def verb(sub: typer.Typer, verb_name: str, doc: str, op: Callable[[CliClient, str], Any], said: str) -> None:
    """Declare `sc <sub> <name> NAME`: one call, the warnings of its answer, then `ok <said>`."""
    def command(name: str) -> None:
        warn(op(api(), name))
        done(said.format(name=name))

    command.__doc__ = doc
    sub.command(verb_name)(command)


def get_verb(sub: typer.Typer, doc: str, op: Callable[[CliClient, str], Any]) -> None:
    """Declare `sc <sub> get NAME [--json]`: the document, as JSON."""
    def command(name: str, as_json: bool = JSON_OPT) -> None:
        show_json(op(api(), name), as_json)

    command.__doc__ = doc
    sub.command("get")(command)


def pair_verb(sub: typer.Typer, verb_name: str, doc: str, op: Callable[[CliClient, str, str], Any], said: str,
              other: str) -> None:
    """Declare `sc <sub> <name> NAME OTHER` (`other` names the second argument in the help)."""
    def command(name: str, second: str = typer.Argument(..., metavar=other.upper())) -> None:
        warn(op(api(), name, second))
        done(said.format(name=name, other=second))

    command.__doc__ = doc
    sub.command(verb_name)(command)


def number(value: str) -> float | int:
    try:
        f = float(value)
    except ValueError:
        fail(f"{value!r} is not a number")
    return int(f) if f.is_integer() else f


def triple(value: str, what: str) -> list[float | int]:
    parts = [number(p) for p in value.split(",")]
    if len(parts) not in (2, 3):
        fail(f"{what}: give MIN,MAX or MIN,CURRENT,MAX (got {value!r})")
    return parts


def body_from(value: str) -> Any:
    """A JSON body given inline or as @file (as the original's scripts took JSON arguments)."""
    text = Path(value[1:]).read_text() if value.startswith("@") else value
    try:
        return json.loads(text)
    except ValueError as e:
        fail(f"the body is not JSON: {e}")


# ---------------------------------------------------------------- status, watch, events, requests

STATUS_COLUMNS = ["container", "host", "resource", "guard", "usage", "current", "upper", "lower", "min", "max"]


@app.command()
def status(as_json: bool = JSON_OPT) -> None:
    """Containers: usage against current, upper, lower, min and max (cpu in shares, mem in MiB)."""
    data = api().status()
    if as_json:
        print(json.dumps(data["containers"]))
        return
    rows: list[dict[str, Any]] = [dict(r) for r in data["containers"]]
    for r in rows:
        if r.get("missing_since"):
            # The cgroup is gone: no usage, and when it went (the problems below say what happens next).
            r["usage"] = "gone " + time.strftime("%H:%M:%S", time.localtime(r["missing_since"]))
    show_table(rows, STATUS_COLUMNS, "containers (cpu in shares: 100 = 1 core; mem in MiB)", False)
    services = ", ".join(f"{s['name']} {'on' if s.get('active') else 'off'}" for s in data["services"])
    console.print(f"services: {services}", highlight=False)
    health = api().health()
    shards = health.get("shards", [])
    if len(shards) > 2:  # more than one Guardian and one Scaler: each shard and its last heartbeat
        now = health["time"]
        beats = ", ".join(f"{b['name']} {now - b['heartbeat']:.0f} s ago" if b["heartbeat"] else f"{b['name']} never"
                          for b in shards)
        console.print(f"shards (last heartbeat): {beats}", highlight=False)
    show_problems(health["problems"])


def show_problems(problems: list[ProblemJson]) -> None:
    """One line per problem of `GET /health`, each naming what to change."""
    if not problems:
        console.print("health: no problem found", highlight=False)
        return
    console.print(f"health: {len(problems)} problem(s)", highlight=False)
    for p in problems:
        console.print(f"  - {p['message']}", highlight=False, markup=False, soft_wrap=True)


def warn(doc: Any) -> None:
    """The warnings a change's answer carries (a rule that can never fire, …), on stderr."""
    for w in (doc or {}).get("warnings", []) if isinstance(doc, dict) else []:
        err.print(f"[yellow]warning:[/] {w}", highlight=False, soft_wrap=True)


@app.command()
def doctor(as_json: bool = JSON_OPT) -> None:
    """What is wrong with the stack (GET /health), one line per problem with its fix.

    Exit 0 when nothing is wrong, 3 when problems were found (1: the API refused, 2: no API).
    """
    data = api().health()
    if as_json:
        print(json.dumps(data))
    elif data["problems"]:
        for p in data["problems"]:
            console.print(p["message"], highlight=False, markup=False, soft_wrap=True)
    else:
        console.print("[green]ok[/] no problem found", highlight=False)
    if data["problems"]:
        raise typer.Exit(3)


def _bar(row: StatusRow, width: int = 30) -> str:
    top = row.get("max") or 0
    if not top:
        return ""
    usage, current = row.get("usage") or 0, row.get("current") or 0
    u = min(width, int(round(width * max(usage, 0) / top)))
    c = min(width, int(round(width * current / top)))
    cells = ["[red]█[/]" if i < u and i < c else "[yellow]▒[/]" if i < u else "[green]░[/]" if i < c else " "
             for i in range(width)]
    return "".join(cells) + "│"


@app.command()
def watch(
    interval: float = typer.Option(1.0, min=0.1, help="seconds between refreshes"),
    count: int = typer.Option(0, min=0, help="stop after this many refreshes (0: until Ctrl-C)"),
) -> None:
    """A live view of usage against limits (bars: usage █, current ░, up to max │)."""
    from rich.live import Live

    def render() -> Any:
        rows = api().status()["containers"]
        t = Table(title=f"{api_url()}  {time.strftime('%H:%M:%S')}  (usage █ ▒ / current ░ / max │)")
        for col in ("container", "res", "usage", "current", "upper", "lower", "min", "max", ""):
            t.add_column(col, justify="left" if col in ("container", "res", "") else "right")
        for r in rows:
            t.add_row(r["container"], r["resource"] + (" *" if r["guard"] else ""),
                      *(_cell(r.get(c)) for c in ("usage", "current", "upper", "lower", "min", "max")), _bar(r))
        return fit(console, t)

    n = 0
    try:
        with Live(render(), console=console, auto_refresh=False) as live:
            n = 1
            while count == 0 or n < count:
                time.sleep(interval)
                live.update(render(), refresh=True)
                n += 1
    except KeyboardInterrupt:
        pass


@app.command()
def events(
    structure: Optional[str] = typer.Option(None, "--structure", "-s", help="only this structure"),
    limit: int = typer.Option(20, min=1, help="the newest N"),
    as_json: bool = JSON_OPT,
    explain: Optional[str] = typer.Option(None, "--explain", metavar="NAME",
                                          help="the decision log of NAME: why each request was made and what came of it"),
) -> None:
    """Recent events of the Guardian (bottleneck / underuse), newest last."""
    if explain:
        explain_requests(explain, limit, as_json)
        return
    rows = api().events(structure, limit)
    for r in rows:
        r["when"] = time.strftime("%H:%M:%S", time.localtime(r.get("timestamp", 0)))
        r["scale"] = json.dumps(r.get("action", {}).get("events", {}).get("scale", {}))
    show_table(rows, ["when", "structure", "resource", "name", "scale"], "events", as_json)


def explain_requests(name: str, limit: int, as_json: bool) -> None:
    """Per request of `name`: window usage, rule, amount before/after trimming, outcome and why."""
    rows = api().requests(name, limit)
    if as_json:
        print(json.dumps(rows))
        return
    if not rows:
        console.print(f"no recent requests of {name}", highlight=False)
        return
    for r in rows:
        when = time.strftime("%H:%M:%S", time.localtime(r.get("timestamp", 0)))
        if r.get("action", "").startswith("Container"):
            # About the container itself (its cgroup gone, back, released), not a request.
            console.print(f"{when} {r.get('structure')}: {r.get('outcome')}: {r.get('reason')}",
                          highlight=False, markup=False)
            continue
        asked = r.get("amount_requested", r.get("amount"))
        console.print(
            f"{when} {r.get('structure')} {r.get('resource')}: window usage {_cell(r.get('usage'))}, "
            f"rule {r.get('rule') or '-'} fired"
            + (f" ({r.get('action')})" if r.get("action") != r.get("rule") else "") + f"; asked {_cell(asked)}, "
            f"after trimming {_cell(r.get('amount'))}, applied {_cell(r.get('amount_applied'))}"
            + (f" -> current {_cell(r['new_current'])}" if r.get("new_current") is not None else "")
            + f"; {r.get('outcome')}" + (f": {r['reason']}" if r.get("reason") else ""),
            highlight=False, markup=False)


@app.command()
def requests(
    structure: Optional[str] = typer.Option(None, "--structure", "-s", help="only this structure"),
    limit: int = typer.Option(20, min=1, help="the newest N"),
    as_json: bool = JSON_OPT,
) -> None:
    """Recent scaling requests and what the Scaler did with them, newest last."""
    rows = api().requests(structure, limit)
    for r in rows:
        r["when"] = time.strftime("%H:%M:%S", time.localtime(r.get("timestamp", 0)))
    show_table(rows, ["when", "structure", "resource", "action", "rule", "amount", "outcome", "new_current",
                      "reason"], "requests", as_json)


# ---------------------------------------------------------------- structures


@structure_app.command("list")
def structure_list(
    subtype: Optional[str] = typer.Option(None, help="container, host or application"),
    as_json: bool = JSON_OPT,
) -> None:
    """All structures."""
    rows = api().structures(subtype)
    for r in rows:
        res = r.get("resources", {})
        r["cpu"] = _cell(res.get("cpu", {}).get("current", res.get("cpu", {}).get("free")))
        r["mem"] = _cell(res.get("mem", {}).get("current", res.get("mem", {}).get("free")))
    show_table(rows, ["name", "subtype", "host", "guard", "cpu", "mem"], "structures (cpu/mem: current, or free)",
               as_json)


get_verb(structure_app, "One structure document.", CliClient.structure)


@structure_app.command("resources")
def structure_resources(
    name: str,
    resource: Optional[str] = typer.Argument(None),
    parameter: Optional[str] = typer.Argument(None),
    as_json: bool = JSON_OPT,
) -> None:
    """The resources of a structure, one resource, or one parameter of it."""
    show_json(api().resources(name, resource, parameter), as_json)


@structure_app.command("guard")
def structure_guard(name: str, resources: Optional[list[str]] = typer.Argument(None)) -> None:
    """Guard a structure, or some of its resources (set_to_guarded.sh, set_many_resource_to_guarded.sh)."""
    _guard(name, resources, True)


@structure_app.command("unguard")
def structure_unguard(name: str, resources: Optional[list[str]] = typer.Argument(None)) -> None:
    """Unguard a structure, or some of its resources (set_to_unguarded.sh, …)."""
    _guard(name, resources, False)


def _guard(name: str, resources: Optional[list[str]], state: bool) -> None:
    api().guard(name, resources, state)
    done(f"{name}: {', '.join(resources)} {'' if state else 'un'}guarded" if resources
         else f"{name} {'' if state else 'un'}guarded")


@structure_app.command("set")
def structure_set(name: str, resource: str, parameter: str, value: str) -> None:
    """Set max, min or weight of a resource (set_structure_resource_max.sh, …_min.sh, …_parameter.sh)."""
    api().set_resource(name, resource, parameter, number(value))
    done(f"{name}: {resource}.{parameter} = {value}")


@structure_app.command("state")
def structure_state(name: str, state: str) -> None:
    """Set the state of an application: running, stopped, hdfs_downloading, hdfs_uploading."""
    api().set_state(name, state)
    done(f"{name}: state {state}")


# ---------------------------------------------------------------- limits


@limits_app.command("get")
def limits_get(name: str, resource: Optional[str] = typer.Argument(None), as_json: bool = JSON_OPT) -> None:
    """Limits of a structure (boundary, boundary_type, upper, lower per resource)."""
    data = api().limits(name, resource)
    if resource or as_json:
        show_json(data, as_json)
        return
    rows = [{"resource": r, **v} for r, v in data.items()]
    show_table(rows, ["resource", "boundary", "boundary_type", "upper", "lower"], f"limits of {name}", False)


@limits_app.command("boundary")
def limits_boundary(name: str, resource: str, value: int) -> None:
    """Boundary of a resource, a percentage 1..100 (set_new_boundary.sh)."""
    api().set_limit(name, resource, "boundary", value)
    done(f"{name}: {resource} boundary {value}")


@limits_app.command("boundary-type")
def limits_boundary_type(name: str, resource: str, value: str) -> None:
    """percentage_of_max or percentage_of_current (set_new_boundary_type.sh)."""
    api().set_limit(name, resource, "boundary_type", value)
    done(f"{name}: {resource} boundary type {value}")


# ---------------------------------------------------------------- containers, hosts, applications


@container_app.command("list")
def container_list(as_json: bool = JSON_OPT) -> None:
    """Subscribed containers."""
    structure_list(subtype="container", as_json=as_json)


@container_app.command("subscribe")
def container_subscribe(
    name: str,
    host: Optional[str] = typer.Option(None, help="the container's host"),
    cpu: str = typer.Option("20,200,200", help="MIN,CURRENT,MAX shares (100 = one core)"),
    mem: str = typer.Option("512,1024,1024", help="MIN,CURRENT,MAX MiB"),
    boundary: int = typer.Option(10, min=0, max=100, help="boundary of cpu and mem, % of max"),
    guard: bool = typer.Option(False, help="guard it (and its cpu and mem) at once"),
    body: Optional[str] = typer.Option(None, help="the whole JSON body (or @file), as subscribe_container.sh"),
) -> None:
    """Subscribe a container: cores and memory from its host, limits applied (subscribe_container.sh)."""
    if body is not None:
        payload = body_from(body)
    elif not host:
        fail("give --host (or --body)")
    else:
        payload = container_body(name, host, triple(cpu, "cpu"), triple(mem, "mem"), boundary, guard)
    doc = api().subscribe("container", name, payload)
    cpu_now = doc["resources"]["cpu"]["current"]
    done(f"{name} subscribed on {doc['host']}: cpu {_cell(cpu_now)} shares, mem {_cell(doc['resources']['mem']['current'])} MiB")


verb(container_app, "desubscribe",
     "Desubscribe a container; its cores and memory go back to its host (desubscribe_container.sh).",
     lambda c, name: c.desubscribe("container", name), "{name} desubscribed")


@host_app.command("list")
def host_list(as_json: bool = JSON_OPT) -> None:
    """Subscribed hosts."""
    rows = api().structures("host")
    for r in rows:
        for res in ("cpu", "mem"):
            x = r.get("resources", {}).get(res, {})
            r[f"{res} free/max"] = f"{_cell(x.get('free'))}/{_cell(x.get('max'))}"
    columns = ["name", "cpu free/max", "mem free/max", "reachable"]
    if not as_json and any(not r.get("reachable", True) for r in rows):
        # Why a host is unreachable is what one needs to know next.
        for r in rows:
            r["why"] = r.get("unreachable_reason")
        columns.append("why")
    show_table(rows, columns, "hosts", as_json)


@host_app.command("subscribe")
def host_subscribe(
    name: str,
    cpu: Optional[int] = typer.Option(None, help="CPU shares (cores × 100)"),
    mem: Optional[int] = typer.Option(None, help="memory, MiB"),
    body: Optional[str] = typer.Option(None, help="the whole JSON body (or @file), as subscribe_host.sh"),
) -> None:
    """Subscribe a host whose ContainerScaler runs (subscribe_host.sh)."""
    if body is not None:
        payload = body_from(body)
    elif cpu is None or mem is None:
        fail("give --cpu and --mem (or --body)")
    else:
        payload = host_body(name, cpu, mem)
    # More than its node has is cut to the node: the API says so.
    warn(api().subscribe("host", name, payload))
    done(f"host {name} subscribed")


verb(host_app, "desubscribe", "Desubscribe a host that has no containers (desubscribe_host.sh).",
     lambda c, name: c.desubscribe("host", name), "host {name} desubscribed")


@app_app.command("list")
def app_list(as_json: bool = JSON_OPT) -> None:
    """Applications and their containers."""
    rows = api().structures("application")
    for r in rows:
        r["containers"] = ", ".join(r.get("containers", []))
    show_table(rows, ["name", "state", "guard", "user", "containers"], "applications", as_json)


@app_app.command("subscribe")
def app_subscribe(
    name: str,
    cpu: str = typer.Option("20,1600", help="MIN,MAX shares"),
    mem: str = typer.Option("512,24576", help="MIN,MAX MiB"),
    boundary: int = typer.Option(5, min=0, max=100, help="boundary of cpu and mem, % of max"),
    body: Optional[str] = typer.Option(None, help="the whole JSON body (or @file), as subscribe_app.sh"),
) -> None:
    """Subscribe an application, with no containers yet (subscribe_app.sh)."""
    payload = body_from(body) if body is not None else app_body(name, triple(cpu, "cpu"), triple(mem, "mem"), boundary)
    api().subscribe("apps", name, payload)
    done(f"application {name} subscribed")


verb(app_app, "desubscribe", "Desubscribe an application and its limits (desubscribe_app.sh).",
     lambda c, name: c.desubscribe("apps", name), "application {name} desubscribed")
pair_verb(app_app, "add", "Add a container to an application (subscribe_container_to_app.sh).",
          CliClient.add_to_app, "{other} added to {name}", "container")
pair_verb(app_app, "remove", "Remove a container from an application (desubscribe_container_from_app.sh).",
          CliClient.remove_from_app, "{other} removed from {name}", "container")


# ---------------------------------------------------------------- rules


@rule_app.command("list")
def rule_list(as_json: bool = JSON_OPT) -> None:
    """All rules."""
    rows = api().rules()
    for r in rows:
        r["policy"] = r.get("rescale_policy")
        r["type"] = r.get("rescale_type")
        r["remove"] = r.get("events_to_remove")
    show_table(rows, ["name", "resource", "generates", "active", "policy", "type", "amount", "remove"], "rules",
               as_json)


get_verb(rule_app, "One rule, with its JSON-logic.", CliClient.rule)


verb(rule_app, "activate", "Activate a rule (activate_rule.sh).", CliClient.activate_rule, "rule {name} active")
verb(rule_app, "deactivate", "Deactivate a rule (deactivate_rule.sh).",
     lambda c, name: c.activate_rule(name, False), "rule {name} inactive")


# NOTE: "-5" is a value here, not an option: the API then says why it is refused.
@rule_app.command("amount", context_settings={"ignore_unknown_options": True})
def rule_amount(name: str, value: int) -> None:
    """Amount of a scale-up request rule (change_amount.sh)."""
    api().set_rule(name, "amount", value)
    done(f"rule {name}: amount {value}")


@rule_app.command("policy")
def rule_policy(name: str, policy: str) -> None:
    """Rescale policy: amount, proportional, fit_to_usage (change_policy.sh)."""
    api().set_rule(name, "policy", policy)
    done(f"rule {name}: policy {policy}")


@rule_app.command("events")
def rule_events(name: str, event_type: str = typer.Argument(..., help="up or down"), value: int = typer.Argument(...)) -> None:
    """Events of one type a request rule needs (change_events_amount.sh, change_down_events_amount.sh)."""
    doc = api().set_events_required(name, event_type, value)
    warn(doc)
    done(f"rule {name}: {event_type} events {value}; removes {doc.get('events_to_remove')} when it fires")


# ---------------------------------------------------------------- services


@service_app.command("list")
def service_list(as_json: bool = JSON_OPT) -> None:
    """All services, their state and config."""
    rows = api().services()
    if as_json:
        print(json.dumps(rows))
        return
    for r in rows:
        cfg = dict(r.get("config", {}))
        r["active"] = cfg.pop("ACTIVE", None)
        r["config"] = " ".join(f"{k}={_cell(v)}" for k, v in cfg.items())
        r["heartbeat"] = time.strftime("%H:%M:%S", time.localtime(r["heartbeat"])) if r.get("heartbeat") else "-"
    show_table(rows, ["name", "active", "heartbeat", "config"], "services", False)


get_verb(service_app, "One service document.", CliClient.service)


@service_app.command("set")
def service_set(name: str, key: str, values: list[str] = typer.Argument(..., help="one value, or several for a list")) -> None:
    """Set a config key, as the scripts do (set_window_timelapse.sh → `sc service set guardian WINDOW_TIMELAPSE 1`).

    Values are sent as strings and coerced by the API ("true" → true, "10" → 10);
    several values make a list (`sc service set guardian GUARDABLE_RESOURCES cpu mem`).
    """
    value: Any = values if len(values) > 1 else values[0]
    doc = api().set_service(name, key, value)
    done(f"{name}: {key} = {json.dumps(doc['config'].get(key))}")
    warn(doc)


verb(service_app, "activate", "ACTIVE = true (Guardian/activate.sh, Scaler/activate.sh, …).",
     CliClient.activate_service, "{name} active")
verb(service_app, "deactivate", "ACTIVE = false (Guardian/deactivate.sh, Scaler/deactivate.sh, …).",
     lambda c, name: c.activate_service(name, False), "{name} inactive")


# ---------------------------------------------------------------- users


@user_app.command("list")
def user_list(as_json: bool = JSON_OPT) -> None:
    """All users and their applications."""
    rows = api().users()
    for r in rows:
        r["clusters"] = ", ".join(r.get("clusters", []))
    show_table(rows, ["name", "balancing_method", "clusters"], "users", as_json)


get_verb(user_app, "One user document.", CliClient.user)


@user_app.command("subscribe")
def user_subscribe(
    name: str,
    cpu: str = typer.Option("100,2000", help="MIN,MAX shares"),
    mem: str = typer.Option("1024,8192", help="MIN,MAX MiB"),
    body: Optional[str] = typer.Option(None, help="the whole JSON body (or @file), as subscribe_user.sh"),
) -> None:
    """Subscribe a user (subscribe_user.sh)."""
    payload = body_from(body) if body is not None else user_body(name, triple(cpu, "cpu"), triple(mem, "mem"))
    api().subscribe_user(name, payload)
    done(f"user {name} subscribed")


verb(user_app, "desubscribe", "Desubscribe a user; its applications stay (desubscribe_user.sh).",
     CliClient.desubscribe_user, "user {name} desubscribed")
pair_verb(user_app, "add", "Give an application to a user.", CliClient.give_app, "{other} belongs to {name}",
          "application")
pair_verb(user_app, "remove", "Take an application from a user.", CliClient.take_app,
          "{other} no longer belongs to {name}", "application")


@user_app.command("set")
def user_set(name: str, resource: str, parameter: str, value: str) -> None:
    """Set max or min of a user's resource (set_new_max_energy.sh → `sc user set U energy max N`)."""
    api().set_user_resource(name, resource, parameter, number(value))
    done(f"user {name}: {resource}.{parameter} = {value}")


# ---------------------------------------------------------------- modes

REQUEST_RULES = {"cpu": ("CpuRescaleUp", "CpuRescaleDown", "CpuFitUp", "CpuFitDown"),
                 "mem": ("MemRescaleUp", "MemRescaleDown", "MemFitUp", "MemFitDown")}


@app.command()
def mode(
    to: str = typer.Argument(..., help="serverless or untreated", metavar="serverless|untreated"),
    scope: str = typer.Option("container", help="container or application (serverless only)"),
    resources: str = typer.Option("cpu,mem", help="resources to guard or unguard"),
) -> None:
    """Guard or unguard everything, as set_system_to_serverless_cont.sh / _app.sh / set_system_to_untreated.sh.

    serverless: the Guardian guards `scope`; every structure of that scope and its
    resources are guarded; the request rules of those resources and the Guardian and
    Scaler are activated. untreated: every container and application is unguarded,
    the request rules deactivated, and the Guardian and Scaler deactivated.
    """
    if to not in ("serverless", "untreated"):
        fail(f"unknown mode {to!r}: serverless or untreated")
    if scope not in ("container", "application"):
        fail(f"unknown scope {scope!r}: container or application")
    wanted = [r.strip() for r in resources.split(",") if r.strip()]
    steps: list[tuple[str, Callable[[], Any]]] = []
    client = api()
    structures = client.structures()

    def guard_all(subtype: str, state: bool) -> None:
        for s in structures:
            if s.get("subtype") != subtype:
                continue
            present = [r for r in wanted if isinstance(s.get("resources", {}).get(r), dict)]
            if present:
                client.guard(s["name"], present, state)
            client.guard(s["name"], None, state)

    rules = [r for res in wanted for r in REQUEST_RULES.get(res, ())]
    if to == "serverless":
        steps = [
            (f"Guardian guards {scope}s", lambda: client.set_service("guardian", "STRUCTURE_GUARDED", scope)),
            (f"{scope}s and their {', '.join(wanted)} guarded", lambda: guard_all(scope, True)),
            ("request rules active", lambda: [client.activate_rule(r) for r in rules]),
            ("Guardian and Scaler active", lambda: [client.activate_service(s) for s in ("guardian", "scaler")]),
        ]
    else:
        steps = [
            (f"containers and their {', '.join(wanted)} unguarded", lambda: guard_all("container", False)),
            (f"applications and their {', '.join(wanted)} unguarded", lambda: guard_all("application", False)),
            ("request rules inactive", lambda: [client.activate_rule(r, False) for r in rules]),
            ("Guardian and Scaler inactive", lambda: [client.activate_service(s, False)
                                                      for s in ("guardian", "scaler")]),
        ]
    for what, step in steps:
        step()
        done(what)


@app.command()
def profile(
    name: Optional[str] = typer.Argument(None, help="adaptive (the default) or original; none: show the one in force",
                                         metavar="[adaptive|original]"),
    timing: Optional[str] = typer.Option(None, help="also set the services' periods: ours (0.4 s windows) or "
                                                      "original (10 s windows, 10 s delay, Scaler every 5 s)"),
    as_json: bool = JSON_OPT,
) -> None:
    """Scaling profile: `sc profile original` restores the original's limits (10 % of max) and rules.

    adaptive: margins of 4 % (cpu) and 10 % (mem) of the current limit, one window above
    upper raises the limit to the demand seen through throttling, two windows below
    lower fit it to usage. Applying a profile rewrites the boundary of every subscribed
    container and is what new subscriptions get; a subscription naming its own
    boundary_type keeps it (percentage_of_max is exactly the original's).
    """
    if name is None:
        out = api().profile()
        if as_json:
            print(json.dumps(out, indent=1))
            return
        print(f"profile: {out['profile']}")
        for p, lims in out["profiles"].items():
            print(f"  {p}: " + ", ".join(f"{r} {v['boundary']} % ({v['boundary_type']})" for r, v in lims.items()))
        return
    applied = api().set_profile(name, timing)
    if as_json:
        print(json.dumps(applied, indent=1))
        return
    done(f"profile {applied['profile']}" + (f", timing {applied['timing']}" if applied.get("timing") else "")
         + f": {applied['limits_changed']} containers' limits changed")


# ---------------------------------------------------------------- the cluster (these verbs use Ray)


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
    backend: str = typer.Option("cgroup", help="cgroup: plain cgroups; lxc: two busybox LXC containers"),
    observe: bool = typer.Option(False, help="also serve the live /ui page (API on --api-port) and the Ray "
                                             "dashboard (--dashboard-port) on 127.0.0.1 while it runs"),
    api_port: int = typer.Option(8000, help="port of the API and /ui with --observe"),
    dashboard_port: int = typer.Option(8265, help="port of the Ray dashboard with --observe"),
) -> None:
    """Scale two containers under a phased load, on an embedded Ray (~90 s)."""
    from cluster.tools.demo import DemoBusy, run

    try:
        summary = run(duration_scale=scale, out_dir=str(out), backend=backend, observe=observe,
                      api_port=api_port, dashboard_port=dashboard_port)
    except (PermissionError, ValueError, DemoBusy) as e:
        fail(str(e))
    except LookupError as e:
        fail(f"{e}: its cgroup was removed from outside the demo (another demo or test on this machine?); "
             "the demo's processes and cgroups are removed")
    except KeyboardInterrupt:
        fail("interrupted; cgroups and processes removed", 130)
    t = Table(title="reaction times (from the cgroup files)")
    for col in ("container", "scale-up (s)", "scale-down (s)", "plot"):
        t.add_column(col)
    for name, s in summary.items():
        if isinstance(s, dict):
            t.add_row(name, ", ".join(f"{x:.2f}" for x in s["scale_up_s"]) or "-",
                      ", ".join(f"{x:.2f}" for x in s["scale_down_s"]) or "-", s["plot"])
    console.print()  # apart from the live table above it
    print_table(console, t)
    console.print(f"series: {summary['parquet']}")


def _write_record(record: dict[str, Any]) -> None:
    f = _state_file()
    f.parent.mkdir(parents=True, exist_ok=True)
    f.write_text(json.dumps(record))


def _check_state_dir(state_dir: Path, repair: bool) -> None:
    """Refuse a damaged state dir before anything starts, or repair it (`sc up --repair`)."""
    from sc_actors.store.checkpoint import CheckpointCorrupt
    from sc_actors.store.journal import JournalCorrupt
    from sc_actors.store.statedir import check_state_dir, repair_state_dir

    if not state_dir.exists():
        return
    try:
        if repair:
            for line in repair_state_dir(state_dir).lines():
                console.print(f"  repair: {line}", highlight=False, soft_wrap=True)
        else:
            check_state_dir(state_dir)
    except JournalCorrupt as e:
        fail(str(e))
    except CheckpointCorrupt as e:
        fail(f"{e}. `--repair` does not mend a checkpoint: restore it from a copy, or move the state dir "
             "aside to start empty")


_REDIS_KEYS = ("redis_address", "redis_pid", "redis_port", "redis_dir")
"""What `sc up --gcs-redis` records of its Redis, for `sc up` again and `sc down`."""


def _gcs_redis(state_dir: str, password: Optional[str]) -> dict[str, Any]:
    """The local Redis of `sc up --gcs-redis`: the one recorded, if it still serves, else one
    started on the recorded port (after a reboot its append-only file has the cluster), else
    one on a free port near REDIS_PORT."""
    from cluster.local import REDIS_DIR, REDIS_PORT, RedisFailed, free_port, redis_serves, start_redis

    prev = _recorded()
    redis_dir = str(Path(state_dir) / REDIS_DIR)
    same = prev.get("redis_dir") == redis_dir and "redis_port" in prev
    if same and "redis_pid" in prev and redis_serves(int(prev["redis_pid"]), int(prev["redis_port"])):
        console.print(f"  the GCS's Redis at {prev['redis_address']} still runs (data in {redis_dir})",
                      highlight=False)
        return {k: prev[k] for k in _REDIS_KEYS}
    port = int(prev["redis_port"]) if same else free_port(REDIS_PORT)
    try:
        address, pid = start_redis(state_dir, port, password)
    except RedisFailed as e:
        fail(f"redis-server failed: {e}")
    console.print(f"  started redis-server for the GCS at {address} (data in {redis_dir})", highlight=False)
    return {"redis_address": address, "redis_pid": pid, "redis_port": port, "redis_dir": redis_dir}


@app.command()
def up(
    address: Optional[str] = typer.Option(None, help="join this Ray cluster (host:port or 'auto') instead of starting one"),
    port: int = typer.Option(6390, help="GCS port of the Ray head `sc up` starts"),
    dashboard_port: int = typer.Option(8265, help="port of the Ray dashboard of the head `sc up` starts"),
    state_dir: Optional[Path] = typer.Option(None, help="where the StateDB keeps its journal and checkpoints"),
    backend: str = typer.Option("auto", help="cgroup_v1, cgroup_v2, lxc or auto (per node)"),
    parent: str = typer.Option("serverless", help="cgroup parent of plain-cgroup containers"),
    api_host: str = typer.Option("127.0.0.1", help="address the HTTP API listens on (0.0.0.0: every interface)"),
    api_port: int = typer.Option(8000, help="port of the HTTP API"),
    token: Optional[str] = typer.Option(None, envvar="SC_API_TOKEN",
                                        help="bearer token every change through the API must carry"),
    repair: bool = typer.Option(False, "--repair",
                                help="when the StateDB's journal is damaged: keep the records before the damage, "
                                     "move the damaged file aside and list what is lost"),
    gcs_redis: bool = typer.Option(False, "--gcs-redis",
                                   help="GCS fault tolerance: start a local redis-server (data in "
                                        "<state dir>/gcs-redis) and keep the head's GCS in it, so that a head "
                                        "that dies is taken back by `sc up --gcs-redis` again"),
    redis_address: Optional[str] = typer.Option(None, help="GCS fault tolerance with a Redis of your own "
                                                           "(host:port)"),
    redis_password: Optional[str] = typer.Option(None, envvar="SC_REDIS_PASSWORD",
                                                 help="password of that Redis (--gcs-redis: the one it sets)"),
    shards: int = typer.Option(1, help="Guardian and Scaler shards by host (issue 16), 1 to 64; 1 = one of each"),
) -> None:
    """Start (or join) Ray, deploy the control plane and its HTTP API; returns when all answer."""
    # Ray reads RAY_AUTH_MODE when it is imported: a `ray start` head uses tokens.
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    from cluster.deploy import StateDBDidNotStart, deploy
    from cluster.local import (HeadFailed, connect, current_cluster_address, default_state_dir, ensure_token,
                               head_serves, start_head)
    from cluster.serve_deploy import deploy_api, is_loopback
    from sc_actors.policy.shards import check_shards

    try:
        check_shards(shards)
    except ValueError as e:  # before anything starts
        fail(f"--shards: {e}")
    token = token or _opts["token"]
    sd = str(state_dir or default_state_dir())
    if gcs_redis and redis_address:
        fail("give --gcs-redis (a Redis `sc up` starts) or --redis-address (one of yours), not both")
    if (gcs_redis or redis_address) and address not in (None, ""):
        fail("--gcs-redis and --redis-address apply to the head `sc up` starts; start a head of your own with "
             "RAY_REDIS_ADDRESS (`SC_GCS_REDIS=host:port bash cluster/configs/ray-start.sh head`)")
    _check_state_dir(Path(sd), repair)
    started_head = False
    record: dict[str, Any] = {}
    if address in (None, "") and not current_cluster_address():
        redis: dict[str, Any] = {}
        try:
            made = ensure_token()
            if made:
                console.print(f"made the Ray token {made} (`ray get-auth-token --generate`); "
                              "other nodes joining this head need a copy", highlight=False, soft_wrap=True)
            if gcs_redis:
                redis = _gcs_redis(sd, redis_password)
            elif redis_address:
                from cluster.local import redis_answers

                if not redis_answers(redis_address):
                    fail(f"no Redis answers at {redis_address}")
                redis = {"redis_address": redis_address}
            console.print("starting a Ray head" + (f" (GCS in Redis at {redis['redis_address']})" if redis else "")
                          + " …", highlight=False)
            address, pgid = start_head(port=port, dashboard_port=dashboard_port,
                                       redis_address=redis.get("redis_address"), redis_password=redis_password)
        except HeadFailed as e:
            fail(f"ray start failed: {e}")
        started_head = True
        # Recorded at once: if what follows fails, `sc down` still stops this head (and its Redis).
        record = {"address": address, "started_head": True, "head_pgid": pgid, "head_port": port, **redis}
        _write_record(record)
    elif (gcs_redis or redis_address) and not _recorded().get("redis_address"):
        err.print("[yellow]warning:[/] a Ray head answers already, not one `sc up` started with a Redis: it is used "
                  "as it is (--gcs-redis and --redis-address apply to a head `sc up` starts)", highlight=False)
    addr = address if address and address != "auto" else current_cluster_address()
    if not addr:
        fail("no Ray cluster answers; give --address host:port")
    try:
        connect(addr)
    except Exception as e:  # noqa: BLE001  (Ray's own error, as one line: no token, wrong token, …)
        from cluster.local import ray_error_line

        fail(f"cannot join Ray at {addr}: {ray_error_line(str(e))}")
    try:
        actors = deploy(sd, node_defaults={"backend": backend, "parent": parent},
                        progress=lambda m: console.print(f"  {m}"), shards=shards)
    except StateDBDidNotStart as e:
        fail(str(e))
    if not is_loopback(api_host) and not token:
        err.print(f"[yellow]warning:[/] the API listens on {api_host} without a token: anyone who reaches it "
                  "can change limits (give --token or SC_API_TOKEN)")
    try:
        url = deploy_api(api_host, api_port, token)
    except TimeoutError as e:
        fail(f"{e}: is port {api_port} taken? (give --api-port)")
    console.print(f"  API at {url}" + (" (token required for changes)" if token else ""))
    prev = _recorded()
    if (not started_head and prev.get("started_head") and "head_pgid" in prev
            and addr.rsplit(":", 1)[-1] == str(prev.get("head_port")) and head_serves(prev["head_pgid"], addr)):
        # `sc up` again on the head an earlier `sc up` started: `sc down` must still stop it.
        record = {k: prev[k] for k in ("head_pgid", "head_port", *_REDIS_KEYS) if k in prev}
        started_head = True
    _write_record({**record, "address": addr, "started_head": started_head, "state_dir": sd,
                   "hosts": actors["hosts"], "url": url})
    console.print(f"[green]ready[/]: {len(actors['hosts'])} host(s) {', '.join(actors['hosts'])}; state in {sd}")


@app.command()
def down(keep_ray: bool = typer.Option(False, help="leave the Ray head running")) -> None:
    """Stop what `sc up` started: the API, the actors, and the Ray head if `sc up` started it."""
    os.environ.setdefault("RAY_AUTH_MODE", "token")
    import ray

    from cluster.deploy import undeploy
    from cluster.local import address_answers, stop_head
    from cluster.serve_deploy import undeploy_api

    rec = _recorded()
    # A head `sc up` started that is gone already leaves nothing to undeploy.
    if not (rec.get("started_head") and rec.get("address") and not address_answers(rec["address"])):
        _connect(None)
        undeploy_api()
        undeploy()
        ray.shutdown()
    if rec.get("started_head") and not keep_ray:
        if "head_pgid" not in rec:
            err.print("[yellow]warning:[/] this Ray head was started by an older `sc up`: stop it with "
                      "`ray stop` (which stops every Ray on this machine)", highlight=False)
        elif stop_head(int(rec["head_pgid"]), int(rec["head_port"])):
            console.print("  Ray head stopped")
        if "redis_pid" in rec:
            # The cluster is gone: its tables in Redis would bring a dead one back at the next `sc up`.
            import shutil

            from cluster.local import stop_redis

            if stop_redis(int(rec["redis_pid"]), int(rec["redis_port"])):
                console.print("  the GCS's Redis stopped")
            shutil.rmtree(rec["redis_dir"], ignore_errors=True)
    _state_file().unlink(missing_ok=True)
    console.print("[green]stopped[/]")


# ---------------------------------------------------------------------------- history, report, bench

from cluster.tools.history import history_command, report_command  # noqa: E402  (no Ray: reads Parquet)

app.command("history")(history_command)
app.command("report")(report_command)

bench_app = typer.Typer(no_args_is_help=True, help="Benchmarks that print numbers and write JSON and PNG.")
app.add_typer(bench_app, name="bench")


from cluster.tools.bench import commands as bench_commands  # noqa: E402  (Ray imported only when a bench runs)

for _name, _command in bench_commands.COMMANDS.items():
    bench_app.command(_name)(_command)


def main() -> None:
    os.environ.setdefault("RAY_USAGE_STATS_ENABLED", "0")
    app()


if __name__ == "__main__":
    main()
