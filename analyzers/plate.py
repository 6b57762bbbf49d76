"""Plate analysis: frames of every well + the plate layout → well metrics, QC and scores.

Registered as the ``"nuclei_coculture"`` analyzer. Steps:

1. segment and measure every field (:func:`analyzers.features.measure_field`);
2. fit one marker (GFP) threshold over all nuclei of the plate and classify tumour / normal;
3. per-well metrics with field QC flags (:func:`analyzers.features.well_metrics`); empty
   regions (bubbles) are judged against the gap law of this plate's own fields
   (:func:`analyzers.qc.gap_flags`, ``field_qc_rule: calibrated``), since how far apart clean
   nuclei lie depends on how the cells clump;
4. measure the plate's well-to-well spread of each line's count, beyond counting noise
   (:func:`analyzers.outliers.estimate_sigma`, over replicate groups and vehicle wells);
5. control wells (vehicle, positive, time zero): outliers called against that spread and left
   out; each reference is the mean of the kept wells (:mod:`analyzers.qc`), so one empty
   vehicle well moves no viability by more than the loss of one sample;
6. normalise to the vehicle reference: ``tumour_viability`` = tumour_count / reference
   tumour_count, ``normal_viability`` likewise, ``selectivity`` = normal − tumour viability,
   ``cell_viability`` from cell_count; with time-zero wells also GR values (``tumour_gr``,
   ``normal_gr``, ``selectivity_gr``; :mod:`analyzers.growth`);
7. replicate outliers called against the same spread (``outlier_rule: calibrated``; the
   earlier per-experiment MAD rule is ``outlier_rule: mad``), then experiment scores from the
   kept replicates (:mod:`analyzers.scoring`);
8. QC (:class:`analyzers.qc.PlateQC`): Z'-factor ``1 − 3(σp + σn) / |μp − μn|`` per line from
   the kept controls, the vehicle wells' CV per line, the share of sample wells left out; the
   plate is ok when every check in the settings passes (``z_prime_min`` for each of
   ``qc_z_prime_metrics``, ``max_control_cv``, ``max_flagged_fraction``). The default Z' bound
   0.5 is the usual "excellent assay" bound; lower it (0.3–0.4) for assays whose positive
   control only partly kills, and say so in the campaign file.

The analyzer never reads the frames' metadata dict (a simulator's ground truth lives there).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from analyzers.exceptions import MissingControls, MissingImages
from analyzers.features import (
    FieldMeasurement,
    MarkerThreshold,
    fit_marker_threshold,
    measure_field,
    well_metrics,
)
from analyzers.growth import gr_value
from analyzers.nuclei import segmentation_params
from analyzers.outliers import estimate_sigma, group_outliers
from analyzers.parallel import map_with_kwargs
from analyzers.qc import (
    ControlGroup,
    PlateQC,
    control_group,
    field_dispersion,
    gap_flags,
    z_prime,
)
from analyzers.scoring import SCORE_METRICS, ExperimentScore, OutlierRecord, score_experiments
from analyzers.settings import AnalysisSettings
from instruments.interfaces import Frame
from protocols.layout import PlateLayout, WellRole

__all__ = [
    "AnalysisSettings",
    "PlateAnalysis",
    "PlateMeasurements",
    "WellResult",
    "analyze_measurements",
    "analyze_plate",
    "measure_plate",
    "replace_wells",
    "z_prime",
]

ANALYZER_NAME = "nuclei_coculture"


class WellResult(BaseModel):
    """Metrics and QC flags of one well."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    well: str
    role: WellRole | None = None
    experiment: int | None = None
    replicate: int = 0
    metrics: dict[str, float] = Field(default_factory=dict, description="metric -> value")
    flags: list[str] = Field(default_factory=list, description="QC reasons; empty when clean")
    flagged_fields: list[int] = Field(default_factory=list)


class PlateAnalysis(BaseModel):
    """Everything the analyzer concluded about one plate."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate_id: str
    analyzer: str = ANALYZER_NAME
    settings: AnalysisSettings
    marker_threshold: float
    marker_threshold_method: str = Field(description="otsu | fixed | fallback")
    wells: dict[str, WellResult]
    z_prime: dict[str, float | None] = Field(description="metric -> Z' (None: undefined)")
    plate_ok: bool = Field(description="every QC check passed (qc.failures is empty)")
    flags: list[str] = Field(default_factory=list, description="plate-level QC notes")
    experiments: dict[int, ExperimentScore]
    qc: PlateQC
    controls: dict[str, ControlGroup] = Field(
        default_factory=dict, description="role -> control wells, outliers and references"
    )

    @property
    def qc_failures(self) -> list[str]:
        """Why the plate failed QC (empty when ``plate_ok``)."""
        return list(self.qc.failures)


def _measure_plate(
    frames_by_well: Mapping[str, Sequence[Frame]], wells: Sequence[str], s: AnalysisSettings
) -> dict[str, list[FieldMeasurement]]:
    def params(frame: Frame) -> dict[str, Any]:
        p = segmentation_params(s.nucleus_diameter_um / frame.pixel_size_um)
        for key in p:
            if getattr(s, key) is not None:
                p[key] = getattr(s, key)
        return {
            **p,
            "min_snr": s.min_snr,
            "texture_aware": s.texture_aware,
            "method": s.segmentation_method,
        }

    fixed = {"nuclear_channel": s.nuclear_channel, "marker_channel": s.marker_channel,
             "marker_split_snr": s.marker_split_snr}  # fmt: skip
    items = [(f, {**fixed, **params(f)}) for w in wells for f in frames_by_well[w]]
    measured = iter(map_with_kwargs(measure_field, items, sum(f.image.size for f, _ in items)))
    return {w: [next(measured) for _ in frames_by_well[w]] for w in wells}


def _normalise(
    metrics: dict[str, dict[str, float]], vehicle: ControlGroup, flags: list[str]
) -> None:
    """Add viabilities and selectivity to every well, relative to the kept vehicle wells."""
    for name, m in (
        ("tumour_viability", "tumour_count"),
        ("normal_viability", "normal_count"),
        ("cell_viability", "cell_count"),
    ):
        ref = vehicle.reference.get(m, 0.0)
        if ref <= 0:
            flags.append(f"negative controls have no {m.split('_')[0]} nuclei: {name} undefined")
            continue
        for w in metrics:
            metrics[w][name] = metrics[w][m] / ref
    for w in metrics:
        if "tumour_viability" in metrics[w] and "normal_viability" in metrics[w]:
            metrics[w]["selectivity"] = (
                metrics[w]["normal_viability"] - metrics[w]["tumour_viability"]
            )


def _growth_rates(
    metrics: dict[str, dict[str, float]],
    time_zero: ControlGroup,
    vehicle: ControlGroup,
    flags: list[str],
) -> None:
    """Add GR values (``tumour_gr``, ``normal_gr``, ``selectivity_gr``) when time-zero wells
    were imaged."""
    if not time_zero.used:
        return
    for name, m in (("tumour_gr", "tumour_count"), ("normal_gr", "normal_count")):
        x0, xc = time_zero.reference.get(m, 0.0), vehicle.reference.get(m, 0.0)
        if gr_value(xc, x0, xc) is None:
            flags.append(
                f"{name} undefined: vehicle {m} {xc:.4g} did not grow from {x0:.4g} at time zero"
            )
            continue
        for w in metrics:
            gr = gr_value(metrics[w][m], x0, xc)
            if w not in time_zero.wells and gr is not None:
                metrics[w][name] = gr
    for w in metrics:
        if "tumour_gr" in metrics[w] and "normal_gr" in metrics[w]:
            metrics[w]["selectivity_gr"] = metrics[w]["normal_gr"] - metrics[w]["tumour_gr"]


def analyze_plate(
    frames_by_well: Mapping[str, Sequence[Frame]],
    layout: PlateLayout,
    settings: AnalysisSettings | None = None,
) -> PlateAnalysis:
    """Analyse one co-culture plate.

    Args:
        frames_by_well: well name → its frames (each a ``(C, Y, X)`` stack holding the
            nuclear and marker channels). Wells of the layout without frames are flagged.
        layout: which wells are samples (of which experiment), controls and time zero.
        settings: analysis settings; defaults when None.

    Raises:
        MissingImages: no well of the layout has frames.
        MissingControls: no negative control (or, when required, positive control) well
            has frames.
        MissingChannel: a frame lacks the nuclear or marker channel.
    """
    s = settings or AnalysisSettings()
    return analyze_measurements(measure_plate(frames_by_well, layout, s), s)


analyze_plate.settings_model = AnalysisSettings  # type: ignore[attr-defined]
# What campaign files may name as objectives/constraints, and the channels the plate must have.
analyze_plate.metrics = SCORE_METRICS  # type: ignore[attr-defined]
analyze_plate.channels = lambda s: {s.nuclear_channel, s.marker_channel}  # type: ignore[attr-defined]


@dataclass(frozen=True)
class PlateMeasurements:
    """A plate's segmented fields and marker threshold: the expensive part of an analysis.

    :func:`analyze_measurements` turns them into metrics, QC and scores in milliseconds, so
    scoring settings can be compared (or revised) without segmenting again. Segmentation
    settings act in :func:`measure_plate`.
    """

    layout: PlateLayout
    fields: dict[str, list[FieldMeasurement]]
    threshold: MarkerThreshold
    roles: dict[WellRole, list[str]]
    flags: list[str]

    @property
    def imaged(self) -> list[str]:
        return list(self.fields)


def measure_plate(
    frames_by_well: Mapping[str, Sequence[Frame]],
    layout: PlateLayout,
    settings: AnalysisSettings | None = None,
) -> PlateMeasurements:
    """Segment and measure every field of the layout's imaged wells; fit the marker threshold.

    Raises:
        MissingImages, MissingControls, MissingChannel: as :func:`analyze_plate`.
    """
    s = settings or AnalysisSettings()
    flags: list[str] = []
    imaged, roles = _check_inputs(frames_by_well, layout, s, flags)
    fields = _measure_plate(frames_by_well, imaged, s)
    return PlateMeasurements(layout, fields, _refit_threshold(fields, s, flags), roles, flags)


def _refit_threshold(
    fields: Mapping[str, Sequence[FieldMeasurement]], s: AnalysisSettings, flags: list[str]
) -> MarkerThreshold:
    return _plate_threshold([f for fs in fields.values() for f in fs], s, flags)


def replace_wells(
    measured: PlateMeasurements,
    frames_by_well: Mapping[str, Sequence[Frame]],
    settings: AnalysisSettings | None = None,
) -> PlateMeasurements:
    """``measured`` with some wells measured again from new frames (threshold refitted)."""
    s = settings or AnalysisSettings()
    fields = {**measured.fields, **_measure_plate(frames_by_well, list(frames_by_well), s)}
    flags = [f for f in measured.flags if "marker not bimodal" not in f]
    return PlateMeasurements(
        measured.layout, fields, _refit_threshold(fields, s, flags), measured.roles, flags
    )


def analyze_measurements(
    measured: PlateMeasurements, settings: AnalysisSettings | None = None
) -> PlateAnalysis:
    """Metrics, QC and scores of a measured plate (see the module docstring, steps 3–8)."""
    s = settings or AnalysisSettings()
    layout, fields, thr, roles = (
        measured.layout,
        measured.fields,
        measured.threshold,
        measured.roles,
    )
    imaged = measured.imaged
    plate_flags = list(measured.flags)
    metrics: dict[str, dict[str, float]] = {}
    well_flags: dict[str, tuple[list[str], list[int]]] = {}
    calibrated_gaps = s.field_qc_rule == "calibrated"
    gaps = _gap_flags(fields, s) if calibrated_gaps else {}
    # the field count test's Poisson SDs, widened by the overdispersion measured on the plate
    phi = field_dispersion({w: [f.n_nuclei for f in fields[w]] for w in imaged})
    count_z = s.field_count_z * math.sqrt(phi) if calibrated_gaps else s.field_count_z
    for w in imaged:
        m, fl, ff = well_metrics(
            fields[w], thr.value, field_count_tolerance=s.field_count_tolerance,
            exclude_flagged_fields=s.exclude_flagged_fields, field_count_z=count_z,
            empty_region_factor=math.inf if calibrated_gaps else s.field_empty_region_factor,
        )  # fmt: skip
        if w in gaps:
            gap_reasons, gap_fields = gaps[w]
            if s.exclude_flagged_fields:
                kept = [f for f in fields[w] if f.field not in gap_fields and f.field not in ff]
                m = well_metrics(kept or fields[w], thr.value, field_count_z=math.inf,
                                 empty_region_factor=math.inf)[0]  # fmt: skip
            fl, ff = fl + gap_reasons, sorted({*ff, *gap_fields})
        metrics[w], well_flags[w] = m, (fl, ff)
    sigma = _variability(metrics, layout, roles, s)
    controls = {
        role.value: control_group(
            role.value, roles[role], metrics, sigma, s.control_outlier_k, s.outlier_count_metrics
        )
        for role in (WellRole.NEGATIVE_CONTROL, WellRole.POSITIVE_CONTROL, WellRole.TIME_ZERO)
    }
    vehicle = controls[WellRole.NEGATIVE_CONTROL.value]
    _normalise(metrics, vehicle, plate_flags)
    _growth_rates(metrics, controls[WellRole.TIME_ZERO.value], vehicle, plate_flags)

    excluded = {
        w: "; ".join(fl) for w, (fl, _) in well_flags.items() if fl
    } if s.exclude_flagged_wells_from_scores else {}  # fmt: skip
    outliers = _replicate_outliers(metrics, layout, sigma, excluded, s)
    experiments = score_experiments(
        metrics, layout, metrics=SCORE_METRICS, outlier_metrics=s.outlier_metrics,
        k=s.outlier_mad_k, rel_floor=s.outlier_rel_floor, excluded_wells=excluded,
        outliers=outliers,
    )  # fmt: skip
    qc = _judge_plate(metrics, controls, experiments, sigma, layout, s)
    qc = qc.model_copy(update={"field_dispersion": phi})
    plate_flags += qc.failures
    notes = {w: r for c in controls.values() for w, r in c.outliers.items()}
    notes.update({o.well: o.reason for e in experiments.values() for o in e.outliers})
    notes.update(single_agent_outliers(metrics, layout, sigma, s))
    wells = {}
    for w, a in layout.by_well().items():
        fl, ff = well_flags.get(w, (["no images"], []))
        wells[w] = WellResult(
            well=w, role=a.role, experiment=a.experiment, replicate=a.replicate,
            metrics=metrics.get(w, {}), flags=fl + ([notes[w]] if w in notes else []),
            flagged_fields=ff,
        )  # fmt: skip
    return PlateAnalysis(
        plate_id=layout.plate_id, settings=s, marker_threshold=thr.value,
        marker_threshold_method=thr.method, wells=wells, z_prime=qc.z_prime, plate_ok=qc.ok,
        flags=plate_flags, experiments=experiments, qc=qc, controls=controls,
    )  # fmt: skip


def _gap_flags(
    fields: Mapping[str, Sequence[FieldMeasurement]], s: AnalysisSettings
) -> dict[str, tuple[list[str], list[int]]]:
    """Wells with empty regions beyond this plate's clean-field gap law (:func:`gap_flags`)."""
    table = {}
    for w, fs in fields.items():
        median = float(np.median([f.n_nuclei for f in fs])) if fs else 0.0
        table[w] = [(f.field, f.largest_gap_px, f.field_area_px, median) for f in fs]
    return gap_flags(table, s.field_gap_alpha)[0]


def _variability(
    metrics: Mapping[str, Mapping[str, float]],
    layout: PlateLayout,
    roles: Mapping[WellRole, list[str]],
    s: AnalysisSettings,
) -> dict[str, float]:
    """Count metric → the plate's well-to-well spread σ, from replicate groups and vehicle wells."""
    groups = [
        [w for w in layout.wells_of(e) if w in metrics]
        for e in sorted({a.experiment for a in layout.wells if a.experiment is not None})
    ]
    groups.append(list(roles[WellRole.NEGATIVE_CONTROL]))
    sigma = {}
    for m in s.outlier_count_metrics:
        data = [[(metrics[w][m], metrics[w].get("n_fields", 1.0)) for w in g] for g in groups]
        sigma[m], _ = estimate_sigma(data)
    return sigma


def _replicate_outliers(
    metrics: Mapping[str, Mapping[str, float]],
    layout: PlateLayout,
    sigma: Mapping[str, float],
    excluded: Mapping[str, str],
    s: AnalysisSettings,
) -> dict[str, OutlierRecord] | None:
    """Sample wells left out of their experiment's score by the calibrated rule (None: the
    ``mad`` rule decides inside :func:`~analyzers.scoring.score_experiments`)."""
    if s.outlier_rule == "mad":
        return None
    keys = (*s.outlier_count_metrics, "n_fields")
    out: dict[str, OutlierRecord] = {}
    for e in sorted({a.experiment for a in layout.wells if a.experiment is not None}):
        wells = [w for w in layout.wells_of(e) if w in metrics and w not in excluded]
        counts = {w: {m: metrics[w][m] for m in keys if m in metrics[w]} for w in wells}
        for w, call in group_outliers(counts, sigma, s.outlier_k).items():
            out[w] = OutlierRecord(
                well=w, metric=call.metric, value=counts[w][call.metric], median=call.median,
                reason=f"{call.reason} > {s.outlier_k:g}",
            )  # fmt: skip
    return out


def single_agent_outliers(
    metrics: Mapping[str, Mapping[str, float]],
    layout: PlateLayout,
    sigma: Mapping[str, float],
    s: AnalysisSettings,
) -> dict[str, str]:
    """Single-agent wells (same drug, same dose) tested like replicates: well -> reason."""
    groups: dict[tuple[tuple[str, float], ...], list[str]] = {}
    for a in layout.wells:
        if a.role is WellRole.SINGLE_AGENT and a.well in metrics:
            groups.setdefault(tuple(sorted(a.doses_um.items())), []).append(a.well)
    keys = (*s.outlier_count_metrics, "n_fields")
    out = {}
    for wells in groups.values():
        counts = {w: {m: metrics[w][m] for m in keys if m in metrics[w]} for w in wells}
        for w, call in group_outliers(counts, sigma, s.outlier_k).items():
            out[w] = f"single-agent well left out: {call.reason} > {s.outlier_k:g}"
    return out


def _check_inputs(
    frames_by_well: Mapping[str, Sequence[Frame]],
    layout: PlateLayout,
    s: AnalysisSettings,
    plate_flags: list[str],
) -> tuple[list[str], dict[WellRole, list[str]]]:
    """Imaged layout wells and imaged wells per role; raises when controls are missing."""
    assignments = layout.by_well()
    imaged = [w for w in assignments if frames_by_well.get(w)]
    missing = [w for w in assignments if w not in imaged]
    if not imaged:
        raise MissingImages(f"plate {layout.plate_id}: no frames for any layout well", missing)
    if missing:
        plate_flags.append(f"wells without images: {', '.join(missing)}")
    extra = sorted(set(frames_by_well) - set(assignments))
    if extra:
        plate_flags.append(f"frames for wells not in the layout ignored: {', '.join(extra)}")
    roles = {r: [w for w in layout.wells_with_role(r) if w in imaged] for r in WellRole}
    if not roles[WellRole.NEGATIVE_CONTROL]:
        raise MissingControls(
            f"plate {layout.plate_id}: no imaged negative-control well", "negative_control"
        )
    if s.require_positive_controls and not roles[WellRole.POSITIVE_CONTROL]:
        raise MissingControls(
            f"plate {layout.plate_id}: no imaged positive-control well", "positive_control"
        )
    return imaged, roles


def _plate_threshold(
    fields: Sequence[FieldMeasurement], s: AnalysisSettings, plate_flags: list[str]
) -> MarkerThreshold:
    thr = fit_marker_threshold(
        np.concatenate([f.marker_mean for f in fields]),
        [f.marker_noise_sigma for f in fields],
        fixed=s.marker_threshold,
        min_separation=s.marker_min_separation,
        fallback_snr=s.marker_fallback_snr,
    )
    if thr.method == "fallback":
        plate_flags.append(
            f"marker not bimodal on this plate; noise-based threshold {thr.value:.4g}"
        )
    return thr


def _judge_plate(
    metrics: Mapping[str, Mapping[str, float]],
    controls: Mapping[str, ControlGroup],
    experiments: Mapping[int, ExperimentScore],
    sigma: Mapping[str, float],
    layout: PlateLayout,
    s: AnalysisSettings,
) -> PlateQC:
    """Z' per count metric from the kept controls, control CVs, flagged share, the verdict."""
    pos = controls[WellRole.POSITIVE_CONTROL.value].used
    neg = controls[WellRole.NEGATIVE_CONTROL.value]
    z = {
        m: z_prime([metrics[w][m] for w in pos], [metrics[w][m] for w in neg.used])
        for m in ("tumour_count", "normal_count", "cell_count")
    }
    failures = []
    for m in s.z_prime_checks:
        zp = z.get(m)
        if zp is None:
            failures.append(f"Z'({m}) undefined: needs 2+ kept wells of each control")
        elif zp < s.z_prime_min:
            failures.append(f"Z'({m}) = {zp:.3f} < {s.z_prime_min:g}: plate suspect")
    for m in ("tumour_count", "normal_count"):
        cv = neg.cv.get(m)
        if cv is not None and cv > s.max_control_cv:
            failures.append(f"vehicle {m} CV {cv:.1%} > {s.max_control_cv:.0%}")
    sample = [w for e in experiments.values() for w in e.wells]
    left_out = {o.well for e in experiments.values() for o in e.outliers}
    fraction = len(left_out) / len(sample) if sample else 0.0
    if fraction > s.max_flagged_fraction:
        failures.append(
            f"{len(left_out)} of {len(sample)} sample wells left out ({fraction:.0%} > "
            f"{s.max_flagged_fraction:.0%})"
        )
    return PlateQC(
        z_prime=z,
        control_cv={m: v for m, v in neg.cv.items() if m != "cell_count"},
        control_outliers={w: r for c in controls.values() for w, r in c.outliers.items()},
        flagged_fraction=fraction,
        variability=dict(sigma),
        solvent=layout.solvent,
        solvent_percent=layout.solvent_percent,
        failures=failures,
    )
