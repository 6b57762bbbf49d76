"""Turning a round's images into measurements: load from disk, analyse, record, in one transaction.

The analyzer is given the images read back from their files and the plate map (without
quarantined wells): never the simulator's truth, never anything held in memory from the run.
If the process dies before the transaction commits, the round is simply analysed again.
"""

from __future__ import annotations

import math
from typing import Any

from sqlalchemy import Engine
from sqlmodel import Session, select

from analyzers import AnalysisError, AnalysisSettings, get_analyzer
from controller.ledger.models import (
    Experiment,
    ExperimentStatus,
    Measurement,
    RawData,
    Round,
    RoundStatus,
    Well,
    WellStatus,
)
from controller.loop import failpoints
from controller.loop.engine import read_well_images
from controller.loop.events import EventBus, EventKind, append_event
from controller.loop.qc_gate import gate_failed_plate, qc_failures
from controller.spec import CampaignSpec
from protocols.layout import PlateLayout


def _finite(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if v is not None and math.isfinite(float(v))}


def analyze_round(db: Engine, spec: CampaignSpec, round_id: int, clock_s: float, bus: EventBus,
                  time_point: int | None = None) -> None:
    """Analyse a round whose steps are all done, and record every measurement (a time-course
    plate: its images at ``time_point``, the end point)."""
    with Session(db) as s:
        rnd = s.get(Round, round_id)
        if rnd.status in (RoundStatus.ANALYZED.value, RoundStatus.HELD.value):
            return
        wells = {w.well: w for w in s.exec(select(Well).where(Well.round_id == round_id))}
        quarantined = {n for n, w in wells.items() if w.status == WellStatus.QUARANTINED.value}
        full = PlateLayout.model_validate(rnd.layout)
        layout = full.model_copy(update={"wells": [w for w in full.wells if w.well not in quarantined]})
        raws = [r for r in s.exec(select(RawData).where(RawData.round_id == round_id,
                                                        RawData.time_point == time_point))
                if r.well not in quarantined]
        frames = {r.well: read_well_images(r) for r in raws}
        analyzer = get_analyzer(spec.analyzer.name)
        settings_model = getattr(analyzer, "settings_model", AnalysisSettings)
        exps = {e.position: e for e in s.exec(select(Experiment).where(Experiment.round_id == round_id))}
        try:
            result = analyzer(frames, layout, settings_model.model_validate(spec.analyzer.settings))
        except AnalysisError as err:
            _fail_round(s, rnd, exps.values(), str(err), clock_s)
            s.commit()
            bus.publish(EventKind.PLATE_QC_FAILED, {"round": rnd.index + 1, "reason": str(err)})
            return

        for name, wr in result.wells.items():
            w = wells[name]
            if wr.metrics:  # a well without images stays 'planned', with its flags recorded
                w.status = WellStatus.MEASURED.value
                s.add(w)
            for metric, value in _finite(wr.metrics).items():
                s.add(Measurement(campaign_id=rnd.campaign_id, round_id=round_id, well_id=w.id,
                                  experiment_id=w.experiment_id, metric=metric, value=value,
                                  flags=list(wr.flags), time_point=time_point))
        measured = 0
        for pos, exp in exps.items():
            score = result.experiments.get(pos)
            values = _finite(score.values) if score else {}
            if not score or score.n_replicates == 0 or not all(o.metric in values for o in spec.objectives):
                exp.status = ExperimentStatus.QUARANTINED.value
                exp.outcome_details = {"reason": "no valid replicate well", "flags": score.flags if score else []}
                s.add(exp)
                continue
            exp.status = ExperimentStatus.MEASURED.value
            exp.outcomes = values
            exp.n_valid_replicates = score.n_replicates
            exp.outcome_details = {
                "sd": score.sd, "wells": score.wells, "flags": score.flags,
                "outliers": [o.model_dump(mode="json") for o in score.outliers],
            }
            s.add(exp)
            measured += 1
            for metric, value in values.items():
                s.add(Measurement(campaign_id=rnd.campaign_id, round_id=round_id,
                                  experiment_id=exp.id, metric=metric, value=value,
                                  time_point=time_point))
            append_event(s, rnd.campaign_id, EventKind.MEASUREMENT_RECORDED,
                         {"experiment_id": exp.id, "round": rnd.index + 1, "outcomes": values,
                          "n_replicates": score.n_replicates}, clock_s=clock_s)
        rnd.z_prime = {k: v for k, v in result.z_prime.items()}
        rnd.plate_ok = result.plate_ok
        rnd.status = RoundStatus.ANALYZED.value
        rnd.finished_clock_s = clock_s
        s.add(rnd)
        summary = {"round": rnd.index + 1, "plate": rnd.plate_id, "measured": measured,
                   "quarantined_wells": sorted(quarantined), "z_prime": rnd.z_prime,
                   "plate_ok": result.plate_ok, "plate_flags": list(result.flags)}
        published = [(EventKind.ROUND_ANALYZED, summary)]
        if not result.plate_ok:
            published += gate_failed_plate(s, spec, rnd, exps.values(), qc_failures(result), summary, clock_s)
        append_event(s, rnd.campaign_id, EventKind.ROUND_ANALYZED, summary, clock_s=clock_s, bind_round=rnd.id)
        failpoints.hit("before_analysis_commit")
        s.commit()
    for kind, payload in published:
        bus.publish(kind, payload)


def _fail_round(s: Session, rnd: Round, exps, reason: str, clock_s: float) -> None:
    """The plate cannot be scored (e.g. every control lost): its experiments are re-queued."""
    for exp in exps:
        exp.status = ExperimentStatus.QUARANTINED.value
        exp.outcome_details = {"reason": f"plate not analysable: {reason}"}
        s.add(exp)
    rnd.status = RoundStatus.FAILED.value
    rnd.finished_clock_s = clock_s
    s.add(rnd)
    append_event(s, rnd.campaign_id, EventKind.PLATE_QC_FAILED,
                 {"round": rnd.index + 1, "reason": reason, "analysable": False}, clock_s=clock_s,
                 bind_round=rnd.id)
