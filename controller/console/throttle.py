"""Login throttling and a bound on concurrent password hashing.

Failed logins are counted per user (by a digest of the name given, so a password typed into
the name field is never stored) and per client address, in the ledger (``login_throttle``), so
every console process of a shared ledger sees the same counts. After :data:`FREE_FAILURES`
failures a key is locked for 30 s, doubling with each further failure up to 15 min; a
success clears the user's and the address's counts; failures older than an hour are forgotten.
While locked, a login is refused before any password is hashed.

Each argon2 check costs ~0.5 s and 64 MiB, so at most :data:`HASH_SLOTS` run at once in a
process; a login that cannot get a slot within :data:`HASH_WAIT_S` is refused as busy.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from controller.ledger.accounts import LoginThrottle
from controller.ledger.models import utcnow

FREE_FAILURES = {"user": 5, "addr": 20}
FIRST_LOCK = timedelta(seconds=30)
MAX_LOCK = timedelta(minutes=15)
FORGET_AFTER = timedelta(hours=1)
HASH_SLOTS = 2
HASH_WAIT_S = 5.0

_slots = threading.BoundedSemaphore(HASH_SLOTS)


class Busy(Exception):
    """No hashing slot came free in time."""


@contextmanager
def hashing_slot() -> Iterator[None]:
    """Hold one of the process's :data:`HASH_SLOTS` while hashing a password."""
    if not _slots.acquire(timeout=HASH_WAIT_S):
        raise Busy("the server is busy checking other logins; try again in a moment")
    try:
        yield
    finally:
        _slots.release()


def keys(name: str, address: str) -> list[str]:
    return [f"user:{hashlib.sha256(name.strip().encode()).hexdigest()[:32]}", f"addr:{address}"]


def _as_utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def locked_for(db: Engine, keys_: list[str]) -> int:
    """Seconds until every key is unlocked (0: none is locked)."""
    now = utcnow()
    with Session(db) as s:
        until = [
            _as_utc(row.locked_until)
            for k in keys_
            if (row := s.get(LoginThrottle, k)) is not None and row.locked_until is not None
        ]
    waits = [(t - now).total_seconds() for t in until if t > now]
    return int(max(waits) + 1) if waits else 0


def record_failure(db: Engine, keys_: list[str]) -> dict[str, int]:
    """Count a failed login; return ``{key: seconds}`` for the keys this failure locked."""
    locked = {}
    for k in keys_:
        for _ in range(3):  # a concurrent first failure may insert the row first
            try:
                secs = _fail(db, k)
                break
            except IntegrityError:
                continue
        else:
            secs = 0
        if secs:
            locked[k] = secs
    return locked


def _fail(db: Engine, key: str) -> int:
    now = utcnow()
    with Session(db) as s:
        row = s.get(LoginThrottle, key, with_for_update=True) or LoginThrottle(key=key)
        if row.last_failure_at and now - _as_utc(row.last_failure_at) > FORGET_AFTER:
            row.failures = 0
        row.failures += 1
        row.last_failure_at = now
        over = row.failures - FREE_FAILURES[key.split(":", 1)[0]]
        secs = 0
        if over >= 0:
            lock = min(FIRST_LOCK * (2**over), MAX_LOCK)
            row.locked_until = now + lock
            secs = int(lock.total_seconds())
        s.add(row)
        s.commit()
        return secs


def clear(db: Engine, keys_: list[str]) -> None:
    with Session(db) as s:
        for k in keys_:
            row = s.get(LoginThrottle, k)
            if row is not None:
                s.delete(row)
        s.commit()
