"""The runner: the campaign's state machine, driven round by round from the ledger.

Each round (one plate) moves through these states, each transition one ledger transaction::

    (none) ──propose──▶ proposed ──approve──▶ approved ──compile──▶ compiled
                                                                      │ execute (journaled steps)
    analyzed ◀──analyze── executing ◀─────────────────────────────────┘

Because every transition is committed before the next begins, a process killed at any point
resumes where the ledger says it was (see :mod:`controller.engine` for the steps themselves).
The campaign is ``running``, ``paused`` (a fault, a signal, an operator) or ``completed``.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from controller import failpoints
from controller.analysis import analyze_round
from controller.clocks import WallClock
from controller.engine import PauseRequested, StepEngine, StepFailed, load_round_context
from controller.events import EventBus, EventKind, append_event
from controller.events import bus as default_bus
from controller.gate import run_gate
from controller.instrument_setup import (
    InstrumentConfigError,
    Instruments,
    build_instruments,
    check_instruments,
)
from controller.ledger.db import DEFAULT_LEDGER_URL, open_ledger_engine
from controller.ledger.models import (
    Approval,
    Campaign,
    CampaignStatus,
    Experiment,
    ExperimentStatus,
    Proposal,
    ProposalStatus,
    Round,
    RoundStatus,
    Step,
    Well,
    utcnow,
)
from controller.spec import CampaignSpec
from instruments.exceptions import InstrumentError
from planners import Observation, get_planner
from planners.exceptions import PlannerError
from protocols.base import get_protocol
from protocols.exceptions import ProtocolError


class CampaignError(Exception):
    """The campaign cannot start or continue (bad combination of settings, changed file, ...)."""


@dataclass
class RunResult:
    campaign: str
    status: str
    rounds: int
    valid_experiments: int
    pause_reason: str | None = None
    best: dict[str, Any] = field(default_factory=dict)


def resolve_ledger_url(spec: CampaignSpec | None, override: str | None) -> str:
    if override:
        return override
    if spec is not None and spec.ledger.url:
        return spec.ledger.url
    return DEFAULT_LEDGER_URL


class CampaignRunner:
    """Runs (or resumes) one campaign until its budget is spent, it is paused, or it fails."""

    def __init__(
        self,
        spec: CampaignSpec,
        *,
        dry_run: bool = False,
        ledger_url: str | None = None,
        data_dir: str | Path | None = None,
        events: EventBus = default_bus,
        stop: threading.Event | None = None,
    ) -> None:
        self.spec = spec
        self.dry_run = dry_run
        self.ledger_url = resolve_ledger_url(spec, ledger_url)
        self.data_dir = Path(data_dir or spec.ledger.data_dir or Path("runs") / spec.name)
        self.bus = events
        self.stop = stop or threading.Event()
        self.protocol = get_protocol(spec.protocol.name, spec.protocol.settings)
        self.planner = get_planner(spec.planner.name, **spec.planner.settings)
        self.db: Engine | None = None
        self.instruments: Instruments | None = None
        self.campaign_id: int | None = None
        self._last_control_check = 0.0

    # -- checks before anything moves -----------------------------------------------------

    def preflight(self) -> None:
        """Refuse, before any robot moves, what cannot work."""
        spec = self.spec
        self.protocol.check_space(spec.space)
        check_instruments(spec, dry_run=self.dry_run)
        check = getattr(self.planner, "check", None)
        if check is not None:
            check(spec.space, spec.objectives, spec.outcome_constraints,
                  plate_parameters=self.plate_parameters)
        if self.capacity() < 1:
            raise CampaignError("the plate holds no experiment with these protocol settings")

    @property
    def plate_parameters(self) -> list[str]:
        """Parameters one plate shares: the campaign's and those the protocol needs (incubation)."""
        from_protocol = getattr(self.protocol, "plate_parameters", lambda: [])()
        return list(dict.fromkeys([*self.spec.planner.plate_parameters, *from_protocol]))

    def capacity(self) -> int:
        cap = self.protocol.capacity()
        bs = self.spec.planner.batch_size
        return cap if bs == "auto" else min(cap, bs)

    # -- opening ---------------------------------------------------------------------------

    def _open(self) -> Campaign:
        self.db = open_ledger_engine(self.ledger_url)
        spec = self.spec
        with Session(self.db) as s:
            self._prior_history(s)  # refuse unknown or mismatched prior campaigns up front
            camp = s.exec(select(Campaign).where(Campaign.name == spec.name)).first()
            if camp is None:
                camp = Campaign(name=spec.name, spec=spec.model_dump(mode="json"),
                                spec_hash=spec.spec_hash(), dry_run=self.dry_run,
                                status=CampaignStatus.RUNNING.value)
                s.add(camp)
                s.flush()
                append_event(s, camp.id, EventKind.CAMPAIGN_CREATED,
                             {"name": spec.name, "dry_run": self.dry_run, "spec_hash": camp.spec_hash})
                kind = EventKind.CAMPAIGN_STARTED
            else:
                if camp.spec_hash != spec.spec_hash():
                    raise CampaignError(
                        f"campaign {spec.name!r} in the ledger was started from a different file "
                        "(space, objectives, protocol or instruments changed); give the new "
                        "campaign another name"
                    )
                if camp.dry_run != self.dry_run:
                    mode = "a dry-run" if camp.dry_run else "on instruments"
                    raise CampaignError(f"campaign {spec.name!r} was started {mode}; resume it the same way")
                if camp.status == CampaignStatus.ABORTED.value:
                    raise CampaignError(f"campaign {spec.name!r} was aborted; start a new campaign")
                if camp.status == CampaignStatus.COMPLETED.value and not self._budget_left(s, camp):
                    self.campaign_id = camp.id
                    return camp
                kind = EventKind.CAMPAIGN_RESUMED
                camp.spec = spec.model_dump(mode="json")  # the budget may have been extended
            camp.status = CampaignStatus.RUNNING.value
            camp.pause_reason = None
            camp.updated_at = utcnow()
            s.add(camp)
            append_event(s, camp.id, kind, {"ledger": self.ledger_url}, clock_s=camp.clock_s)
            s.commit()
            s.refresh(camp)
            self.campaign_id = camp.id
            return camp

    def _make_clock(self, camp: Campaign):
        if self.dry_run:
            from simulators.clock import SimulatedClock

            return SimulatedClock(start_s=camp.clock_s)
        return WallClock(self.stop)

    # -- budget ------------------------------------------------------------------------------

    def _valid_experiments(self, s: Session, campaign_id: int) -> int:
        return s.exec(select(func.count()).select_from(Experiment).where(
            Experiment.campaign_id == campaign_id,
            Experiment.status == ExperimentStatus.MEASURED.value)).one()

    def _budget_left(self, s: Session, camp: Campaign) -> bool:
        b = self.spec.budget
        n_rounds = s.exec(select(func.count()).select_from(Round).where(
            Round.campaign_id == camp.id, Round.status != RoundStatus.SKIPPED.value)).one()
        if b.rounds is not None and n_rounds >= b.rounds:
            return False
        if b.experiments is not None and self._valid_experiments(s, camp.id) >= b.experiments:
            return False
        if b.deadline_h is not None and camp.clock_s - camp.started_clock_s >= b.deadline_h * 3600:
            return False
        return True

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        self.preflight()
        camp = self._open()
        if camp.status == CampaignStatus.COMPLETED.value:
            return self._result()
        clock = self._make_clock(camp)
        if not self.dry_run:
            with Session(self.db) as s:
                c = s.get(Campaign, camp.id)
                if c.started_clock_s == 0.0:
                    c.started_clock_s = c.clock_s = clock.now()
                    s.add(c)
                    s.commit()
        unsubscribe = self._attach_alerts()
        try:
            self.instruments = build_instruments(self.spec, dry_run=self.dry_run,
                                                 data_dir=self.data_dir, clock=clock)
        except InstrumentConfigError:
            unsubscribe()
            raise
        except InstrumentError as err:  # a device fault at start or resume: pause, keep state
            try:
                return self._pause(f"instruments did not start: {type(err).__name__}: {err}")
            finally:
                unsubscribe()
        engine = StepEngine(self.db, self.instruments.liquid_handler, self.instruments.microscope,
                            clock, self.bus, self.stop, should_stop=self._control_pending)
        try:
            while True:
                request = self._control_request()
                if request == "abort":
                    return self._finish(CampaignStatus.ABORTED, EventKind.CAMPAIGN_ABORTED,
                                        "aborted by an operator")
                if request == "pause":
                    if not self._hold():
                        return self._pause("interrupted while held")
                    continue
                try:
                    done = self._advance(engine, clock)
                except PauseRequested:
                    if self.stop.is_set():
                        return self._pause("interrupted (signal)")
                    continue  # an operator's request: handled at the top of the loop
                if done is not None:
                    return done
        except StepFailed as err:
            return self._pause(str(err))
        finally:
            unsubscribe()
            self.instruments.close()

    def _advance(self, engine: StepEngine, clock) -> RunResult | None:
        """Move the current round one state forward; a RunResult when the campaign ends."""
        rnd = self._current_round()
        if rnd is None:
            with Session(self.db) as s:
                if not self._budget_left(s, s.get(Campaign, self.campaign_id)):
                    return self._complete()
            if self.stop.is_set():
                raise PauseRequested("pause requested")
            rnd = self._propose_round()
        if rnd.status == RoundStatus.PROPOSED.value:
            return self._approve(rnd)
        if rnd.status == RoundStatus.APPROVED.value:
            self._compile(rnd)
        elif rnd.status in (RoundStatus.COMPILED.value, RoundStatus.EXECUTING.value):
            self._set_round_status(rnd.id, RoundStatus.EXECUTING, started=clock.now())
            engine.run_round(load_round_context(self.db, rnd.id, self.data_dir))
            analyze_round(self.db, self.spec, rnd.id, clock.now(), self.bus)
        return None

    # -- operators ---------------------------------------------------------------------------

    def _attach_alerts(self):
        url = self.spec.alerts.webhook_url
        if not url:
            return lambda: None
        from controller.alerts import WebhookAlerter

        alerter = WebhookAlerter(self.db, self.campaign_id, self.spec.name, url, self.spec.alerts.timeout_s)
        return alerter.attach(self.bus)

    def _control_request(self) -> str | None:
        with Session(self.db) as s:
            return s.get(Campaign, self.campaign_id).control_request

    def _control_pending(self) -> bool:
        """Polled by the engine between steps (at most every 0.5 s of wall time)."""
        now = time.monotonic()
        if now - self._last_control_check < 0.5:
            return False
        self._last_control_check = now
        return self._control_request() is not None

    def _wait(self) -> bool:
        """Wait one poll interval for a person (wall time); False when interrupted by a signal."""
        return not self.stop.wait(self.spec.approval.poll_s)

    def _hold(self) -> bool:
        """Held by an operator: wait for resume or abort. False when interrupted by a signal."""
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            reason = f"paused by {camp.control_actor or 'an operator'}"
            if camp.status != CampaignStatus.PAUSED.value:
                camp.status = CampaignStatus.PAUSED.value
                camp.pause_reason = reason
                s.add(camp)
                append_event(s, camp.id, EventKind.CAMPAIGN_HELD, {"reason": reason},
                             actor=camp.control_actor or "operator", clock_s=camp.clock_s)
                s.commit()
        self.bus.publish(EventKind.CAMPAIGN_HELD, {"reason": reason, "operator": True})
        while self._control_request() == "pause":
            if not self._wait():
                return False
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            if camp.control_request is None:
                camp.status = CampaignStatus.RUNNING.value
                camp.pause_reason = None
                s.add(camp)
                s.commit()
        return True

    def _current_round(self) -> Round | None:
        with Session(self.db) as s:
            return s.exec(select(Round).where(
                Round.campaign_id == self.campaign_id,
                col(Round.status).not_in([RoundStatus.ANALYZED.value, RoundStatus.FAILED.value,
                                          RoundStatus.SKIPPED.value]),
            ).order_by(col(Round.index))).first()

    def _set_round_status(self, round_id: int, status: RoundStatus, started: float | None = None) -> None:
        with Session(self.db) as s:
            r = s.get(Round, round_id)
            if r.status != status.value:
                r.status = status.value
                if started is not None and r.started_clock_s is None:
                    r.started_clock_s = started
                s.add(r)
                s.commit()

    def _history(self, s: Session) -> tuple[list[Observation], list[Experiment]]:
        exps = list(s.exec(select(Experiment).where(Experiment.campaign_id == self.campaign_id)))
        history = [Observation(params=e.params, outcomes=e.outcomes)
                   for e in exps if e.status == ExperimentStatus.MEASURED.value and e.outcomes]
        return history, exps

    def _prior_history(self, s: Session) -> list[Observation]:
        """Measured experiments of the campaigns named in ``transfer.prior_campaigns``."""
        out: list[Observation] = []
        for name in self.spec.transfer.prior_campaigns:
            prior = s.exec(select(Campaign).where(Campaign.name == name)).first()
            if prior is None:
                raise CampaignError(f"transfer.prior_campaigns: no campaign named {name!r} in the ledger")
            names = [p["name"] for p in prior.spec.get("space", {}).get("parameters", [])]
            if sorted(names) != sorted(self.spec.space.names):
                raise CampaignError(f"transfer.prior_campaigns: {name!r} varies {names}, "
                                    f"this campaign varies {self.spec.space.names}")
            for e in s.exec(select(Experiment).where(Experiment.campaign_id == prior.id,
                                                     Experiment.status == ExperimentStatus.MEASURED.value)):
                if e.outcomes:
                    out.append(Observation(params=e.params, outcomes=e.outcomes, task=name))
        return out

    def _propose_round(self) -> Round:
        spec = self.spec
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            index = s.exec(select(func.count()).select_from(Round).where(Round.campaign_id == camp.id)).one()
            history, exps = self._history(s)
            requeued_ids = set(s.exec(select(Proposal.requeued_from_experiment_id).where(
                Proposal.campaign_id == camp.id, col(Proposal.requeued_from_experiment_id).is_not(None))))
            requeue = [e for e in exps if e.status == ExperimentStatus.QUARANTINED.value and e.id not in requeued_ids]
            plate = self.plate_parameters
            if plate and requeue:
                # One plate shares its plate-wide values: re-queue only experiments that agree with
                # the first, and have the planner fill the plate with those values pinned.
                pinned = {name: requeue[0].params[name] for name in plate}
                requeue = [e for e in requeue if all(e.params[k] == v for k, v in pinned.items())]
                plate = pinned
            n = self.capacity()
            if spec.budget.experiments is not None:
                n = min(n, spec.budget.experiments - self._valid_experiments(s, camp.id))
            n = max(n, len(requeue))
            pending = [e.params for e in exps if e.status in (ExperimentStatus.SCHEDULED.value, ExperimentStatus.RUNNING.value)]
            pending += [e.params for e in requeue]
            # Rejected points count as pending, so the acquisition steers away from them.
            rejected = list(s.exec(select(Proposal.params).where(
                Proposal.campaign_id == camp.id, Proposal.status == ProposalStatus.REJECTED.value)))
            n_new = n - len(requeue)
            history = history + self._prior_history(s)
            proposals = self._plan(history, pending + rejected, rejected, n_new,
                                   seed=spec.seed * 1000 + index, plate_parameters=plate)
            rnd = Round(campaign_id=camp.id, index=index, plate_id=f"{spec.name[:12]}-P{index + 1:03d}",
                        status=RoundStatus.PROPOSED.value)
            s.add(rnd)
            s.flush()
            rows = [Proposal(campaign_id=camp.id, round_id=rnd.id, position=i, params=e.params,
                             planner="requeue", requeued_from_experiment_id=e.id)
                    for i, e in enumerate(requeue)]
            rows += [Proposal(campaign_id=camp.id, round_id=rnd.id, position=len(requeue) + i,
                              params=p.params, predicted_mean=p.predicted_mean, predicted_sd=p.predicted_sd,
                              acquisition_value=p.acquisition_value, planner=p.planner)
                     for i, p in enumerate(proposals)]
            for row in rows:
                s.add(row)
            s.flush()
            for row in rows:
                append_event(s, camp.id, EventKind.PROPOSAL_CREATED,
                             {"proposal_id": row.id, "round": index + 1, "params": row.params,
                              "predicted_mean": row.predicted_mean, "predicted_sd": row.predicted_sd,
                              "planner": row.planner}, clock_s=camp.clock_s)
            for e in requeue:
                append_event(s, camp.id, EventKind.EXPERIMENT_REQUEUED,
                             {"experiment_id": e.id, "round": index + 1}, clock_s=camp.clock_s)
            append_event(s, camp.id, EventKind.ROUND_PROPOSED,
                         {"round": index + 1, "plate": rnd.plate_id, "n": len(rows)}, clock_s=camp.clock_s)
            s.commit()
            s.refresh(rnd)
        failpoints.hit("round_proposed")
        self.bus.publish(EventKind.ROUND_PROPOSED, {"round": index + 1, "plate": rnd.plate_id, "n": len(rows)})
        return rnd

    def _plan(self, history, pending, rejected, n: int, seed: int, plate_parameters=()):
        """Ask the planner for ``n`` proposals, none equal to a point an operator rejected."""
        spec = self.spec
        out: list = []
        for attempt in range(3):
            if len(out) >= n:
                break
            try:
                batch = self.planner.propose(spec.space, spec.objectives, history,
                                             [*pending, *(p.params for p in out)], n - len(out),
                                             seed=seed + 7919 * attempt,
                                             outcome_constraints=spec.outcome_constraints,
                                             plate_parameters=plate_parameters)
            except PlannerError as err:
                raise CampaignError(f"planner {spec.planner.name!r}: {err}") from err
            out += [p for p in batch if not any(_same_point(p.params, r) for r in rejected)]
        return out[:n]

    def _approve(self, rnd: Round) -> RunResult | None:
        """Pass the round through the approval gate; wait while a person is needed."""
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            r = s.get(Round, rnd.id)
            outcome = run_gate(s, self.spec, self.protocol, r, camp)
            s.commit()
        for kind, payload in outcome.published:
            self.bus.publish(kind, payload)
        if outcome.pause_reason:
            return self._pause(outcome.pause_reason)
        if outcome.waiting:
            if not self._wait():
                raise PauseRequested("interrupted while waiting for approval")
            return None
        self._schedule(rnd)
        return None

    def _schedule(self, rnd: Round) -> None:
        """Create an experiment for every approved or edited proposal (the operator's version)."""
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            props = list(s.exec(select(Proposal).where(Proposal.round_id == rnd.id).order_by(col(Proposal.position))))
            position = 0
            for p in props:
                if p.status not in (ProposalStatus.APPROVED.value, ProposalStatus.EDITED.value):
                    continue
                decision = s.exec(select(Approval).where(Approval.proposal_id == p.id)
                                  .order_by(col(Approval.id).desc())).first()
                params = self.spec.space.validate_point(decision.params or p.params)
                s.add(Experiment(campaign_id=camp.id, round_id=rnd.id, proposal_id=p.id,
                                 position=position, params=params,
                                 requeued_from_id=p.requeued_from_experiment_id))
                position += 1
            r = s.get(Round, rnd.id)
            if position == 0:
                r.status = RoundStatus.SKIPPED.value
                append_event(s, camp.id, EventKind.ROUND_SKIPPED,
                             {"round": rnd.index + 1, "reason": "no proposal approved"}, clock_s=camp.clock_s)
            else:
                r.status = RoundStatus.APPROVED.value
            s.add(r)
            s.commit()
        if position == 0:
            self.bus.publish(EventKind.ROUND_SKIPPED, {"round": rnd.index + 1})

    def _compile(self, rnd: Round) -> None:
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            exps = list(s.exec(select(Experiment).where(Experiment.round_id == rnd.id).order_by(col(Experiment.position))))
            try:
                compiled = self.protocol.compile([e.params for e in exps], plate_id=rnd.plate_id,
                                                 seed=self.spec.seed * 1000 + rnd.index)
            except ProtocolError as err:
                raise CampaignError(f"round {rnd.index} cannot be compiled: {err}") from err
            by_pos = {e.position: e for e in exps}
            for w in compiled.layout.wells:
                exp = by_pos.get(w.experiment) if w.experiment is not None else None
                s.add(Well(round_id=rnd.id, plate_id=rnd.plate_id, well=w.well, role=w.role.value,
                           experiment_id=exp.id if exp else None, replicate=w.replicate))
            for seq, st in enumerate(compiled.steps):
                s.add(Step(round_id=rnd.id, seq=seq, kind=st.type, plate_id=st.plate,
                           wells=list(st.wells), payload=st.model_dump(mode="json")))
            for e in exps:
                e.status = ExperimentStatus.RUNNING.value
                s.add(e)
            r = s.get(Round, rnd.id)
            r.layout = compiled.layout.model_dump(mode="json")
            r.status = RoundStatus.COMPILED.value
            s.add(r)
            append_event(s, camp.id, EventKind.ROUND_COMPILED,
                         {"round": rnd.index + 1, "plate": rnd.plate_id, "wells": len(compiled.layout.wells),
                          "steps": len(compiled.steps)}, clock_s=camp.clock_s)
            s.commit()
        self.bus.publish(EventKind.ROUND_COMPILED, {"round": rnd.index + 1, "steps": len(compiled.steps),
                                                    "plate": rnd.plate_id})

    # -- endings -----------------------------------------------------------------------------

    def _finish(self, status: CampaignStatus, kind: EventKind, reason: str | None) -> RunResult:
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            camp.status = status.value
            camp.pause_reason = reason
            camp.updated_at = utcnow()
            s.add(camp)
            append_event(s, camp.id, kind, {"reason": reason} if reason else {}, clock_s=camp.clock_s)
            s.commit()
        self.bus.publish(kind, {"reason": reason})
        return self._result()

    def _pause(self, reason: str) -> RunResult:
        return self._finish(CampaignStatus.PAUSED, EventKind.CAMPAIGN_PAUSED, reason)

    def _complete(self) -> RunResult:
        return self._finish(CampaignStatus.COMPLETED, EventKind.CAMPAIGN_COMPLETED, None)

    def _result(self) -> RunResult:
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id) if self.campaign_id else s.exec(
                select(Campaign).where(Campaign.name == self.spec.name)).one()
            n_rounds = s.exec(select(func.count()).select_from(Round).where(Round.campaign_id == camp.id)).one()
            history, _ = self._history(s)
        best: dict[str, Any] = {}
        obj = self.spec.objectives[0]
        scored = [h for h in history if obj.metric in h.outcomes and all(
            c.metric in h.outcomes and c.satisfied(h.outcomes[c.metric]) for c in self.spec.outcome_constraints)]
        if scored:
            b = max(scored, key=lambda h: obj.sign * h.outcomes[obj.metric])
            best = {"params": b.params, "outcomes": b.outcomes}
        return RunResult(camp.name, camp.status, n_rounds, len(history), camp.pause_reason, best)


def _same_point(a: dict, b: dict, rel: float = 1e-6) -> bool:
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
