"""The ledger on SQLite (WAL) and on the PostgreSQL server on 127.0.0.1: migrations, the event
hash chain and its tamper detection, and a whole small campaign recorded on PostgreSQL."""

from __future__ import annotations

from sqlalchemy import text
from sqlmodel import Session, select

from controller.ledger.db import (
    create_ledger_engine,
    head_revision,
    open_ledger_engine,
    schema_revision,
    upgrade,
)
from controller.ledger.models import Campaign, Event, Experiment, Step
from controller.loop.events import EventKind, append_event, verify_chain
from tests.controller.conftest import run_cli


def test_migrations_bring_a_new_ledger_to_head(ledger_url):
    db = open_ledger_engine(ledger_url)
    assert schema_revision(db) == head_revision()
    upgrade(db)  # idempotent
    with Session(db) as s:
        assert s.exec(select(Campaign)).all() == []


def test_sqlite_ledger_uses_wal(tmp_path):
    db = open_ledger_engine(f"sqlite:///{tmp_path / 'l.db'}")
    with db.connect() as c:
        assert c.execute(text("PRAGMA journal_mode")).scalar() == "wal"


def test_older_ledger_opens_in_newer_version(tmp_path):
    """A ledger at the first revision, holding data, is upgraded in place without loss."""
    from alembic import command

    from controller.ledger.db import alembic_config

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = create_ledger_engine(url)
    cfg = alembic_config()
    with db.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0001")
    with db.begin() as conn:  # what the first version wrote, in its own columns
        conn.execute(
            text(
                "INSERT INTO campaign (name, spec, spec_hash, status, dry_run, clock_s, started_clock_s, "
                "created_at, updated_at) VALUES ('old', '{}', 'x', 'completed', 1, 5.0, 0.0, "
                "'2026-01-01 00:00:00', '2026-01-01 00:00:00')"
            )
        )
    db2 = open_ledger_engine(url)
    assert schema_revision(db2) == head_revision()
    with Session(db2) as s:
        camp = s.exec(select(Campaign)).one()
        assert (camp.name, camp.status, camp.clock_s, camp.control_request) == (
            "old",
            "completed",
            5.0,
            None,
        )


def test_event_chain_detects_tampering_and_deletion(ledger_url):
    db = open_ledger_engine(ledger_url)
    with Session(db) as s:
        camp = Campaign(name="c", spec={}, spec_hash="h")
        s.add(camp)
        s.flush()
        for i in range(5):
            append_event(s, camp.id, EventKind.PROPOSAL_APPROVED, {"proposal_id": i}, actor="alice")
            s.flush()
        s.commit()
        cid = camp.id
    with Session(db) as s:
        assert verify_chain(s, cid) == (True, "5 events verified")
        ev = s.exec(select(Event).where(Event.campaign_id == cid).order_by(Event.id)).all()[2]
        ev.payload = {"proposal_id": 99}
        s.add(ev)
        s.commit()
        ok, msg = verify_chain(s, cid)
        assert not ok and f"event {ev.id}" in msg and "altered" in msg
        ev.payload = {"proposal_id": 2}
        s.add(ev)
        s.commit()
        assert verify_chain(s, cid)[0]
        s.delete(s.exec(select(Event).where(Event.campaign_id == cid).order_by(Event.id)).all()[1])
        s.commit()
        ok, msg = verify_chain(s, cid)
        assert not ok and "missing" in msg


def test_whole_campaign_recorded_on_postgresql(pg_url, write_campaign, tmp_path):
    path = write_campaign(budget={"rounds": 1})
    proc = run_cli("run", str(path), "--dry-run", "--quiet", "--ledger", pg_url)
    assert proc.returncode == 0, proc.stderr
    db = open_ledger_engine(pg_url)
    with Session(db) as s:
        assert s.exec(select(Campaign.status)).one() == "completed"
        assert len([e for e in s.exec(select(Experiment)) if e.status == "measured"]) == 6
        assert {st.status for st in s.exec(select(Step))} == {"done"}
    verify = run_cli("verify", "--ledger", pg_url)
    assert verify.returncode == 0 and "verified" in verify.stdout
