"""Operators racing for one proposal, on SQLite and on PostgreSQL (issue 10, item 7).

    .venv/bin/python benchmarks/ledger_races.py [--trials 36] [--pg postgresql+psycopg://postgres@127.0.0.1:5432/postgres]

For each trial, two threads released at the same instant approve and reject the same proposal;
a trial is right when exactly one of them succeeds and one approval row is written. Prints the
count per database and whether the event chain still verifies. PostgreSQL is skipped when
unreachable; a scratch database is created and dropped.
"""

from __future__ import annotations

import argparse
import os
import tempfile
import threading
import uuid

os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("CELLPILOT_LEDGER_KEY", os.path.join(tempfile.mkdtemp(), "ledger.key"))

from sqlmodel import Session, select  # noqa: E402

from controller.ledger.db import open_ledger_engine  # noqa: E402
from controller.ledger.models import Approval, Campaign, Proposal, Round  # noqa: E402
from controller.loop import operator  # noqa: E402
from controller.loop.events import verify_chain  # noqa: E402


def _seed(db, n: int) -> tuple[int, list[int]]:
    with Session(db) as s:
        camp = Campaign(name="race", spec={}, spec_hash="race", status="running")
        s.add(camp)
        s.flush()
        rnd = Round(campaign_id=camp.id, index=0, plate_id="race-P001")
        s.add(rnd)
        s.flush()
        props = [
            Proposal(
                campaign_id=camp.id, round_id=rnd.id, position=i, planner="none", params={"x": i}
            )
            for i in range(n)
        ]
        s.add_all(props)
        s.commit()
        return camp.id, [p.id for p in props]


def _race(db, pid: int) -> int:
    barrier, errors = threading.Barrier(2), []

    def go(fn):
        barrier.wait()
        try:
            fn()
        except operator.OperatorError as e:
            errors.append(e)

    threads = [
        threading.Thread(target=go, args=(f,))
        for f in (
            lambda: operator.approve(db, [pid], "ana"),
            lambda: operator.reject(db, pid, "no", "ben"),
        )
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    with Session(db) as s:
        rows = len(s.exec(select(Approval).where(Approval.proposal_id == pid)).all())
    return int(len(errors) == 1 and rows == 1)


def run(url: str, label: str, trials: int) -> None:
    db = open_ledger_engine(url)
    cid, ids = _seed(db, trials)
    right = sum(_race(db, pid) for pid in ids)
    with Session(db) as s:
        ok, msg = verify_chain(s, cid)
    print(
        f"{label}: {right}/{trials} races with exactly one winner and one approval row; chain: {msg}"
    )


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--trials", type=int, default=36)
    ap.add_argument("--pg", default="postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
    args = ap.parse_args()
    run(f"sqlite:///{tempfile.mkdtemp()}/race.db", "SQLite", args.trials)
    import psycopg

    try:
        admin = psycopg.connect(args.pg.replace("+psycopg", ""), autocommit=True, connect_timeout=3)
    except psycopg.OperationalError as e:
        print(f"PostgreSQL skipped: {e}")
        return
    name = f"cellpilot_race_{uuid.uuid4().hex[:8]}"
    admin.execute(f'CREATE DATABASE "{name}"')
    try:
        run(args.pg.rsplit("/", 1)[0] + f"/{name}", "PostgreSQL", args.trials)
    finally:
        admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        admin.close()


if __name__ == "__main__":
    main()
