"""Plate QC: robust control references, Z' per cell line, control CVs and the plate verdict.

Control wells are tested like replicates (:mod:`analyzers.outliers`): a vehicle well with no
cells, a bubble or a pipetting miss is flagged and left out, and the reference count each
viability divides by is the **mean of the remaining vehicle wells** (one bad well moves it by
nothing more than the loss of one sample, ~σ/n). The verdict lists every failed check, so the
loop can hold, exclude or re-run the plate and say why.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.special import gammainccinv

from analyzers.outliers import OutlierCall, group_outliers

__all__ = [
    "ControlGroup",
    "GapModel",
    "PlateQC",
    "combined_p",
    "control_group",
    "field_dispersion",
    "fit_gap_model",
    "gap_flags",
    "z_prime",
]

COUNT_METRICS: tuple[str, ...] = ("tumour_count", "normal_count", "cell_count")


class ControlGroup(BaseModel):
    """One kind of reference well (vehicle, positive control, time zero) after outlier calls."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    role: str
    wells: list[str] = Field(description="imaged wells of this role")
    used: list[str] = Field(description="wells the reference is computed from")
    outliers: dict[str, str] = Field(default_factory=dict, description="well -> reason")
    reference: dict[str, float] = Field(
        default_factory=dict, description="metric -> mean over the used wells"
    )
    cv: dict[str, float] = Field(
        default_factory=dict, description="metric -> CV over the used wells (SD/mean)"
    )


class PlateQC(BaseModel):
    """The numbers a screening scientist judges a plate by, and the checks it failed."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    z_prime: dict[str, float | None] = Field(
        description="count metric -> Z' from the kept positive and vehicle controls"
    )
    control_cv: dict[str, float] = Field(description="count metric -> CV of the kept vehicle wells")
    control_outliers: dict[str, str] = Field(description="control well -> why it was left out")
    flagged_fraction: float = Field(
        description="share of measured sample wells left out of scores (outliers, failed QC)"
    )
    variability: dict[str, float] = Field(
        description="count metric -> well-to-well spread σ (log scale) measured on the plate"
    )
    field_dispersion: float = Field(
        default=1.0, description="field counts' variance over Poisson's, measured on the plate"
    )
    solvent: str | None = Field(default=None, description="organic solvent of the dosed wells")
    solvent_percent: float = Field(default=0.0, description="its share in every dosed well, %")
    failures: list[str] = Field(default_factory=list, description="checks the plate failed")

    @property
    def ok(self) -> bool:
        return not self.failures


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


def control_group(
    role: str,
    wells: Sequence[str],
    metrics: Mapping[str, Mapping[str, float]],
    sigma: Mapping[str, float],
    k: float,
    count_totals: Sequence[str],
) -> ControlGroup:
    """Call outliers among one kind of control well and average the rest.

    Args:
        metrics: well → metric → value (the analyzer's well metrics).
        sigma: total-count metric → σ (:func:`analyzers.outliers.estimate_sigma`).
        k: outlier cut-off in standard errors.
        count_totals: total-count metrics the outlier test uses (``total_tumour``, …).
    """
    keys = (*count_totals, "n_fields")
    counts = {w: {m: metrics[w][m] for m in keys if m in metrics[w]} for w in wells}
    calls: dict[str, OutlierCall] = group_outliers(counts, {m: sigma[m] for m in sigma}, k)
    used = [w for w in wells if w not in calls]
    reference, cv = {}, {}
    for m in COUNT_METRICS:
        x = np.array([metrics[w][m] for w in used if m in metrics[w]], dtype=np.float64)
        if x.size:
            reference[m] = float(x.mean())
        if x.size >= 2 and x.mean() > 0:
            cv[m] = float(x.std(ddof=1) / x.mean())
    return ControlGroup(
        role=role,
        wells=list(wells),
        used=used,
        outliers={w: f"{role} well left out: {c.reason}" for w, c in calls.items()},
        reference=reference,
        cv=cv,
    )


def field_dispersion(fields: Mapping[str, Sequence[int]], min_count: float = 5.0) -> float:
    """How much more field counts of one well vary than Poisson counts would (``φ ≥ 1``).

    Clustered seeding makes counts per field overdispersed, so a Poisson test of a field
    against its well's other fields (``analyzers.features``) flags clean fields; its z is
    scaled by ``√φ``. Per well the dispersion index ``Σ(x − x̄)²/x̄`` is ``φ·χ²(m − 1)``;
    ``φ`` is the median of the wells' ratios to their χ² medians (robust to artefact fields).

    Args:
        fields: well → nuclei counted in each field.
        min_count: wells with fewer nuclei per field are skipped.
    """
    ratios = []
    for counts in fields.values():
        x = np.asarray(counts, np.float64)
        if x.size < 2 or x.mean() < min_count:
            continue
        chi2_median = 2.0 * float(gammainccinv((x.size - 1) / 2.0, 0.5))
        ratios.append(float(((x - x.mean()) ** 2).sum() / x.mean()) / chi2_median)
    return max(float(np.median(ratios)), 1.0) if ratios else 1.0


# ---------------------------------------------------------------------------------------------
# Empty regions (bubbles) judged against the plate's own gap distribution

#: fields a plate needs (wells with enough nuclei) before its gap distribution is trusted
GAP_MIN_FIELDS = 30
_GUMBEL_Q = (-math.log(-math.log(0.25)), -math.log(-math.log(0.5)), -math.log(-math.log(0.75)))


class GapModel(tuple[float, float, int]):
    """``(μ, β, fields)``: a Gumbel law of ``t = (largest gap / mean free radius)²`` fitted to
    one plate's fields."""

    __slots__ = ()

    def p_value(self, t: float) -> float:
        """``P(T ≥ t)`` for a clean field of this plate."""
        mu, beta, _ = self
        return -math.expm1(-math.exp(-(t - mu) / beta))


def gap_statistic(gap_px: float, field_area_px: int, median_count: float) -> float:
    """``t = (gap / r)²`` with ``r = sqrt(area / (π · median count))`` the mean free radius:
    ``t`` is the expected number of nuclei the empty disc would hold."""
    return gap_px**2 * math.pi * median_count / field_area_px


def fit_gap_model(ts: Sequence[float], beta_floor: float = 0.5) -> GapModel | None:
    """Gumbel ``(μ, β)`` of ``t`` from its quartiles (a few bubbled fields cannot move them).

    The largest empty disc among ``n`` nuclei is a maximum, so its ``t`` follows an extreme-value
    (Gumbel) law; for nuclei placed at random ``β`` is 1 (the void probability is ``e^{-t}``),
    clustered seeding widens it (``β`` ≈ 4 on the simulator's plates). Fitted per plate, the
    test adapts to how the cells on that plate clump.

    Returns:
        None with fewer than :data:`GAP_MIN_FIELDS` values.
    """
    if len(ts) < GAP_MIN_FIELDS:
        return None
    q25, q50, q75 = np.quantile(np.asarray(ts, np.float64), [0.25, 0.5, 0.75])
    beta = max(float(q75 - q25) / (_GUMBEL_Q[2] - _GUMBEL_Q[0]), beta_floor)
    return GapModel((float(q50) - beta * _GUMBEL_Q[1], beta, len(ts)))


def combined_p(p: Sequence[float]) -> float:
    """Fisher's combination ``P(χ²(2m) ≥ −2 Σ log pᵢ)`` of ``m`` independent p-values, in
    closed form (for even degrees of freedom the χ² tail is a finite Poisson sum)."""
    x = -sum(math.log(max(v, 1e-300)) for v in p)  # = χ²/2
    term, total = 1.0, 1.0
    for i in range(1, len(p)):
        term *= x / i
        total += term
    return min(1.0, math.exp(-x) * total)


def gap_flags(
    fields: Mapping[str, Sequence[tuple[int, float, int, float]]],
    alpha: float,
    min_count: float = 20.0,
    field_p: float = 0.05,
) -> tuple[dict[str, tuple[list[str], list[int]]], GapModel | None]:
    """Wells whose fields hold empty regions too large for this plate's clean fields.

    Each field's ``t`` (:func:`gap_statistic`) gets a p-value from the plate's Gumbel fit
    (:func:`fit_gap_model`, over every well with ``min_count`` nuclei per field); a well is
    flagged when the Fisher combination of its fields' p-values is below ``alpha`` (a bubble
    covers most of a well's fields, so two moderately large gaps say more than one). The
    fields named are those with p below ``field_p``.

    Args:
        fields: well → per field ``(field index, largest gap px, field area px, well median
            count per field)``.
        alpha: a clean well's chance of being flagged.

    Returns:
        ``(well → (reasons, flagged field indices), the fitted model or None)``; None (and
        no flags) when the plate has too few fields to fit.
    """
    usable = {w: fs for w, fs in fields.items() if fs and fs[0][3] >= min_count and fs[0][2]}
    ts = {w: [gap_statistic(g, a, m) for _, g, a, m in fs] for w, fs in usable.items()}
    model = fit_gap_model([t for v in ts.values() for t in v])
    out: dict[str, tuple[list[str], list[int]]] = {}
    if model is None:
        return out, None
    for w, tw in ts.items():
        p = [model.p_value(t) for t in tw]
        well_p = combined_p(p)
        if well_p >= alpha:
            continue
        cut = max(field_p, min(p))
        hit = [(fs[0], t) for fs, t, pi in zip(usable[w], tw, p, strict=True) if pi <= cut]
        spans = ", ".join(f"field {i}: {math.sqrt(t):.1f}x" for i, t in hit)
        out[w] = (
            [
                f"empty regions ({spans} the nucleus spacing): P = {well_p:.1e} against this "
                f"plate's clean fields (bubble?)"
            ],
            [i for i, _ in hit],
        )
    return out, model
