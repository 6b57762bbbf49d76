"""Every event the controller emits, declared once, and the append-only, hash-chained, sealed
event log (the chains themselves: :mod:`controller.ledger.chain`).

Subscribers (progress bars, the console, alerts) register with :data:`bus`; a failing
subscriber is logged and never stops the run.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from enum import Enum
from typing import Any

from sqlmodel import Session

from controller.ledger import chain
from controller.ledger.chain import GENESIS, event_digest  # noqa: F401  (re-exported)
from controller.ledger.models import Event

log = logging.getLogger(__name__)


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
    ANALYSIS_RECORDED = "analysis_recorded"  # a re-analysis wrote a new analysis version
    ANALYSIS_ADOPTED = "analysis_adopted"  # the campaign plans from another analysis version
    # time-course plates (controller.loop.timecourse)
    TIME_POINT_ANALYZED = "time_point_analyzed"
    DECISION_PROPOSED = "decision_proposed"
    DECISION_APPLIED = "decision_applied"
    # the ledger itself (see controller.ledger.chain and .maintenance)
    CAMPAIGN_REGISTERED = "campaign_registered"
    LEDGER_SEALED = "ledger_sealed"
    SECRETS_MASKED = "secrets_masked"
    # accounts and logins (the ledger-wide chain, campaign_id NULL)
    ACCOUNT_CREATED = "account_created"
    ACCOUNT_ROLE_CHANGED = "account_role_changed"
    ACCOUNT_PASSWORD_CHANGED = "account_password_changed"
    ACCOUNT_REMOVED = "account_removed"
    TOKEN_CREATED = "token_created"
    TOKEN_REVOKED = "token_revoked"
    LOGIN_SUCCEEDED = "login_succeeded"
    LOGIN_FAILED = "login_failed"
    LOGIN_LOCKED = "login_locked"
    LOGOUT = "logout"


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


def append_event(
    session: Session,
    campaign_id: int | None,
    kind: EventKind,
    payload: dict[str, Any] | None = None,
    *,
    actor: str = "system",
    clock_s: float | None = None,
    bind: list[Any] | tuple = (),
    bind_round: int | list[int] | None = None,
) -> Event:
    """Add an event to ``session``'s transaction: it is chained, sealed and inserted when the
    session commits (see :mod:`controller.ledger.chain`); credentials in ``payload`` are masked.

    Args:
        bind: rows (proposal, approval) whose digests the event carries, as they are at commit.
        bind_round: a round whose tables' digests the event carries (when it is finished); a
            list of rounds for an event that changes several (a re-analysis).
    """
    return chain.append(
        session,
        campaign_id,
        kind.value,
        payload,
        actor=actor,
        clock_s=clock_s,
        bind=bind,
        bind_round=bind_round,
    )


def verify_chain(session: Session, campaign_id: int | None) -> tuple[bool, str]:
    """Check one chain's hashes, positions and seals; return (ok, message naming the first bad
    event). ``cellpilot verify`` (:mod:`controller.ledger.verify`) also checks anchors and the
    tables the events bind."""
    from controller.ledger.maintenance import read_chain
    from controller.ledger.sealing import verification_keys
    from controller.ledger.verify import ChainReport, check_events

    rep = ChainReport("", campaign_id)
    check_events(
        rep, read_chain(session.connection(), chain.chain_key(campaign_id)), verification_keys()
    )
    if rep.problems:
        return False, rep.problems[0]
    return True, f"{rep.events} events verified"


bus = EventBus()
