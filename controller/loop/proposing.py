"""Asking the planner for a round: history, experiments in flight, re-queued and rejected points.

One call, one ledger transaction: the round and its proposals (with the model's prediction) are
written together, so a process killed mid-way leaves either the whole round or nothing.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from controller.ledger.models import (
    Campaign,
    Experiment,
    ExperimentStatus,
    Proposal,
    ProposalStatus,
    Round,
    RoundStatus,
)
from controller.loop.events import EventKind, append_event
from controller.loop.exceptions import CampaignError
from controller.spec import CampaignSpec
from planners import Observation, Planner
from planners import Proposal as PlannedPoint
from planners.exceptions import PlannerError

#: Experiment statuses the planner treats as pending (tried or about to be, not yet learnt from).
IN_FLIGHT = [
    ExperimentStatus.SCHEDULED.value,
    ExperimentStatus.RUNNING.value,
    ExperimentStatus.HELD.value,
]


def campaign_history(s: Session, campaign_id: int) -> tuple[list[Observation], list[Experiment]]:
    """The campaign's measured observations, and every experiment it has."""
    exps = list(s.exec(select(Experiment).where(Experiment.campaign_id == campaign_id)))
    history = [
        Observation(params=e.params, outcomes=e.outcomes)
        for e in exps
        if e.status == ExperimentStatus.MEASURED.value and e.outcomes
    ]
    return history, exps


def prior_history(s: Session, spec: CampaignSpec) -> list[Observation]:
    """Measured experiments of the campaigns named in ``transfer.prior_campaigns``."""
    out: list[Observation] = []
    for name in spec.transfer.prior_campaigns:
        prior = s.exec(select(Campaign).where(Campaign.name == name)).first()
        if prior is None:
            raise CampaignError(
                f"transfer.prior_campaigns: no campaign named {name!r} in the ledger"
            )
        names = [p["name"] for p in prior.spec.get("space", {}).get("parameters", [])]
        if sorted(names) != sorted(spec.space.names):
            raise CampaignError(
                f"transfer.prior_campaigns: {name!r} varies {names}, "
                f"this campaign varies {spec.space.names}"
            )
        for e in s.exec(
            select(Experiment).where(
                Experiment.campaign_id == prior.id,
                Experiment.status == ExperimentStatus.MEASURED.value,
            )
        ):
            if e.outcomes:
                out.append(Observation(params=e.params, outcomes=e.outcomes, task=name))
    return out


def valid_experiments(s: Session, campaign_id: int) -> int:
    """How many of the campaign's experiments are measured."""
    return s.exec(
        select(func.count())
        .select_from(Experiment)
        .where(
            Experiment.campaign_id == campaign_id,
            Experiment.status == ExperimentStatus.MEASURED.value,
        )
    ).one()


def in_flight_experiments(s: Session, campaign_id: int) -> int:
    """Experiments approved but not yet measured (scheduled or running), or measured on a plate
    held for a QC decision (they may still count)."""
    return s.exec(
        select(func.count())
        .select_from(Experiment)
        .where(Experiment.campaign_id == campaign_id, col(Experiment.status).in_(IN_FLIGHT))
    ).one()


def _requeue(
    s: Session, campaign_id: int, exps: list[Experiment], plate: list[str]
) -> tuple[list[Experiment], list[str] | dict[str, Any]]:
    """Quarantined experiments not yet re-queued, and the plate-wide values they pin."""
    requeued_ids = set(
        s.exec(
            select(Proposal.requeued_from_experiment_id).where(
                Proposal.campaign_id == campaign_id,
                col(Proposal.requeued_from_experiment_id).is_not(None),
            )
        )
    )
    requeue = [
        e
        for e in exps
        if e.status == ExperimentStatus.QUARANTINED.value and e.id not in requeued_ids
    ]
    if plate and requeue:
        # One plate shares its plate-wide values: re-queue only experiments that agree with
        # the first, and have the planner fill the plate with those values pinned.
        pinned = {name: requeue[0].params[name] for name in plate}
        return [e for e in requeue if all(e.params[k] == v for k, v in pinned.items())], pinned
    return requeue, plate


def propose_round(
    s: Session,
    spec: CampaignSpec,
    planner: Planner,
    campaign_id: int,
    *,
    capacity: int,
    plate_parameters: list[str],
) -> tuple[Round, int]:
    """Write the next round and its proposals (re-queued experiments first); commit.

    Returns:
        The round, and how many proposals it holds.
    """
    camp = s.get(Campaign, campaign_id)
    index = s.exec(
        select(func.count()).select_from(Round).where(Round.campaign_id == camp.id)
    ).one()
    history, exps = campaign_history(s, camp.id)
    requeue, plate = _requeue(s, camp.id, exps, plate_parameters)
    n = capacity
    if spec.budget.experiments is not None:
        n = min(
            n,
            spec.budget.experiments
            - valid_experiments(s, camp.id)
            - in_flight_experiments(s, camp.id),
        )
    n = max(n, len(requeue))
    pending = [e.params for e in exps if e.status in IN_FLIGHT]
    pending += [e.params for e in requeue]
    # Rejected points count as pending, so the acquisition steers away from them.
    rejected = list(
        s.exec(
            select(Proposal.params).where(
                Proposal.campaign_id == camp.id, Proposal.status == ProposalStatus.REJECTED.value
            )
        )
    )
    proposals = plan(
        planner,
        spec,
        history + prior_history(s, spec),
        pending + rejected,
        rejected,
        n - len(requeue),
        seed=spec.seed * 1000 + index,
        plate_parameters=plate,
    )
    rnd = Round(
        campaign_id=camp.id,
        index=index,
        plate_id=f"{spec.name[:12]}-P{index + 1:03d}",
        status=RoundStatus.PROPOSED.value,
    )
    s.add(rnd)
    s.flush()
    rows = [
        Proposal(
            campaign_id=camp.id,
            round_id=rnd.id,
            position=i,
            params=e.params,
            planner="requeue",
            requeued_from_experiment_id=e.id,
        )
        for i, e in enumerate(requeue)
    ]
    rows += [
        Proposal(
            campaign_id=camp.id,
            round_id=rnd.id,
            position=len(requeue) + i,
            params=p.params,
            predicted_mean=p.predicted_mean,
            predicted_sd=p.predicted_sd,
            acquisition_value=p.acquisition_value,
            planner=p.planner,
        )
        for i, p in enumerate(proposals)
    ]
    for row in rows:
        s.add(row)
    s.flush()
    for row in rows:
        append_event(
            s,
            camp.id,
            EventKind.PROPOSAL_CREATED,
            {
                "proposal_id": row.id,
                "round": index + 1,
                "params": row.params,
                "predicted_mean": row.predicted_mean,
                "predicted_sd": row.predicted_sd,
                "planner": row.planner,
            },
            clock_s=camp.clock_s,
            bind=[row],
        )
    for e in requeue:
        append_event(
            s,
            camp.id,
            EventKind.EXPERIMENT_REQUEUED,
            {"experiment_id": e.id, "round": index + 1},
            clock_s=camp.clock_s,
        )
    append_event(
        s,
        camp.id,
        EventKind.ROUND_PROPOSED,
        {"round": index + 1, "plate": rnd.plate_id, "n": len(rows)},
        clock_s=camp.clock_s,
    )
    s.commit()
    s.refresh(rnd)
    return rnd, len(rows)


def plan(
    planner: Planner,
    spec: CampaignSpec,
    history: Sequence[Observation],
    pending: Sequence[Mapping[str, Any]],
    rejected: Sequence[Mapping[str, Any]],
    n: int,
    seed: int,
    plate_parameters: Any = (),
) -> list[PlannedPoint]:
    """Ask the planner for ``n`` proposals, none equal to a point an operator rejected."""
    out: list[PlannedPoint] = []
    for attempt in range(3):
        if len(out) >= n:
            break
        try:
            batch = planner.propose(
                spec.space,
                spec.objectives,
                history,
                [*(dict(x) for x in pending), *(dict(p.params) for p in out)],
                n - len(out),
                seed=seed + 7919 * attempt,
                outcome_constraints=spec.outcome_constraints,
                plate_parameters=plate_parameters,
            )
        except PlannerError as err:
            raise CampaignError(f"planner {spec.planner.name!r}: {err}") from err
        out += [p for p in batch if not any(same_point(p.params, r) for r in rejected)]
    return out[:n]


def same_point(a: Mapping[str, Any], b: Mapping[str, Any], rel: float = 1e-6) -> bool:
    """True when two parameter sets are equal (numbers within ``rel``)."""
    if a.keys() != b.keys():
        return False
    for k, v in a.items():
        w = b[k]
        if isinstance(v, str) or isinstance(w, str):
            if v != w:
                return False
        elif abs(float(v) - float(w)) > rel * max(1.0, abs(float(v))):
            return False
    return True
