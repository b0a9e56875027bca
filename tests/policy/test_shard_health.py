"""Health of a sharded control plane (issue 16): every Guardian and Scaler shard beats under its own name."""
from __future__ import annotations

import pytest

from sc_actors.policy.health import ServiceBeat, heartbeat_max_age_s, stale_services, with_shards

NOW = 1_000_000.0


def test_each_shard_past_0_gets_its_own_beat_with_its_services_config():
    beats = [ServiceBeat("guardian", NOW - 1, {"WINDOW_TIMELAPSE": 2}), ServiceBeat("scaler", NOW - 2),
             ServiceBeat("structures_snapshoter", NOW - 3)]
    out = with_shards(beats, 3, {"guardian-1": NOW - 4, "scaler-2": NOW - 5, "somebody": NOW})
    assert [(b.name, b.heartbeat) for b in out] == [
        ("guardian", NOW - 1), ("scaler", NOW - 2), ("structures_snapshoter", NOW - 3),
        ("guardian-1", NOW - 4), ("guardian-2", 0.0), ("scaler-1", 0.0), ("scaler-2", NOW - 5)]
    assert out[3].config == {"WINDOW_TIMELAPSE": 2}
    assert with_shards(beats, 1, {"guardian-1": NOW}) == beats


@pytest.mark.parametrize("name, windows_expected, age", [
    # The Scaler's: 3 × HEARTBEAT_S 5 + 10 = 25 s, whatever the shard.
    pytest.param("scaler-2", False, 25.0, id="scaler shard"),
    # The Guardian's: 10 windows of 2 s + 0 delay + 10 = 30 s, when windows are expected.
    pytest.param("guardian-1", True, 30.0, id="guardian shard"),
    pytest.param("guardian-1", False, None, id="guardian shard, no window expected"),
])
def test_a_shard_may_be_as_old_as_its_service(name, windows_expected, age):
    assert heartbeat_max_age_s(ServiceBeat(name, NOW, {"WINDOW_TIMELAPSE": 2}), windows_expected) == age


def test_a_silent_shard_is_reported_by_its_name_while_shard_0_beats():
    beats = with_shards([ServiceBeat("guardian", NOW - 1), ServiceBeat("scaler", NOW - 1)], 2,
                        {"guardian-1": NOW - 2, "scaler-1": NOW - 100})
    [p] = stale_services(beats, NOW, NOW - 1000, windows_expected=True)
    assert p.subject == "scaler-1" and "service scaler-1: last heartbeat 100 s ago" in p.message
