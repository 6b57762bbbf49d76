"""Read-only views of the ledger for the CLI, the report and the console."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from sqlalchemy import func
from sqlmodel import Session, col, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import (
    AnalysisVersion,
    Campaign,
    DecisionPoint,
    Experiment,
    ExperimentStatus,
    Proposal,
    ProposalStatus,
    Round,
    RoundStatus,
    Step,
    Well,
    WellStatus,
    utcnow,
)
from controller.loop.workcell import PlateView, plate_segments, schedule_summary, step_view
from planners.space import OutcomeConstraint


def _best(s: Session, camp: Campaign) -> dict[str, Any] | None:
    objectives = camp.spec.get("objectives", [])
    if not objectives:
        return None
    metric = objectives[0]["metric"]
    sign = 1.0 if objectives[0].get("direction", "maximize") == "maximize" else -1.0
    constraints = [
        OutcomeConstraint.model_validate(c) for c in camp.spec.get("outcome_constraints", [])
    ]
    exps = [
        e
        for e in s.exec(
            select(Experiment).where(
                Experiment.campaign_id == camp.id,
                Experiment.status == ExperimentStatus.MEASURED.value,
            )
        )
        if metric in e.outcomes
        and all(c.metric in e.outcomes and c.satisfied(e.outcomes[c.metric]) for c in constraints)
    ]
    if not exps:
        return None
    b = max(exps, key=lambda e: sign * e.outcomes[metric])
    return {
        "metric": metric,
        "value": b.outcomes[metric],
        "params": b.params,
        "experiment_id": b.id,
        "analysis_version": camp.analysis_version,
    }


def _as_utc(t: datetime) -> datetime:
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def waiting_for_approval(s: Session, camp: Campaign) -> dict[str, Any] | None:
    """When the robot waits for a person: since when (UTC), for how many proposals, until when,
    and what happens then (``approval.on_timeout``); None when nothing waits."""
    if camp.status not in ("running", "paused"):
        return None
    rnd = s.exec(
        select(Round)
        .where(
            Round.campaign_id == camp.id,
            Round.status == RoundStatus.PROPOSED.value,
            col(Round.awaiting_approval_since).is_not(None),
        )
        .order_by(col(Round.index).desc())
    ).first()
    if rnd is None:
        return None
    n = s.exec(
        select(func.count())
        .select_from(Proposal)
        .where(Proposal.round_id == rnd.id, Proposal.status == ProposalStatus.PROPOSED.value)
    ).one()
    if not n:
        return None
    approval = camp.spec.get("approval") or {}
    since = _as_utc(rnd.awaiting_approval_since or utcnow())
    timeout_h = approval.get("timeout_h")
    return {
        "round": rnd.index + 1,
        "plate": rnd.plate_id,
        "proposals": n,
        "since": since,
        "timeout_h": timeout_h,
        "deadline": since + timedelta(hours=timeout_h) if timeout_h else None,
        "on_timeout": approval.get("on_timeout", "pause"),
    }


def failed_plates(s: Session, camp: Campaign) -> list[dict[str, Any]]:
    """Plates that failed QC (Z' below the threshold) or could not be analysed."""
    rows = s.exec(
        select(Round)
        .where(
            Round.campaign_id == camp.id,
            col(Round.plate_ok).is_(False) | (Round.status == RoundStatus.FAILED.value),
        )
        .order_by(col(Round.index))
    )
    return [
        {"round": r.index + 1, "plate": r.plate_id, "status": r.status, "z_prime": r.z_prime or {}}
        for r in rows
    ]


def _summary(s: Session, camp: Campaign) -> dict[str, Any]:
    n_rounds = s.exec(
        select(func.count()).select_from(Round).where(Round.campaign_id == camp.id)
    ).one()
    counts = dict(
        s.exec(
            select(Experiment.status, func.count())
            .where(Experiment.campaign_id == camp.id)
            .group_by(Experiment.status)
        ).all()
    )
    return {
        "name": camp.name,
        "status": camp.status,
        "dry_run": camp.dry_run,
        "rounds": n_rounds,
        "valid_experiments": counts.get(ExperimentStatus.MEASURED.value, 0),
        "experiments_by_status": counts,
        "clock_h": round((camp.clock_s - camp.started_clock_s) / 3600, 2),
        "started_clock_s": camp.started_clock_s,
        "pause_reason": camp.pause_reason,
        "analysis_version": camp.analysis_version,
        "best": _best(s, camp),
        "updated_at": camp.updated_at,
        "waiting_for_approval": waiting_for_approval(s, camp),
        "failed_plates": failed_plates(s, camp),
    }


def list_campaigns(url: str) -> list[dict[str, Any]]:
    with Session(open_ledger_engine(url)) as s:
        return [_summary(s, c) for c in s.exec(select(Campaign).order_by(col(Campaign.id)))]


def find_campaign(s: Session, name: str | None) -> Campaign | None:
    q = select(Campaign)
    q = q.where(Campaign.name == name) if name else q.order_by(col(Campaign.updated_at).desc())
    return s.exec(q).first()


def campaign_status(url: str, name: str | None) -> dict[str, Any] | None:
    with Session(open_ledger_engine(url)) as s:
        camp = find_campaign(s, name)
        if camp is None:
            return None
        data = _summary(s, camp)
        rounds = []
        for r in s.exec(
            select(Round).where(Round.campaign_id == camp.id).order_by(col(Round.index))
        ):
            q = s.exec(
                select(Well.well).where(
                    Well.round_id == r.id, Well.status == WellStatus.QUARANTINED.value
                )
            ).all()
            n = s.exec(
                select(func.count()).select_from(Experiment).where(Experiment.round_id == r.id)
            ).one()
            steps = list(s.exec(select(Step).where(Step.round_id == r.id).order_by(col(Step.seq))))
            rounds.append(
                {
                    "index": r.index,
                    "plate": r.plate_id,
                    "status": r.status,
                    "experiments": n,
                    "z_prime": r.z_prime,
                    "plate_ok": r.plate_ok,
                    "quarantined_wells": list(q),
                    "analysis_version": r.analysis_version if r.status in _ANALYSED else None,
                    **plate_place(r, steps, camp.clock_s),
                    "decisions": decision_points(s, r.id),
                }
            )
        timeline = campaign_timeline(s, camp)
        data["round_details"] = rounds
        data["analysis_versions"] = analysis_versions(s, camp, outcomes=True)
        data["timeline"] = timeline
        data["schedule"] = schedule_summary(timeline, now_h=_hours(camp.clock_s, camp))
        return data


_ANALYSED = (RoundStatus.ANALYZED.value, RoundStatus.HELD.value)


def analysis_versions(
    s: Session, camp: Campaign, *, outcomes: bool = False
) -> list[dict[str, Any]]:
    """The campaign's analysis versions, oldest first: analyzer, settings, code version, who,
    when, note, whether the planner learns from it (``adopted``), the rounds (1-based) it
    covers, and with ``outcomes`` what it gives each experiment (status and outcomes, by id).

    The adopted version is read from the experiment and round rows (it also covers rounds
    analysed since it was adopted); the others from their recorded results."""
    rows = list(
        s.exec(
            select(AnalysisVersion)
            .where(AnalysisVersion.campaign_id == camp.id)
            .order_by(col(AnalysisVersion.number))
        )
    )
    if not any(r.number == camp.analysis_version for r in rows):  # never re-analysed
        spec = camp.spec.get("analyzer") or {}
        rows.append(
            AnalysisVersion(
                campaign_id=camp.id,
                number=camp.analysis_version,
                created_by="system",
                analyzer=spec.get("name", "nuclei_coculture"),
                settings=spec.get("settings", {}),
                code_version={},
                note="the original analysis",
                created_at=camp.created_at,
            )
        )
    out = []
    for r in rows:
        adopted = r.number == camp.analysis_version
        results = _live_results(s, camp) if adopted else (r.results or {})
        v: dict[str, Any] = {
            "number": r.number,
            "adopted": adopted,
            "analyzer": r.analyzer,
            "settings": r.settings,
            "code_version": r.code_version or None,
            "created_at": r.created_at,
            "created_by": r.created_by,
            "note": r.note,
            "rounds": sorted(rr["index"] + 1 for rr in results.values()),
        }
        if outcomes:
            v["experiments"] = {
                eid: {"status": er["status"], "outcomes": er["outcomes"]}
                for rr in results.values()
                for eid, er in rr["experiments"].items()
            }
        out.append(v)
    return out


def _live_results(s: Session, camp: Campaign) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for r in s.exec(
        select(Round).where(Round.campaign_id == camp.id, col(Round.status).in_(_ANALYSED))
    ):
        exps = s.exec(select(Experiment).where(Experiment.round_id == r.id))
        out[str(r.id)] = {
            "index": r.index,
            "experiments": {str(e.id): {"status": e.status, "outcomes": e.outcomes} for e in exps},
        }
    return out


def campaign_timeline(s: Session, camp: Campaign) -> list[dict[str, Any]]:
    """Every plate's segments on the handler, in the incubator and on the microscope (campaign
    clock hours; ``end_h`` None while under way)."""
    out: list[dict[str, Any]] = []
    for r in s.exec(select(Round).where(Round.campaign_id == camp.id).order_by(col(Round.index))):
        steps = s.exec(select(Step).where(Step.round_id == r.id).order_by(col(Step.seq)))
        for seg in plate_segments(r.plate_id, list(steps)):
            out.append(
                {
                    "plate": seg.plate,
                    "resource": seg.resource,
                    "start_h": _hours(seg.start_s, camp),
                    "end_h": None if seg.end_s is None else _hours(seg.end_s, camp),
                }
            )
    return out


def campaign_schedule(s: Session, camp: Campaign) -> dict[str, float] | None:
    """Elapsed hours, hours one plate at a time would have taken, days saved."""
    return schedule_summary(campaign_timeline(s, camp), now_h=_hours(camp.clock_s, camp))


def _hours(clock_s: float, camp: Campaign) -> float:
    return round((clock_s - camp.started_clock_s) / 3600.0, 3)


def plate_place(r: Round, steps: list[Step], now_s: float) -> dict[str, Any]:
    """Where a plate is (waiting for approval, dispensing, incubating until ..., imaging,
    analysed), with the clock hour its incubation ends when it is in the incubator."""
    if r.status in (RoundStatus.FAILED.value, RoundStatus.SKIPPED.value):
        return {"place": r.status, "incubating_until_clock_s": None}
    if r.status == RoundStatus.HELD.value:
        return {"place": "held for a QC decision", "incubating_until_clock_s": None}
    view = PlateView(r.id, r.index, r.status, tuple(step_view(st) for st in steps))
    due = view.due_s() if view.in_incubator() else None
    return {"place": view.place(now_s).value, "incubating_until_clock_s": due}


def decision_points(s: Session, round_id: int) -> list[dict[str, Any]]:
    """A time-course plate's decision points: when, by which policy, how far through the gate,
    and the action each unit got ([] for end-point plates)."""
    out = []
    for d in s.exec(
        select(DecisionPoint)
        .where(DecisionPoint.round_id == round_id)
        .order_by(col(DecisionPoint.index))
    ):
        statuses = list(s.exec(select(Proposal.status).where(Proposal.decision_point_id == d.id)))
        out.append(
            {
                "index": d.index,
                "time_h": d.time_h,
                "status": d.status,
                "policy_id": d.policy_id,
                "units": len(statuses),
                "waiting": sum(st == ProposalStatus.PROPOSED.value for st in statuses),
                "rejected": sum(st == ProposalStatus.REJECTED.value for st in statuses),
                "actions": d.actions,
            }
        )
    return out
