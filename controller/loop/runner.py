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

import threading
import time
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from controller.ledger.anchor import campaign_anchor_path
from controller.ledger.chain import register_anchor
from controller.ledger.db import open_ledger_engine, resolve_ledger_url
from controller.ledger.models import (
    Campaign,
    CampaignStatus,
    Round,
    RoundStatus,
    utcnow,
)
from controller.ledger.queries import campaign_schedule
from controller.ledger.secrets import mask_secrets, mask_url
from controller.loop import failpoints
from controller.loop.analysis import analyze_round
from controller.loop.clocks import Interrupted, WallClock
from controller.loop.engine import PauseRequested, StepEngine, StepFailed, load_round_context
from controller.loop.events import EventBus, EventKind, append_event
from controller.loop.events import bus as default_bus
from controller.loop.exceptions import CampaignError
from controller.loop.gate import run_gate
from controller.loop.leases import (
    DEFAULT_LEASE_S,
    LeaseKeeper,
    claim,
    holder,
    holder_is_dead,
    new_runner_id,
    take_over,
)
from controller.loop.opening import amend_campaign
from controller.loop.preflight import build_parts, check_campaign
from controller.loop.proposing import (
    campaign_history,
    in_flight_experiments,
    prior_history,
    propose_round,
    valid_experiments,
)
from controller.loop.rounds import compile_round, plate_steps, schedule_round
from controller.loop.timecourse import Timecourse, is_time_course
from controller.loop.workcell import PlateView, next_action, workcell_limits
from controller.rig.registry import InstrumentConfigError, Instruments, build_instruments
from controller.spec import CampaignSpec
from instruments.exceptions import InstrumentError


@dataclass
class RunResult:
    campaign: str
    status: str
    rounds: int
    valid_experiments: int
    pause_reason: str | None = None
    best: dict[str, Any] = field(default_factory=dict)
    schedule: dict[str, float] | None = None  # elapsed vs one-plate-at-a-time hours


#: Longest single sleep on the wall clock while plates incubate (operators' requests are read
#: between sleeps).
WALL_WAIT_S = 5.0


class LeaseLost(CampaignError):
    """Another runner took the campaign over (this one stalled past its lease): stop, write nothing."""


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
        runner_id: str | None = None,
        lease_s: float = DEFAULT_LEASE_S,
    ) -> None:
        self.spec = spec
        self.amend = amend
        self.runner_id = runner_id or new_runner_id()
        self.lease_s = lease_s
        self._lease: LeaseKeeper | None = None
        self._lease_generation = 0
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
        self._asked: dict[int, float] = {}  # round id -> when the gate last said "waiting" (monotonic)
        self.limits = workcell_limits(spec)
        self.tc: Timecourse | None = None  # time-course plates (decisions between images)

    # -- checks before anything moves -----------------------------------------------------

    def preflight(self) -> None:
        """Refuse, before the ledger is touched or any robot moves, what cannot work."""
        check_campaign(self.spec, dry_run=self.dry_run, plate_parameters=self.plate_parameters,
                       parts=self.parts)

    @property
    def plate_parameters(self) -> list[str]:
        """Parameters one plate shares: the campaign's and those the protocol needs (incubation)."""
        from_protocol: list[str] = getattr(self.protocol, "plate_parameters", lambda: [])()
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
            prior_history(s, self.spec)  # refuse unknown or mismatched prior campaigns up front
            existing = s.exec(select(Campaign.id).where(Campaign.name == spec.name)).first()
        if existing is not None:
            self._claim(existing)  # before anything is written: one runner per campaign
        with Session(self.db) as s:
            camp = s.exec(select(Campaign).where(Campaign.name == spec.name)).first()
            if camp is None:
                camp = Campaign(name=spec.name, spec=mask_secrets(spec.model_dump(mode="json")),
                                spec_hash=spec.spec_hash(), dry_run=self.dry_run,
                                status=CampaignStatus.RUNNING.value, runner_id=self.runner_id,
                                lease_expires_at=utcnow() + timedelta(seconds=self.lease_s),
                                lease_generation=1)
                self._lease_generation = 1
                s.add(camp)
                s.flush()
                append_event(s, camp.id, EventKind.CAMPAIGN_CREATED,
                             {"name": spec.name, "dry_run": self.dry_run, "spec_hash": camp.spec_hash})
                kind = EventKind.CAMPAIGN_STARTED
            else:
                if camp.spec_hash != spec.spec_hash():
                    amend_campaign(s, camp, spec, allowed=self.amend)
                if camp.dry_run != self.dry_run:
                    mode = "a dry-run" if camp.dry_run else "on instruments"
                    raise CampaignError(f"campaign {spec.name!r} was started {mode}; resume it the same way")
                if camp.status == CampaignStatus.ABORTED.value:
                    raise CampaignError(f"campaign {spec.name!r} was aborted; start a new campaign")
                if camp.status == CampaignStatus.COMPLETED.value and not self._budget_left(s, camp):
                    self.campaign_id = camp.id
                    return camp
                kind = (EventKind.CAMPAIGN_STARTED if camp.status == CampaignStatus.QUEUED.value
                        else EventKind.CAMPAIGN_RESUMED)
                camp.spec = mask_secrets(spec.model_dump(mode="json"))  # the budget may have been extended
            camp.status = CampaignStatus.RUNNING.value
            camp.pause_reason = None
            camp.updated_at = utcnow()
            s.add(camp)
            anchor = campaign_anchor_path(self.data_dir)
            append_event(s, camp.id, kind, {"ledger": mask_url(self.ledger_url), "anchor": str(anchor),
                                            "runner": self.runner_id},
                         clock_s=camp.clock_s)
            s.commit()
            s.refresh(camp)
            self.campaign_id = camp.id
            register_anchor(self.db, camp.id, anchor)
            return camp

    def _claim(self, campaign_id: int) -> None:
        generation = claim(self.db, campaign_id, self.runner_id, self.lease_s)
        if generation is None:
            who, until = holder(self.db, campaign_id)
            if holder_is_dead(who):  # killed on this host (kill -9): resume at once
                generation = take_over(self.db, campaign_id, who, self.runner_id, self.lease_s)
        if generation is None:
            raise CampaignError(
                f"campaign {self.spec.name!r} is being run by another runner ({who}, lease until "
                f"{until:%Y-%m-%d %H:%M:%S} UTC); if that process is gone, try again after its lease expires")
        self._lease_generation = generation

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
        if b.experiments is not None and valid_experiments(s, camp.id) + in_flight_experiments(s, camp.id) >= b.experiments:
            return False
        if b.deadline_h is not None and camp.clock_s - camp.started_clock_s >= b.deadline_h * 3600:
            return False
        return True

    # -- the loop ----------------------------------------------------------------------------

    def run(self) -> RunResult:
        """Run (or resume) the campaign until its budget is spent, it is paused, or it fails."""
        self.preflight()
        camp = self._open()
        self._lease = LeaseKeeper(self.db, camp.id, self.runner_id, self._lease_generation, self.lease_s).start()
        try:
            if camp.status == CampaignStatus.COMPLETED.value:
                return self._result()
            return self._run_open(camp)
        except LeaseLost:
            return self._result()
        finally:
            self._lease.stop(release_lease=True)

    def _run_open(self, camp: Campaign) -> RunResult:
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
                            clock, self.bus, self.stop, should_stop=self._control_pending,
                            plate_mover=self.instruments.plate_mover)
        if is_time_course(self.protocol):
            self.tc = Timecourse(self.db, self.spec, self.protocol, self.planner, self.campaign_id, self.bus)
        try:
            while True:
                self._check_lease()
                request = self._control_request()
                if request == "abort":
                    return self._finish(CampaignStatus.ABORTED, EventKind.CAMPAIGN_ABORTED,
                                        "aborted by an operator")
                if request == "pause":
                    if not self._hold():
                        return self._pause("interrupted while held")
                    continue
                try:
                    done = self._tick(engine, clock)
                except PauseRequested:
                    if self.stop.is_set():
                        return self._pause("interrupted (signal)")
                    continue  # an operator's request (or a lost lease): handled at the top of the loop
                if done is not None:
                    return done
        except StepFailed as err:
            return self._pause(str(err))
        finally:
            unsubscribe()
            self.instruments.close()

    def _check_lease(self) -> None:
        if self._lease is not None and self._lease.lost.is_set():
            raise LeaseLost(f"runner {self.runner_id} lost the lease on campaign {self.spec.name!r}")

    def _tick(self, engine: StepEngine, clock) -> RunResult | None:
        """Do the most urgent thing any plate can do (see :mod:`controller.loop.workcell`), or
        wait for the next; a RunResult when the campaign ends."""
        with Session(self.db) as s:
            can_propose = self._budget_left(s, s.get(Campaign, self.campaign_id))
        plates = self._plates_in_flight()
        action = next_action(plates, clock.now(), self.limits, can_propose=can_propose)
        kind, rid = action.kind, action.round_id
        if kind in ("image", "dispense"):
            self._set_round_status(rid, RoundStatus.EXECUTING, started=clock.now())
            engine.run_segment(self._context(rid))
        elif kind == "start_incubation":
            engine.start_incubation(self._context(rid))
        elif kind == "end_incubation":
            engine.end_incubation(self._context(rid), action.late_s)
        elif kind == "analyse" and self.tc is not None:
            return self._gate_outcome(self.tc.analyse(rid, clock.now()), rid)
        elif kind == "analyse":
            analyze_round(self.db, self.spec, rid, clock.now(), self.bus)
        elif kind == "decide":
            return self._gate_outcome(self.tc.decide(rid), rid)
        elif kind == "compile":
            self._compile(self._round(rid))
        elif kind == "approve":
            return self._approve(self._round(rid))
        elif kind == "propose":
            if self.stop.is_set():
                raise PauseRequested("pause requested")
            self.tc.propose(self.capacity()) if self.tc else self._propose_round()
        elif kind == "done":
            return self._complete()
        elif kind == "wait":
            self._wait_until(clock, action.until_s)
        elif not self._wait():  # poll: a person must decide (or a slot must free up)
            raise PauseRequested("interrupted while waiting for approval")
        return None

    def _wait_until(self, clock, until_s: float) -> None:
        """Wait for the next incubation to end: a simulated clock jumps; a wall clock sleeps
        in short stretches so that operators' requests are seen."""
        remaining = max(0.0, until_s - clock.now())
        try:
            clock.sleep(remaining if self.dry_run else min(remaining, WALL_WAIT_S))
        except Interrupted:
            raise PauseRequested("interrupted while plates incubate") from None

    def _context(self, round_id: int):
        return load_round_context(self.db, round_id, self.data_dir)

    def _round(self, round_id: int) -> Round:
        with Session(self.db) as s:
            rnd = s.get(Round, round_id)
            assert rnd is not None, f"round {round_id} is not in the ledger"
            return rnd

    def _plates_in_flight(self) -> list[PlateView]:
        """Every round not yet analysed, failed or skipped, with its steps."""
        poll = self.spec.approval.poll_s
        with Session(self.db) as s:
            rounds = list(s.exec(select(Round).where(
                Round.campaign_id == self.campaign_id,
                col(Round.status).not_in([RoundStatus.ANALYZED.value, RoundStatus.FAILED.value,
                                          RoundStatus.SKIPPED.value, RoundStatus.HELD.value]))))
            steps = plate_steps(s, rounds)
        return [PlateView(r.id, r.index, r.status, steps[r.id], waiting_for_person=(
            (asked := self._asked.get(r.id)) is not None and time.monotonic() - asked < poll))
            for r in rounds]

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
        if self._lease is not None and self._lease.lost.is_set():
            return True  # stop at once: another runner holds the campaign now
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

    def _set_round_status(self, round_id: int, status: RoundStatus, started: float | None = None) -> None:
        with Session(self.db) as s:
            r = s.get(Round, round_id)
            if r.status != status.value:
                r.status = status.value
                if started is not None and r.started_clock_s is None:
                    r.started_clock_s = started
                s.add(r)
                s.commit()

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
            outcome = run_gate(s, self.spec, self.protocol, s.get(Round, rnd.id),
                               s.get(Campaign, self.campaign_id))
            s.commit()
        done = self._gate_outcome(outcome, rnd.id)
        if done is None and not outcome.waiting:
            self._schedule(rnd)
        return done

    def _gate_outcome(self, outcome, round_id: int) -> RunResult | None:
        """Publish a gate's (or a time-course step's) events; pause, or note a person is needed."""
        for kind, payload in outcome.published or ():
            self.bus.publish(kind, payload)
        if outcome.pause_reason:
            return self._pause(outcome.pause_reason)
        if getattr(outcome, "waiting", False):
            self._asked[round_id] = time.monotonic()  # look again after a poll interval
        else:
            self._asked.pop(round_id, None)
        return None

    def _schedule(self, rnd: Round) -> None:
        with Session(self.db) as s:
            skipped = schedule_round(s, self.spec, self.campaign_id, rnd)
        if skipped:
            self.bus.publish(EventKind.ROUND_SKIPPED, {"round": rnd.index + 1})

    def _compile(self, rnd: Round) -> None:
        with Session(self.db) as s:
            n_steps = compile_round(s, self.spec, self.protocol, self.campaign_id, rnd,
                                    time_point=0 if self.tc else None)
        self.bus.publish(EventKind.ROUND_COMPILED, {"round": rnd.index + 1, "steps": n_steps,
                                                    "plate": rnd.plate_id, "round_id": rnd.id})

    # -- endings -----------------------------------------------------------------------------

    def _finish(self, status: CampaignStatus, kind: EventKind, reason: str | None) -> RunResult:
        self._check_lease()  # a runner that lost its lease writes nothing more
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
            history, _ = campaign_history(s, camp.id)
            schedule = campaign_schedule(s, camp)
        best: dict[str, Any] = {}
        obj = self.spec.objectives[0]
        scored = [h for h in history if obj.metric in h.outcomes and all(
            c.metric in h.outcomes and c.satisfied(h.outcomes[c.metric]) for c in self.spec.outcome_constraints)]
        if scored:
            b = max(scored, key=lambda h: obj.sign * h.outcomes[obj.metric])
            best = {"params": b.params, "outcomes": b.outcomes}
        return RunResult(camp.name, camp.status, n_rounds, len(history), camp.pause_reason, best, schedule)
