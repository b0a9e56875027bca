"""The real StateDB (no Ray) across restarts: the original's operations come back
identical, and a damaged state dir stops it, then `sc up --repair`'s check mends it."""
from __future__ import annotations

import copy

import pytest
import typer

import cli
from sc_actors.statedb import StateDB
from sc_actors.store.journal import JournalCorrupt
from tests.builders import application, container, host, limits


def _state(db: StateDB) -> tuple[int, dict]:
    return db.seq(), copy.deepcopy(db.store.docs)


def _operate(db: StateDB) -> int:
    """Subscribe, guard, rule and service edits, as the original's scripts make them."""
    db.put("structures", host("h0").model_dump(mode="json"))
    for name in ("c0", "c1"):
        db.create_with_limits(container(name).model_dump(mode="json"),
                              limits(name, cpu=(10, "percentage_of_max")).model_dump(mode="json"))
    db.create_with_limits(application("app0").model_dump(mode="json"), None)
    db.link_container_to_app("c0", "app0")
    db.link_container_to_app("c1", "app0")
    in_checkpoint = db.checkpoint()  # some of it in the checkpoint, the rest in the journal
    db.patch("structures", "c0", {"guard": False})
    db.patch("structures", "c1", {"resources.cpu.guard": False})
    db.patch("limits", "c1", {"resources.cpu.boundary": 25})
    db.patch("rules", "CpuRescaleUp", {"amount": 75})
    db.patch("services", "guardian", {"config.WINDOW_TIMELAPSE": 2.0})
    db.put("users", {"name": "u0", "resources": {"cpu": {"max": 1600}, "mem": {"max": 24576}}})
    db.link_app_to_user("u0", "app0")
    db.unlink_container_from_app("c1", "app0")
    return in_checkpoint


def test_the_original_operations_survive_a_restart_identical(tmp_path):
    db = StateDB(str(tmp_path))
    in_checkpoint = _operate(db)
    before = _state(db)
    db.store.close()
    restarted = StateDB(str(tmp_path))
    assert _state(restarted) == before
    assert restarted.ping()["replayed"] == before[0] - in_checkpoint > 5  # the changes after the checkpoint
    restarted.patch("rules", "CpuRescaleUp", {"amount": 80})  # and it goes on from there
    restarted.store.close()
    again = StateDB(str(tmp_path))
    assert again.seq() == before[0] + 1 and again.get("rules", "CpuRescaleUp")["amount"] == 80
    again.store.close()


def test_a_damaged_journal_stops_the_statedb_and_up_repair_lets_it_start(tmp_path, capsys):
    db = StateDB(str(tmp_path))
    _operate(db)
    db.store.close()
    j = tmp_path / "journal.wal"
    data = bytearray(j.read_bytes())
    data[len(data) // 2] ^= 0x10
    j.write_bytes(bytes(data))

    with pytest.raises(JournalCorrupt) as e:
        StateDB(str(tmp_path))
    assert str(j) in str(e.value) and "sc up --repair" in str(e.value)
    with pytest.raises(typer.Exit):
        cli._check_state_dir(tmp_path, repair=False)  # `sc up` refuses before it starts anything
    assert f"damaged at offset {e.value.offset}" in capsys.readouterr().err

    cli._check_state_dir(tmp_path, repair=True)  # `sc up --repair`
    out = capsys.readouterr().out
    assert f"up to seq {e.value.last_good_seq}" in out and "moved the damaged file to" in out
    cli._check_state_dir(tmp_path, repair=False)
    repaired = StateDB(str(tmp_path))
    assert repaired.seq() == e.value.last_good_seq
    repaired.store.close()


def test_sc_up_offers_repair():
    from typer.testing import CliRunner

    r = CliRunner().invoke(cli.app, ["up", "--help"])
    assert r.exit_code == 0 and "--repair" in r.output
