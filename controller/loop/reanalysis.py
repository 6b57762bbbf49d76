"""Re-analysis with provenance: new analysis versions of a campaign's stored images, and which
one the planner learns from.

``cellpilot reanalyze`` (:func:`reanalyze`) checks every stored image of the campaign's analysed
rounds against the SHA-256 the ledger recorded (a missing or altered file stops it before
anything is written), reads the images back, runs an analyzer with other settings (or another
analyzer) and records the result as analysis version N+1:

- an :class:`~controller.ledger.models.AnalysisVersion` row: analyzer, settings, code version
  (package version, git commit), who, when, a note, and per round what this version gives each
  experiment (status, outcomes, replicates, details) and the plate (Z', QC);
- :class:`~controller.ledger.models.Measurement` rows tagged with the version (per well and per
  experiment); earlier versions' rows stay;
- a sealed ``analysis_recorded`` event binding the version row and re-binding the rounds' rows,
  so ``cellpilot verify`` still holds and covers the new rows.

The experiment and round rows (what the planner, ``status``, the report and the console read)
hold the *adopted* version (``Campaign.analysis_version``; 1 is the original analysis).
Adopting another version (:func:`adopt`, ``reanalyze --adopt`` or ``analysis use``) is an
operator's decision, recorded as a sealed ``analysis_adopted`` event with who decided: it copies
the version's results onto the rows, and later rounds are analysed with its analyzer and
settings, so the planner learns from that version from its next round on.

Rules a re-analysis keeps (nothing physical follows from it silently):

- only rounds that were analysed (``analyzed`` or ``held``) are re-analysed; quarantined wells
  stay out, experiments already re-queued or failed keep their state;
- an operator's plate decision stands (accepted stays measured, excluded stays excluded);
- a plate that passed QC and fails it under the new version is held for a decision (or excluded
  when ``qc.on_fail`` is not ``hold``); an experiment without a valid replicate, or on a plate the
  new version cannot analyse, is excluded, never re-queued;
- a version can only be adopted if it covers every analysed round (re-analyse again to extend
  it after new rounds).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from sqlalchemy import Engine, func, update
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session, col, select

from analyzers import AnalysisError, get_analyzer
from controller.ledger.models import (
    AnalysisVersion,
    Campaign,
    Event,
    Experiment,
    ExperimentStatus,
    Measurement,
    RawData,
    Round,
    RoundStatus,
)
from controller.ledger.verify import sha256_file
from controller.loop.analysis import (
    _finite,
    adopted_analysis,
    code_version,
    plate_inputs,
    run_analyzer,
)
from controller.loop.events import EventKind, append_event
from controller.loop.exceptions import CampaignError
from controller.loop.qc_gate import qc_failures
from controller.spec import AnalyzerSpec, CampaignSpec

ANALYSED = (RoundStatus.ANALYZED.value, RoundStatus.HELD.value)
#: experiment states a re-analysis recomputes; the others (re-queued, failed, ...) are carried over
RECOMPUTED = (ExperimentStatus.MEASURED.value, ExperimentStatus.HELD.value, ExperimentStatus.EXCLUDED.value)


class ReanalysisError(CampaignError):
    """A re-analysis or an adoption cannot be done (unknown campaign or version, bad settings,
    a version that does not cover every analysed round)."""


class RawDataMismatch(ReanalysisError):
    """Stored images are missing or differ from the SHA-256 the ledger recorded."""

    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        more = f" (and {len(problems) - 3} more)" if len(problems) > 3 else ""
        super().__init__("raw data does not match the ledger, nothing re-analysed: "
                         + "; ".join(problems[:3]) + more)


def _campaign(s: Session, name: str) -> tuple[Campaign, CampaignSpec]:
    camp = s.exec(select(Campaign).where(Campaign.name == name)).first()
    if camp is None:
        raise ReanalysisError(f"no campaign named {name!r}")
    return camp, CampaignSpec.model_validate(camp.spec)


def _analysed_rounds(s: Session, campaign_id: int) -> list[Round]:
    return list(s.exec(select(Round).where(Round.campaign_id == campaign_id, col(Round.status).in_(ANALYSED))
                       .order_by(col(Round.index))))


def check_raw_files(s: Session, rounds: list[Round]) -> int:
    """Re-hash every stored image of ``rounds``; returns how many were checked.

    Raises:
        RawDataMismatch: a file is missing or its SHA-256 differs from the ledger's.
    """
    problems, n = [], 0
    ids = [r.id for r in rounds]
    for raw in s.exec(select(RawData).where(col(RawData.round_id).in_(ids)).order_by(col(RawData.id))):
        path = Path(raw.path)
        if not path.exists():
            problems.append(f"image file {path} (plate {raw.plate_id}, well {raw.well}) is missing")
        elif sha256_file(path) != raw.sha256:
            problems.append(f"image file {path} (plate {raw.plate_id}, well {raw.well}) was altered: its SHA-256 "
                            "differs from the ledger's")
        n += 1
    if problems:
        raise RawDataMismatch(problems)
    return n


def check_analyzer(spec: CampaignSpec, name: str, settings: dict[str, Any]) -> None:
    """The analyzer exists, takes these settings and produces the campaign's metrics.

    Raises:
        ReanalysisError: naming the field and why.
    """
    from controller.loop.preflight import CampaignConfigError, Checked, _typed, check_metrics

    try:
        analyzer = _typed("analyzer", lambda: get_analyzer(name))
        model = getattr(analyzer, "settings_model", None)
        validated = _typed("settings", lambda: model.model_validate(settings)) if model is not None else None
        if model is None and settings:
            raise CampaignConfigError("settings", f"analyzer {name!r} takes no settings")
        check_metrics(spec.model_copy(update={"analyzer": AnalyzerSpec(name=name, settings=settings)}),
                      Checked(None, None, analyzer, validated))  # type: ignore[arg-type]
    except CampaignConfigError as e:
        raise ReanalysisError(f"cannot re-analyse with analyzer {name!r}: {e}") from None


# ------------------------------------------------------------------------------ snapshots


def _live_experiment(e: Experiment) -> dict[str, Any]:
    return {"status": e.status, "outcomes": dict(e.outcomes or {}), "n_valid_replicates": e.n_valid_replicates,
            "outcome_details": dict(e.outcome_details or {})}


def snapshot_live(s: Session, camp: Campaign) -> dict[str, Any]:
    """What the experiment and round rows hold now (the adopted version), per analysed round."""
    out = {}
    for rnd in _analysed_rounds(s, camp.id):
        exps = s.exec(select(Experiment).where(Experiment.round_id == rnd.id).order_by(col(Experiment.id)))
        out[str(rnd.id)] = {"index": rnd.index, "plate": rnd.plate_id, "status": rnd.status,
                            "z_prime": dict(rnd.z_prime or {}), "plate_ok": rnd.plate_ok,
                            "experiments": {str(e.id): _live_experiment(e) for e in exps}}
    return out


def _recorded_code_versions(s: Session, campaign_id: int) -> dict[str, Any]:
    seen: list[Any] = []
    for ev in s.exec(select(Event).where(Event.campaign_id == campaign_id,
                                         Event.kind == EventKind.ROUND_ANALYZED.value)):
        cv = ev.payload.get("code_version")
        if cv is not None and cv not in seen:
            seen.append(cv)
    if len(seen) == 1:
        return seen[0]
    if seen:
        return {"package": None, "commit": None, "several": seen}
    return {"package": None, "commit": None, "note": "not recorded (analysed before code versions were recorded)"}


def _original_note(s: Session, campaign_id: int) -> str:
    amended = [ev.id for ev in s.exec(select(Event).where(Event.campaign_id == campaign_id,
                                                          Event.kind == EventKind.CAMPAIGN_AMENDED.value))
               if any(str(c).startswith("analyzer") for c in ev.payload.get("changed", []))]
    if amended:  # the settings recorded are the file's latest; earlier rounds ran under others
        return f"the original analysis; its analyzer settings were amended during the campaign (events {amended})"
    return "the original analysis"


def current_version_row(s: Session, camp: Campaign, spec: CampaignSpec, number: int) -> AnalysisVersion:
    """The row of version ``number``, the one adopted until now, with its results refreshed from
    the live rows, which it made (the row of version 1 is written here the first time: the
    campaign file's analyzer and settings)."""
    number, name, settings = adopted_analysis(s, camp.id, spec, number)
    row = s.exec(select(AnalysisVersion).where(AnalysisVersion.campaign_id == camp.id,
                                               AnalysisVersion.number == number)).first()
    if row is None:
        row = AnalysisVersion(campaign_id=camp.id, number=number, analyzer=name, settings=settings,
                              code_version=_recorded_code_versions(s, camp.id), note=_original_note(s, camp.id))
    row.results = snapshot_live(s, camp)
    s.add(row)
    s.flush()
    return row


# ------------------------------------------------------------------------------ re-analysis


def _details(score: Any, number: int) -> dict[str, Any]:
    return {"sd": score.sd, "wells": score.wells, "flags": score.flags,
            "outliers": [o.model_dump(mode="json") for o in score.outliers], "analysis_version": number}


def _experiment_result(e: Experiment, score: Any, spec: CampaignSpec, plate_ok: bool, failures: list[str],
                       number: int) -> dict[str, Any]:
    """What version ``number`` gives one experiment (see the module's rules)."""
    if e.status not in RECOMPUTED:
        return _live_experiment(e) | {"carried": True}
    values = _finite(score.values) if score else {}
    details: dict[str, Any] = _details(score, number) if score else {"analysis_version": number}
    out = {"outcomes": values, "n_valid_replicates": score.n_replicates if score else 0, "outcome_details": details}
    decision = ((e.outcome_details or {}).get("qc") or {})
    if not score or score.n_replicates == 0 or not all(o.metric in values for o in spec.objectives):
        details["reason"] = f"no valid replicate well under analysis version {number}"
        return out | {"status": ExperimentStatus.EXCLUDED.value}
    if decision.get("decision") in ("accept", "exclude"):
        details["qc"] = decision  # an operator's decision on the plate stands
        status = ExperimentStatus.MEASURED if decision["decision"] == "accept" else ExperimentStatus.EXCLUDED
        return out | {"status": status.value}
    if plate_ok:
        return out | {"status": ExperimentStatus.MEASURED.value}
    action = spec.qc.on_fail
    details["qc"] = {"failures": failures, "action": action if action == "hold" else "exclude"}
    status = ExperimentStatus.HELD if action == "hold" else ExperimentStatus.EXCLUDED
    return out | {"status": status.value}


def _reanalyse_round(s: Session, spec: CampaignSpec, rnd: Round, name: str, settings: dict[str, Any],
                     number: int, rows: list[Measurement]) -> dict[str, Any]:
    """Analyse one round's stored images with version ``number``'s analyzer; append its
    measurement rows to ``rows`` (added at the end: nothing is written, and no write lock
    held, while images are analysed); return the round's results."""
    # a time-course plate is scored at its end point (its decision points' counts are not redone)
    end = s.exec(select(func.max(RawData.time_point)).where(RawData.round_id == rnd.id)).one()
    wells, _quarantined, layout, frames = plate_inputs(s, rnd, end)
    exps = list(s.exec(select(Experiment).where(Experiment.round_id == rnd.id).order_by(col(Experiment.id))))
    base = {"index": rnd.index, "plate": rnd.plate_id}
    try:
        result = run_analyzer(name, settings, frames, layout)
    except AnalysisError as err:
        reason = f"plate not analysable under analysis version {number}: {err}"
        excluded = {"status": ExperimentStatus.EXCLUDED.value, "outcomes": {}, "n_valid_replicates": 0,
                    "outcome_details": {"reason": reason, "analysis_version": number}}
        res = {str(e.id): excluded if e.status in RECOMPUTED else _live_experiment(e) | {"carried": True}
               for e in exps}
        return base | {"status": RoundStatus.ANALYZED.value, "z_prime": {}, "plate_ok": False, "error": str(err),
                       "experiments": res}
    for well_name, wr in result.wells.items():
        w = wells[well_name]
        for metric, value in _finite(wr.metrics).items():
            rows.append(Measurement(campaign_id=rnd.campaign_id, round_id=rnd.id, well_id=w.id,
                                    experiment_id=w.experiment_id, metric=metric, value=value, flags=list(wr.flags),
                                    analysis_version=number, time_point=end))
    failures = [] if result.plate_ok else qc_failures(result)
    out = {}
    for e in exps:
        r = _experiment_result(e, result.experiments.get(e.position), spec, bool(result.plate_ok), failures, number)
        out[str(e.id)] = r
        if not r.get("carried"):
            for metric, value in r["outcomes"].items():
                rows.append(Measurement(campaign_id=rnd.campaign_id, round_id=rnd.id, experiment_id=e.id,
                                        metric=metric, value=value, analysis_version=number, time_point=end))
    held = any(r["status"] == ExperimentStatus.HELD.value for r in out.values())
    return base | {"status": RoundStatus.HELD.value if held else RoundStatus.ANALYZED.value,
                   "z_prime": dict(result.z_prime), "plate_ok": bool(result.plate_ok), "qc_failures": failures,
                   "experiments": out}


def compare(a: dict[str, Any], b: dict[str, Any]) -> dict[str, int]:
    """How many experiments two versions' results give other statuses or outcomes."""
    n_status = n_outcomes = 0
    for rid, rr in b.items():
        for eid, er in rr["experiments"].items():
            old = a.get(rid, {}).get("experiments", {}).get(eid)
            if old is None:
                continue
            n_status += old["status"] != er["status"]
            n_outcomes += old["outcomes"] != er["outcomes"]
    return {"status_changed": n_status, "outcomes_changed": n_outcomes}


def reanalyze(db: Engine, campaign: str, *, actor: str, analyzer: str | None = None,
              settings: dict[str, Any] | None = None, note: str | None = None,
              claimed_as: str | None = None, adopt_it: bool = False) -> dict[str, Any]:
    """Re-analyse the campaign's stored images into a new analysis version (see the module).

    Args:
        analyzer: registered analyzer name (default: the adopted version's).
        settings: the analyzer's settings, complete (default: the adopted version's with the same
            analyzer, the analyzer's defaults with another).
        adopt_it: then adopt the new version (a second transaction, see :func:`adopt`).

    Returns:
        The new version's summary (number, analyzer, settings, code version, rounds, files
        checked, how many experiments changed, whether it was adopted).

    Raises:
        RawDataMismatch: a stored image is missing or altered (nothing is written).
        ReanalysisError: unknown campaign, bad analyzer or settings, nothing analysed yet.
    """
    with Session(db) as s:
        camp, spec = _campaign(s, campaign)
        _, current_name, current_settings = adopted_analysis(s, camp.id, spec)
        name = analyzer or current_name
        chosen = dict(settings) if settings is not None else (dict(current_settings) if name == current_name else {})
        check_analyzer(spec, name, chosen)
        rounds = _analysed_rounds(s, camp.id)
        if not rounds:
            raise ReanalysisError(f"campaign {campaign!r} has no analysed round to re-analyse")
        n_files = check_raw_files(s, rounds)
        numbers = list(s.exec(select(AnalysisVersion.number).where(AnalysisVersion.campaign_id == camp.id)))
        number = max([*numbers, camp.analysis_version]) + 1
        measurements: list[Measurement] = []
        results = {str(r.id): _reanalyse_round(s, spec, r, name, chosen, number, measurements) for r in rounds}
        row = AnalysisVersion(campaign_id=camp.id, number=number, analyzer=name, settings=chosen,
                              code_version=code_version(), results=results, created_by=actor, note=note)
        try:
            s.add_all(measurements)
            current = current_version_row(s, camp, spec, camp.analysis_version)
            s.add(row)
            s.flush()
        except IntegrityError:
            raise ReanalysisError(f"another analysis version of {campaign!r} was recorded meanwhile; "
                                  "run the re-analysis again") from None
        summary = {"version": number, "analyzer": name, "settings": chosen, "code_version": row.code_version,
                   "based_on": current.number, "rounds": [r.index + 1 for r in rounds], "raw_files_checked": n_files,
                   "note": note, **compare(current.results, results)}
        append_event(s, camp.id, EventKind.ANALYSIS_RECORDED,
                     summary | ({"claimed_as": claimed_as} if claimed_as else {}), actor=actor, clock_s=camp.clock_s,
                     bind=[current, row], bind_round=[r.id for r in rounds if r.id is not None])
        s.commit()
    summary["campaign"] = campaign
    summary["adopted"] = False
    if adopt_it:
        summary["adoption"] = adopt(db, campaign, number, actor, reason=note or "adopted on re-analysis",
                                    claimed_as=claimed_as)
        summary["adopted"] = True
    return summary


# ------------------------------------------------------------------------------ adoption


def adopt(db: Engine, campaign: str, number: int, actor: str, *, reason: str | None = None,
          claimed_as: str | None = None) -> dict[str, Any]:
    """Make the campaign plan from analysis version ``number`` from its next round on.

    Raises:
        ReanalysisError: unknown campaign or version, already adopted, or the version does not
            cover every analysed round.
    """
    with Session(db) as s:
        camp, spec = _campaign(s, campaign)
        row = s.exec(select(AnalysisVersion).where(AnalysisVersion.campaign_id == camp.id,
                                                   AnalysisVersion.number == number)).first()
        if row is None:
            raise ReanalysisError(f"campaign {campaign!r} has no analysis version {number} "
                                  "(cellpilot status --campaign NAME lists them)")
        previous = camp.analysis_version
        if previous == number:
            raise ReanalysisError(f"campaign {campaign!r} already plans from analysis version {number}")
        # First take the campaign row (a round being analysed meanwhile redoes its analysis with
        # the new version, see analysis.still_adopted); then every read sees committed rounds.
        claimed = s.exec(update(Campaign).where(col(Campaign.id) == camp.id,
                                                col(Campaign.analysis_version) == previous)
                         .values(analysis_version=number))
        if claimed.rowcount != 1:
            raise ReanalysisError(f"campaign {campaign!r} changed its analysis version meanwhile; try again")
        old = current_version_row(s, camp, spec, previous)
        missing = [r for r in _analysed_rounds(s, camp.id) if str(r.id) not in row.results]
        if missing:
            raise ReanalysisError(
                f"analysis version {number} does not cover round(s) {[r.index + 1 for r in missing]}, analysed "
                f"since it was made; re-analyse with the same settings (cellpilot reanalyze --campaign {campaign} "
                f"--analyzer {row.analyzer} --settings FILE) and adopt that version")
        held = _apply(s, row)
        payload = {"version": number, "previous": previous, "analyzer": row.analyzer, "reason": reason,
                   "rounds": [rr["index"] + 1 for rr in row.results.values()], "held_plates": held,
                   **compare(old.results, row.results)}
        if claimed_as:
            payload["claimed_as"] = claimed_as
        append_event(s, camp.id, EventKind.ANALYSIS_ADOPTED, payload, actor=actor, clock_s=camp.clock_s,
                     bind=[old, row], bind_round=[int(rid) for rid in row.results])
        for rr in row.results.values():  # as the QC gate records a held plate
            if rr["status"] == RoundStatus.HELD.value and rr["plate"] in held:
                append_event(s, camp.id, EventKind.PLATE_HELD, {
                    "round": rr["index"] + 1, "plate": rr["plate"], "failures": rr.get("qc_failures", []),
                    "analysis_version": number}, clock_s=camp.clock_s)
        s.commit()
    return payload


def _apply(s: Session, row: AnalysisVersion) -> list[str]:
    """Copy a version's results onto the round and experiment rows; returns plates now held."""
    held = []
    for rid, rr in row.results.items():
        rnd = s.get(Round, int(rid))
        rnd.status, rnd.z_prime, rnd.plate_ok = rr["status"], rr["z_prime"], rr["plate_ok"]
        rnd.analysis_version = row.number
        s.add(rnd)
        if rr["status"] == RoundStatus.HELD.value:
            held.append(rnd.plate_id)
        for eid, er in rr["experiments"].items():
            if er.get("carried"):  # not recomputed: the row's own state (it may have moved on) stands
                continue
            e = s.get(Experiment, int(eid))
            e.status, e.outcomes = er["status"], er["outcomes"]
            e.n_valid_replicates, e.outcome_details = er["n_valid_replicates"], er["outcome_details"]
            s.add(e)
    return held
