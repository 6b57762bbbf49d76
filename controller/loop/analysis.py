"""Turning a round's images into measurements: load from disk, analyse, record, in one transaction.

The analyzer is given the images read back from their files and the plate map (without
quarantined wells): never the simulator's truth, never anything held in memory from the run.
If the process dies before the transaction commits, the round is simply analysed again.

A round is analysed with the analysis version the campaign plans from (the campaign file's
analyzer for version 1, the adopted version's analyzer and settings after a re-analysis:
:mod:`controller.loop.reanalysis`), and its rows record that version. If another version is
adopted while the round is being analysed, the analysis is done again with it.
"""

from __future__ import annotations

import functools
import math
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

from sqlalchemy import Engine, update
from sqlmodel import Session, col, select

from analyzers import AnalysisError, AnalysisSettings, PlateAnalysis, get_analyzer
from controller.ledger.models import (
    AnalysisVersion,
    Campaign,
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


@functools.cache
def code_version() -> dict[str, Any]:
    """The code that analyses: cellpilot's package version, and the git commit (with ``dirty``
    when files differ from it) when running from a checkout; None where unknown."""
    try:
        package: str | None = metadata.version("cellpilot")
    except metadata.PackageNotFoundError:
        package = None
    out: dict[str, Any] = {"package": package, "commit": None}
    root = Path(__file__).resolve().parents[2]
    if (root / ".git").exists():
        try:

            def git(*args: str) -> str:
                return subprocess.run(
                    ["git", "-C", str(root), *args],
                    capture_output=True,
                    text=True,
                    timeout=10,
                    check=True,
                ).stdout.strip()

            out["commit"] = git("rev-parse", "HEAD") or None
            out["dirty"] = bool(git("status", "--porcelain", "--untracked-files=no"))
        except (OSError, subprocess.SubprocessError):
            pass
    return out


def _finite(d: dict[str, Any]) -> dict[str, float]:
    return {k: float(v) for k, v in d.items() if v is not None and math.isfinite(float(v))}


def adopted_analysis(
    s: Session, campaign_id: int, spec: CampaignSpec, number: int | None = None
) -> tuple[int, str, dict[str, Any]]:
    """(version number, analyzer name, settings) of the analysis the campaign plans from (or of
    version ``number``)."""
    if number is None:
        camp = s.get(Campaign, campaign_id)
        number = camp.analysis_version if camp else 1
    row = s.exec(
        select(AnalysisVersion).where(
            AnalysisVersion.campaign_id == campaign_id, AnalysisVersion.number == number
        )
    ).first()
    if row is None:  # version 1 before any re-analysis: the campaign file's analyzer
        return number, spec.analyzer.name, dict(spec.analyzer.settings)
    return number, row.analyzer, dict(row.settings)


def plate_inputs(
    s: Session, rnd: Round, time_point: int | None = None
) -> tuple[dict[str, Well], set[str], PlateLayout, dict[str, Any]]:
    """A round's wells by name, its quarantined wells, its layout without them, and the images
    of the others (at ``time_point`` on a time-course plate) read back from their files."""
    wells = {w.well: w for w in s.exec(select(Well).where(Well.round_id == rnd.id))}
    quarantined = {n for n, w in wells.items() if w.status == WellStatus.QUARANTINED.value}
    full = PlateLayout.model_validate(rnd.layout)
    layout = full.model_copy(update={"wells": [w for w in full.wells if w.well not in quarantined]})
    raws = [
        r
        for r in s.exec(
            select(RawData).where(RawData.round_id == rnd.id, RawData.time_point == time_point)
        )
        if r.well not in quarantined
    ]
    return wells, quarantined, layout, {r.well: read_well_images(r) for r in raws}


def run_analyzer(
    name: str, settings: dict[str, Any], frames: dict[str, Any], layout: PlateLayout
) -> PlateAnalysis:
    """Run analyzer ``name`` with ``settings`` (validated by its settings model) on one plate.

    Raises:
        AnalysisError: the plate cannot be analysed.
    """
    analyzer = get_analyzer(name)
    settings_model = getattr(analyzer, "settings_model", AnalysisSettings)
    return analyzer(frames, layout, settings_model.model_validate(settings))


def still_adopted(s: Session, campaign_id: int, version: int) -> bool:
    """Inside a transaction about to commit rows of analysis ``version``: True if the campaign
    still plans from it (the no-op update holds the campaign row until the commit)."""
    res = s.exec(
        update(Campaign)
        .where(col(Campaign.id) == campaign_id, col(Campaign.analysis_version) == version)
        .values(analysis_version=version)
    )
    return res.rowcount == 1


def analyze_round(
    db: Engine,
    spec: CampaignSpec,
    round_id: int,
    clock_s: float,
    bus: EventBus,
    time_point: int | None = None,
) -> None:
    """Analyse a round whose steps are all done, and record every measurement (a time-course
    plate: its images at ``time_point``, the end point)."""
    for _ in range(3):
        if _analyze_round(db, spec, round_id, clock_s, bus, time_point):
            return
    raise RuntimeError(
        f"round {round_id}: the adopted analysis version kept changing during its analysis"
    )


def _analyze_round(
    db: Engine,
    spec: CampaignSpec,
    round_id: int,
    clock_s: float,
    bus: EventBus,
    time_point: int | None,
) -> bool:
    """One attempt; False when another analysis version was adopted meanwhile (nothing written)."""
    with Session(db) as s:
        rnd = s.get(Round, round_id)
        if rnd.status in (RoundStatus.ANALYZED.value, RoundStatus.HELD.value):
            return True
        version, analyzer_name, settings = adopted_analysis(s, rnd.campaign_id, spec)
        wells, quarantined, layout, frames = plate_inputs(s, rnd, time_point)
        exps = {
            e.position: e for e in s.exec(select(Experiment).where(Experiment.round_id == round_id))
        }
        rnd.analysis_version = version
        try:
            result = run_analyzer(analyzer_name, settings, frames, layout)
        except AnalysisError as err:
            _fail_round(s, rnd, exps.values(), str(err), clock_s)
            if not still_adopted(s, rnd.campaign_id, version):
                s.rollback()
                return False
            s.commit()
            bus.publish(EventKind.PLATE_QC_FAILED, {"round": rnd.index + 1, "reason": str(err)})
            return True

        for name, wr in result.wells.items():
            w = wells[name]
            if wr.metrics:  # a well without images stays 'planned', with its flags recorded
                w.status = WellStatus.MEASURED.value
                s.add(w)
            for metric, value in _finite(wr.metrics).items():
                s.add(
                    Measurement(
                        campaign_id=rnd.campaign_id,
                        round_id=round_id,
                        well_id=w.id,
                        experiment_id=w.experiment_id,
                        metric=metric,
                        value=value,
                        flags=list(wr.flags),
                        analysis_version=version,
                        time_point=time_point,
                    )
                )
        measured = 0
        for pos, exp in exps.items():
            score = result.experiments.get(pos)
            values = _finite(score.values) if score else {}
            if (
                not score
                or score.n_replicates == 0
                or not all(o.metric in values for o in spec.objectives)
            ):
                exp.status = ExperimentStatus.QUARANTINED.value
                exp.outcome_details = {
                    "reason": "no valid replicate well",
                    "flags": score.flags if score else [],
                }
                s.add(exp)
                continue
            exp.status = ExperimentStatus.MEASURED.value
            exp.outcomes = values
            exp.n_valid_replicates = score.n_replicates
            exp.outcome_details = {
                "sd": score.sd,
                "wells": score.wells,
                "flags": score.flags,
                "outliers": [o.model_dump(mode="json") for o in score.outliers],
            }
            s.add(exp)
            measured += 1
            for metric, value in values.items():
                s.add(
                    Measurement(
                        campaign_id=rnd.campaign_id,
                        round_id=round_id,
                        experiment_id=exp.id,
                        metric=metric,
                        value=value,
                        analysis_version=version,
                        time_point=time_point,
                    )
                )
            append_event(
                s,
                rnd.campaign_id,
                EventKind.MEASUREMENT_RECORDED,
                {
                    "experiment_id": exp.id,
                    "round": rnd.index + 1,
                    "outcomes": values,
                    "n_replicates": score.n_replicates,
                },
                clock_s=clock_s,
            )
        rnd.z_prime = {k: v for k, v in result.z_prime.items()}
        rnd.plate_ok = result.plate_ok
        rnd.status = RoundStatus.ANALYZED.value
        rnd.finished_clock_s = clock_s
        s.add(rnd)
        summary = {
            "round": rnd.index + 1,
            "plate": rnd.plate_id,
            "measured": measured,
            "analysis_version": version,
            "code_version": code_version(),
            "quarantined_wells": sorted(quarantined),
            "z_prime": rnd.z_prime,
            "plate_ok": result.plate_ok,
            "plate_flags": list(result.flags),
        }
        published = [(EventKind.ROUND_ANALYZED, summary)]
        if not result.plate_ok:
            published += gate_failed_plate(
                s, spec, rnd, exps.values(), qc_failures(result), summary, clock_s
            )
        append_event(
            s,
            rnd.campaign_id,
            EventKind.ROUND_ANALYZED,
            summary,
            clock_s=clock_s,
            bind_round=rnd.id,
        )
        if not still_adopted(s, rnd.campaign_id, version):
            s.rollback()
            return False
        failpoints.hit("before_analysis_commit")
        s.commit()
    for kind, payload in published:
        bus.publish(kind, payload)
    return True


def _fail_round(s: Session, rnd: Round, exps, reason: str, clock_s: float) -> None:
    """The plate cannot be scored (e.g. every control lost): its experiments are re-queued."""
    for exp in exps:
        exp.status = ExperimentStatus.QUARANTINED.value
        exp.outcome_details = {"reason": f"plate not analysable: {reason}"}
        s.add(exp)
    rnd.status = RoundStatus.FAILED.value
    rnd.finished_clock_s = clock_s
    s.add(rnd)
    append_event(
        s,
        rnd.campaign_id,
        EventKind.PLATE_QC_FAILED,
        {"round": rnd.index + 1, "reason": reason, "analysable": False},
        clock_s=clock_s,
        bind_round=rnd.id,
    )
