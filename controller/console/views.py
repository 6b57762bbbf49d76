"""What the console's pages show, read from the ledger (no writes: actions go through
``controller.loop.operator``)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from controller.ledger.models import (
    Campaign,
    Event,
    Experiment,
    ExperimentStatus,
    RawData,
    Round,
    RoundStatus,
    Step,
    StepStatus,
)
from controller.loop.operator import OperatorError, pending_proposals
from planners.space import OutcomeConstraint

# Events worth a highlight in the log: a person is or was needed.
ALERT_KINDS = {
    "alert_sent",
    "alert_failed",
    "proposal_escalated",
    "approval_timeout",
    "campaign_paused",
    "campaign_held",
    "step_failed",
    "plate_qc_failed",
    "well_quarantined",
    "round_awaiting_approval",
}

# Digests that bind tables to events: for `cellpilot verify`, not for reading.
HIDDEN_PAYLOAD = {"bind", "bind_round", "bind_rounds"}

# Which instrument performs each step kind (for the health panel).
INSTRUMENT_OF_STEP = {
    "aspirate": "liquid_handler",
    "dispense": "liquid_handler",
    "mix": "liquid_handler",
    "acquire": "microscope",
    "incubate": "incubator",
}


def get_campaign(s: Session, name: str) -> Campaign | None:
    return s.exec(select(Campaign).where(Campaign.name == name)).first()


def proposals_view(db: Engine, camp: Campaign) -> list[dict[str, Any]]:
    """Pending proposals with the edit form's fields (one per search-space parameter)."""
    try:
        rows = pending_proposals(db, camp.name)
    except OperatorError:
        return []
    space = (camp.spec.get("space") or {}).get("parameters", [])
    constraints = [
        OutcomeConstraint.model_validate(c) for c in camp.spec.get("outcome_constraints", [])
    ]
    for row in rows:
        row["fields"] = [dict(p, value=_shown(row["params"].get(p["name"]))) for p in space]
        row["prediction"] = [
            {"metric": m, "mean": mean, "sd": row["predicted_sd"].get(m)}
            for m, mean in sorted(row["predicted_mean"].items())
        ]
        row["violations"] = predicted_violations(row["predicted_mean"], constraints)
    return rows


def predicted_violations(
    predicted: dict[str, float], constraints: list[OutcomeConstraint]
) -> list[str]:
    """The outcome constraints the model's predicted mean breaks, e.g. ``normal_viability
    predicted 0.41, needs >= 0.6``."""
    return [
        f"{c.metric} predicted {predicted[c.metric]:.3g}, needs {c.op} {c.bound:g}"
        for c in constraints
        if c.metric in predicted and not c.satisfied(predicted[c.metric])
    ]


def _shown(v: Any) -> Any:
    """A parameter as the edit form shows it (6 significant digits; the form sends back only
    the fields an operator changed, so the rounding never reaches the ledger)."""
    return f"{v:.6g}" if isinstance(v, float) else v


def progress_view(s: Session, camp: Campaign) -> dict[str, Any] | None:
    """The latest round's plate: steps done / total from the step journal."""
    rounds = list(
        s.exec(select(Round).where(Round.campaign_id == camp.id).order_by(col(Round.index).desc()))
    )
    if not rounds:
        return None
    with_steps = set(
        s.exec(
            select(Step.round_id).where(col(Step.round_id).in_([r.id for r in rounds])).distinct()
        ).all()
    )
    # The plate on the deck: the newest round with a step journal (a newer one may wait for approval).
    rnd = next((r for r in rounds if r.id in with_steps), rounds[0])
    waiting = rounds[0] if rounds[0].id != rnd.id else None
    counts = dict(
        s.exec(
            select(Step.status, func.count()).where(Step.round_id == rnd.id).group_by(Step.status)
        ).all()
    )
    total = sum(counts.values())
    finished = counts.get(StepStatus.DONE.value, 0) + counts.get(StepStatus.SKIPPED.value, 0)
    current = s.exec(
        select(Step)
        .where(Step.round_id == rnd.id, Step.status == StepStatus.STARTED.value)
        .order_by(col(Step.seq))
    ).first()
    return {
        "round": rnd.index + 1,
        "rounds": len(rounds),
        "next": {"round": waiting.index + 1, "status": waiting.status} if waiting else None,
        "budget_rounds": (camp.spec.get("budget") or {}).get("rounds"),
        "plate": rnd.plate_id,
        "status": rnd.status,
        "done": finished,
        "total": total,
        "failed": counts.get(StepStatus.FAILED.value, 0),
        "percent": round(100 * finished / total)
        if total
        else (100 if rnd.status == RoundStatus.ANALYZED.value else 0),
        "current": f"{current.kind} {', '.join(current.wells[:4])}" if current else None,
        "z_prime": (rnd.z_prime or {}),
        "plate_ok": rnd.plate_ok,
    }


def images_view(s: Session, camp: Campaign, limit: int = 8) -> list[dict[str, Any]]:
    """The newest acquired wells (RawData rows) for thumbnails."""
    rows = s.exec(
        select(RawData, Round)
        .join(Round, Round.id == RawData.round_id)
        .where(Round.campaign_id == camp.id, RawData.kind == "image")
        .order_by(col(RawData.id).desc())
        .limit(limit)
    ).all()
    return [
        {
            "id": r.id,
            "well": r.well,
            "plate": r.plate_id,
            "round": rnd.index + 1,
            "channels": r.meta.get("channels", []),
        }
        for r, rnd in rows
    ]


def plates_view(s: Session, camp: Campaign) -> dict[str, Any]:
    """Each plate's place (waiting for approval, dispensing, incubating until ..., imaging,
    analysed) and the schedule's saving."""
    from controller.ledger.queries import campaign_schedule, plate_place

    plates = []
    for r in s.exec(select(Round).where(Round.campaign_id == camp.id).order_by(col(Round.index))):
        steps = list(s.exec(select(Step).where(Step.round_id == r.id).order_by(col(Step.seq))))
        place = plate_place(r, steps, camp.clock_s)
        where = place["place"]
        if place["incubating_until_clock_s"] is not None:
            where += (
                f" until {(place['incubating_until_clock_s'] - camp.started_clock_s) / 3600:.1f} h"
            )
        failures: list[str] = []
        if r.status == RoundStatus.HELD.value:
            held = s.exec(select(Experiment).where(Experiment.round_id == r.id)).first()
            failures = (
                ((held.outcome_details or {}).get("qc", {}).get("failures", [])) if held else []
            )
        plates.append(
            {
                "plate": r.plate_id,
                "where": where,
                "held": r.status == RoundStatus.HELD.value,
                "failures": failures,
            }
        )
    return {"plates": plates, "schedule": campaign_schedule(s, camp)}


def health_view(s: Session, camp: Campaign) -> list[dict[str, Any]]:
    """Per instrument: failed and retried steps, the last fault, and whether the campaign is held."""
    instruments = dict(camp.spec.get("instruments") or {})
    roles = {
        role: {
            "role": role,
            "driver": (cfg or {}).get("driver", "?") if isinstance(cfg, dict) else str(cfg),
            "failed": 0,
            "retried": 0,
            "last_fault": None,
        }
        for role, cfg in instruments.items()
    }
    q = (
        select(Step.kind, Step.status, Step.attempts)
        .join(Round, Round.id == Step.round_id)
        .where(
            Round.campaign_id == camp.id,
            (Step.status == StepStatus.FAILED.value) | (Step.attempts > 1),
        )
    )
    for kind, status, attempts in s.exec(q):
        role = INSTRUMENT_OF_STEP.get(kind, kind)
        h = roles.setdefault(
            role, {"role": role, "driver": "?", "failed": 0, "retried": 0, "last_fault": None}
        )
        h["failed"] += status == StepStatus.FAILED.value
        h["retried"] += attempts > 1
    for ev in s.exec(
        select(Event)
        .where(Event.campaign_id == camp.id, Event.kind == "step_failed")
        .order_by(col(Event.id).desc())
        .limit(20)
    ):
        role = INSTRUMENT_OF_STEP.get(ev.payload.get("kind", ""), ev.payload.get("kind", "?"))
        h = roles.setdefault(
            role, {"role": role, "driver": "?", "failed": 0, "retried": 0, "last_fault": None}
        )
        if h["last_fault"] is None:
            h["last_fault"] = {
                "at": ev.created_at,
                "text": ev.payload.get("error")
                or ev.payload.get("message")
                or ", ".join(
                    f"{k}={v}" for k, v in ev.payload.items() if k not in ("round_id", "wells")
                ),
            }
    for h in roles.values():
        h["state"] = "fault" if h["failed"] else ("recovered" if h["retried"] else "ok")
    return sorted(roles.values(), key=lambda h: h["role"])


def _summary(payload: dict[str, Any]) -> str:
    parts = []
    for k, v in payload.items():
        if isinstance(v, dict):
            v = ", ".join(f"{a}={_short(b)}" for a, b in v.items())
            parts.append(f"{k}: {{{v}}}")
        elif isinstance(v, list) and len(v) > 6:
            parts.append(f"{k}: [{', '.join(map(str, v[:6]))}, …]")
        else:
            parts.append(f"{k}: {_short(v)}")
    return "; ".join(parts)


def _short(v: Any) -> str:
    return f"{v:.4g}" if isinstance(v, float) else str(v)


def events_view(s: Session, camp: Campaign, limit: int = 60) -> list[dict[str, Any]]:
    """The event log, newest first, alerts marked."""
    evs = s.exec(
        select(Event)
        .where(Event.campaign_id == camp.id)
        .order_by(col(Event.id).desc())
        .limit(limit)
    )
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "actor": e.actor,
            "at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "clock_h": None
            if e.clock_s is None
            else round((e.clock_s - camp.started_clock_s) / 3600, 2),
            "summary": _summary({k: v for k, v in e.payload.items() if k not in HIDDEN_PAYLOAD}),
            "alert": e.kind in ALERT_KINDS,
        }
        for e in evs
    ]


def account_events_view(s: Session, limit: int = 50) -> list[dict[str, Any]]:
    """The ledger-wide chain (accounts, logins, tokens), newest first."""
    evs = s.exec(
        select(Event)
        .where(col(Event.campaign_id).is_(None))
        .order_by(col(Event.id).desc())
        .limit(limit)
    )
    return [
        {
            "id": e.id,
            "kind": e.kind,
            "actor": e.actor,
            "at": e.created_at.strftime("%Y-%m-%d %H:%M:%S"),
            "summary": _summary({k: v for k, v in e.payload.items() if k not in HIDDEN_PAYLOAD}),
            "alert": e.kind in ("login_failed", "login_locked"),
        }
        for e in evs
    ]


def live_signature(db: Engine, campaign: str) -> tuple[Any, ...]:
    """Changes whenever the campaign page would: newest event, steps finished, campaign state."""
    with Session(db) as s:
        camp = get_campaign(s, campaign)
        if camp is None:
            return (None,)
        last = s.exec(select(func.max(Event.id)).where(Event.campaign_id == camp.id)).one()
        done = s.exec(
            select(func.count())
            .select_from(Step)
            .join(Round, Round.id == Step.round_id)
            .where(Round.campaign_id == camp.id, Step.status == StepStatus.DONE.value)
        ).one()
        return (last, done, camp.status, camp.control_request)


def measured_experiments(s: Session, camp: Campaign) -> list[Experiment]:
    return list(
        s.exec(
            select(Experiment)
            .where(
                Experiment.campaign_id == camp.id,
                Experiment.status == ExperimentStatus.MEASURED.value,
            )
            .order_by(col(Experiment.id))
        )
    )
