"""Child-process targets for the ledger concurrency tests: imports only the ledger, so a spawned
process starts in a fraction of a second (the test modules import the planners, and torch)."""

from __future__ import annotations

from sqlmodel import Session

from controller.ledger.db import open_ledger_engine
from controller.loop.events import EventKind, append_event


def append_many(url: str, campaign_id: int, n: int, barrier) -> None:
    """Open the ledger, wait for the others, append ``n`` events in ``n`` transactions."""
    db = open_ledger_engine(url)
    barrier.wait()
    for i in range(n):
        with Session(db) as s:
            append_event(s, campaign_id, EventKind.ALERT_SENT, {"i": i})
            s.commit()


def open_ledger(url: str, barrier, out) -> None:
    """Wait for the others, then open (and migrate) the ledger; report "ok" or the error."""
    barrier.wait()
    try:
        open_ledger_engine(url)
        out.put("ok")
    except Exception as e:  # reported to the test
        out.put(f"{type(e).__name__}: {e}"[:300])
