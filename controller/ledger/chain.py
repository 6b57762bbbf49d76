"""The event log's chains: appending, serialised per chain, hash-chained and sealed.

Each campaign has a chain of events, and the ledger has one more chain for what belongs to no
campaign (accounts, logins, campaign registrations: ``campaign_id`` NULL, chain key 0). Every
event records its position in its chain (``seq``, from 1), the previous event's hash, its own
hash (over the previous hash and its content, :func:`event_digest`), and a MAC of (seq, hash)
under the ledger key (:mod:`controller.ledger.sealing`).

Appending is deferred to commit time: :func:`append` queues the event on the session, and the
session's ``before_commit`` hook (after every other write of the transaction is flushed) locks
the chain, reads its head, resolves the event's bindings (:mod:`controller.ledger.binding`),
chains, seals and inserts the events. Taking the chain lock last, at commit, means a
transaction never waits for a row while holding a chain, so chains cannot deadlock with the
rows operators and runners update. The lock:

- PostgreSQL: ``pg_advisory_xact_lock(<cellpilot>, <chain key>)``, released at commit;
- SQLite: the database's single write lock, taken before the head is read (an empty ``UPDATE``).

A unique index on (chain, seq) is the safety net: a fork can never be committed. After the
commit, the new heads are written to the anchor files (:mod:`controller.ledger.anchor`).
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import weakref
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine, event, text
from sqlalchemy.orm import Session as OrmSession
from sqlmodel.sql.sqltypes import UTCDateTime

from controller.ledger import anchor
from controller.ledger.binding import bind_round, bind_rows
from controller.ledger.models import Event, utcnow
from controller.ledger.sealing import LedgerKey, ledger_key
from controller.ledger.secrets import mask_secrets

log = logging.getLogger(__name__)

GENESIS = "0" * 64
GLOBAL = 0  # chain key of the ledger-wide chain (campaign_id NULL)
LOCK_CLASS = 0x63656C6C  # 'cell': the advisory-lock namespace of cellpilot's chains

REGISTERED = "campaign_registered"
SEALED = "ledger_sealed"
START_KINDS = ("campaign_created", "campaign_started", "campaign_resumed")

_PENDING = "cellpilot_pending_events"
_ANCHORS_DUE = "cellpilot_anchors_due"

_META = sa.MetaData()
#: the event table as the chain code reads and writes it (also from migrations)
EVENT = sa.Table(
    "event",
    _META,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("campaign_id", sa.Integer),
    sa.Column("kind", sa.String),
    sa.Column("actor", sa.String),
    sa.Column("payload", sa.JSON),
    sa.Column("clock_s", sa.Float),
    sa.Column("created_at", UTCDateTime()),
    sa.Column("prev_hash", sa.String),
    sa.Column("hash", sa.String),
    sa.Column("seq", sa.Integer),
    sa.Column("mac", sa.String),
    sa.Column("key_id", sa.String),
)
CAMPAIGN = sa.Table("campaign", _META, sa.Column("id", sa.Integer), sa.Column("name", sa.String))


def chain_key(campaign_id: int | None) -> int:
    return campaign_id or GLOBAL


def event_digest(
    prev_hash: str,
    campaign_id: int | None,
    kind: str,
    actor: str,
    payload: dict[str, Any],
    clock_s: float | None,
    created_at: str,
) -> str:
    """SHA-256 of an event's content and its predecessor's hash (unchanged since the first ledger)."""
    body = json.dumps(
        {
            "prev": prev_hash,
            "campaign": campaign_id,
            "kind": kind,
            "actor": actor,
            "payload": payload,
            "clock_s": clock_s,
            "at": created_at,
        },
        sort_keys=True,
        separators=(",", ":"),
        default=str,
    )
    return hashlib.sha256(body.encode()).hexdigest()


@dataclass
class _Pending:
    event: Event
    bind: list[Any] = field(default_factory=list)
    bind_round: int | list[int] | None = None


def append(
    session: OrmSession,
    campaign_id: int | None,
    kind: str,
    payload: dict[str, Any] | None = None,
    *,
    actor: str = "system",
    clock_s: float | None = None,
    bind: list[Any] | tuple = (),
    bind_round: int | list[int] | None = None,
) -> Event:
    """Queue an event on ``session``; it is chained, sealed and inserted when the session commits.

    Args:
        bind: ORM rows (proposal, approval, ...) whose digests the event carries.
        bind_round: a round whose tables' digests the event carries (a list: several rounds,
            carried as ``bind_rounds``).
    """
    payload = mask_secrets(json.loads(json.dumps(payload or {}, default=str)))
    ev = Event(
        campaign_id=campaign_id,
        kind=kind,
        actor=actor,
        payload=payload,
        clock_s=clock_s,
        created_at=utcnow(),
        prev_hash="",
        hash="",
    )
    if not session.in_transaction():
        session.begin()  # so a session closed without commit drops the queue (after_transaction_end)
    session.info.setdefault(_PENDING, []).append(_Pending(ev, list(bind), bind_round))
    return ev


# -- locks and heads ---------------------------------------------------------------------------


def lock_chains(conn: Connection, keys: list[int]) -> None:
    """Hold the chains ``keys`` until the transaction ends (always in ascending order)."""
    if conn.dialect.name == "postgresql":
        for k in sorted(set(keys)):
            conn.execute(text("SELECT pg_advisory_xact_lock(:a, :b)"), {"a": LOCK_CLASS, "b": k})
    elif conn.dialect.name == "sqlite":
        # An UPDATE takes SQLite's write lock even when it matches nothing; reads after it see
        # every committed event, and no other writer can commit until this one ends.
        conn.execute(text("UPDATE event SET id = id WHERE 1 = 0"))


def _where_chain(k: int):
    return EVENT.c.campaign_id.is_(None) if k == GLOBAL else EVENT.c.campaign_id == k


def head(conn: Connection, k: int) -> tuple[int, str]:
    """(number of events, last hash) of chain ``k``."""
    row = conn.execute(
        sa.select(EVENT.c.seq, EVENT.c.hash)
        .where(_where_chain(k))
        .order_by(EVENT.c.seq.desc(), EVENT.c.id.desc())
        .limit(1)
    ).first()
    return (row.seq or 0, row.hash) if row else (0, GENESIS)


def _has_events(conn: Connection, k: int) -> bool:
    return conn.execute(sa.select(EVENT.c.id).where(_where_chain(k)).limit(1)).first() is not None


# -- the commit hooks ------------------------------------------------------------------------


@event.listens_for(OrmSession, "before_commit")
def _chain_pending(session: OrmSession) -> None:
    pending: list[_Pending] = session.info.pop(_PENDING, None) or []
    if not pending:
        return
    session.flush()
    conn = session.connection()
    key = ledger_key()
    keys = {chain_key(p.event.campaign_id) for p in pending}
    new = [k for k in keys if k != GLOBAL and not _has_events(conn, k)]
    lock_chains(conn, sorted(keys | ({GLOBAL} if new else set())))
    registrations = [_registration(conn, k) for k in new if not _has_events(conn, k)]
    heads: dict[int, tuple[int, str]] = {}
    for item in registrations + pending:
        k = chain_key(item.event.campaign_id)
        if k not in heads:
            heads[k] = head(conn, k)
        heads[k] = _seal(conn, key, item, *heads[k])
        session.add(item.event)
    session.flush()
    session.info[_ANCHORS_DUE] = _anchor_lines(session, conn, heads, pending)


def _registration(conn: Connection, k: int) -> _Pending:
    name = conn.execute(sa.select(CAMPAIGN.c.name).where(CAMPAIGN.c.id == k)).scalar()
    ev = Event(
        campaign_id=None,
        kind=REGISTERED,
        actor="system",
        payload={"campaign_id": k, "name": name},
        created_at=utcnow(),
        prev_hash="",
        hash="",
    )
    return _Pending(ev)


def _seal(conn: Connection, key: LedgerKey, item: _Pending, seq: int, prev: str) -> tuple[int, str]:
    ev = item.event
    extra: dict[str, Any] = {}
    if item.bind:
        extra["bind"] = bind_rows(conn, [(type(r).__tablename__, r.id) for r in item.bind])
    if isinstance(item.bind_round, list):
        extra["bind_rounds"] = [bind_round(conn, r) for r in item.bind_round]
    elif item.bind_round is not None:
        extra["bind_round"] = bind_round(conn, item.bind_round)
    if extra:
        ev.payload = {**ev.payload, **extra}
    ev.seq = seq + 1
    ev.prev_hash = prev
    ev.hash = event_digest(
        prev, ev.campaign_id, ev.kind, ev.actor, ev.payload, ev.clock_s, ev.created_at.isoformat()
    )
    ev.mac = key.seal(ev.seq, ev.hash)
    ev.key_id = key.key_id
    return ev.seq, ev.hash


@event.listens_for(OrmSession, "after_commit")
def _write_anchors(session: OrmSession) -> None:
    due: dict[Path, list[dict[str, Any]]] = session.info.pop(_ANCHORS_DUE, None) or {}
    for path, lines in due.items():
        anchor.write_lines(path, lines)


@event.listens_for(OrmSession, "after_transaction_end")
def _drop_queue(session: OrmSession, transaction) -> None:
    if transaction.parent is None:
        session.info.pop(_PENDING, None)
        session.info.pop(_ANCHORS_DUE, None)


# -- anchors ---------------------------------------------------------------------------------

_lock = threading.Lock()
_ledger_ids: weakref.WeakKeyDictionary[Engine, str] = weakref.WeakKeyDictionary()
_anchor_paths: dict[tuple[str, int], Path | None] = {}
_registrations: set[tuple[str, int]] = set()  # paths this process owns (the runner's campaign)


def ledger_id(conn: Connection) -> str | None:
    """The ledger's id: recorded by the sealed first event of the ledger-wide chain."""
    engine = conn.engine
    with _lock:
        if engine in _ledger_ids:
            return _ledger_ids[engine]
    row = conn.execute(
        sa.select(EVENT.c.payload)
        .where(EVENT.c.campaign_id.is_(None), EVENT.c.kind == SEALED)
        .order_by(EVENT.c.seq, EVENT.c.id)
        .limit(1)
    ).first()
    if row is None or not isinstance(row.payload, dict) or "ledger_id" not in row.payload:
        return None
    with _lock:
        _ledger_ids[engine] = str(row.payload["ledger_id"])
    return str(row.payload["ledger_id"])


def _engine_key(conn: Connection) -> str:
    return conn.engine.url.render_as_string(hide_password=False)


def register_anchor(db: Engine, campaign_id: int, path: Path) -> None:
    """Tell this process where campaign ``campaign_id``'s anchor file is (the runner does)."""
    key = (db.url.render_as_string(hide_password=False), campaign_id)
    with _lock:
        _anchor_paths[key] = Path(path)
        _registrations.add(key)


def _registered(conn: Connection, campaign_id: int) -> bool:
    with _lock:
        return (_engine_key(conn), campaign_id) in _registrations


def campaign_anchor(
    conn: Connection, campaign_id: int, pending: Sequence[_Pending] = ()
) -> Path | None:
    """Where campaign ``campaign_id``'s anchor lines go: what the runner registered or
    recorded in the chain's start events (None when unknown)."""
    k = (_engine_key(conn), campaign_id)
    with _lock:
        if _anchor_paths.get(k) is not None:
            return _anchor_paths[k]
    for p in reversed(list(pending)):
        if (
            p.event.campaign_id == campaign_id
            and p.event.kind in START_KINDS
            and p.event.payload.get("anchor")
        ):
            return Path(p.event.payload["anchor"])
    row = conn.execute(
        sa.select(EVENT.c.payload)
        .where(EVENT.c.campaign_id == campaign_id, EVENT.c.kind.in_(START_KINDS))
        .order_by(EVENT.c.seq.desc(), EVENT.c.id.desc())
        .limit(1)
    ).first()
    path = (
        Path(row.payload["anchor"])
        if row and isinstance(row.payload, dict) and row.payload.get("anchor")
        else None
    )
    with _lock:
        _anchor_paths[k] = path
    return path


def _anchor_lines(
    session: OrmSession,
    conn: Connection,
    heads: dict[int, tuple[int, str]],
    pending: list[_Pending],
) -> dict[Path, list[dict[str, Any]]]:
    lid = ledger_id(conn)
    if lid is None:
        return {}
    names = dict(
        conn.execute(
            sa.select(CAMPAIGN.c.id, CAMPAIGN.c.name).where(
                CAMPAIGN.c.id.in_([k for k in heads if k != GLOBAL])
            )
        ).all()
    )
    due: dict[Path, list[dict[str, Any]]] = {}
    for k, (count, last) in sorted(heads.items()):
        line = anchor.anchor_line(lid, k or None, names.get(k), count, last)
        due.setdefault(anchor.ledger_anchor_path(lid), []).append(line)
        if k != GLOBAL:
            path = campaign_anchor(conn, k, pending)
            # Another machine's path is not created here: only the runner (which registered it)
            # creates its campaign's anchor file; the console and the CLI append to it if it exists.
            if path is not None and (_registered(conn, k) or path.exists()):
                due.setdefault(path, []).append(line)
    return due
