"""Ledger tables (SQLModel). The ledger is the single source of truth of a campaign.

Schema changes go through Alembic migrations in ``controller/ledger/migrations``; never edit a
released migration, add a new one (``alembic revision --autogenerate``).

JSON columns are replaced, never mutated in place (SQLAlchemy would not notice).
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import Enum
from typing import Any

from sqlalchemy import JSON, Index, UniqueConstraint, text
from sqlmodel import Field, SQLModel


def utcnow() -> datetime:
    return datetime.now(UTC)


class CampaignStatus(str, Enum):
    CREATED = "created"
    QUEUED = "queued"  # submitted for a worker (``cellpilot submit``), not started yet
    RUNNING = "running"
    PAUSED = "paused"
    COMPLETED = "completed"
    ABORTED = "aborted"


class RoundStatus(str, Enum):
    """A round (one plate) moves ``proposed → approved → compiled → executing → analyzed``."""

    PROPOSED = "proposed"
    APPROVED = "approved"
    COMPILED = "compiled"
    EXECUTING = "executing"
    ANALYZED = "analyzed"
    FAILED = "failed"
    SKIPPED = "skipped"  # every proposal rejected, or skipped on an approval timeout
    HELD = "held"  # analysed, failed QC, waits for an operator: accept, exclude or re-run
    DECIDING = "deciding"  # a time-course plate between images and its next action (gate)


class ProposalStatus(str, Enum):
    PROPOSED = "proposed"
    APPROVED = "approved"
    EDITED = "edited"
    REJECTED = "rejected"


class ExperimentStatus(str, Enum):
    SCHEDULED = "scheduled"
    RUNNING = "running"
    MEASURED = "measured"
    FAILED = "failed"
    QUARANTINED = "quarantined"
    HELD = "held"  # measured on a plate that failed QC: waits for an operator, not planned from
    EXCLUDED = (
        "excluded"  # measured on a plate that failed QC and was excluded (kept for the record)
    )


class WellStatus(str, Enum):
    PLANNED = "planned"
    QUARANTINED = "quarantined"
    MEASURED = "measured"


class StepStatus(str, Enum):
    """Journal states: ``pending → started → done`` or ``failed``; ``skipped`` for wells in quarantine."""

    PENDING = "pending"
    STARTED = "started"
    DONE = "done"
    FAILED = "failed"
    SKIPPED = "skipped"


class Campaign(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    name: str = Field(index=True, unique=True)
    spec: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    spec_hash: str
    status: str = Field(default=CampaignStatus.CREATED.value, index=True)
    dry_run: bool = False
    clock_s: float = Field(default=0.0, description="campaign clock (simulated or wall seconds)")
    started_clock_s: float = 0.0
    pause_reason: str | None = None
    control_request: str | None = Field(
        default=None, description="an operator's pending request to the runner: pause | abort"
    )
    control_actor: str | None = None
    runner_id: str | None = Field(default=None, description="the runner process holding the lease")
    lease_expires_at: datetime | None = Field(default=None, description="the lease's end, UTC")
    lease_generation: int = Field(default=0, description="incremented at every claim (fencing)")
    analysis_version: int = Field(
        default=1,
        description="the analysis version the planner learns from (1: the original analysis)",
    )
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Round(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("campaign_id", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    index: int
    plate_id: str
    status: str = Field(default=RoundStatus.PROPOSED.value)
    layout: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    z_prime: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    plate_ok: bool | None = None
    started_clock_s: float | None = None
    finished_clock_s: float | None = None
    awaiting_approval_since: datetime | None = Field(
        default=None, description="wall time the gate started waiting for a person"
    )
    analysis_version: int = Field(
        default=1, description="the analysis version its outcomes come from"
    )
    created_at: datetime = Field(default_factory=utcnow)


class Proposal(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    position: int = Field(description="order within the round's batch")
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    predicted_mean: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    predicted_sd: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    acquisition_value: float | None = None
    planner: str
    status: str = Field(default=ProposalStatus.PROPOSED.value)
    requeued_from_experiment_id: int | None = None
    escalation: str | None = Field(default=None, description="why the policy did not approve it")
    decision_point_id: int | None = Field(
        default=None,
        foreign_key="decisionpoint.id",
        index=True,
        description="time-course plates: the decision point this unit's action belongs to",
    )
    unit: str | None = Field(default=None, description="time-course plates: the decision unit")
    created_at: datetime = Field(default_factory=utcnow)


class Approval(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    proposal_id: int = Field(foreign_key="proposal.id", index=True)
    decision: str = Field(description="approved | edited | rejected")
    actor: str
    claimed_as: str | None = Field(
        default=None, description="a name the actor gave (--as), not checked"
    )
    reason: str | None = None
    params: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)


class Experiment(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    proposal_id: int = Field(foreign_key="proposal.id")
    position: int = Field(description="experiment index in the round's plate layout")
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default=ExperimentStatus.SCHEDULED.value, index=True)
    outcomes: dict[str, float] = Field(default_factory=dict, sa_type=JSON)
    outcome_details: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    n_valid_replicates: int = 0
    requeued_from_id: int | None = None


class Well(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("round_id", "well"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    plate_id: str
    well: str
    role: str
    experiment_id: int | None = Field(default=None, foreign_key="experiment.id")
    replicate: int = 0
    status: str = Field(default=WellStatus.PLANNED.value)
    quarantine_reason: str | None = None


class Step(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("round_id", "seq"),)

    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    seq: int
    kind: str
    plate_id: str
    wells: list[str] = Field(default_factory=list, sa_type=JSON)
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    status: str = Field(default=StepStatus.PENDING.value, index=True)
    result: dict[str, Any] | None = Field(default=None, sa_type=JSON)
    attempts: int = 0
    started_clock_s: float | None = None
    finished_clock_s: float | None = None
    time_point: int | None = Field(
        default=None,
        description="time-course plates: the images these steps lead to (0 = baseline)",
    )


class RawData(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    plate_id: str
    well: str
    kind: str = "image"
    path: str
    sha256: str
    size_bytes: int
    meta: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    time_point: int | None = Field(
        default=None, description="time-course plates: imaging time point"
    )
    created_at: datetime = Field(default_factory=utcnow)


class Measurement(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    well_id: int | None = Field(default=None, foreign_key="well.id")
    experiment_id: int | None = Field(default=None, foreign_key="experiment.id")
    metric: str
    value: float | None = None
    flags: list[str] = Field(default_factory=list, sa_type=JSON)
    time_point: int | None = Field(
        default=None, description="time-course plates: imaging time point"
    )
    analysis_version: int = Field(
        default=1, index=True, description="the analysis version that computed it"
    )


class AnalysisVersion(SQLModel, table=True):
    """One analysis of a campaign's raw images: which analyzer, with which settings, by which
    code (see :mod:`controller.loop.reanalysis`). Version 1 is the original analysis; its row is
    written when a campaign is first re-analysed. ``results`` holds, per round id, what this
    version gives each experiment (status, outcomes, replicates, details) and the plate (Z',
    QC): adopting the version copies it onto the experiment and round rows."""

    __table_args__ = (UniqueConstraint("campaign_id", "number"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    number: int
    analyzer: str
    settings: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    code_version: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    results: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    created_at: datetime = Field(default_factory=utcnow)
    created_by: str = "system"
    note: str | None = None


class DecisionPointStatus(str, Enum):
    """``proposed`` (journaled with the policy's actions, at the gate) → ``compiled`` (the
    decided actions' steps are in the journal; never compiled twice)."""

    PROPOSED = "proposed"
    COMPILED = "compiled"


class DecisionPoint(SQLModel, table=True):
    """One decision point of a time-course plate: what the policy saw and decided for every
    unit (its proposals, one per unit, pass the approval gate), and what was applied."""

    __table_args__ = (UniqueConstraint("round_id", "index"),)

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int = Field(foreign_key="campaign.id", index=True)
    round_id: int = Field(foreign_key="round.id", index=True)
    index: int = Field(description="decision point k: after time point k's images")
    time_h: float = Field(description="hours after the baseline images")
    status: str = Field(default=DecisionPointStatus.PROPOSED.value)
    policy_id: str | None = Field(default=None, index=True)
    policy: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSON,
        description="the policy's ledger record (id, sha256, versions)",
    )
    observations: dict[str, Any] = Field(
        default_factory=dict, sa_type=JSON, description="unit -> the history the policy read"
    )
    forecasts: dict[str, Any] = Field(
        default_factory=dict,
        sa_type=JSON,
        description="unit -> expected outcome, action probability",
    )
    actions: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description="unit -> the action applied (after the gate)"
    )
    state_after: dict[str, Any] | None = Field(
        default=None, sa_type=JSON, description="the plate's liquid after the action"
    )
    first_seq: int | None = Field(default=None, description="first journaled step of the action")
    clock_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow)


class Event(SQLModel, table=True):
    """Append-only log in chains (one per campaign, one ledger-wide: ``campaign_id`` NULL). Each
    event's ``hash`` covers its content and the previous event's hash; ``mac`` seals (``seq``,
    ``hash``) with the ledger key (see :mod:`controller.ledger.chain`)."""

    __table_args__ = (
        # one event per position of each chain: a forked chain can never be committed
        Index("uq_event_chain_seq", text("coalesce(campaign_id, 0)"), "seq", unique=True),
    )

    id: int | None = Field(default=None, primary_key=True)
    campaign_id: int | None = Field(default=None, foreign_key="campaign.id", index=True)
    kind: str = Field(index=True)
    actor: str = "system"
    payload: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
    clock_s: float | None = None
    created_at: datetime = Field(default_factory=utcnow)
    prev_hash: str
    hash: str
    seq: int | None = Field(default=None, description="position in its chain, from 1")
    mac: str | None = Field(
        default=None, description="HMAC-SHA256 of (seq, hash) under the ledger key"
    )
    key_id: str | None = Field(default=None, description="which ledger key sealed it")
