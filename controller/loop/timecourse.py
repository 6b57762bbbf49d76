"""Time-course plates in the runner (``adaptive_dosing`` with ``planner: rl``): image → analyse
→ decide → act → incubate, for every decision point of the plate.

A time-course plate is one round whose journal grows one decision at a time::

    propose (condition groups) ─▶ compile: baseline steps (time point 0) ─▶ steps run
      ─▶ analyse time point t; the policy decides each unit's action      ┐ one transaction:
         (measurements, a DecisionPoint, one proposal per unit)          ┘ round 'deciding'
      ─▶ the approval gate (auto, policy or a person: the proposals show the policy's forecast)
      ─▶ compile the decided actions: withdrawals, transfers, an incubation and the next images
         (time point t + 1), journaled with the decision point ('compiled') in one transaction
      ─▶ steps run ─▶ ... ─▶ after the last decision's images, the end-point analysis.

Each arrow is one ledger transaction and is skipped when the ledger shows it was done (the
decision point exists, it is compiled), so after a kill a decision is neither made nor applied
twice; the steps are the engine's journal (a withdrawal or dispense caught mid-way is resolved
from the well's volume, never repeated blindly). The policy's identity and checksum are
journaled with every decision point and its proposals.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

from sqlalchemy import Engine, func
from sqlmodel import Session, col, select

from analyzers import AnalysisError, AnalysisSettings, get_analyzer
from controller.ledger.models import (
    Approval,
    Campaign,
    DecisionPoint,
    DecisionPointStatus,
    Experiment,
    Measurement,
    Proposal,
    ProposalStatus,
    RawData,
    Round,
    RoundStatus,
    Step,
    Well,
    WellStatus,
)
from controller.loop import failpoints
from controller.loop.analysis import analyze_round
from controller.loop.engine import read_well_images
from controller.loop.events import EventBus, EventKind, append_event
from controller.loop.gate import GateOutcome, run_gate
from controller.loop.operator import decide
from controller.loop.proposing import in_flight_experiments, valid_experiments
from controller.spec import CampaignSpec
from protocols.base import CompiledPlate
from protocols.layout import PlateLayout, WellRole
from protocols.timecourse import PlateState, UnitAction, WellLiquid

GROUP_PLANNER = "timecourse"
COUNTS = ("tumour_count", "normal_count")


def is_time_course(protocol: Any) -> bool:
    """True for protocols whose plates are dosed decision by decision (``compile_decision``)."""
    return callable(getattr(protocol, "compile_decision", None))


@dataclass
class Advance:
    """What :meth:`Timecourse.analyse` did: ``pause_reason`` when the plate cannot go on;
    ``published`` events for the bus."""

    pause_reason: str | None = None
    published: list[tuple[EventKind, dict[str, Any]]] | None = None


class Timecourse:
    """The runner's time-course steps for one campaign (protocol with ``compile_decision``,
    planner with ``decide_units``)."""

    def __init__(self, db: Engine, spec: CampaignSpec, protocol: Any, planner: Any,
                 campaign_id: int, bus: EventBus) -> None:
        self.db, self.spec, self.protocol, self.planner = db, spec, protocol, planner
        self.campaign_id, self.bus = campaign_id, bus

    # -- a new plate ----------------------------------------------------------------------

    def propose(self, capacity: int) -> Round:
        """Write a plate of condition groups (labels ``{"group": n}``; their doses are decided
        at each decision point). The groups are approved by the protocol, not a person: every
        dose a well receives goes through the gate as a decision. Commits."""
        with Session(self.db) as s:
            camp = s.get(Campaign, self.campaign_id)
            index = s.exec(select(func.count()).select_from(Round).where(
                Round.campaign_id == camp.id)).one()
            n = capacity
            if self.spec.budget.experiments is not None:
                n = min(n, self.spec.budget.experiments - valid_experiments(s, camp.id)
                        - in_flight_experiments(s, camp.id))
            rnd = Round(campaign_id=camp.id, index=index, status=RoundStatus.APPROVED.value,
                        plate_id=f"{self.spec.name[:12]}-P{index + 1:03d}")
            s.add(rnd)
            s.flush()
            for i in range(max(n, 1)):
                p = Proposal(campaign_id=camp.id, round_id=rnd.id, position=i,
                             params={"group": i + 1}, planner=GROUP_PLANNER)
                s.add(p)
                s.flush()
                append_event(s, camp.id, EventKind.PROPOSAL_CREATED,
                             {"proposal_id": p.id, "round": index + 1, "params": p.params,
                              "planner": GROUP_PLANNER}, clock_s=camp.clock_s, bind=[p])
                decide(s, p, camp, "approved", "protocol", params=p.params,
                       reason="a condition group of a time-course plate; each of its doses is "
                              "a decision that passes the gate")
                s.add(Experiment(campaign_id=camp.id, round_id=rnd.id, proposal_id=p.id,
                                 position=i, params=p.params))
            append_event(s, camp.id, EventKind.ROUND_PROPOSED,
                         {"round": index + 1, "plate": rnd.plate_id, "n": max(n, 1),
                          "time_course": True}, clock_s=camp.clock_s)
            s.commit()
            s.refresh(rnd)
        failpoints.hit("round_proposed")
        return rnd

    # -- after each time point's images ----------------------------------------------------

    def analyse(self, round_id: int, clock_s: float) -> Advance:
        """The plate's latest images are in: the end point (analysed like any plate), or the
        next decision point (measurements, the policy's decisions, the gate's proposals, in one
        transaction; a decision point already journaled is not made again)."""
        with Session(self.db) as s:
            rnd = s.get(Round, round_id)
            t = s.exec(select(func.max(Step.time_point)).where(Step.round_id == round_id)).one() or 0
            done = s.exec(select(DecisionPoint.id).where(DecisionPoint.round_id == round_id,
                                                         DecisionPoint.index == t)).first()
        if t >= self.protocol.settings.decisions:
            analyze_round(self.db, self.spec, round_id, clock_s, self.bus, time_point=t)
            return Advance()
        if done is not None:  # journaled before a kill: go to the gate
            self._set_status(round_id, RoundStatus.DECIDING)
            return Advance()
        with Session(self.db) as s:
            rnd = s.get(Round, round_id)
            camp = s.get(Campaign, self.campaign_id)
            try:
                analysed = self._measure(s, rnd, t)
            except AnalysisError as err:
                return Advance(pause_reason=f"plate {rnd.plate_id}: time point {t} cannot be "
                                            f"analysed, so no decision can be made: {err}")
            histories, skipped = self._histories(s, rnd, t)
            seed = self.spec.seed * 1000 + rnd.index * 97 + t
            decisions = self.planner.decide_units(histories, seed)
            record = self.planner.ledger_record()
            time_h = self.protocol.decision_times_h()[t]
            dp = DecisionPoint(
                campaign_id=camp.id, round_id=rnd.id, index=t, time_h=time_h,
                policy_id=record.get("policy_id"), policy=record, clock_s=clock_s,
                observations={u: h.model_dump(mode="json") for u, h in histories.items()},
                forecasts={**{u: {**d.expected.model_dump(mode="json"),
                                  "action_probability": d.action_probability}
                              for u, d in decisions.items()},
                           **{u: {"skipped": why} for u, why in skipped.items()}})
            s.add(dp)
            s.flush()
            rows = []
            for pos, unit in enumerate(sorted(decisions, key=_unit_key)):
                prop = decisions[unit].to_proposal()
                row = Proposal(campaign_id=camp.id, round_id=rnd.id, position=pos,
                               params=prop.params, predicted_mean=prop.predicted_mean,
                               predicted_sd=prop.predicted_sd, planner=prop.planner,
                               decision_point_id=dp.id, unit=unit)
                s.add(row)
                rows.append(row)
            s.flush()
            for row in rows:
                append_event(s, camp.id, EventKind.PROPOSAL_CREATED,
                             {"proposal_id": row.id, "round": rnd.index + 1, "params": row.params,
                              "predicted_mean": row.predicted_mean, "planner": row.planner,
                              "decision": t, "unit": row.unit, "policy_id": dp.policy_id},
                             clock_s=clock_s, bind=[row])
            summary = {"round": rnd.index + 1, "plate": rnd.plate_id, "decision": t,
                       "time_h": time_h, "units": len(rows), "policy_id": dp.policy_id,
                       "policy_sha256": record.get("sha256"), "skipped_units": skipped,
                       "wells_measured": analysed}
            append_event(s, camp.id, EventKind.DECISION_PROPOSED, summary, clock_s=clock_s,
                         bind=[dp])
            rnd.status = RoundStatus.DECIDING.value
            rnd.awaiting_approval_since = None  # each decision point waits afresh
            s.add(rnd)
            s.commit()
        failpoints.hit("decision_proposed")
        return Advance(published=[(EventKind.DECISION_PROPOSED, summary)])

    def _measure(self, s: Session, rnd: Round, t: int) -> int:
        """Analyse time point ``t``'s images; record per-well counts and per-group values."""
        wells = {w.well: w for w in s.exec(select(Well).where(Well.round_id == rnd.id))}
        quarantined = {n for n, w in wells.items() if w.status == WellStatus.QUARANTINED.value}
        full = PlateLayout.model_validate(rnd.layout)
        layout = full.model_copy(update={"wells": [w for w in full.wells if w.well not in quarantined]})
        raws = s.exec(select(RawData).where(RawData.round_id == rnd.id, RawData.time_point == t))
        frames = {r.well: read_well_images(r) for r in raws if r.well not in quarantined}
        analyzer = get_analyzer(self.spec.analyzer.name)
        model = getattr(analyzer, "settings_model", AnalysisSettings)
        result = analyzer(frames, layout, model.model_validate(self.spec.analyzer.settings))
        exps = {e.position: e for e in s.exec(select(Experiment).where(Experiment.round_id == rnd.id))}
        n = 0
        for name, wr in result.wells.items():
            for metric, value in wr.metrics.items():
                if value is not None and value == value:
                    s.add(Measurement(campaign_id=rnd.campaign_id, round_id=rnd.id,
                                      well_id=wells[name].id, experiment_id=wells[name].experiment_id,
                                      metric=metric, value=float(value), flags=list(wr.flags),
                                      time_point=t))
            n += bool(wr.metrics)
        for pos, score in result.experiments.items():
            if pos in exps and score.n_replicates:
                for metric, value in score.values.items():
                    if value is not None and value == value:
                        s.add(Measurement(campaign_id=rnd.campaign_id, round_id=rnd.id,
                                          experiment_id=exps[pos].id, metric=metric,
                                          value=float(value), time_point=t))
        append_event(s, rnd.campaign_id, EventKind.TIME_POINT_ANALYZED,
                     {"round": rnd.index + 1, "plate": rnd.plate_id, "time_point": t,
                      "wells": n, "plate_flags": list(result.flags)}, clock_s=s.get(Campaign, rnd.campaign_id).clock_s)
        s.flush()
        return n

    def _histories(self, s: Session, rnd: Round, t: int) -> tuple[dict[str, Any], dict[str, str]]:
        """Each unit's images (time points 0..t) and applied actions, as the policy reads them;
        units without a counted well at some time point are skipped (they get no action)."""
        from planners.rl.history import ObservationHistory, TimePoint

        compiled = _compiled(s, rnd)
        units = self.protocol.units(compiled)
        controls = [w.well for w in compiled.layout.wells if w.role is WellRole.NEGATIVE_CONTROL]
        names = {w.id: w.well for w in s.exec(select(Well).where(Well.round_id == rnd.id))}
        counts: dict[int, dict[str, dict[str, float]]] = {}
        for m in s.exec(select(Measurement).where(
                Measurement.round_id == rnd.id, col(Measurement.well_id).is_not(None),
                col(Measurement.metric).in_(COUNTS), col(Measurement.time_point) <= t)):
            if m.value is not None:
                counts.setdefault(m.time_point or 0, {}).setdefault(names[m.well_id], {})[m.metric] = m.value
        points = {dp.index: dp for dp in s.exec(select(DecisionPoint).where(
            DecisionPoint.round_id == rnd.id, DecisionPoint.index < t))}
        times = self.protocol.decision_times_h() + [self.protocol.duration_h]

        def pairs(wells: Sequence[str], j: int) -> list[tuple[float, float]]:
            got = counts.get(j, {})
            return [(got[w][COUNTS[0]], got[w][COUNTS[1]]) for w in wells
                    if w in got and all(c in got[w] for c in COUNTS)]

        histories: dict[str, Any] = {}
        skipped: dict[str, str] = {}
        for unit, wells in units.items():
            tps = []
            for j in range(t + 1):
                u, c = pairs(wells, j), pairs(controls, j)
                if not u or not c:
                    skipped[unit] = f"no counted {'well' if not u else 'control well'} at time point {j}"
                    break
                tps.append(TimePoint(time_h=times[j], unit_counts=u, control_counts=c))
            if unit in skipped:
                continue
            actions = [UnitAction.model_validate((points[j].actions or {}).get(unit, {}))
                       for j in range(t)]
            histories[unit] = ObservationHistory(time_points=tps, actions=actions)
        return histories, skipped

    # -- the gate, then the action -----------------------------------------------------------

    def decide(self, round_id: int) -> GateOutcome:
        """Pass the current decision point's proposals through the gate; once every unit is
        decided, compile the actions into journaled steps (one transaction) and let the plate
        run on. A compiled decision point is never compiled again."""
        with Session(self.db) as s:
            rnd = s.get(Round, round_id)
            camp = s.get(Campaign, self.campaign_id)
            dp = s.exec(select(DecisionPoint).where(DecisionPoint.round_id == round_id)
                        .order_by(col(DecisionPoint.index).desc())).first()
            if dp is None or dp.status == DecisionPointStatus.COMPILED.value:
                rnd.status = RoundStatus.EXECUTING.value  # applied before a kill: run on
                s.add(rnd)
                s.commit()
                return GateOutcome()
            outcome = run_gate(s, self.spec, _GateProtocol(self.protocol, self.spec), rnd, camp)
            if outcome.waiting or outcome.pause_reason:
                s.commit()
                return outcome
            published = self._apply(s, rnd, camp, dp)
            s.commit()
        failpoints.hit("decision_compiled")
        outcome.published.extend(published)
        return outcome

    def _apply(self, s: Session, rnd: Round, camp: Campaign, dp: DecisionPoint):
        compiled = _compiled(s, rnd)
        units = self.protocol.units(compiled)
        props = {p.unit: p for p in s.exec(select(Proposal).where(Proposal.decision_point_id == dp.id))}
        actions: dict[str, UnitAction] = {}
        notes: dict[str, str] = {}
        for unit in units:
            p = props.get(unit)
            if p is None:
                actions[unit], notes[unit] = UnitAction(), "no decision (skipped)"
                continue
            if p.status == ProposalStatus.REJECTED.value:
                actions[unit], notes[unit] = UnitAction(), "rejected: nothing added"
                continue
            last = s.exec(select(Approval).where(Approval.proposal_id == p.id)
                          .order_by(col(Approval.id).desc())).first()
            params = (last.params if last and last.params else p.params)
            try:
                actions[unit] = self.protocol.to_action(params, unit)
            except Exception as err:  # an edit off the dose steps: nothing rather than a guess
                actions[unit], notes[unit] = UnitAction(), f"not applied: {err}"
        prev = s.exec(select(DecisionPoint).where(DecisionPoint.round_id == rnd.id,
                                                  DecisionPoint.index == dp.index - 1)).first()
        state = (PlateState.model_validate(prev.state_after) if prev and prev.state_after
                 else self.protocol.initial_state(compiled))
        cd = self.protocol.compile_decision(compiled, state, actions)
        seq = (s.exec(select(func.max(Step.seq)).where(Step.round_id == rnd.id)).one() or 0) + 1
        for i, st in enumerate(cd.steps):
            s.add(Step(round_id=rnd.id, seq=seq + i, kind=st.type, plate_id=st.plate,
                       wells=list(st.wells), payload=st.model_dump(mode="json"),
                       time_point=dp.index + 1))
        dp.status = DecisionPointStatus.COMPILED.value
        dp.actions = {u: a.model_dump(mode="json") for u, a in actions.items()}
        dp.state_after = cd.state_after.model_dump(mode="json")
        dp.first_seq = seq
        s.add(dp)
        rnd.status = RoundStatus.EXECUTING.value
        s.add(rnd)
        payload = {"round": rnd.index + 1, "plate": rnd.plate_id, "decision": dp.index,
                   "steps": len(cd.steps), "first_seq": seq, "policy_id": dp.policy_id,
                   "actions": {u: a.to_params(self.protocol.drugs) for u, a in actions.items()},
                   "notes": notes}
        shown = {**payload, "actions_applied": {u: a.model_dump(mode="json") for u, a in actions.items()}}
        append_event(s, camp.id, EventKind.DECISION_APPLIED, payload, clock_s=camp.clock_s,
                     bind=[dp])
        return [(EventKind.DECISION_APPLIED, shown)]

    def _set_status(self, round_id: int, status: RoundStatus) -> None:
        with Session(self.db) as s:
            r = s.get(Round, round_id)
            if r.status != status.value:
                r.status = status.value
                s.add(r)
                s.commit()


def _unit_key(unit: str) -> tuple[int, str]:
    return (int(unit), "") if unit.isdigit() else (1 << 30, unit)


def _compiled(s: Session, rnd: Round) -> CompiledPlate:
    """The plate as compiled (its layout is what decisions need)."""
    exps = s.exec(select(Experiment).where(Experiment.round_id == rnd.id).order_by(col(Experiment.position)))
    return CompiledPlate(protocol="adaptive_dosing", layout=PlateLayout.model_validate(rnd.layout),
                         steps=[], experiments=[e.params for e in exps], seed=0)


class _GateProtocol:
    """What the gate's reagent limits (``approval.policy.max_reagent_ul``) see of a decision:
    the aspirates that its actions would need in every well of their units, from the seeded
    volume (a bound, not the plate's exact liquid)."""

    def __init__(self, protocol: Any, spec: CampaignSpec) -> None:
        self.protocol = protocol
        self.wells = 1 if protocol.settings.decision_unit == "well" else protocol.settings.replicates

    def compile(self, experiments: Sequence[Mapping[str, Any]], plate_id: str, seed: int) -> Any:
        liquid = WellLiquid(volume_ul=self.protocol.settings.seeded_volume_ul)
        steps = []
        for params in experiments:
            for tr in self.protocol.plan_action(liquid, params):
                if tr.kind == "add":
                    steps += [SimpleNamespace(type="aspirate", reagent=tr.reagent,
                                              volume_ul=tr.volume_ul)] * self.wells
        return SimpleNamespace(steps=steps)
