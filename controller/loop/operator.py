"""What operators do, whatever surface they use (CLI, web console): decide on proposals and
steer a running campaign. Every action is an Approval row and/or an event naming the actor.

Proposal states (the approval gate)::

    proposed ──approve──▶ approved ─┐
        │  ───edit─────▶ edited ───┼──▶ (experiment) scheduled → running → measured
        │                           │                              ╰──▶ failed | quarantined
        ╰──reject──────▶ rejected   (reason kept; the planner avoids the point)

An edit keeps the planner's original in ``Proposal.params`` and the operator's version in the
Approval row (``params``); the experiment runs the operator's version.

A decision is a conditional update (``... WHERE status = 'proposed'``): of two people deciding
the same proposal at once, exactly one wins; the other gets :class:`AlreadyDecided` ("already
approved by ana at 02:14:05 UTC") and nothing of theirs is recorded. ``claimed_as`` is a name
the actor gave (``cellpilot approve --as NAME``) without proof; it is recorded beside the
actor, never instead of it.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any, cast

from sqlalchemy import CursorResult, Engine, update
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import Session, col, select

from controller.ledger.models import (
    Approval,
    Campaign,
    CampaignStatus,
    DecisionPoint,
    Proposal,
    ProposalStatus,
    Round,
    RoundStatus,
    utcnow,
)
from controller.loop.events import EventKind, append_event
from controller.spec import CampaignSpec
from planners.exceptions import PointOutsideSpace


class OperatorError(Exception):
    """An operator action cannot be done (unknown id, already decided, bad value, ...)."""


class AlreadyDecided(OperatorError):
    """Someone else decided the proposal first (the CLI exits with code 5)."""

    def __init__(
        self, proposal_id: int, status: str, actor: str | None, at: datetime | None
    ) -> None:
        self.proposal_id, self.status, self.actor, self.at = proposal_id, status, actor, at
        who = f" by {actor}" if actor else ""
        when = f" at {_as_utc(at):%Y-%m-%d %H:%M:%S} UTC" if at else ""
        super().__init__(f"proposal {proposal_id} was already {status}{who}{when}")


def _as_utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def already_decided(s: Session, proposal_id: int, status: str | None = None) -> AlreadyDecided:
    """The error for a proposal someone decided: who and when, from its latest approval row."""
    last = s.exec(
        select(Approval)
        .where(Approval.proposal_id == proposal_id)
        .order_by(col(Approval.id).desc())
    ).first()
    if status is None:
        status = s.exec(select(Proposal.status).where(Proposal.id == proposal_id)).one()
    return AlreadyDecided(
        proposal_id, status, last.actor if last else None, last.created_at if last else None
    )


def _campaign(s: Session, name: str | None) -> Campaign:
    q = select(Campaign)
    q = q.where(Campaign.name == name) if name else q.order_by(col(Campaign.updated_at).desc())
    camp = s.exec(q).first()
    if camp is None:
        raise OperatorError(
            f"no campaign named {name!r}" if name else "the ledger holds no campaign"
        )
    return camp


def pending_proposals(db: Engine, campaign: str | None = None) -> list[dict[str, Any]]:
    """Proposals waiting for a decision, with the planner's prediction for each."""
    with Session(db) as s:
        camp = _campaign(s, campaign)
        rows = s.exec(
            select(Proposal, Round)
            .join(Round, Round.id == Proposal.round_id)
            .where(
                Proposal.campaign_id == camp.id, Proposal.status == ProposalStatus.PROPOSED.value
            )
            .order_by(col(Proposal.id))
        ).all()
        points = {
            d.id: d.index
            for d in s.exec(select(DecisionPoint).where(DecisionPoint.campaign_id == camp.id))
        }
        return [
            {
                "id": p.id,
                "campaign": camp.name,
                "round": r.index + 1,
                "plate": r.plate_id,
                "params": p.params,
                "predicted_mean": p.predicted_mean,
                "predicted_sd": p.predicted_sd,
                "acquisition_value": p.acquisition_value,
                "planner": p.planner,
                "escalation": p.escalation,
                # time-course plates: which decision point and unit (the prediction is the policy's
                # forecast of the time-course's end)
                "decision": points.get(p.decision_point_id) if p.decision_point_id else None,
                "unit": p.unit,
            }
            for p, r in rows
        ]


def _proposal(s: Session, proposal_id: int) -> tuple[Proposal, Campaign]:
    p = s.get(Proposal, proposal_id)
    if p is None:
        raise OperatorError(f"no proposal {proposal_id}")
    if p.status != ProposalStatus.PROPOSED.value:
        raise already_decided(s, proposal_id, p.status)
    camp = s.get(Campaign, p.campaign_id)
    assert camp is not None  # a proposal's campaign is never deleted
    return p, camp


DECISIONS = {
    "approved": (ProposalStatus.APPROVED, EventKind.PROPOSAL_APPROVED),
    "edited": (ProposalStatus.EDITED, EventKind.PROPOSAL_EDITED),
    "rejected": (ProposalStatus.REJECTED, EventKind.PROPOSAL_REJECTED),
}


def decide(
    s: Session,
    proposal: Proposal,
    camp: Campaign,
    decision: str,
    actor: str,
    *,
    params: dict[str, Any] | None = None,
    reason: str | None = None,
    claimed_as: str | None = None,
) -> Approval:
    """Record one decision on a proposal (within the caller's transaction).

    Raises:
        AlreadyDecided: someone decided it first (checked by the update itself, so two
            concurrent deciders can never both succeed).
    """
    status, kind = DECISIONS[decision]
    conditional = (
        update(Proposal)
        .where(
            col(Proposal.id) == proposal.id, col(Proposal.status) == ProposalStatus.PROPOSED.value
        )
        .values(status=status.value)
        .execution_options(synchronize_session=False)
    )
    won = cast(CursorResult, s.execute(conditional))
    if won.rowcount != 1:
        raise already_decided(s, proposal.id)
    set_committed_value(proposal, "status", status.value)
    approval = Approval(
        proposal_id=proposal.id,
        decision=decision,
        actor=actor,
        reason=reason,
        claimed_as=claimed_as if claimed_as and claimed_as != actor else None,
        params=params if decision != "rejected" else None,
    )
    s.add(approval)
    s.flush()
    payload: dict[str, Any] = {"proposal_id": proposal.id, "round_id": proposal.round_id}
    if decision == "edited":
        payload |= {"original": proposal.params, "edited": params}
    if reason:
        payload["reason"] = reason
    if approval.claimed_as:
        payload["claimed_as"] = approval.claimed_as
    append_event(
        s, camp.id, kind, payload, actor=actor, clock_s=camp.clock_s, bind=[proposal, approval]
    )
    return approval


def approve(
    db: Engine,
    ids: list[int] | None,
    actor: str,
    campaign: str | None = None,
    *,
    claimed_as: str | None = None,
) -> list[int]:
    """Approve the given proposals (all or none), or, when ``ids`` is None, every pending one
    of the campaign inside the policy (escalated ones need their ids named)."""
    with Session(db) as s:
        if ids is None:
            camp = _campaign(s, campaign)
            props = s.exec(
                select(Proposal)
                .where(
                    Proposal.campaign_id == camp.id,
                    Proposal.status == ProposalStatus.PROPOSED.value,
                    col(Proposal.escalation).is_(None),
                )
                .order_by(col(Proposal.id))
            ).all()
            done: list[int] = []
            for p in props:
                try:
                    decide(s, p, camp, "approved", actor, params=p.params, claimed_as=claimed_as)
                    done.append(p.id)  # type: ignore[arg-type]  # a stored proposal has an id
                except AlreadyDecided:
                    continue  # decided by someone else meanwhile: theirs stands
            s.commit()
            return done
        pairs = [_proposal(s, i) for i in ids]
        for p, camp in pairs:
            decide(s, p, camp, "approved", actor, params=p.params, claimed_as=claimed_as)
        s.commit()
        return [p.id for p, _ in pairs if p.id is not None]


def escalated(db: Engine, ids: list[int]) -> list[int]:
    """Which of ``ids`` are escalated (outside the signed policy)."""
    with Session(db) as s:
        return list(
            s.exec(
                select(Proposal.id).where(
                    col(Proposal.id).in_(ids), col(Proposal.escalation).is_not(None)
                )
            )
        )


def reject(
    db: Engine, proposal_id: int, reason: str, actor: str, *, claimed_as: str | None = None
) -> None:
    if not reason.strip():
        raise OperatorError("a rejection needs a reason")
    with Session(db) as s:
        p, camp = _proposal(s, proposal_id)
        decide(s, p, camp, "rejected", actor, reason=reason, claimed_as=claimed_as)
        s.commit()


def parse_assignments(items: list[str]) -> dict[str, str]:
    out = {}
    for item in items:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise OperatorError(f"write edits as name=value (got {item!r})")
        out[name.strip()] = value.strip()
    return out


def edit(
    db: Engine,
    proposal_id: int,
    changes: dict[str, Any],
    actor: str,
    reason: str | None = None,
    *,
    claimed_as: str | None = None,
) -> dict[str, Any]:
    """Change a proposal's parameters within the search space; approves the edited version."""
    with Session(db) as s:
        p, camp = _proposal(s, proposal_id)
        spec = CampaignSpec.model_validate(camp.spec)
        unknown = set(changes) - set(spec.space.names)
        if unknown:
            raise OperatorError(
                f"unknown parameters {sorted(unknown)}; the space has {spec.space.names}"
            )
        shared = set(spec.planner.plate_parameters)
        shared |= {spec.protocol.settings.get("incubation_parameter")} - {None}
        touched = sorted(shared & {k for k, v in changes.items() if str(v) != str(p.params.get(k))})
        if touched:
            raise OperatorError(
                f"{touched} are shared by the whole plate; reject the round's "
                "proposals or approve them as they are"
            )
        merged = {**p.params, **changes}
        try:
            params = spec.space.validate_point(merged)
        except PointOutsideSpace as e:
            raise OperatorError(f"edit refused: {e}") from None
        decide(s, p, camp, "edited", actor, params=params, reason=reason, claimed_as=claimed_as)
        s.commit()
        return params


def request(
    db: Engine,
    action: str,
    actor: str,
    campaign: str | None = None,
    *,
    claimed_as: str | None = None,
) -> str:
    """``pause`` (hold at the next step boundary), ``resume`` or ``abort`` a campaign."""
    with Session(db) as s:
        camp = _campaign(s, campaign)
        if camp.status in (CampaignStatus.COMPLETED.value, CampaignStatus.ABORTED.value):
            raise OperatorError(f"campaign {camp.name!r} is {camp.status}")
        kinds = {
            "pause": EventKind.PAUSE_REQUESTED,
            "resume": EventKind.CAMPAIGN_RESUMED,
            "abort": EventKind.ABORT_REQUESTED,
        }
        if action not in kinds:
            raise OperatorError(f"unknown action {action!r}")
        if action == "resume":
            camp.control_request = None
            if camp.status == CampaignStatus.PAUSED.value:
                camp.pause_reason = None
        else:
            camp.control_request = action
        camp.control_actor = actor
        camp.updated_at = utcnow()
        s.add(camp)
        payload = {"requested": action} | (
            {"claimed_as": claimed_as} if claimed_as and claimed_as != actor else {}
        )
        append_event(s, camp.id, kinds[action], payload, actor=actor, clock_s=camp.clock_s)
        s.commit()
        return camp.name


def waiting_rounds(db: Engine, campaign_id: int) -> list[Round]:
    with Session(db) as s:
        return list(
            s.exec(
                select(Round).where(
                    Round.campaign_id == campaign_id, Round.status == RoundStatus.PROPOSED.value
                )
            )
        )
