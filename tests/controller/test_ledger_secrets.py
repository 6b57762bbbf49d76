"""The ledger's password never leaves the process that needs it: not in events, the stored
campaign file, ``status``, ``report``, ``verify``, the console, ``serve``'s banner or error
messages; a ledger written before masking is masked (and re-sealed, recorded) when upgraded,
and ``cellpilot ledger mask-secrets`` does it on demand."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest
import sqlalchemy as sa
from alembic import command
from fastapi.testclient import TestClient
from sqlmodel import Session, col, select

from controller.ledger.db import alembic_config, create_ledger_engine, open_ledger_engine
from controller.ledger.models import Campaign, Event
from controller.loop.events import GENESIS, EventKind, append_event, event_digest
from tests.controller.conftest import ROOT, run_cli

SECRET = "Sup3r-S3cret-pw"


def _with_password(pg_url: str) -> str:
    return pg_url.replace("postgres@", f"postgres:{SECRET}@")


def _dump(db) -> str:
    """Every row of every table, as text."""
    out = []
    with db.connect() as conn:
        for table in sa.inspect(conn).get_table_names():
            out += [str(tuple(r)) for r in conn.execute(sa.text(f'SELECT * FROM "{table}"'))]
    return "\n".join(out)


def test_the_password_is_nowhere(pg_url, write_campaign, tmp_path):
    from controller.console.app import create_app
    from controller.console.auth import add_user
    from tests.console.conftest import login

    url = _with_password(pg_url)
    path = write_campaign(budget={"rounds": 1})
    seen = []
    run = run_cli("run", str(path), "--dry-run", "--ledger", url)
    assert run.returncode == 0, run.stderr
    seen += [run.stdout, run.stderr]
    for args in (
        ["status"],
        ["status", "--json"],
        ["status", "--campaign", "small"],
        ["verify"],
        ["proposals"],
        ["status", "--campaign", "nope"],
        ["report", "--campaign", "nope", "--out", "x"],
    ):
        proc = run_cli(*args, "--ledger", url)
        seen += [proc.stdout, proc.stderr]
    assert "postgres:***@" in seen[-1]  # the error names the ledger, masked
    assert run_cli("report", "--out", str(tmp_path / "report"), "--ledger", url).returncode == 0
    seen += [p.read_text(errors="replace") for p in (tmp_path / "report").rglob("*.html")]
    db = open_ledger_engine(url)
    seen.append(_dump(db))
    with Session(db) as s:
        started = s.exec(select(Event).where(Event.kind == "campaign_started")).one()
        assert started.payload["ledger"] == url.replace(SECRET, "***")
    add_user(db, "ana", "ana-password", "operator")
    client = TestClient(create_app(url))
    login(client, "ana", "ana-password")
    for page in (
        "/",
        "/campaigns/small",
        "/campaigns/small/fragment/events",
        "/api/campaigns",
        "/admin/users",
    ):
        seen.append(client.get(page).text)
    seen.append(_serve_banner(url))
    assert "postgres:***@" in seen[-1]
    leaks = [text[:200] for text in seen if SECRET in text]
    assert not leaks, leaks


def _serve_banner(url: str) -> str:
    from tests.console.conftest import free_port

    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "serve",
            "--port",
            str(free_port()),
            "--ledger",
            url,
        ],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        end, out = time.monotonic() + 60, ""
        while time.monotonic() < end and ")" not in out.partition("console on")[2]:
            out += proc.stdout.readline()
        return out
    finally:
        proc.terminate()
        proc.wait(10)


def _old_ledger(path: Path) -> str:
    """A ledger as cellpilot 0.1 wrote it (schema 0003, events hash-chained, not sealed), its
    ledger URL with a password in the campaign_started event and the stored campaign file."""
    url = f"sqlite:///{path}"
    db = create_ledger_engine(url)
    cfg = alembic_config()
    with db.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "0003")
    secret_url = f"postgresql+psycopg://lab:{SECRET}@db.lab/cellpilot"
    with db.begin() as conn:
        conn.execute(
            sa.text(
                "INSERT INTO campaign (name, spec, spec_hash, status, dry_run, clock_s, started_clock_s, created_at, "
                "updated_at) VALUES ('old', :spec, 'x', 'completed', 1, 5.0, 0.0, '2026-01-01 00:00:00', "
                "'2026-01-01 00:00:00')"
            ),
            {"spec": json.dumps({"ledger": {"url": secret_url}})},
        )
        prev = GENESIS
        for i, (kind, payload) in enumerate(
            [
                ("campaign_created", {"name": "old"}),
                ("campaign_started", {"ledger": secret_url}),
                ("round_proposed", {"round": 1, "n": 0}),
                ("campaign_completed", {}),
            ]
        ):
            at = f"2026-01-01T00:00:0{i}+00:00"
            digest = event_digest(prev, 1, kind, "system", payload, float(i), at)
            conn.execute(
                sa.text(
                    "INSERT INTO event (campaign_id, kind, actor, payload, clock_s, created_at, prev_hash, "
                    "hash) VALUES (1, :k, 'system', :p, :c, :at, :prev, :h)"
                ),
                {
                    "k": kind,
                    "p": json.dumps(payload),
                    "c": float(i),
                    "at": at[:19].replace("T", " "),
                    "prev": prev,
                    "h": digest,
                },
            )
            prev = digest
    db.dispose()
    return url


def test_an_old_ledger_is_masked_sealed_and_verifies_after_the_upgrade(tmp_path):
    url = _old_ledger(tmp_path / "old.db")
    db = open_ledger_engine(url)  # migrates to the newest schema
    assert SECRET not in _dump(db)
    with Session(db) as s:
        sealed = s.exec(
            select(Event).where(Event.campaign_id == 1, Event.kind == "ledger_sealed")
        ).one()
        started = s.exec(select(Event).where(Event.kind == "campaign_started")).one()
        assert sealed.payload["legacy_events"] == 4 and sealed.payload["verified"]
        assert sealed.payload["masked_events"] == [started.id] and sealed.seq == 5 and sealed.mac
        assert started.payload["ledger"] == "postgresql+psycopg://lab:***@db.lab/cellpilot"
        assert (
            s.exec(select(Campaign))
            .one()
            .spec["ledger"]["url"]
            .startswith("postgresql+psycopg://lab:***@")
        )
    proc = run_cli("verify", "--ledger", url)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "ok old: 5 events verified" in proc.stdout and "predate sealing" in proc.stdout


def test_mask_secrets_rechains_and_records_it(tmp_path):
    from controller.ledger.chain import EVENT, head, lock_chains
    from controller.ledger.sealing import load_key

    url = f"sqlite:///{tmp_path / 'l.db'}"
    db = open_ledger_engine(url)
    with Session(db) as s:
        camp = Campaign(name="c", spec={}, spec_hash="h")
        s.add(camp)
        s.flush()
        append_event(s, camp.id, EventKind.CAMPAIGN_CREATED, {"name": "c"})
        s.commit()
        cid = camp.id
    key = load_key()
    with (
        db.begin() as conn
    ):  # a sealed event holding a credential, as a writer that did not mask would
        lock_chains(conn, [cid])
        seq, prev = head(conn, cid)
        from controller.ledger.models import utcnow

        at = utcnow()
        payload = {"note": f"copied from postgresql://lab:{SECRET}@db/x"}
        digest = event_digest(prev, cid, "alert_sent", "system", payload, None, at.isoformat())
        conn.execute(
            EVENT.insert().values(
                campaign_id=cid,
                kind="alert_sent",
                actor="system",
                payload=payload,
                created_at=at,
                prev_hash=prev,
                hash=digest,
                seq=seq + 1,
                mac=key.seal(seq + 1, digest),
                key_id=key.key_id,
            )
        )
    assert run_cli("verify", "--ledger", url).returncode == 0
    proc = run_cli("ledger", "mask-secrets", "--ledger", url, "--json")
    assert proc.returncode == 0, proc.stderr
    (row,) = json.loads(proc.stdout)
    assert (
        row["campaign_id"] == cid
        and len(row["masked_events"]) == 1
        and row["events_rewritten"] == 1
    )
    assert SECRET not in _dump(db)
    with Session(db) as s:
        last = s.exec(
            select(Event).where(Event.campaign_id == cid).order_by(col(Event.seq).desc())
        ).first()
        assert last.kind == "secrets_masked" and last.payload["old_head"] == row["old_head"]
    verify = run_cli("verify", "--ledger", url)
    assert verify.returncode == 0, verify.stdout + verify.stderr
    again = run_cli("ledger", "mask-secrets", "--ledger", url)
    assert again.returncode == 0 and "nothing rewritten" in again.stdout


@pytest.mark.parametrize(
    "text,masked",
    [
        ("postgresql+psycopg://u:pw@h:5432/db", "postgresql+psycopg://u:***@h:5432/db"),
        ("see mysql://root:a%40b@10.0.0.1/x and more", "see mysql://root:***@10.0.0.1/x and more"),
        ("sqlite:///runs/cellpilot.db", "sqlite:///runs/cellpilot.db"),
        ("https://hooks.example/T0/B1", "https://hooks.example/T0/B1"),
    ],
)
def test_mask_text(text, masked):
    from controller.ledger.secrets import mask_secrets, mask_url

    assert mask_secrets({"a": [text]}) == {"a": [masked]}
    if "://" in text and " " not in text:
        assert mask_url(text) == masked
    assert re.search("pw|a%40b", mask_secrets(text)) is None


def test_a_ledger_written_by_cellpilot_0003_opens_verifies_and_is_then_protected(tmp_path):
    """``data/ledger_0003.sql.gz``: a one-plate dry-run recorded by the code at schema 0003
    (commit 3a33d7a), dumped with ``sqlite3 .dump``; its images are not shipped."""
    import gzip
    import sqlite3

    from typer.testing import CliRunner

    from controller.cli import app

    path = tmp_path / "old.db"
    con = sqlite3.connect(path)
    con.executescript(
        gzip.decompress(
            (Path(__file__).parent / "data" / "ledger_0003.sql.gz").read_bytes()
        ).decode()
    )
    con.close()
    url = f"sqlite:///{path}"
    db = open_ledger_engine(url)
    with Session(db) as s:
        sealed = s.exec(
            select(Event).where(Event.campaign_id == 1, Event.kind == "ledger_sealed")
        ).one()
        assert sealed.payload["legacy_events"] == 25 and sealed.payload["verified"]
        assert len(sealed.payload["bind_rounds"]) == 1
    run = CliRunner()
    ok = run.invoke(app, ["verify", "--ledger", url, "--no-files"])
    assert ok.exit_code == 0, ok.output
    assert "ok small: 26 events verified" in ok.output
    con = sqlite3.connect(path)
    con.execute("UPDATE measurement SET value = value * 2 WHERE id = 3")
    con.commit()
    con.close()
    bad = run.invoke(app, ["verify", "--ledger", url, "--no-files"])
    assert bad.exit_code == 4 and "measurement: rows altered" in bad.output
