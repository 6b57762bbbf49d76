"""Plate QC: robust control references, Z' per cell line, control CVs and the plate verdict.

Control wells are tested like replicates (:mod:`analyzers.outliers`): a vehicle well with no
cells, a bubble or a pipetting miss is flagged and left out, and the reference count each
viability divides by is the **mean of the remaining vehicle wells** (one bad well moves it by
nothing more than the loss of one sample, ~σ/n). The verdict lists every failed check, so the
loop can hold, exclude or re-run the plate and say why.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from analyzers.outliers import OutlierCall, group_outliers

__all__ = ["ControlGroup", "PlateQC", "control_group", "z_prime"]

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
