"""Who acts on a decision from the command line: on a local SQLite ledger the OS user (``--as``
is recorded beside it as a claim); on a shared PostgreSQL ledger an operator's account, by
password or by token, and nobody without one."""

from __future__ import annotations

import getpass

from sqlmodel import Session, select

from controller.console.auth import add_user
from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Approval, Campaign, Event
from tests.controller.conftest import run_cli
from tests.controller.test_ledger_concurrency import seed_proposals


def test_on_sqlite_the_actor_is_the_os_user_and_as_is_a_claim(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db = open_ledger_engine(url)
    _, ids = seed_proposals(db, 2)
    assert run_cli("approve", str(ids[0]), "--as", "boss", "--ledger", url).returncode == 0
    assert run_cli("pause", "--as", "boss", "--ledger", url).returncode == 0
    me = getpass.getuser()
    with Session(db) as s:
        a = s.exec(select(Approval)).one()
        assert (a.actor, a.claimed_as) == (me, "boss")
        ev = s.exec(select(Event).where(Event.kind == "proposal_approved")).one()
        assert ev.actor == me and ev.payload["claimed_as"] == "boss"
        pause = s.exec(select(Event).where(Event.kind == "pause_requested")).one()
        assert pause.actor == me and pause.payload["claimed_as"] == "boss"
        assert s.exec(select(Campaign)).one().control_actor == me


def test_a_shared_ledger_needs_an_account(pg_url):
    db = open_ledger_engine(pg_url)
    _, ids = seed_proposals(db, 4)
    add_user(db, "ana", "ana-password", "operator", actor="test")
    add_user(db, "vic", "vic-password", "viewer", actor="test")

    anon = run_cli("approve", str(ids[0]), "--as", "boss", "--ledger", pg_url)
    assert anon.returncode == 2 and "shared" in anon.stderr and "--user" in anon.stderr
    wrong = run_cli(
        "approve",
        str(ids[0]),
        "--user",
        "ana",
        "--password-stdin",
        "--ledger",
        pg_url,
        input_text="nope\n",
    )
    assert wrong.returncode == 2 and "wrong user name or password" in wrong.stderr
    ok = run_cli(
        "approve",
        str(ids[0]),
        "--user",
        "ana",
        "--password-stdin",
        "--ledger",
        pg_url,
        input_text="ana-password\n",
    )
    assert ok.returncode == 0, ok.stderr
    viewer = run_cli(
        "reject",
        str(ids[1]),
        "--reason",
        "x",
        "--user",
        "vic",
        "--password-stdin",
        "--ledger",
        pg_url,
        input_text="vic-password\n",
    )
    assert viewer.returncode == 2 and "viewer" in viewer.stderr

    made = run_cli("users", "token", "ana", "--label", "night shift", "--ledger", pg_url)
    assert made.returncode == 0 and made.stdout.startswith("cpt_")
    token = made.stdout.strip()
    by_token = run_cli(
        "reject",
        str(ids[1]),
        "--reason",
        "precipitates",
        "--as",
        "boss",
        "--ledger",
        pg_url,
        env={"CELLPILOT_TOKEN": token},
    )
    assert by_token.returncode == 0, by_token.stderr
    bad = run_cli(
        "approve", str(ids[2]), "--ledger", pg_url, env={"CELLPILOT_TOKEN": token[:-2] + "xx"}
    )
    assert bad.returncode == 2 and "not a valid token" in bad.stderr
    assert run_cli("users", "revoke-tokens", "ana", "--ledger", pg_url).returncode == 0
    revoked = run_cli("approve", str(ids[2]), "--ledger", pg_url, env={"CELLPILOT_TOKEN": token})
    assert revoked.returncode == 2

    with Session(db) as s:
        decisions = {
            a.proposal_id: (a.decision, a.actor, a.claimed_as) for a in s.exec(select(Approval))
        }
        assert decisions == {ids[0]: ("approved", "ana", None), ids[1]: ("rejected", "ana", "boss")}
        kinds = [e.kind for e in s.exec(select(Event).where(Event.campaign_id.is_(None)))]
        assert {"token_created", "token_revoked", "login_succeeded", "login_failed"} <= set(kinds)
