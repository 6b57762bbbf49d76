"""A round's way from approved proposals to a compiled plate: experiments, wells, steps."""

from __future__ import annotations

from sqlmodel import Session, col, select

from controller.ledger.models import (
    Approval,
    Campaign,
    Experiment,
    ExperimentStatus,
    Proposal,
    ProposalStatus,
    Round,
    RoundStatus,
    Step,
    Well,
)
from controller.loop.events import EventKind, append_event
from controller.loop.exceptions import CampaignError
from controller.loop.workcell import StepView, step_view
from controller.spec import CampaignSpec
from protocols import PlateProtocol
from protocols.exceptions import ProtocolError


def schedule_round(s: Session, spec: CampaignSpec, campaign_id: int, rnd: Round) -> bool:
    """Create an experiment for every approved or edited proposal (the operator's version);
    commit. Returns True when nothing was approved and the round was skipped."""
    camp = s.get(Campaign, campaign_id)
    props = list(
        s.exec(select(Proposal).where(Proposal.round_id == rnd.id).order_by(col(Proposal.position)))
    )
    position = 0
    for p in props:
        if p.status not in (ProposalStatus.APPROVED.value, ProposalStatus.EDITED.value):
            continue
        decision = s.exec(
            select(Approval).where(Approval.proposal_id == p.id).order_by(col(Approval.id).desc())
        ).first()
        params = spec.space.validate_point(decision.params or p.params)
        s.add(
            Experiment(
                campaign_id=camp.id,
                round_id=rnd.id,
                proposal_id=p.id,
                position=position,
                params=params,
                requeued_from_id=p.requeued_from_experiment_id,
            )
        )
        position += 1
    r = s.get(Round, rnd.id)
    if position == 0:
        r.status = RoundStatus.SKIPPED.value
        append_event(
            s,
            camp.id,
            EventKind.ROUND_SKIPPED,
            {"round": rnd.index + 1, "reason": "no proposal approved"},
            clock_s=camp.clock_s,
        )
    else:
        r.status = RoundStatus.APPROVED.value
    s.add(r)
    s.commit()
    return position == 0


def compile_round(
    s: Session,
    spec: CampaignSpec,
    protocol: PlateProtocol,
    campaign_id: int,
    rnd: Round,
    *,
    time_point: int | None = None,
) -> int:
    """Compile a round's experiments into its layout, wells and journaled steps; commit.
    Returns the number of steps. ``time_point`` 0 marks a time-course plate's first steps
    (they lead to its baseline images)."""
    camp = s.get(Campaign, campaign_id)
    exps = list(
        s.exec(
            select(Experiment)
            .where(Experiment.round_id == rnd.id)
            .order_by(col(Experiment.position))
        )
    )
    try:
        compiled = protocol.compile(
            [e.params for e in exps], plate_id=rnd.plate_id, seed=spec.seed * 1000 + rnd.index
        )
    except ProtocolError as err:
        raise CampaignError(f"round {rnd.index} cannot be compiled: {err}") from err
    by_pos = {e.position: e for e in exps}
    for w in compiled.layout.wells:
        exp = by_pos.get(w.experiment) if w.experiment is not None else None
        s.add(
            Well(
                round_id=rnd.id,
                plate_id=rnd.plate_id,
                well=w.well,
                role=w.role.value,
                experiment_id=exp.id if exp else None,
                replicate=w.replicate,
            )
        )
    for seq, st in enumerate(compiled.steps):
        s.add(
            Step(
                round_id=rnd.id,
                seq=seq,
                kind=st.type,
                plate_id=st.plate,
                wells=list(st.wells),
                payload=st.model_dump(mode="json"),
                time_point=time_point,
            )
        )
    for e in exps:
        e.status = ExperimentStatus.RUNNING.value
        s.add(e)
    r = s.get(Round, rnd.id)
    r.layout = compiled.layout.model_dump(mode="json")
    r.status = RoundStatus.COMPILED.value
    s.add(r)
    append_event(
        s,
        camp.id,
        EventKind.ROUND_COMPILED,
        {
            "round": rnd.index + 1,
            "plate": rnd.plate_id,
            "wells": len(compiled.layout.wells),
            "steps": len(compiled.steps),
        },
        clock_s=camp.clock_s,
    )
    s.commit()
    return len(compiled.steps)


def plate_steps(s: Session, rounds: list[Round]) -> dict[int | None, tuple[StepView, ...]]:
    """Each round's steps as the scheduler sees them (:class:`StepView`), in order.

    Read as columns, not ORM rows: the runner asks on every tick, and building every step of
    every plate in flight (with its JSON payload) was a tenth of a dry-run's controller time.
    Only incubations carry what the scheduler needs from the payload and result.
    """
    out: dict[int | None, tuple[StepView, ...]] = {}
    for rnd in rounds:
        incubations = {
            st.seq: step_view(st)
            for st in s.exec(select(Step).where(Step.round_id == rnd.id, Step.kind == "incubate"))
        }
        rows = s.exec(
            select(Step.seq, Step.kind, Step.status, Step.finished_clock_s)
            .where(Step.round_id == rnd.id)
            .order_by(col(Step.seq))
        )
        out[rnd.id] = tuple(
            incubations.get(seq) or StepView(seq, kind, status, 0.0, None, finished)
            for seq, kind, status, finished in rows
        )
    return out
