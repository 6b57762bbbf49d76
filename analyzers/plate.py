"""Plate analysis: frames of every well + the plate layout → well metrics, Z' and scores.

Registered as the ``"nuclei_coculture"`` analyzer. Steps:

1. segment and measure every field (:func:`analyzers.features.measure_field`);
2. fit one marker (GFP) threshold over all nuclei of the plate and classify tumour / normal;
3. per-well metrics with field QC flags (:func:`analyzers.features.well_metrics`);
4. normalise to the mean of the negative-control wells: ``tumour_viability`` =
   tumour_count / mean negative-control tumour_count, ``normal_viability`` likewise,
   ``selectivity`` = normal_viability − tumour_viability, ``cell_viability`` from cell_count;
5. Z'-factor from positive vs negative controls, ``1 − 3(σp + σn) / |μp − μn|`` (sample SDs),
   on ``tumour_count`` and ``cell_count``; the plate is ok when the Z' of
   ``settings.z_prime_metric`` is at least ``settings.z_prime_min``. The default 0.5 is the
   usual "excellent assay" bound; a co-culture kill assay with a strong positive control
   reaches it with 4+ control wells per kind. Lower it (0.3–0.4) for assays whose positive
   control only partly kills, and say so in the campaign file;
6. experiment scores from replicate wells (:mod:`analyzers.scoring`).

The analyzer never reads the frames' metadata dict (a simulator's ground truth lives there).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

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
from analyzers.nuclei import segmentation_params
from analyzers.scoring import SCORE_METRICS, ExperimentScore, score_experiments
from instruments.interfaces import Frame
from protocols.layout import PlateLayout, WellRole

__all__ = ["AnalysisSettings", "PlateAnalysis", "WellResult", "analyze_plate", "z_prime"]

ANALYZER_NAME = "nuclei_coculture"


class AnalysisSettings(BaseModel):
    """Settings of the nuclei co-culture analyzer (all have working defaults).

    Segmentation sizes in pixels default to values scaled from ``nucleus_diameter_um`` and
    each frame's ``pixel_size_um`` (:func:`analyzers.nuclei.segmentation_params`); set a
    ``*_px`` field to override it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    nuclear_channel: str = "DAPI"
    marker_channel: str = Field(default="GFP", description="tumour marker channel")
    nucleus_diameter_um: float = Field(
        default=10.0, gt=0, description="typical nucleus diameter; scales the *_px defaults"
    )
    min_area_px: int | None = Field(default=None, ge=1, description="smaller objects dropped")
    max_area_px: int | None = Field(default=None, ge=1, description="larger: artefacts, flagged")
    smooth_sigma_px: float | None = Field(default=None, ge=0)
    background_block_px: int | None = Field(default=None, ge=8, description="several nuclei")
    min_snr: float = Field(default=5.0, gt=0, description="threshold floor in noise SDs")
    min_peak_distance_px: int | None = Field(default=None, ge=1, description="seed spacing")
    merge_area_px: int | None = Field(default=None, ge=0, description="merge smaller pieces")
    log_sigma_px: float | None = Field(default=None, ge=0, description="0: distance seeds")
    marker_threshold: float | None = Field(
        default=None, description="fixed marker threshold (counts); None fits it per plate"
    )
    marker_split_snr: float = Field(
        default=10.0, ge=0, description="split tumour+normal fused objects; 0 disables"
    )
    marker_min_separation: float = Field(
        default=4.0, gt=0, description="class-mean gap in pooled SDs for a two-population plate"
    )
    marker_fallback_snr: float = Field(default=10.0, gt=0)
    field_count_tolerance: float = Field(
        default=0.5, gt=0, description="flag a field off its well's median count by this fraction"
    )
    exclude_flagged_fields: bool = False
    exclude_flagged_wells_from_scores: bool = False
    z_prime_metric: str = Field(default="tumour_count", pattern="^(tumour_count|cell_count)$")
    z_prime_min: float = 0.5
    require_positive_controls: bool = True
    outlier_metrics: tuple[str, ...] = ("tumour_viability", "normal_viability")
    outlier_mad_k: float = Field(default=3.5, gt=0)
    outlier_rel_floor: float = Field(default=0.05, ge=0)


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
    plate_ok: bool
    flags: list[str] = Field(default_factory=list, description="plate-level QC notes")
    experiments: dict[int, ExperimentScore]


def z_prime(positive: Sequence[float], negative: Sequence[float]) -> float | None:
    """Z'-factor ``1 − 3(σp + σn) / |μp − μn|`` with sample SDs (ddof=1).

    Returns:
        None when either group has fewer than two values or the means are equal.
    """
    p, n = np.asarray(positive, np.float64), np.asarray(negative, np.float64)
    if p.size < 2 or n.size < 2:
        return None
    gap = abs(p.mean() - n.mean())
    if gap == 0:
        return None
    return float(1.0 - 3.0 * (p.std(ddof=1) + n.std(ddof=1)) / gap)


def _measure_plate(
    frames_by_well: Mapping[str, Sequence[Frame]], wells: Sequence[str], s: AnalysisSettings
) -> dict[str, list[FieldMeasurement]]:
    def params(frame: Frame) -> dict[str, float]:
        p = segmentation_params(s.nucleus_diameter_um / frame.pixel_size_um)
        for key in p:
            if getattr(s, key) is not None:
                p[key] = getattr(s, key)
        return {**p, "min_snr": s.min_snr}

    return {
        w: [
            measure_field(
                f,
                nuclear_channel=s.nuclear_channel,
                marker_channel=s.marker_channel,
                marker_split_snr=s.marker_split_snr,
                **params(f),
            )
            for f in frames_by_well[w]
        ]
        for w in wells
    }


def _normalise(
    metrics: dict[str, dict[str, float]], negatives: list[str], flags: list[str]
) -> None:
    """Add viabilities and selectivity to every well, relative to the negative controls."""
    ref = {
        m: float(np.mean([metrics[w][m] for w in negatives]))
        for m in ("tumour_count", "normal_count", "cell_count")
    }
    for name, m in (
        ("tumour_viability", "tumour_count"),
        ("normal_viability", "normal_count"),
        ("cell_viability", "cell_count"),
    ):
        if ref[m] <= 0:
            flags.append(f"negative controls have no {m.split('_')[0]} nuclei: {name} undefined")
            continue
        for w in metrics:
            metrics[w][name] = metrics[w][m] / ref[m]
    for w in metrics:
        if "tumour_viability" in metrics[w] and "normal_viability" in metrics[w]:
            metrics[w]["selectivity"] = (
                metrics[w]["normal_viability"] - metrics[w]["tumour_viability"]
            )


def analyze_plate(
    frames_by_well: Mapping[str, Sequence[Frame]],
    layout: PlateLayout,
    settings: AnalysisSettings | None = None,
) -> PlateAnalysis:
    """Analyse one co-culture plate.

    Args:
        frames_by_well: well name → its frames (each a ``(C, Y, X)`` stack holding the
            nuclear and marker channels). Wells of the layout without frames are flagged.
        layout: which wells are samples (of which experiment) and controls.
        settings: analysis settings; defaults when None.

    Raises:
        MissingImages: no well of the layout has frames.
        MissingControls: no negative control (or, when required, positive control) well
            has frames.
        MissingChannel: a frame lacks the nuclear or marker channel.
    """
    s = settings or AnalysisSettings()
    plate_flags: list[str] = []
    imaged, roles = _check_inputs(frames_by_well, layout, s, plate_flags)
    fields = _measure_plate(frames_by_well, imaged, s)
    thr = _plate_threshold([f for fs in fields.values() for f in fs], s, plate_flags)

    metrics: dict[str, dict[str, float]] = {}
    well_flags: dict[str, tuple[list[str], list[int]]] = {}
    for w in imaged:
        m, fl, ff = well_metrics(
            fields[w], thr.value, field_count_tolerance=s.field_count_tolerance,
            exclude_flagged_fields=s.exclude_flagged_fields,
        )  # fmt: skip
        metrics[w], well_flags[w] = m, (fl, ff)
    _normalise(metrics, roles[WellRole.NEGATIVE_CONTROL], plate_flags)
    z, plate_ok = _judge_plate(metrics, roles, s, plate_flags)

    wells = {}
    for w, a in layout.by_well().items():
        fl, ff = well_flags.get(w, (["no images"], []))
        wells[w] = WellResult(
            well=w, role=a.role, experiment=a.experiment, replicate=a.replicate,
            metrics=metrics.get(w, {}), flags=fl, flagged_fields=ff,
        )  # fmt: skip
    excluded = {w: "; ".join(r.flags) for w, r in wells.items() if r.flags and w in metrics}
    experiments = score_experiments(
        metrics, layout, metrics=SCORE_METRICS, outlier_metrics=s.outlier_metrics,
        k=s.outlier_mad_k, rel_floor=s.outlier_rel_floor,
        excluded_wells=excluded if s.exclude_flagged_wells_from_scores else None,
    )  # fmt: skip
    return PlateAnalysis(
        plate_id=layout.plate_id, settings=s, marker_threshold=thr.value,
        marker_threshold_method=thr.method, wells=wells, z_prime=z, plate_ok=plate_ok,
        flags=plate_flags, experiments=experiments,
    )  # fmt: skip


analyze_plate.settings_model = AnalysisSettings  # type: ignore[attr-defined]
# What campaign files may name as objectives/constraints, and the channels the plate must have.
analyze_plate.metrics = SCORE_METRICS  # type: ignore[attr-defined]
analyze_plate.channels = lambda s: {s.nuclear_channel, s.marker_channel}  # type: ignore[attr-defined]


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
    metrics: dict[str, dict[str, float]],
    roles: dict[WellRole, list[str]],
    s: AnalysisSettings,
    plate_flags: list[str],
) -> tuple[dict[str, float | None], bool]:
    """Z' per count metric from the control wells, and the plate verdict."""
    z = {
        m: z_prime(
            [metrics[w][m] for w in roles[WellRole.POSITIVE_CONTROL]],
            [metrics[w][m] for w in roles[WellRole.NEGATIVE_CONTROL]],
        )
        for m in ("tumour_count", "cell_count")
    }
    zp = z.get(s.z_prime_metric)
    if zp is None:
        plate_flags.append(f"Z'({s.z_prime_metric}) undefined: needs 2+ wells of each control")
    elif zp < s.z_prime_min:
        plate_flags.append(f"Z'({s.z_prime_metric}) = {zp:.3f} < {s.z_prime_min}: plate suspect")
    return z, zp is not None and zp >= s.z_prime_min
