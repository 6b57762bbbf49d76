"""Experiment scores from replicate wells, with outliers flagged (never deleted silently).

The analyzer decides outliers with the calibrated rule of :mod:`analyzers.outliers` and passes
them in (``outliers=``). Without them, the earlier MAD rule applies (``outlier_rule: mad``):
for each experiment with at least ``min_replicates_for_outliers`` replicate wells,
a well is an outlier when, for any metric in ``outlier_metrics``,
``|x - median| > k * scale`` with ``scale = max(1.4826 * MAD, rel_floor * |median|, abs_floor)``
(the floors stop identical replicates, MAD = 0, from flagging every tiny difference).
The score of each metric is the **mean of the non-outlier replicates**, with their SD
(ddof=1, absent for a single replicate) and count; flagged wells are listed with the reason.
With two replicates nothing can be called an outlier; their mean is reported as is.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from protocols.layout import PlateLayout

__all__ = [
    "SCORE_METRICS",
    "ExperimentScore",
    "OutlierRecord",
    "flag_outliers",
    "score_experiments",
]

SCORE_METRICS = (
    "tumour_viability",
    "normal_viability",
    "selectivity",
    "cell_count",
    "tumour_gr",
    "normal_gr",
    "selectivity_gr",
)


class OutlierRecord(BaseModel):
    """One replicate well left out of an experiment's score, and why."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    well: str
    metric: str = Field(description="the metric that flagged it, or 'qc' for a QC exclusion")
    value: float | None = None
    median: float | None = None
    reason: str


class ExperimentScore(BaseModel):
    """Robust aggregate of one experiment's replicate wells."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    experiment: int
    values: dict[str, float] = Field(description="metric -> mean of the non-outlier replicates")
    sd: dict[str, float] = Field(default_factory=dict, description="metric -> SD (ddof=1)")
    n_replicates: int = Field(description="replicate wells used in the score")
    wells: list[str] = Field(description="every replicate well with metrics")
    outliers: list[OutlierRecord] = Field(default_factory=list)
    flags: list[str] = Field(default_factory=list, description="e.g. wells without images")


def flag_outliers(
    values: Mapping[str, float],
    *,
    k: float = 3.5,
    rel_floor: float = 0.05,
    abs_floor: float = 1e-3,
    min_replicates: int = 3,
) -> dict[str, tuple[float, str]]:
    """Wells whose value is a MAD outlier among ``values`` (well -> value).

    Returns:
        well -> (median, reason) for each flagged well.
    """
    if len(values) < min_replicates:
        return {}
    x = np.array(list(values.values()), dtype=np.float64)
    med = float(np.median(x))
    mad = float(np.median(np.abs(x - med)))
    scale = max(1.4826 * mad, rel_floor * abs(med), abs_floor)
    out: dict[str, tuple[float, str]] = {}
    for well, v in values.items():
        dev = abs(v - med) / scale
        if dev > k:
            out[well] = (
                med,
                f"{v:.4g} vs replicate median {med:.4g}: {dev:.1f} robust SDs > {k:g}",
            )
    return out


def score_experiments(
    well_metrics: Mapping[str, Mapping[str, float]],
    layout: PlateLayout,
    *,
    metrics: Sequence[str] = SCORE_METRICS,
    outlier_metrics: Sequence[str] = ("tumour_viability", "normal_viability"),
    k: float = 3.5,
    rel_floor: float = 0.05,
    min_replicates_for_outliers: int = 3,
    excluded_wells: Mapping[str, str] | None = None,
    outliers: Mapping[str, OutlierRecord] | None = None,
) -> dict[int, ExperimentScore]:
    """Score every experiment of ``layout`` from its replicate wells' metrics.

    Args:
        well_metrics: well -> metric -> value (wells without images are simply absent).
        layout: the plate layout (which wells replicate which experiment).
        metrics: metrics to aggregate.
        outlier_metrics: metrics whose MAD outliers exclude a well from every metric's score.
        k: the outlier rule's multiple of the robust scale (module docstring).
        rel_floor: the outlier rule's smallest scale, relative to the median.
        min_replicates_for_outliers: fewer replicates than this: no outlier flagging.
        excluded_wells: well -> reason, left out before scoring (e.g. failed QC by policy).
        outliers: well -> record of replicate outliers decided by the caller; None applies
            the MAD rule (``outlier_metrics``, ``k``, ``rel_floor``).

    Returns:
        experiment index -> :class:`ExperimentScore`; experiments without any measured well
        are absent.
    """
    excluded = dict(excluded_wells or {})
    experiments = sorted({w.experiment for w in layout.wells if w.experiment is not None})
    scores: dict[int, ExperimentScore] = {}
    for exp in experiments:
        score = _score_one(
            exp, layout.wells_of(exp), well_metrics, metrics, outlier_metrics, k, rel_floor,
            min_replicates_for_outliers, excluded, outliers,
        )  # fmt: skip
        if score is not None:
            scores[exp] = score
    return scores


def _score_one(
    exp: int,
    wells: list[str],
    well_metrics: Mapping[str, Mapping[str, float]],
    metrics: Sequence[str],
    outlier_metrics: Sequence[str],
    k: float,
    rel_floor: float,
    min_reps: int,
    excluded: Mapping[str, str],
    decided: Mapping[str, OutlierRecord] | None,
) -> ExperimentScore | None:
    flags = [f"{w}: no images" for w in wells if w not in well_metrics]
    measured = [w for w in wells if w in well_metrics]
    outliers = [
        OutlierRecord(well=w, metric="qc", reason=excluded[w]) for w in measured if w in excluded
    ]
    candidates = [w for w in measured if w not in excluded]
    if not measured:
        return None
    if decided is not None:
        outliers += [decided[w] for w in candidates if w in decided]
        outlier_metrics = ()
    for metric in outlier_metrics:
        vals = {w: well_metrics[w][metric] for w in candidates if metric in well_metrics[w]}
        for w, (med, reason) in flag_outliers(
            vals, k=k, rel_floor=rel_floor, min_replicates=min_reps
        ).items():
            outliers.append(
                OutlierRecord(well=w, metric=metric, value=vals[w], median=med, reason=reason)
            )
    out_wells = {o.well for o in outliers}
    used = [w for w in candidates if w not in out_wells]
    values: dict[str, float] = {}
    sd: dict[str, float] = {}
    for metric in metrics:
        x = np.array([well_metrics[w][metric] for w in used if metric in well_metrics[w]])
        if x.size:
            values[metric] = float(x.mean())
        if x.size >= 2:
            sd[metric] = float(x.std(ddof=1))
    return ExperimentScore(
        experiment=exp, values=values, sd=sd, n_replicates=len(used), wells=measured,
        outliers=outliers, flags=flags,
    )  # fmt: skip
