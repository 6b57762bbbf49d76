"""Deliberate, recorded rewrites of the event log: sealing a ledger written before seals existed
(migration 0004) and masking credentials in events already written (``cellpilot ledger
mask-secrets``).

Both work on a Core connection inside one transaction, under the chain locks, and leave a
sealed event saying what they did: ``ledger_sealed`` (how many older events it covers, whether
they verified, which were masked) and ``secrets_masked`` (how many events were rewritten, the
old head). A chain that does not verify is never rewritten: that would launder the tampering.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

from controller.ledger import anchor
from controller.ledger.binding import bind_round, bind_rows, campaign_rows, round_ids
from controller.ledger.chain import (
    CAMPAIGN,
    EVENT,
    GENESIS,
    GLOBAL,
    SEALED,
    campaign_anchor,
    chain_key,
    event_digest,
    head,
    ledger_id,
    lock_chains,
)
from controller.ledger.models import utcnow
from controller.ledger.sealing import LedgerKey
from controller.ledger.secrets import has_secret, mask_secrets

MASKED = "secrets_masked"

CAMPAIGN_SPEC = sa.Table(
    "campaign", sa.MetaData(), sa.Column("id", sa.Integer), sa.Column("spec", sa.JSON)
)


@dataclass
class Rewrite:
    """What re-chaining one chain did."""

    campaign_id: int | None
    masked: list[int]
    rewritten: int
    old_count: int
    old_head: str
    new_head: str
    anchors: dict[Path, list[dict[str, Any]]] = field(default_factory=dict)


def chain_keys(conn: Connection) -> list[int]:
    """Every chain of the ledger: each campaign's (with or without events) and the ledger-wide one."""
    ids = {r.id for r in conn.execute(sa.select(CAMPAIGN.c.id))}
    ids |= {
        chain_key(r.campaign_id) for r in conn.execute(sa.select(EVENT.c.campaign_id).distinct())
    }
    return sorted(ids | {GLOBAL})


def read_chain(conn: Connection, k: int) -> list[Any]:
    where = EVENT.c.campaign_id.is_(None) if k == GLOBAL else EVENT.c.campaign_id == k
    return list(conn.execute(sa.select(EVENT).where(where).order_by(EVENT.c.seq, EVENT.c.id)))


def broken_link(events: list[Any]) -> str | None:
    """The first problem of a chain's hashes (not its seals), or None."""
    prev = GENESIS
    for ev in events:
        if ev.prev_hash != prev:
            return f"event {ev.id} ({ev.kind}): previous event missing or altered"
        if (
            event_digest(
                prev,
                ev.campaign_id,
                ev.kind,
                ev.actor,
                ev.payload,
                ev.clock_s,
                ev.created_at.isoformat(),
            )
            != ev.hash
        ):
            return f"event {ev.id} ({ev.kind}) was altered"
        prev = ev.hash
    return None


def append_core(
    conn: Connection,
    key: LedgerKey,
    k: int,
    kind: str,
    payload: dict[str, Any],
    actor: str = "system",
) -> tuple[int, str]:
    """Append one sealed event to chain ``k`` (the caller holds the chain's lock)."""
    seq, prev = head(conn, k)
    created = utcnow()
    payload = mask_secrets(payload)
    digest = event_digest(prev, k or None, kind, actor, payload, None, created.isoformat())
    conn.execute(
        EVENT.insert().values(
            campaign_id=k or None,
            kind=kind,
            actor=actor,
            payload=payload,
            clock_s=None,
            created_at=created,
            prev_hash=prev,
            hash=digest,
            seq=seq + 1,
            mac=key.seal(seq + 1, digest),
            key_id=key.key_id,
        )
    )
    return seq + 1, digest


def rechain_masked(conn: Connection, key: LedgerKey, k: int) -> Rewrite | None:
    """Mask credentials in chain ``k``'s payloads and re-chain from the first masked event
    (hashes and seals recomputed); None when nothing needed masking."""
    events = read_chain(conn, k)
    masked = [ev.id for ev in events if has_secret(ev.payload)]
    if not masked:
        return None
    first = next(i for i, ev in enumerate(events) if ev.id == masked[0])
    old_head = events[-1].hash
    prev = events[first - 1].hash if first else GENESIS
    for i, ev in enumerate(events[first:], first + 1):
        payload = mask_secrets(ev.payload)
        digest = event_digest(
            prev, ev.campaign_id, ev.kind, ev.actor, payload, ev.clock_s, ev.created_at.isoformat()
        )
        values: dict[str, Any] = {"payload": payload, "prev_hash": prev, "hash": digest, "seq": i}
        if ev.mac is not None:
            values |= {"mac": key.seal(i, digest), "key_id": key.key_id}
        conn.execute(EVENT.update().where(EVENT.c.id == ev.id).values(**values))
        prev = digest
    return Rewrite(k or None, masked, len(events) - first, len(events), old_head, prev)


def _bindings(conn: Connection, k: int) -> dict[str, Any]:
    if k == GLOBAL:
        return {}
    rows = campaign_rows(conn, k)
    refs = [(t, rid) for t in ("proposal", "approval") for rid in rows[t]]
    # binding version 1: seal_ledger runs inside migration 0004, before 0006 added analysis versions
    return {
        "bind": bind_rows(conn, refs, v=1),
        "bind_rounds": [bind_round(conn, r, v=1) for r in round_ids(conn, k)],
    }


def seal_ledger(conn: Connection, key: LedgerKey) -> str:
    """Seal every chain of a ledger written before seals existed (once, by migration 0004):
    mask credentials in chains that verify, then append a sealed ``ledger_sealed`` event to each
    chain, binding the campaign's rows as they are. Returns the new ledger id."""
    lid = uuid.uuid4().hex
    keys = chain_keys(conn)
    lock_chains(conn, keys)
    _mask_campaign_specs(conn)
    names = dict(conn.execute(sa.select(CAMPAIGN.c.id, CAMPAIGN.c.name)).all())
    for k in [*(k for k in keys if k != GLOBAL), GLOBAL]:
        events = read_chain(conn, k)
        problem = broken_link(events)
        rewrite = rechain_masked(conn, key, k) if problem is None else None
        payload: dict[str, Any] = {
            "legacy_events": len(events),
            "verified": problem is None,
            "masked_events": rewrite.masked if rewrite else [],
            "old_head": rewrite.old_head if rewrite else (events[-1].hash if events else GENESIS),
        }
        if problem:
            payload["problem"] = problem
        if k == GLOBAL:
            payload |= {"ledger_id": lid, "campaigns": {str(i): n for i, n in names.items()}}
        append_core(conn, key, k, SEALED, payload | _bindings(conn, k))
    return lid


def _mask_campaign_specs(conn: Connection) -> int:
    n = 0
    for row in conn.execute(sa.select(CAMPAIGN_SPEC)).all():
        if has_secret(row.spec):
            conn.execute(
                CAMPAIGN_SPEC.update()
                .where(CAMPAIGN_SPEC.c.id == row.id)
                .values(spec=mask_secrets(row.spec))
            )
            n += 1
    return n


def mask_ledger(conn: Connection, key: LedgerKey, actor: str) -> list[Rewrite]:
    """Mask credentials in every chain that holds some (``cellpilot ledger mask-secrets``);
    each rewritten chain gets a sealed ``secrets_masked`` event and a ``rechain`` anchor line."""
    keys = chain_keys(conn)
    lock_chains(conn, keys)
    _mask_campaign_specs(conn)
    lid = ledger_id(conn)
    out = []
    for k in keys:
        problem = broken_link(read_chain(conn, k))
        if problem is not None:
            raise ValueError(
                f"chain {k or 'ledger-wide'} does not verify ({problem}); not rewriting it"
            )
        rw = rechain_masked(conn, key, k)
        if rw is None:
            continue
        count, new_head = append_core(
            conn,
            key,
            k,
            MASKED,
            {
                "events_rewritten": rw.rewritten,
                "masked_events": rw.masked,
                "old_count": rw.old_count,
                "old_head": rw.old_head,
            },
            actor=actor,
        )
        rw.new_head = new_head
        out.append(rw)
        if lid is not None:
            rw.anchors = _rechain_lines(conn, lid, k, rw, count, new_head)
    return out


def _rechain_lines(
    conn: Connection, lid: str, k: int, rw: Rewrite, count: int, new_head: str
) -> dict[Path, list[dict[str, Any]]]:
    """The anchor line saying chain ``k`` was re-chained on purpose (written after the commit)."""
    line = anchor.anchor_line(
        lid,
        k or None,
        None,
        count,
        new_head,
        rechain={"old_head": rw.old_head, "old_count": rw.old_count},
    )
    paths = {anchor.ledger_anchor_path(lid)}
    if k != GLOBAL and (p := campaign_anchor(conn, k)) is not None:
        paths.add(p)
    return {p: [line] for p in paths}
