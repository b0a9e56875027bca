"""Shards by host (issue 16): the host → shard map, the names, the count's one place, the part check."""
from __future__ import annotations

import subprocess
import sys
import zlib
from pathlib import Path

import pytest

from sc_actors.model import LimitChange
from sc_actors.policy.shards import (
    ContainerWrite,
    HostPart,
    check_shards,
    hosts_by_shard,
    part_still_fits,
    shard_of,
    shard_service,
    shards_of,
)
from sc_actors.settings import MAX_SHARDS, guardian_name, scaler_name
from tests.builders import host

REPO = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize("name, shards, expected", [
    pytest.param("node-a", 1, 0, id="one shard owns every host"),
    pytest.param("node-a", 0, 0, id="no count is one shard"),
    # zlib.crc32(b"node-a") = 2023312811: odd, so % 2 = 1; digit sum 23, so % 3 = 2
    pytest.param("node-a", 2, 1, id="crc32 mod 2"),
    pytest.param("node-a", 3, 2, id="crc32 mod 3"),
])
def test_shard_of_is_the_crc32_of_the_host_modulo_the_shards(name, shards, expected):
    assert zlib.crc32(name.encode()) == 2023312811
    assert shard_of(name, shards) == expected


def test_shard_of_is_the_same_in_another_process():
    # Python salts hash(str) per process (PYTHONHASHSEED); every process must agree on the owner.
    hosts = [f"host{i}" for i in range(20)]
    probe = ("import sys; from sc_actors.policy.shards import shard_of; "
             "print([shard_of(h, 3) for h in sys.argv[1:]])")
    out = subprocess.run([sys.executable, "-c", probe, *hosts], capture_output=True, text=True, check=True,
                         env={"PYTHONHASHSEED": "12345", "PATH": "/usr/bin:/bin"}, cwd=REPO)
    assert out.stdout.strip() == str([shard_of(h, 3) for h in hosts])


def test_hosts_spread_over_every_shard():
    by_shard = hosts_by_shard([f"host{i}" for i in range(60)], 3)
    assert sorted(by_shard) == [0, 1, 2]
    assert sum(len(v) for v in by_shard.values()) == 60
    assert all(shard_of(h, 3) == i for i, hs in by_shard.items() for h in hs)


def test_shard_zero_keeps_todays_names():
    assert (guardian_name(0), scaler_name(0)) == ("guardian", "scaler")
    assert (guardian_name(2), scaler_name(2)) == ("guardian-2", "scaler-2")
    assert shard_service("guardian") == ("guardian", 0)
    assert shard_service("scaler-2") == ("scaler", 2)
    assert shard_service("scaler-x") == ("scaler-x", 0)
    assert shard_service("structures_snapshoter") == ("structures_snapshoter", 0)


@pytest.mark.parametrize("doc, expected", [
    pytest.param(None, 1, id="no document"),
    pytest.param({"name": "guardian", "config": {}}, 1, id="not written"),
    pytest.param({"name": "guardian", "shards": 3}, 3, id="three"),
    pytest.param({"name": "guardian", "shards": 3.0}, 3, id="a whole float"),
    pytest.param({"name": "guardian", "shards": 2.5}, 1, id="not whole"),
    pytest.param({"name": "guardian", "shards": True}, 1, id="a bool"),
    pytest.param({"name": "guardian", "shards": "3"}, 1, id="a string"),
    pytest.param({"name": "guardian", "shards": MAX_SHARDS + 1}, 1, id="too many"),
    pytest.param({"name": "guardian", "shards": 0}, 1, id="zero"),
])
def test_the_count_is_read_from_the_guardian_document(doc, expected):
    assert shards_of(doc) == expected


@pytest.mark.parametrize("bad", [0, -1, MAX_SHARDS + 1, 1.5, True, "2"])
def test_a_bad_count_is_refused_with_the_range(bad):
    with pytest.raises(ValueError, match=f"from 1 to {MAX_SHARDS}"):
        check_shards(bad)
    assert check_shards(MAX_SHARDS) == MAX_SHARDS


def _part(before_host, after_host, before_current=50.0):
    return HostPart(host="h0", before=before_host, after=after_host, writes=(
        ContainerWrite(name="c1", resource="cpu", before=before_current,
                       change=LimitChange(cpu_allowance_limit=75), bounds=None, new_current=75.0),))


def test_a_part_fits_while_the_accounting_is_as_planned():
    # Planned against 4 free cores; the part takes 25 shares of core 0.
    before = host("h0", cores=4)
    after = host("h0", core_map={"0": {"free": 75, "c1": 25}, "1": {"free": 100}, "2": {"free": 100},
                                 "3": {"free": 100}})
    assert part_still_fits(_part(before, after), host("h0", cores=4), {"c1": 50.0}) == ""


@pytest.mark.parametrize("now, currents, reason", [
    pytest.param(None, {"c1": 50.0}, "host 'h0' is gone", id="host gone"),
    pytest.param(host("h0", cores=3), {"c1": 50.0}, "accounting of host 'h0' changed", id="cores changed"),
    pytest.param(host("h0", cores=4, mem=(16384, 16000)), {"c1": 50.0}, "accounting of host 'h0' changed",
                 id="memory changed"),
    pytest.param(host("h0", cores=4), {"c1": 60.0}, "cpu current of 'c1' changed", id="current changed"),
    pytest.param(host("h0", cores=4), {}, "'c1' is no longer on host", id="container gone"),
])
def test_a_part_is_refused_when_its_host_changed_since_planned(now, currents, reason):
    part = _part(host("h0", cores=4), host("h0", cores=4))
    assert reason in part_still_fits(part, now, currents)


def test_a_part_on_an_unreachable_host_is_refused():
    gone = host("h0", cores=4)
    gone.reachable = False
    assert "unreachable" in part_still_fits(_part(host("h0", cores=4), host("h0", cores=4)), gone, {"c1": 50.0})
