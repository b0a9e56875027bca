"""Safety properties of the planner under random hosts, containers and request streams.

Whatever the requests ask, a plan never writes a limit outside [min, max], never
over-commits the host (per core, in total, in memory), never scales memory down below
usage + margin, and never sets memory under 64 MiB (ARCHITECTURE "Safety first").
"""
from __future__ import annotations

from dataclasses import dataclass

from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from sc_actors.model import Container, ContainerLimits, Host, Resource
from sc_actors.policy.cores import allocate_cores, held_shares
from sc_actors.policy.planning import Plan, mem_floor, plan_container_request
from tests.builders import container, host, physical, request

EPS = 1e-6


@dataclass
class World:
    host: Host
    containers: dict[str, Container]
    physical: dict[str, ContainerLimits]


@st.composite
def container_specs(draw, max_cpu):
    cpu_min = draw(st.integers(0, 100))
    cpu_max = draw(st.integers(max(cpu_min, 1), max(max_cpu, cpu_min + 1)))
    cpu_cur = draw(st.integers(max(cpu_min, 1), cpu_max))
    mem_min = draw(st.integers(64, 512))
    mem_max = draw(st.integers(mem_min, 4096))
    mem_cur = draw(st.integers(mem_min, mem_max))
    return (cpu_min, cpu_cur, cpu_max), (mem_min, mem_cur, mem_max)


@st.composite
def worlds(draw):
    cores = draw(st.integers(1, 6))
    mem_max = draw(st.integers(1024, 16384))
    h = host("h0", cores=cores, mem=mem_max)
    world = World(h, {}, {})
    for i in range(draw(st.integers(1, 4))):
        cpu, mem = draw(container_specs(cores * 100))
        _subscribe(world, container(f"c{i}", cpu=cpu, mem=mem))
    assume(world.containers)
    return world


def _subscribe(world, c):
    """Place a container as the Orchestrator does, if it fits."""
    cpu, mem = c.resources["cpu"].current, c.resources["mem"].current
    hr = world.host.resources
    if hr["cpu"].free < cpu or hr["mem"].free < mem:
        return
    placed = allocate_cores(hr["cpu"].core_usage_mapping, c.name, cpu, [])
    new = world.host.model_copy(deep=True)
    new.resources["cpu"].core_usage_mapping = placed.core_map
    new.resources["cpu"].free -= cpu
    new.resources["mem"].free -= mem
    world.host = new
    world.containers[c.name] = c
    world.physical[c.name] = physical(cpu, placed.cpu_num, mem)


nonzero = st.one_of(st.integers(-700, -1), st.integers(1, 700))
steps = st.lists(
    st.tuples(
        st.integers(0, 3),  # which container
        st.sampled_from(["cpu", "mem"]),
        nonzero,
        st.sampled_from(["current"] * 4 + ["max"]),
        st.one_of(st.none(), st.integers(0, 4096)),  # memory usage, MiB
        st.integers(0, 300),  # memory margin, MiB
    ),
    min_size=1,
    max_size=25,
)


def _check_host(h: Host, world: World) -> None:
    cpu, mem = h.resources["cpu"], h.resources["mem"]
    assert -EPS <= cpu.free <= cpu.max + EPS and -EPS <= mem.free <= mem.max + EPS
    for entry in cpu.core_usage_mapping.values():
        assert all(v >= -EPS for v in entry.values())
        assert abs(sum(entry.values()) - 100) < EPS  # free + Σ containers = 100 per core
    allocated = sum(v for e in cpu.core_usage_mapping.values() for k, v in e.items() if k != "free")
    assert allocated <= cpu.max + EPS
    assert abs(cpu.free - sum(e["free"] for e in cpu.core_usage_mapping.values())) < EPS


def _check_plan(p: Plan, c: Container, req, before: ContainerLimits, usage, margin, world: World) -> None:
    if p.outcome == "refused":
        assert p.change is None and p.host is world.host
        return
    r = c.resources[req.resource]
    top = p.new_max if p.new_max is not None else r.max
    assert r.min - EPS <= p.new_current <= top + EPS
    _check_host(p.host, world)
    if p.change is None:
        return
    if req.resource == "cpu":
        assert p.change.cpu_allowance_limit == p.new_current >= 1  # 0 would mean "unlimited"
        assert p.change.cpu_num != ""
        assert abs(held_shares(p.host.resources["cpu"].core_usage_mapping, c.name) - p.new_current) < EPS
    else:
        assert p.change.mem_limit >= 64
        if p.change.mem_limit < before.mem_limit:
            assert p.change.mem_limit >= mem_floor(usage, margin) - EPS


def _apply(world: World, name: str, req, p: Plan) -> None:
    if p.outcome == "refused":
        return
    world.host = p.host
    old = world.physical[name]
    if req.resource == "cpu" and p.change is not None:
        world.physical[name] = old.model_copy(update={"cpu_allowance_limit": p.new_current,
                                                      "cpu_num": p.change.cpu_num})
    elif p.change is not None:
        world.physical[name] = old.model_copy(update={"mem_limit": p.new_current})
    c = world.containers[name]
    r = c.resources[req.resource]
    top = p.new_max if p.new_max is not None else r.max
    resources = dict(c.resources)
    resources[req.resource] = Resource(min=r.min, current=p.new_current, max=top, guard=True)
    world.containers[name] = c.model_copy(update={"resources": resources})


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(world=worlds(), stream=steps)
def test_no_request_stream_breaks_bounds_host_capacity_or_memory_floor(world, stream):
    names = sorted(world.containers)
    for idx, res, amount, field, usage, margin in stream:
        name = names[idx % len(names)]
        c, before = world.containers[name], world.physical[name]
        req = request(name, res, amount, field=field)
        p = plan_container_request(req, c, world.host, before, usage, margin, [])
        _check_plan(p, c, req, before, usage, margin, world)
        _apply(world, name, req, p)
        mem = world.host.resources["mem"]
        assert abs(mem.free - (mem.max - sum(ph.mem_limit for ph in world.physical.values()))) < EPS


@settings(max_examples=200, deadline=None)
@given(world=worlds(), name_idx=st.integers(0, 3), amount=nonzero)
def test_a_refused_plan_changes_nothing(world, name_idx, amount):
    names = sorted(world.containers)
    name = names[name_idx % len(names)]
    before = world.host.model_copy(deep=True)
    p = plan_container_request(request(name, "cpu", amount), world.containers[name], world.host,
                               world.physical[name], None, 0, [])
    assert world.host == before  # inputs are never mutated
    if p.outcome == "refused":
        assert (p.change, p.granted, p.host_deltas) == (None, 0, {})


# ---------------------------------------------------------------- applications (§4.8): all parts or nothing


@st.composite
def app_worlds(draw):
    """A world as above whose containers form one application, with usages and the app's own limits."""
    from sc_actors.policy.applications import Placement
    from tests.builders import application

    world = draw(worlds())
    names = sorted(world.containers)
    usages = {n: {"cpu": u} for n in names
              if (u := draw(st.one_of(st.none(), st.integers(0, 600)))) is not None}
    total = sum(c.resources["cpu"].current for c in world.containers.values())
    app_min = draw(st.integers(0, int(total)))
    app_max = draw(st.integers(int(total), int(total) + 800))
    app = application("app0", cpu=(app_min, total, app_max), containers=names)
    placement = Placement(containers=dict(world.containers), hosts={"h0": world.host},
                          physical=dict(world.physical), usages=usages,
                          distributions={"h0": sorted(world.host.resources["cpu"].core_usage_mapping, key=int)})
    return world, app, placement


APP_EXAMPLES = 300


@settings(max_examples=APP_EXAMPLES, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(aw=app_worlds(), amount=st.one_of(st.integers(-900, -1), st.integers(1, 900)))
def test_an_application_request_is_applied_whole_or_not_at_all(aw, amount):
    from sc_actors.policy.applications import plan_application_request

    world, app, placement = aw
    host_before = world.host.model_copy(deep=True)
    plan = plan_application_request(request("app0", "cpu", amount, host=None), app, placement)
    assert world.host == host_before  # inputs are never mutated
    if plan.outcome == "refused":
        assert (plan.parts, plan.granted, plan.hosts) == ((), 0, {})
        return
    # The parts are the split, and what they grant is the application's grant.
    assert {p.request.structure: p.request.amount for p in plan.parts} == plan.split
    assert all(p.plan.outcome != "refused" for p in plan.parts)
    assert abs(sum(p.plan.granted for p in plan.parts) - plan.granted) < EPS
    if plan.outcome == "applied":
        assert abs(plan.granted - amount) < EPS  # the parts sum to the request
    else:
        assert plan.outcome == "trimmed" and plan.reason
        assert abs(plan.granted) <= abs(amount) + EPS
    for p in plan.parts:
        r = placement.containers[p.request.structure].resources["cpu"]
        assert r.min - EPS <= p.plan.new_current <= r.max + EPS
    if "h0" in plan.hosts:
        _check_host(plan.hosts["h0"], world)
