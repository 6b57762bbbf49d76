"""The approval gate: every proposal passes it before anything is compiled for a robot.

Modes (``approval.mode``):

- ``auto``: everything is approved (actor ``auto``);
- ``manual``: the round waits until a person decided every proposal (CLI or console);
- ``policy``: a standing approval signed by an operator approves proposals inside its
  envelope (parameter bounds, plate count, reagent volumes; actor ``policy:<signer>``); one
  outside it waits for a person with an alert (``outside: wait``), is clipped into the bounds
  (``clip``, recorded as an edit) or rejected (``reject``).

When a person is needed and ``timeout_h`` passes (wall clock) without an answer,
``on_timeout`` decides: ``pause`` the campaign, ``skip_round`` (the rest are rejected), or
``fallback_best`` (the rest become the best-known condition that met every constraint).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlmodel import Session, col, select

from controller.ledger.models import (
    Campaign,
    Experiment,
    ExperimentStatus,
    Proposal,
    ProposalStatus,
    Round,
    RoundStatus,
    Step,
    utcnow,
)
from controller.loop.events import EventKind, append_event
from controller.loop.operator import AlreadyDecided, decide
from controller.spec import ApprovalPolicySpec, CampaignSpec


@dataclass
class GateOutcome:
    """``waiting``: a person is still needed; ``pause_reason``: the timeout paused the campaign."""

    waiting: bool = False
    pause_reason: str | None = None
    published: list[tuple[EventKind, dict[str, Any]]] = field(default_factory=list)


def _as_utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def _reagent_used_ul(s: Session, campaign_id: int) -> dict[str, float]:
    used: dict[str, float] = {}
    rows = s.exec(
        select(Step.payload)
        .join(Round, Round.id == Step.round_id)
        .where(Round.campaign_id == campaign_id, Step.kind == "aspirate")
    )
    for payload in rows:
        used[payload["reagent"]] = used.get(payload["reagent"], 0.0) + payload["volume_ul"]
    return used


def policy_verdict(
    policy: ApprovalPolicySpec,
    params: dict[str, Any],
    *,
    plates_run: int,
    reagent_needed_ul: dict[str, float],
) -> str | None:
    """Why ``params`` is outside the signed envelope, or None when it is inside."""
    for name, (lo, hi) in policy.parameter_bounds.items():
        v = params.get(name)
        if v is not None and not lo <= float(v) <= hi:
            return f"{name}={v:g} is outside the signed bounds [{lo:g}, {hi:g}]"
    if policy.max_plates is not None and plates_run >= policy.max_plates:
        return f"the policy allows {policy.max_plates} plates and {plates_run} were run"
    for reagent, limit in policy.max_reagent_ul.items():
        need = reagent_needed_ul.get(reagent, 0.0)
        if need > limit:
            return f"{reagent} would reach {need:.1f} µL, above the signed {limit:g} µL"
    return None


def _clip(policy: ApprovalPolicySpec, params: dict[str, Any]) -> dict[str, Any]:
    out = dict(params)
    for name, (lo, hi) in policy.parameter_bounds.items():
        if name in out:
            out[name] = min(max(float(out[name]), lo), hi)
    return out


def best_safe_params(s: Session, spec: CampaignSpec, campaign_id: int) -> dict[str, Any] | None:
    """The best measured condition that met every outcome constraint."""
    obj = spec.objectives[0]
    best = None
    for e in s.exec(
        select(Experiment).where(
            Experiment.campaign_id == campaign_id,
            Experiment.status == ExperimentStatus.MEASURED.value,
        )
    ):
        if obj.metric not in e.outcomes:
            continue
        if not all(
            c.metric in e.outcomes and c.satisfied(e.outcomes[c.metric])
            for c in spec.outcome_constraints
        ):
            continue
        if best is None or obj.sign * e.outcomes[obj.metric] > obj.sign * best.outcomes[obj.metric]:
            best = e
    return dict(best.params) if best else None


def run_gate(s: Session, spec: CampaignSpec, protocol, rnd: Round, camp: Campaign) -> GateOutcome:
    """Decide what the mode decides; report whether the round still waits for a person.

    Runs inside the caller's transaction; the caller commits.
    """
    out = GateOutcome()
    mode = spec.approval.mode
    props = list(
        s.exec(select(Proposal).where(Proposal.round_id == rnd.id).order_by(col(Proposal.position)))
    )
    undecided = [p for p in props if p.status == ProposalStatus.PROPOSED.value]
    if mode == "auto":
        for p in undecided:
            _decide(s, p, camp, "approved", "auto", params=spec.space.validate_point(p.params))
        return out
    if mode == "policy":
        _apply_policy(s, spec, protocol, rnd, camp, props, out)
    undecided = [p for p in props if p.status == ProposalStatus.PROPOSED.value]
    if not undecided:
        return out
    now = utcnow()
    if rnd.awaiting_approval_since is None:
        rnd.awaiting_approval_since = now
        s.add(rnd)
        payload = {"round": rnd.index + 1, "n": len(undecided), "mode": mode}
        append_event(s, camp.id, EventKind.ROUND_AWAITING_APPROVAL, payload, clock_s=camp.clock_s)
        out.published.append((EventKind.ROUND_AWAITING_APPROVAL, payload))
    timeout = spec.approval.timeout_h
    waited_h = (now - _as_utc(rnd.awaiting_approval_since)).total_seconds() / 3600
    if timeout is None or waited_h < timeout:
        out.waiting = True
        return out
    return _on_timeout(s, spec, rnd, camp, undecided, out)


def _decide(s: Session, p: Proposal, camp: Campaign, decision: str, actor: str, **kw: Any) -> bool:
    """Decide for the gate; False when a person decided first (their decision stands)."""
    try:
        decide(s, p, camp, decision, actor, **kw)
        return True
    except AlreadyDecided:
        return False


def _apply_policy(s, spec, protocol, rnd, camp, props, out) -> None:
    policy = spec.approval.policy
    plates_run = s.exec(
        select(Round).where(
            Round.campaign_id == camp.id,
            Round.id != rnd.id,
            col(Round.status).not_in([RoundStatus.SKIPPED.value]),
        )
    ).all()
    used = _reagent_used_ul(s, camp.id)
    accepted: list[dict[str, Any]] = [
        p.params
        for p in props
        if p.status in (ProposalStatus.APPROVED.value, ProposalStatus.EDITED.value)
    ]
    actor = f"policy:{policy.signed_by}"
    for p in props:
        if p.status != ProposalStatus.PROPOSED.value or p.escalation:
            continue
        params = p.params
        reason = _verdict(policy, protocol, rnd, params, accepted, used, len(plates_run))
        if reason is None:
            if _decide(s, p, camp, "approved", actor, params=params):
                accepted.append(params)
            continue
        if policy.outside == "clip" and policy.parameter_bounds:
            clipped = spec.space.validate_point(_clip(policy, params))
            if _verdict(policy, protocol, rnd, clipped, accepted, used, len(plates_run)) is None:
                if _decide(
                    s, p, camp, "edited", actor, params=clipped, reason=f"clipped: {reason}"
                ):
                    accepted.append(clipped)
                continue
        if policy.outside == "reject":
            _decide(s, p, camp, "rejected", actor, reason=f"outside the policy: {reason}")
            continue
        p.escalation = reason
        s.add(p)
        payload = {"proposal_id": p.id, "round": rnd.index + 1, "params": params, "reason": reason}
        append_event(
            s,
            camp.id,
            EventKind.PROPOSAL_ESCALATED,
            payload,
            actor=actor,
            clock_s=camp.clock_s,
            bind=[p],
        )
        out.published.append((EventKind.PROPOSAL_ESCALATED, payload))


def _verdict(policy, protocol, rnd, params, accepted, used, plates_run) -> str | None:
    need = dict(used)
    if policy.max_reagent_ul:
        compiled = protocol.compile([*accepted, params], plate_id=rnd.plate_id, seed=0)
        for st in compiled.steps:
            if st.type == "aspirate":
                need[st.reagent] = need.get(st.reagent, 0.0) + st.volume_ul
    return policy_verdict(policy, params, plates_run=plates_run, reagent_needed_ul=need)


def _on_timeout(s, spec, rnd, camp, undecided, out) -> GateOutcome:
    action = spec.approval.on_timeout
    payload: dict[str, Any] = {
        "round": rnd.index + 1,
        "action": action,
        "undecided": [p.id for p in undecided],
    }
    if action == "pause":
        out.pause_reason = (
            f"nobody decided {len(undecided)} proposals of round {rnd.index + 1} in time"
        )
    elif action == "skip_round":
        for p in undecided:
            _decide(s, p, camp, "rejected", "timeout", reason="approval timeout: round skipped")
    else:
        best = best_safe_params(s, spec, camp.id)
        if best is None:
            out.pause_reason = "approval timed out and no measured condition met every constraint"
            payload["action"] = "pause (no safe condition known)"
        else:
            for p in undecided:
                _decide(
                    s,
                    p,
                    camp,
                    "edited",
                    "timeout",
                    params=best,
                    reason="approval timeout: best-known safe condition",
                )
            payload["fallback"] = best
    append_event(s, camp.id, EventKind.APPROVAL_TIMEOUT, payload, clock_s=camp.clock_s)
    out.published.append((EventKind.APPROVAL_TIMEOUT, payload))
    return out
