"""``cellpilot verify`` against deliberate edits: one small dry-run campaign is run once, then
each test tampers with its own copy of the ledger (and of the images) the way an adversary
with write access to the database and the data folder would, and verify must say TAMPERED.

The copies keep the original's anchor files (the campaign's, recorded by absolute path in its
sealed start event, and this machine's beside the ledger key): the adversary cannot write
those, by assumption.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, col, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Event
from controller.loop.events import event_digest
from tests.controller.conftest import ROOT, small_campaign_data


def _cli(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200", "PYTHONPATH": str(ROOT)}
    return subprocess.run(
        [sys.executable, "-m", "controller.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A finished one-plate dry-run (auto approval) with relative ledger and data paths."""
    lab = tmp_path_factory.mktemp("verify-template")
    data = small_campaign_data(budget={"rounds": 1})
    data["ledger"] = {"url": "sqlite:///ledger.db", "data_dir": "data"}
    (lab / "small.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    proc = _cli(lab, "run", "small.yaml", "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(lab / "ledger.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    return lab


@pytest.fixture
def lab(template, tmp_path, monkeypatch) -> Path:
    """This test's own copy of the ledger and its images, as the working directory."""
    copy = tmp_path / "lab"
    shutil.copytree(template, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock"))
    monkeypatch.chdir(copy)
    return copy


def _verify(*args: str):
    """``cellpilot verify`` in this process (the working directory is the lab's copy)."""
    from typer.testing import CliRunner

    from controller.cli import app

    result = CliRunner().invoke(app, ["verify", "--ledger", "sqlite:///ledger.db", *args])
    result.returncode, result.out = result.exit_code, result.output
    return result


def _sql(lab: Path, *statements: str) -> None:
    con = sqlite3.connect(lab / "ledger.db")
    for st in statements:
        assert con.execute(st).rowcount != 0, st
    con.commit()
    con.close()


def _rechain(lab: Path, event_id: int, change, strip_seals: bool) -> None:
    """Edit one event and recompute every hash after it, as someone without the key would."""
    db = open_ledger_engine(f"sqlite:///{lab / 'ledger.db'}")
    with Session(db) as s:
        evs = list(s.exec(select(Event).where(col(Event.campaign_id) == 1).order_by(col(Event.id))))
        prev = None
        for ev in evs:
            if ev.id == event_id:
                ev.payload = change(dict(ev.payload))
            if prev is not None or ev.id == event_id:
                ev.prev_hash = prev if prev is not None else ev.prev_hash
                ev.hash = event_digest(
                    ev.prev_hash,
                    ev.campaign_id,
                    ev.kind,
                    ev.actor,
                    ev.payload,
                    ev.clock_s,
                    ev.created_at.isoformat(),
                )
                prev = ev.hash
                s.add(ev)
        s.commit()
    db.dispose()
    if strip_seals:
        _sql(lab, "UPDATE event SET mac = NULL, key_id = NULL WHERE campaign_id = 1")


def _event_id(lab: Path, kind: str) -> int:
    con = sqlite3.connect(lab / "ledger.db")
    (eid,) = con.execute(
        "SELECT max(id) FROM event WHERE campaign_id = 1 AND kind = ?", (kind,)
    ).fetchone()
    con.close()
    return eid


def _first_image(lab: Path) -> Path:
    return sorted((lab / "data" / "images").rglob("*.ome.tif"))[0]


def _outcomes(payload: dict) -> dict:
    payload["outcomes"] = {k: v + 0.2 for k, v in payload["outcomes"].items()}
    return payload


LAST = "(SELECT max(id) FROM event WHERE campaign_id = 1)"

TAMPERS = {
    "delete the last event": (
        lambda lab: _sql(lab, f"DELETE FROM event WHERE id = {LAST}"),
        "deleted",
    ),
    "truncate the tail": (
        lambda lab: [_sql(lab, f"DELETE FROM event WHERE id = {LAST}") for _ in range(5)],
        "deleted",
    ),
    "delete every event": (
        lambda lab: _sql(lab, "DELETE FROM event WHERE campaign_id = 1"),
        "deleted",
    ),
    "rewrite an event and recompute the chain": (
        lambda lab: _rechain(
            lab, _event_id(lab, "measurement_recorded"), _outcomes, strip_seals=False
        ),
        "seal",
    ),
    "rewrite an event, recompute the chain, strip the seals": (
        lambda lab: _rechain(
            lab, _event_id(lab, "measurement_recorded"), _outcomes, strip_seals=True
        ),
        "seal",
    ),
    "edit an event's payload": (
        lambda lab: _sql(
            lab,
            'UPDATE event SET payload = \'{"requested": "nothing"}\' WHERE id = '
            "(SELECT min(id) FROM event WHERE campaign_id = 1 AND kind = 'proposal_created')",
        ),
        "altered",
    ),
    "edit an event's actor": (
        lambda lab: _sql(
            lab,
            "UPDATE event SET actor = 'boss' WHERE id = "
            "(SELECT min(id) FROM event WHERE campaign_id = 1 AND kind = 'proposal_approved')",
        ),
        "altered",
    ),
    "delete an event in the middle": (
        lambda lab: _sql(
            lab,
            "DELETE FROM event WHERE id = (SELECT min(id) FROM event WHERE campaign_id = 1 "
            "AND kind = 'proposal_approved')",
        ),
        "missing",
    ),
    "edit a measurement": (
        lambda lab: _sql(lab, "UPDATE measurement SET value = value + 0.3 WHERE id = 1"),
        "measurement",
    ),
    "delete a measurement": (
        lambda lab: _sql(lab, "DELETE FROM measurement WHERE id = 2"),
        "measurement",
    ),
    "edit an experiment's outcomes (what the planner learns)": (
        lambda lab: _sql(
            lab, "UPDATE experiment SET outcomes = '{\"selectivity\": 0.99}' WHERE id = 1"
        ),
        "experiment",
    ),
    "edit a proposal": (
        lambda lab: _sql(
            lab,
            'UPDATE proposal SET params = \'{"drug_a_um": 9.0, "drug_b_um": 0.1}\' WHERE id = 1',
        ),
        "proposal 1",
    ),
    "edit an approval": (
        lambda lab: _sql(lab, "UPDATE approval SET actor = 'boss' WHERE id = 1"),
        "approval 1",
    ),
    "add an approval": (
        lambda lab: _sql(
            lab,
            "INSERT INTO approval (proposal_id, decision, actor, created_at) "
            "VALUES (2, 'approved', 'boss', '2026-01-01 00:00:00')",
        ),
        "not recorded",
    ),
    "edit the step journal": (
        lambda lab: _sql(
            lab,
            "UPDATE step SET payload = json_set(payload, '$.volume_ul', 50.0) WHERE kind = 'dispense' "
            "AND id = (SELECT min(id) FROM step WHERE kind = 'dispense')",
        ),
        "step",
    ),
    "edit a raw image's checksum": (
        lambda lab: _sql(lab, f"UPDATE rawdata SET sha256 = '{'0' * 64}' WHERE id = 1"),
        "rawdata",
    ),
    "edit an image file": (lambda lab: _flip(_first_image(lab)), "image file"),
    "delete an image file": (lambda lab: _first_image(lab).unlink(), "missing"),
}


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_the_untouched_copy_verifies(lab):
    proc = _verify()
    assert proc.returncode == 0, proc.out
    assert "ok small" in proc.out and "anchored up to event" in proc.out
    assert "TAMPERED" not in proc.out


@pytest.mark.parametrize("name", list(TAMPERS))
def test_every_tamper_is_detected(lab, name):
    tamper, expected = TAMPERS[name]
    tamper(lab)
    proc = _verify()
    assert proc.returncode == 4, f"{name}: not detected\n{proc.out}"
    assert "TAMPERED small" in proc.out and expected in proc.out, proc.out


def test_a_deleted_campaign_is_missed_by_the_ledger_wide_log(lab):
    tables = [
        "measurement",
        "well",
        "rawdata",
        "step",
        "experiment",
        "approval",
        "proposal",
        "round",
    ]
    _sql(
        lab,
        "DELETE FROM event WHERE campaign_id = 1",
        *(f"DELETE FROM {t}" for t in tables),
        "DELETE FROM campaign",
    )
    proc = _verify()
    assert proc.returncode == 4 and "TAMPERED ledger-wide log" in proc.out
    assert "'small' (id 1) was registered in the log but is gone" in proc.out


def test_events_sealed_with_another_key_are_reported_unchecked(lab, tmp_path):
    other = tmp_path / "elsewhere.key"
    proc = _verify()
    assert proc.returncode == 0
    env_key = os.environ["CELLPILOT_LEDGER_KEY"]
    try:
        os.environ["CELLPILOT_LEDGER_KEY"] = str(other)  # a machine without the ledger's key
        proc = _verify()
        assert proc.returncode == 6 and "does not hold" in proc.out, proc.out
        proc = _verify("--key", env_key)
        assert proc.returncode == 0, proc.out
    finally:
        os.environ["CELLPILOT_LEDGER_KEY"] = env_key
