"""Subscription accounting (reference §6): what a container takes from its host and gives back."""
from __future__ import annotations

import pytest

from sc_actors.model import Bounds, ContainerLimits, LimitChange
from sc_actors.policy.subscription import (
    bounds_of,
    mem_margin_of,
    physical_of,
    quota_and_memory_of,
    release,
    subscribe,
)
from tests.builders import POC, POM, container, host, limits

ORDER = ["0", "1", "2", "3"]


# --------------------------------------------------------------------------- subscribe


def test_a_subscription_takes_whole_free_cores_first_then_the_rest_of_the_next():
    c = container("c0", cpu=(25, 150, 200), mem=(64, 300, 512))
    h = host(cores=4, mem=16384)
    s = subscribe(c, h, ORDER)
    assert s.fits and s.reason == ""
    # 150 shares: core 0 whole (100), then 50 of core 1 (distribution order).
    assert s.change == LimitChange(cpu_allowance_limit=150, cpu_num="0,1", mem_limit=300)
    assert s.host is not None
    cpu, mem = s.host.resources["cpu"], s.host.resources["mem"]
    assert cpu.core_usage_mapping == {"0": {"free": 0, "c0": 100}, "1": {"free": 50, "c0": 50},
                                      "2": {"free": 100}, "3": {"free": 100}}
    assert cpu.free == 250  # 400 − 150
    assert mem.free == 16084  # 16384 − 300
    # The inputs are left as they were.
    assert h.resources["cpu"].free == 400 and h.resources["mem"].free == 16384


def test_a_partly_used_host_gives_its_empty_core_then_the_partial_core_with_most_free():
    core_map = {"0": {"free": 30, "a": 70}, "1": {"free": 100}, "2": {"free": 60, "b": 40}}
    h = host(core_map=core_map)  # free 30 + 100 + 60 = 190
    s = subscribe(container("c0", cpu=(25, 150, 200), mem=(64, 300, 512)), h, ["0", "1", "2"])
    assert s.fits and s.host is not None and s.change is not None
    # Core 1 is empty: 100; then core 2 (60 free) before core 0 (30 free): 50 of its 60.
    assert s.change.cpu_num == "1,2"
    assert s.host.resources["cpu"].core_usage_mapping == {"0": {"free": 30, "a": 70}, "1": {"free": 0, "c0": 100},
                                                          "2": {"free": 10, "b": 40, "c0": 50}}
    assert s.host.resources["cpu"].free == 40  # 190 − 150


def test_a_container_without_current_takes_its_max():
    s = subscribe(container("c0", cpu=(25, None, 200), mem=(64, None, 512)), host(cores=4), ORDER)
    assert s.fits and s.container is not None and s.host is not None
    assert (s.container.resources["cpu"].current, s.container.resources["mem"].current) == (200, 512)
    assert s.change == LimitChange(cpu_allowance_limit=200, cpu_num="0,1", mem_limit=512)
    assert s.host.resources["cpu"].free == 200  # 400 − 200
    assert s.host.resources["mem"].free == 15872  # 16384 − 512


@pytest.mark.parametrize(
    "c, h, reason",
    [
        pytest.param(container("c0", cpu=(25, 150, 200), mem=(64, 300, 512)), host(mem=(16384, 200)),
                     "host h0 has 200 MiB free, 300 needed", id="memory"),  # 200 < 300
        pytest.param(container("c0", cpu=(25, 500, 600), mem=(64, 300, 512)), host(cores=4),
                     "the host has 400 free CPU shares, 500 needed", id="cpu"),  # 4 × 100 < 500
        pytest.param(container("a", cpu=(25, 50, 200), mem=(64, 300, 512)),
                     host(core_map={"0": {"free": 30, "a": 70}, "1": {"free": 100}}),
                     "a already holds shares on this host", id="already-placed"),
    ],
)
def test_a_subscription_the_host_cannot_hold_is_refused_with_the_reason(c, h, reason):
    s = subscribe(c, h, ORDER)
    assert not s.fits
    assert s.reason == reason
    assert s.host is None and s.change is None


# --------------------------------------------------------------------------- release


def test_a_release_gives_back_what_the_subscription_took():
    h = host(cores=4, mem=16384)
    s = subscribe(container("c0", cpu=(25, 150, 200), mem=(64, 300, 512)), h, ORDER)
    assert s.host is not None and s.container is not None
    r = release(s.container, s.host)
    assert (r.cpu_shares, r.mem_mib) == (150, 300)
    assert r.host.resources == h.resources


def test_a_release_frees_the_shares_the_core_map_holds_and_never_more_memory_than_max():
    # The map holds 70 + 20 = 90 shares for c0 (not its current 150); memory free 900 of max 1000.
    core_map = {"0": {"free": 30, "c0": 70}, "1": {"free": 80, "c0": 20}, "2": {"free": 50, "b": 50}}
    h = host(core_map=core_map, mem=(1000, 900))
    r = release(container("c0", cpu=(25, 150, 200), mem=(64, 300, 512)), h)
    assert r.cpu_shares == 90
    assert r.host.resources["cpu"].core_usage_mapping == {"0": {"free": 100}, "1": {"free": 100},
                                                          "2": {"free": 50, "b": 50}}
    assert r.host.resources["cpu"].free == 250  # 160 + 90
    assert r.mem_mib == 100 and r.host.resources["mem"].free == 1000  # min(1000, 900 + 300)
    assert h.resources["cpu"].core_usage_mapping == core_map  # the input is left as it was


# --------------------------------------------------------------------------- margins, physical limits, bounds


@pytest.mark.parametrize(
    "lim, expected",
    [
        pytest.param(None, 0.0, id="no limits"),
        pytest.param(limits(cpu=(10, POM)), 0.0, id="no mem boundary"),
        pytest.param(limits(mem=(10, POM)), 819.0, id="10 % of max"),  # int(8192 × 10 / 100) = 819
        pytest.param(limits(mem=(25, POC)), 1024.0, id="25 % of current"),  # int(4096 × 25 / 100) = 1024
        pytest.param(limits(mem=(0, "adaptive")), 32.0, id="adaptive floor"),  # int(0) → mem floor 32
    ],
)
def test_the_memory_margin_comes_from_the_mem_boundary(lim, expected):
    assert mem_margin_of(container("c0", mem=(256, 4096, 8192)), lim) == expected


def test_the_physical_limits_are_current_and_the_cores_the_map_gives():
    core_map = {"0": {"free": 0, "c0": 100}, "1": {"free": 50, "c0": 50}, "10": {"free": 90, "c0": 10},
                "2": {"free": 100}}
    c = container("c0", cpu=(25, 160, 200), mem=(64, 300, 512))
    assert physical_of(c, host(core_map=core_map)) == ContainerLimits(cpu_allowance_limit=160, cpu_num="0,1,10",
                                                                       mem_limit=300)


def test_the_quota_and_memory_are_the_physical_limits_without_the_cores():
    c = container("c0", cpu=(25, 160, 200), mem=(64, 300, 512))
    assert quota_and_memory_of(c) == ContainerLimits(cpu_allowance_limit=160, cpu_num="", mem_limit=300)


def test_the_bounds_are_min_and_max_of_cpu_and_memory():
    assert bounds_of(container("c0", cpu=(25, 150, 200), mem=(128, 300, 512))) == Bounds(cpu=(25, 200),
                                                                                         mem=(128, 512))
