"""The QC gate: a plate that fails QC never feeds the planner silently.

What happens is the campaign's ``qc.on_fail``:

- ``hold`` (default): the plate's experiments are ``held`` (measured, not planned from) and the
  plate waits for an operator, who accepts it (its results feed the planner), excludes it (kept
  for the record only) or re-runs it (its experiments are re-queued on a later plate). The
  campaign goes on with other plates meanwhile; an alert says why the plate was held.
- ``exclude``: the experiments are ``excluded`` at once, with an event.
- ``requeue``: the experiments are quarantined and re-queued at once, with an event.

Every decision is one conditional update (``... WHERE status = 'held'``): two operators cannot
both decide a plate.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any, Literal

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from controller.ledger.models import (
    Campaign,
    Experiment,
    ExperimentStatus,
    Round,
    RoundStatus,
    utcnow,
)
from controller.loop.events import EventKind, append_event
from controller.spec import CampaignSpec

Decision = Literal["accept", "exclude", "rerun"]
DECISIONS: tuple[Decision, ...] = ("accept", "exclude", "rerun")


class PlateDecisionError(Exception):
    """A plate decision cannot be made (unknown plate, not held, already decided)."""


def qc_failures(result: Any) -> list[str]:
    """Why a plate failed QC: the analyzer's failed checks, else its plate flags."""
    failures = list(getattr(result, "qc_failures", None) or [])
    return failures or list(
        getattr(result, "flags", []) or ["the analyzer judged the plate not OK"]
    )


def gate_failed_plate(
    s: Session,
    spec: CampaignSpec,
    rnd: Round,
    exps: Iterable[Experiment],
    failures: list[str],
    summary: dict[str, Any],
    clock_s: float,
) -> list[tuple[EventKind, dict[str, Any]]]:
    """Apply ``qc.on_fail`` to a plate that failed QC (inside the analysis transaction);
    returns the events to publish once it commits."""
    action = spec.qc.on_fail
    measured = [e for e in exps if e.status == ExperimentStatus.MEASURED.value]
    new_status = {
        "hold": ExperimentStatus.HELD,
        "exclude": ExperimentStatus.EXCLUDED,
        "requeue": ExperimentStatus.QUARANTINED,
    }[action]
    for e in measured:
        e.status = new_status.value
        e.outcome_details = {
            **(e.outcome_details or {}),
            "qc": {"failures": failures, "action": action},
        }
        s.add(e)
    if action == "hold":
        rnd.status = RoundStatus.HELD.value
        s.add(rnd)
    payload = {**summary, "failures": failures, "action": action, "experiments": len(measured)}
    append_event(s, rnd.campaign_id, EventKind.PLATE_QC_FAILED, payload, clock_s=clock_s)
    out = [(EventKind.PLATE_QC_FAILED, payload)]
    if action == "hold":
        held = {"round": rnd.index + 1, "plate": rnd.plate_id, "failures": failures}
        append_event(s, rnd.campaign_id, EventKind.PLATE_HELD, held, clock_s=clock_s)
        out.append((EventKind.PLATE_HELD, held))
    return out


def held_plates(db: Engine, campaign: str | None = None) -> list[dict[str, Any]]:
    """Plates waiting for an operator's QC decision, with why they failed."""
    with Session(db) as s:
        q = (
            select(Round, Campaign)
            .join(Campaign, col(Campaign.id) == col(Round.campaign_id))
            .where(Round.status == RoundStatus.HELD.value)
        )
        if campaign:
            q = q.where(Campaign.name == campaign)
        out = []
        for rnd, camp in s.exec(q.order_by(col(Round.id))):
            exps = list(
                s.exec(
                    select(Experiment).where(
                        Experiment.round_id == rnd.id,
                        Experiment.status == ExperimentStatus.HELD.value,
                    )
                )
            )
            failures = (
                (exps[0].outcome_details or {}).get("qc", {}).get("failures", []) if exps else []
            )
            out.append(
                {
                    "campaign": camp.name,
                    "plate": rnd.plate_id,
                    "round": rnd.index + 1,
                    "z_prime": rnd.z_prime,
                    "failures": failures,
                    "experiments": len(exps),
                }
            )
        return out


def decide_plate(
    db: Engine,
    plate: str,
    decision: Decision,
    actor: str,
    reason: str | None = None,
    *,
    claimed_as: str | None = None,
) -> dict[str, Any]:
    """Accept, exclude or re-run a held plate; returns what was done.

    Raises:
        PlateDecisionError: no such plate, or it is not (or no longer) held.
    """
    if decision not in DECISIONS:
        raise PlateDecisionError(f"decision must be one of {list(DECISIONS)}, not {decision!r}")
    with Session(db) as s:
        rnd = s.exec(select(Round).where(Round.plate_id == plate)).first()
        if rnd is None:
            raise PlateDecisionError(f"no plate {plate!r}")
        claimed = s.exec(
            update(Round)
            .where(col(Round.id) == rnd.id, col(Round.status) == RoundStatus.HELD.value)
            .values(status=RoundStatus.ANALYZED.value)
        )
        if claimed.rowcount != 1:
            raise PlateDecisionError(
                f"plate {plate!r} is not held for a QC decision (status {rnd.status}); "
                "someone may have decided it already"
            )
        new_status = {
            "accept": ExperimentStatus.MEASURED,
            "exclude": ExperimentStatus.EXCLUDED,
            "rerun": ExperimentStatus.QUARANTINED,
        }[decision]
        exps = list(
            s.exec(
                select(Experiment).where(
                    Experiment.round_id == rnd.id, Experiment.status == ExperimentStatus.HELD.value
                )
            )
        )
        for e in exps:
            e.status = new_status.value
            details = dict(e.outcome_details or {})
            details["qc"] = {
                **details.get("qc", {}),
                "decision": decision,
                "by": actor,
                "reason": reason,
                "at": utcnow().isoformat(),
            }
            e.outcome_details = details
            s.add(e)
        camp = s.get(Campaign, rnd.campaign_id)
        kind = {
            "accept": EventKind.PLATE_ACCEPTED,
            "exclude": EventKind.PLATE_EXCLUDED,
            "rerun": EventKind.PLATE_RERUN,
        }[decision]
        payload = {
            "round": rnd.index + 1,
            "plate": plate,
            "experiments": len(exps),
            "reason": reason,
        }
        if claimed_as:
            payload["claimed_as"] = claimed_as
        # the event re-binds the round: verify now expects the rows as this decision left them
        append_event(
            s, camp.id, kind, payload, actor=actor, clock_s=camp.clock_s, bind_round=rnd.id
        )
        s.commit()
        return {
            "campaign": camp.name,
            "plate": plate,
            "decision": decision,
            "experiments": len(exps),
        }
