"""Concurrent writers on SQLite and on the PostgreSQL server on 127.0.0.1: threads and processes
appending to one event chain, operators racing for one proposal, processes opening a new
ledger at the same moment. Nothing forks, nothing is decided twice, nothing crashes."""

from __future__ import annotations

import multiprocessing as mp
import threading
import uuid

import pytest
from sqlmodel import Session, col, select

from controller.ledger.db import head_revision, open_ledger_engine, schema_revision
from controller.ledger.models import Approval, Campaign, Event, Proposal, Round
from controller.loop import operator
from controller.loop.events import EventKind, append_event, verify_chain
from controller.spec import CampaignSpec
from tests.controller import ledger_workers
from tests.controller.conftest import PG_ADMIN, run_cli, small_campaign_data


def seed_proposals(db, n: int, name: str = "small") -> tuple[int, list[int]]:
    """A campaign whose round 1 holds ``n`` undecided proposals (written directly)."""
    spec = CampaignSpec.model_validate(small_campaign_data(approval={"mode": "manual"}))
    with Session(db) as s:
        camp = Campaign(
            name=name,
            spec=spec.model_dump(mode="json"),
            spec_hash=spec.spec_hash(),
            dry_run=True,
            status="running",
        )
        s.add(camp)
        s.flush()
        rnd = Round(campaign_id=camp.id, index=0, plate_id=f"{name}-P001")
        s.add(rnd)
        s.flush()
        props = [
            Proposal(
                campaign_id=camp.id,
                round_id=rnd.id,
                position=i,
                planner="sobol",
                params={"drug_a_um": 0.1 + i, "drug_b_um": 0.2},
            )
            for i in range(n)
        ]
        s.add_all(props)
        append_event(s, camp.id, EventKind.ROUND_PROPOSED, {"round": 1, "n": n})
        s.commit()
        return camp.id, [p.id for p in props]


def _together(fns) -> list:
    """Run the callables in threads released at the same instant; results or exceptions."""
    barrier = threading.Barrier(len(fns))
    out: list = [None] * len(fns)

    def run(i, fn):
        barrier.wait()
        try:
            out[i] = fn()
        except Exception as e:  # the loser's error is the result under test
            out[i] = e

    threads = [threading.Thread(target=run, args=(i, fn)) for i, fn in enumerate(fns)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    return out


def _chain_ok(db, campaign_id: int, expected: int) -> None:
    with Session(db) as s:
        ok, msg = verify_chain(s, campaign_id)
        assert ok, msg
        n = len(s.exec(select(Event).where(Event.campaign_id == campaign_id)).all())
    assert n == expected and msg == f"{expected} events verified"


def test_concurrent_decisions_never_fork_the_chain(ledger_url):
    db = open_ledger_engine(ledger_url)
    cid, ids = seed_proposals(db, 20)
    for batch in range(5):
        chunk = ids[4 * batch : 4 * batch + 4]
        results = _together([lambda i=i: operator.approve(db, [i], f"op{i}") for i in chunk])
        assert results == [[i] for i in chunk]
    _chain_ok(db, cid, 1 + 20)


def test_processes_appending_to_one_chain_keep_it_linear(ledger_url):
    db = open_ledger_engine(ledger_url)
    cid, _ = seed_proposals(db, 1)
    ctx = mp.get_context("spawn")
    barrier = ctx.Barrier(3)
    procs = [
        ctx.Process(target=ledger_workers.append_many, args=(ledger_url, cid, 15, barrier))
        for _ in range(3)
    ]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    assert [p.exitcode for p in procs] == [0, 0, 0]
    _chain_ok(db, cid, 1 + 45)


def test_approve_and_reject_race_has_one_winner(ledger_url):
    db = open_ledger_engine(ledger_url)
    cid, ids = seed_proposals(db, 8)
    for pid in ids:
        results = _together(
            [
                lambda pid=pid: operator.approve(db, [pid], "ana"),
                lambda pid=pid: operator.reject(db, pid, "toxic", "ben"),
            ]
        )
        errors = [r for r in results if isinstance(r, Exception)]
        assert len(errors) == 1, results
        assert isinstance(errors[0], operator.OperatorError) and "already" in str(errors[0])
        winner = "approved" if errors[0] is results[1] else "rejected"
        loser_actor = "ben" if winner == "approved" else "ana"
        assert f"by {'ana' if winner == 'approved' else 'ben'}" in str(errors[0])
        with Session(db) as s:
            rows = s.exec(select(Approval).where(Approval.proposal_id == pid)).all()
            assert [r.decision for r in rows] == [winner] and rows[0].actor != loser_actor
            assert s.get(Proposal, pid).status == winner
    _chain_ok(db, cid, 1 + 8)


def test_a_second_decision_is_refused_with_who_and_when_and_exit_code_5(tmp_path):
    url = f"sqlite:///{tmp_path / 'ledger.db'}"
    db = open_ledger_engine(url)
    _, ids = seed_proposals(db, 2)
    assert run_cli("approve", str(ids[0]), "--ledger", url).returncode == 0
    again = run_cli("reject", str(ids[0]), "--reason", "no", "--ledger", url)
    assert again.returncode == 5, again.stderr
    assert f"proposal {ids[0]} was already approved by" in again.stderr and " at " in again.stderr
    with Session(db) as s:
        assert len(s.exec(select(Approval).where(Approval.proposal_id == ids[0])).all()) == 1


def _fresh_pg_database(request) -> str:
    psycopg = pytest.importorskip("psycopg")
    try:
        conn = psycopg.connect(PG_ADMIN.replace("+psycopg", ""), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        pytest.skip(f"PostgreSQL not reachable: {e}")
    name = f"cellpilot_test_{uuid.uuid4().hex[:10]}"
    conn.execute(f'CREATE DATABASE "{name}"')

    def drop():
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        conn.close()

    request.addfinalizer(drop)
    return PG_ADMIN.rsplit("/", 1)[0] + f"/{name}"


@pytest.mark.parametrize("backend", ["sqlite", "postgresql"])
def test_processes_opening_a_new_ledger_together_all_succeed(backend, tmp_path, request):
    ctx = mp.get_context("spawn")
    url = f"sqlite:///{tmp_path / 'new.db'}" if backend == "sqlite" else _fresh_pg_database(request)
    barrier, out = ctx.Barrier(6), ctx.Queue()
    procs = [
        ctx.Process(target=ledger_workers.open_ledger, args=(url, barrier, out)) for _ in range(6)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=180) for _ in procs]
    for p in procs:
        p.join(60)
    assert results == ["ok"] * 6, results
    db = open_ledger_engine(url)
    assert schema_revision(db) == head_revision()
    with Session(db) as s:  # migrated exactly once: one seal of the ledger-wide chain
        kinds = s.exec(select(Event.kind).where(col(Event.campaign_id).is_(None))).all()
    assert kinds.count("ledger_sealed") == 1
