"""Leases: one runner process drives a campaign at a time, and a dead runner's campaign is
taken over once its lease has expired.

Runners in separate processes, on one machine or several, coordinate only through the ledger:

- :func:`claim` is one conditional ``UPDATE`` (it succeeds only when the campaign is free, its
  lease has expired, or this runner already holds it) and bumps ``lease_generation``;
- the holder renews the lease from a heartbeat thread (:class:`LeaseKeeper`) every third of
  its length, with the generation it claimed, so a runner that lost its lease (its process
  stalled past the expiry, and another took over) learns so at its next renewal and stops at
  the next step boundary; nothing runs twice;
- :func:`claim_next` picks the oldest queued campaign, or a running one whose runner died, for
  a worker (``SELECT ... FOR UPDATE SKIP LOCKED`` on PostgreSQL, so workers never wait on
  each other's candidates).

Lease times are UTC from the runners' clocks: keep the workcells' clocks synchronised (NTP).
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from datetime import timedelta

from sqlalchemy import Engine, or_, update
from sqlmodel import Session, col, select

from controller.ledger.models import Campaign, CampaignStatus, utcnow

log = logging.getLogger(__name__)

DEFAULT_LEASE_S = 60.0


def new_runner_id() -> str:
    """A name for this process: host, pid and a random suffix (unique across restarts)."""
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"


def claim(
    db: Engine, campaign_id: int, runner_id: str, lease_s: float = DEFAULT_LEASE_S
) -> int | None:
    """Take (or keep) the campaign's lease; returns the lease generation, or None when another
    live runner holds it."""
    with Session(db) as s:
        generation = _claim_in(s, campaign_id, runner_id, lease_s)
        s.commit()
        return generation


def _claim_in(s: Session, campaign_id: int, runner_id: str, lease_s: float) -> int | None:
    now = utcnow()
    result = s.exec(
        update(Campaign)
        .where(
            col(Campaign.id) == campaign_id,
            or_(
                col(Campaign.runner_id).is_(None),
                col(Campaign.runner_id) == runner_id,
                col(Campaign.lease_expires_at).is_(None),
                col(Campaign.lease_expires_at) < now,
            ),
        )
        .values(
            runner_id=runner_id,
            lease_expires_at=now + timedelta(seconds=lease_s),
            lease_generation=Campaign.lease_generation + 1,
        )
        .returning(col(Campaign.lease_generation))
    )
    row = result.first()
    return None if row is None else int(row[0])


def holder_is_dead(runner_id: str | None) -> bool:
    """True when the lease holder was a process on this host that no longer exists (killed
    before it could release): its lease need not be waited out."""
    if not runner_id:
        return True
    host, _, rest = runner_id.partition(":")
    pid = rest.partition(":")[0]
    if host != socket.gethostname() or not pid.isdigit():
        return False  # another machine: only its lease's expiry can tell
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except PermissionError:
        return False  # alive, another user's
    return False


def take_over(
    db: Engine, campaign_id: int, dead_runner: str, runner_id: str, lease_s: float = DEFAULT_LEASE_S
) -> int | None:
    """Claim a lease whose holder is known dead (:func:`holder_is_dead`), before it expires."""
    with Session(db) as s:
        row = s.exec(
            update(Campaign)
            .where(col(Campaign.id) == campaign_id, col(Campaign.runner_id) == dead_runner)
            .values(
                runner_id=runner_id,
                lease_expires_at=utcnow() + timedelta(seconds=lease_s),
                lease_generation=Campaign.lease_generation + 1,
            )
            .returning(col(Campaign.lease_generation))
        ).first()
        s.commit()
        return None if row is None else int(row[0])


def renew(
    db: Engine, campaign_id: int, runner_id: str, generation: int, lease_s: float = DEFAULT_LEASE_S
) -> bool:
    """Extend a lease this runner holds; False when it was lost (expired and claimed by another)."""
    with Session(db) as s:
        result = s.exec(
            update(Campaign)
            .where(
                col(Campaign.id) == campaign_id,
                col(Campaign.runner_id) == runner_id,
                col(Campaign.lease_generation) == generation,
            )
            .values(lease_expires_at=utcnow() + timedelta(seconds=lease_s))
        )
        s.commit()
        return result.rowcount == 1


def release(db: Engine, campaign_id: int, runner_id: str, generation: int) -> None:
    """Give the lease back (a paused or finished campaign is free for any runner)."""
    with Session(db) as s:
        s.exec(
            update(Campaign)
            .where(
                col(Campaign.id) == campaign_id,
                col(Campaign.runner_id) == runner_id,
                col(Campaign.lease_generation) == generation,
            )
            .values(runner_id=None, lease_expires_at=None)
        )
        s.commit()


def holder(db: Engine, campaign_id: int) -> tuple[str | None, object]:
    """Who holds the campaign's lease and until when."""
    with Session(db) as s:
        camp = s.get(Campaign, campaign_id)
        return camp.runner_id, camp.lease_expires_at


def claim_next(db: Engine, runner_id: str, lease_s: float = DEFAULT_LEASE_S) -> int | None:
    """For a worker: claim the oldest queued campaign, or a running one whose runner's lease
    expired; returns its id, or None when there is none. One transaction: the candidates are
    locked (skipping those another worker is claiming) and the first is claimed."""
    now = utcnow()
    with Session(db) as s:
        q = (
            select(Campaign.id)
            .where(
                or_(
                    col(Campaign.status) == CampaignStatus.QUEUED.value,
                    (col(Campaign.status) == CampaignStatus.RUNNING.value)
                    & or_(
                        col(Campaign.lease_expires_at).is_(None),
                        col(Campaign.lease_expires_at) < now,
                    ),
                )
            )
            .order_by(col(Campaign.id))
        )
        if db.dialect.name == "postgresql":
            q = q.with_for_update(skip_locked=True)
        for cid in list(s.exec(q)):
            if _claim_in(s, cid, runner_id, lease_s) is not None:
                s.commit()
                return cid
        s.rollback()
    return None


class LeaseKeeper:
    """Renews a held lease from a daemon thread; ``lost`` is set when renewal fails."""

    def __init__(
        self,
        db: Engine,
        campaign_id: int,
        runner_id: str,
        generation: int,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.db, self.campaign_id, self.runner_id = db, campaign_id, runner_id
        self.generation, self.lease_s = generation, lease_s
        self.lost = threading.Event()
        self._renewed = time.monotonic()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"lease-{campaign_id}", daemon=True)

    def start(self) -> LeaseKeeper:
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                if not renew(
                    self.db, self.campaign_id, self.runner_id, self.generation, self.lease_s
                ):
                    log.error(
                        "lease on campaign %s lost: another runner took it over", self.campaign_id
                    )
                    self.lost.set()
                    return
                self._renewed = time.monotonic()
            except Exception:  # the database is unreachable: keep trying until the lease runs out
                log.exception("lease renewal failed")
                if time.monotonic() - self._renewed > 0.9 * self.lease_s:
                    log.error("lease on campaign %s expired unrenewed: stopping", self.campaign_id)
                    self.lost.set()  # another runner may take over from now on
                    return

    def stop(self, release_lease: bool = True) -> None:
        self._stop.set()
        self._thread.join(timeout=5)
        if release_lease and not self.lost.is_set():
            release(self.db, self.campaign_id, self.runner_id, self.generation)
