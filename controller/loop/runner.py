"""The runner: the campaign's state machine, driven round by round from the ledger.

Each round (one plate) moves through these states, each transition one ledger transaction::

    (none) ──propose──▶ proposed ──approve──▶ approved ──compile──▶ compiled
                                                                      │ execute (journaled steps)
    analyzed ◀──analyze── executing ◀─────────────────────────────────┘

Because every transition is committed before the next begins, a process killed at any point
resumes where the ledger says it was (see :mod:`controller.loop.engine` for the steps themselves).
The campaign is ``running``, ``paused`` (a fault, a signal, an operator) or ``completed``.
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from controller.ledger.db import open_ledger_engine, resolve_ledger_url
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
from controller.loop import failpoints
from controller.loop.analysis import analyze_round
from controller.loop.clocks import WallClock
from controller.loop.engine import PauseRequested, StepEngine, StepFailed, load_round_context
from controller.loop.events import EventBus, EventKind, append_event
from controller.loop.events import bus as default_bus
from controller.loop.exceptions import CampaignError
from controller.loop.gate import run_gate
from controller.loop.preflight import build_parts, check_campaign
from controller.loop.proposing import (
    campaign_history,
    prior_history,
    propose_round,
    valid_experiments,
)
from controller.rig.registry import Instruments, build_instruments
from controller.spec import CampaignSpec
from planners import Observation
from protocols.exceptions import ProtocolError


@dataclass
class RunResult:
    campaign: str
    status: str
    rounds: int
    valid_experiments: int
    pause_reason: str | None = None
    best: dict[str, Any] = field(default_factory=dict)


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
        amend: bool = False,
    ) -> None:
        self.spec = spec
        self.amend = amend
        self.dry_run = dry_run
        self.ledger_url = resolve_ledger_url(spec, ledger_url)
        self.data_dir = Path(data_dir or spec.ledger.data_dir or Path("runs") / spec.name)
        self.bus = events
        self.stop = stop or threading.Event()
        self.parts = build_parts(spec)  # raises CampaignConfigError before anything is written
        self.protocol = self.parts.protocol
        self.planner = self.parts.planner
        self.db: Engine | None = None
        self.instruments: Instruments | None = None
        self.campaign_id: int | None = None
        self._last_control_check = 0.0

    # -- checks before anything moves -----------------------------------------------------

    def preflight(self) -> None:
        """Refuse, before the ledger is touched or any robot moves, what cannot work."""
        check_campaign(self.spec, dry_run=self.dry_run, plate_parameters=self.plate_parameters,
                       parts=self.parts)

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
                    self._amend(s, camp)
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

    def _amend(self, s: Session, camp: Campaign) -> None:
        """The file changed since the campaign started: refuse, or (``--amend``) record the change."""
        spec = self.spec
        changes = spec_changes(camp.spec, spec.model_dump(mode="json"))
        fixed = sorted({c.split(".")[0] for c in changes} & FIXED_SECTIONS)
        where = ", ".join(changes[:8]) + (" ..." if len(changes) > 8 else "")
        if not self.amend:
            raise CampaignError(
                f"campaign {spec.name!r} in the ledger was started from a different file "
                f"(changed: {where}); run again with --amend to continue with the change recorded "
                "in the event log, or give the new campaign another name")
        if fixed:
            raise CampaignError(f"campaign {spec.name!r}: {fixed} cannot change once a campaign has "
                                "started (its history would not mean the same); start a new campaign")
        append_event(s, camp.id, EventKind.CAMPAIGN_AMENDED,
                     {"changed": changes[:50], "old_spec_hash": camp.spec_hash,
                      "new_spec_hash": spec.spec_hash(), "old": {c: _at(camp.spec, c) for c in changes[:50]}},
                     clock_s=camp.clock_s)
        camp.spec_hash = spec.spec_hash()

    def _make_clock(self, camp: Campaign):
        if self.dry_run:
            from simulators.clock import SimulatedClock

            return SimulatedClock(start_s=camp.clock_s)
        return WallClock(self.stop)

    # -- budget ------------------------------------------------------------------------------

    def _budget_left(self, s: Session, camp: Campaign) -> bool:
        b = self.spec.budget
        n_rounds = s.exec(select(func.count()).select_from(Round).where(
            Round.campaign_id == camp.id, Round.status != RoundStatus.SKIPPED.value)).one()
        if b.rounds is not None and n_rounds >= b.rounds:
            return False
        if b.experiments is not None and valid_experiments(s, camp.id) >= b.experiments:
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
        self.instruments = build_instruments(self.spec, dry_run=self.dry_run,
                                             data_dir=self.data_dir, clock=clock)
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
        from controller.loop.alerts import WebhookAlerter

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
        return campaign_history(s, self.campaign_id)

    def _prior_history(self, s: Session) -> list[Observation]:
        return prior_history(s, self.spec)

    def _propose_round(self) -> Round:
        with Session(self.db) as s:
            rnd, n = propose_round(s, self.spec, self.planner, self.campaign_id,
                                   capacity=self.capacity(), plate_parameters=self.plate_parameters)
        failpoints.hit("round_proposed")
        self.bus.publish(EventKind.ROUND_PROPOSED, {"round": rnd.index + 1, "plate": rnd.plate_id, "n": n})
        return rnd

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


#: Sections a running campaign cannot amend: what its history's parameters mean, its seed,
#: and (dry-runs) the virtual lab the plates already in it were made in.
FIXED_SECTIONS = {"name", "space", "seed", "simulation"}


def spec_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two campaign files (as JSON data) differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += spec_changes(old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key))
        return out
    return [] if old == new else [prefix or "(whole file)"]


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    text = json.dumps(data, default=str)
    return data if len(text) <= 200 else text[:200] + "…"
