"""Every event the controller emits, declared once, and the append-only, hash-chained event log.

Subscribers (progress bars, the console, alerts) register with :data:`bus`; a failing
subscriber is logged and never stops the run.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from sqlmodel import Session, col, select

from controller.ledger.models import Event, utcnow

log = logging.getLogger(__name__)

GENESIS = "0" * 64


class EventKind(str, Enum):
    CAMPAIGN_CREATED = "campaign_created"
    CAMPAIGN_STARTED = "campaign_started"
    CAMPAIGN_RESUMED = "campaign_resumed"
    CAMPAIGN_PAUSED = "campaign_paused"
    CAMPAIGN_COMPLETED = "campaign_completed"
    CAMPAIGN_ABORTED = "campaign_aborted"
    CAMPAIGN_AMENDED = "campaign_amended"
    ROUND_PROPOSED = "round_proposed"
    PROPOSAL_CREATED = "proposal_created"
    PROPOSAL_APPROVED = "proposal_approved"
    PROPOSAL_EDITED = "proposal_edited"
    PROPOSAL_REJECTED = "proposal_rejected"
    PROPOSAL_ESCALATED = "proposal_escalated"
    ROUND_AWAITING_APPROVAL = "round_awaiting_approval"
    APPROVAL_TIMEOUT = "approval_timeout"
    ROUND_SKIPPED = "round_skipped"
    PAUSE_REQUESTED = "pause_requested"
    ABORT_REQUESTED = "abort_requested"
    CAMPAIGN_HELD = "campaign_held"
    ALERT_SENT = "alert_sent"
    ALERT_FAILED = "alert_failed"
    ROUND_COMPILED = "round_compiled"
    STEP_STARTED = "step_started"
    STEP_DONE = "step_done"
    STEP_FAILED = "step_failed"
    STEP_RECOVERED = "step_recovered"
    WELL_QUARANTINED = "well_quarantined"
    EXPERIMENT_REQUEUED = "experiment_requeued"
    IMAGE_ACQUIRED = "image_acquired"
    MEASUREMENT_RECORDED = "measurement_recorded"
    ROUND_ANALYZED = "round_analyzed"
    PLATE_QC_FAILED = "plate_qc_failed"
    READ_LATE = "read_late"
    PLATE_HELD = "plate_held"
    PLATE_ACCEPTED = "plate_accepted"
    PLATE_EXCLUDED = "plate_excluded"
    PLATE_RERUN = "plate_rerun"


# Events journaled only in the step table, not duplicated in the event log (too many per plate).
JOURNAL_ONLY = {EventKind.STEP_STARTED, EventKind.STEP_DONE}

Subscriber = Callable[[EventKind, dict[str, Any]], None]


class EventBus:
    """In-process publish/subscribe. Subscribers are called synchronously, errors are logged."""

    def __init__(self) -> None:
        self._subs: list[Subscriber] = []

    def subscribe(self, fn: Subscriber) -> Callable[[], None]:
        self._subs.append(fn)
        return lambda: self._subs.remove(fn)

    def publish(self, kind: EventKind, payload: dict[str, Any]) -> None:
        for fn in list(self._subs):
            try:
                fn(kind, payload)
            except Exception:  # a subscriber never stops the run
                log.exception("event subscriber %r failed on %s", fn, kind.value)


def event_digest(
    prev_hash: str,
    campaign_id: int | None,
    kind: str,
    actor: str,
    payload: dict[str, Any],
    clock_s: float | None,
    created_at: str,
) -> str:
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


def append_event(
    session: Session,
    campaign_id: int | None,
    kind: EventKind,
    payload: dict[str, Any] | None = None,
    *,
    actor: str = "system",
    clock_s: float | None = None,
) -> Event:
    """Add an event to ``session`` (committed with the caller's transaction)."""
    payload = json.loads(json.dumps(payload or {}, default=str))
    last = session.exec(
        select(Event).where(Event.campaign_id == campaign_id).order_by(col(Event.id).desc()).limit(1)
    ).first()
    prev = last.hash if last else GENESIS
    created = utcnow()
    ev = Event(
        campaign_id=campaign_id,
        kind=kind.value,
        actor=actor,
        payload=payload,
        clock_s=clock_s,
        created_at=created,
        prev_hash=prev,
        hash=event_digest(prev, campaign_id, kind.value, actor, payload, clock_s, created.isoformat()),
    )
    session.add(ev)
    return ev


def verify_chain(session: Session, campaign_id: int | None) -> tuple[bool, str]:
    """Recompute the chain; return (ok, message naming the first bad event)."""
    prev = GENESIS
    n = 0
    for ev in session.exec(
        select(Event).where(Event.campaign_id == campaign_id).order_by(col(Event.id))
    ):
        n += 1
        if ev.prev_hash != prev:
            return False, f"event {ev.id} ({ev.kind}): previous event missing or altered"
        digest = event_digest(
            prev, ev.campaign_id, ev.kind, ev.actor, ev.payload, ev.clock_s, ev.created_at.isoformat()
        )
        if digest != ev.hash:
            return False, f"event {ev.id} ({ev.kind}) was altered"
        prev = ev.hash
    return True, f"{n} events verified"


bus = EventBus()
