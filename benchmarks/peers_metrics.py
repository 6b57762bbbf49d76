"""Scores for the peer benchmark: normalised simple regret, hypervolume, summaries.

Normalised simple regret of a set of experiments on an assay with optimum ``f*`` (best truly
feasible expected value of the first objective, ``sign``-adjusted so larger is better) is

    (f* - f_best) / (f* - f_med)

where ``f_best`` is the best *true* (noise-free ``expected``) value among the experiments
whose true metrics meet every outcome constraint, and ``f_med`` the median true value of
uniformly random conditions (log-scaled parameters uniform in log10). 0 is the optimum, 1 a
median random condition. With no truly feasible experiment yet the regret is 1.0 (reported
as such; it is counted like a median random condition).
"""

from __future__ import annotations

import math
import statistics
from collections.abc import Mapping, Sequence
from functools import cache

import numpy as np

from planners.baselines import random_points
from planners.space import Params
from simulators.assays import ASSAYS, Assay, MultiObjectiveAssay


def true_score(assay: Assay, params: Params) -> float:
    """Noise-free first objective (larger is better) if truly feasible, else ``-inf``."""
    truth = assay.expected(params)
    if not assay.feasible(truth):
        return -math.inf
    obj = assay.objectives[0]
    return obj.sign * truth[obj.metric]


@cache
def _median_random(name: str, n: int = 4096) -> float:
    assay = ASSAYS[name]
    obj = assay.objectives[0]
    vals = [obj.sign * assay.expected(p)[obj.metric] for p in random_points(assay.space, n, 12345)]
    return float(np.median(vals))


def regret_scale(assay: Assay) -> tuple[float, float]:
    """``(f*, f_med)``: the optimum and the median random condition (larger is better)."""
    _, opt = assay.optimum()
    f_star = assay.objectives[0].sign * opt
    if assay.name in ASSAYS and ASSAYS[assay.name] is assay:
        f_med = _median_random(assay.name)
    else:
        obj = assay.objectives[0]
        pts = random_points(assay.space, 4096, 12345)
        f_med = float(np.median([obj.sign * assay.expected(p)[obj.metric] for p in pts]))
    return f_star, f_med


def normalised_regret(best: float, scale: tuple[float, float]) -> float:
    f_star, f_med = scale
    if not math.isfinite(best):
        return 1.0
    return (f_star - best) / (f_star - f_med)


def hv_fraction(assay: MultiObjectiveAssay, params: Sequence[Params]) -> float:
    """Hypervolume of the true metrics of ``params`` over that of the true Pareto front."""
    return assay.hypervolume([assay.expected(p) for p in params]) / assay.reference_hypervolume()


def median_iqr(values: Sequence[float]) -> tuple[float, float, float]:
    """``(median, q25, q75)``; NaN for an empty input."""
    v = [x for x in values if not math.isnan(x)]
    if not v:
        return (math.nan, math.nan, math.nan)
    q = np.quantile(np.array(v, dtype=float), [0.5, 0.25, 0.75])
    return (float(q[0]), float(q[1]), float(q[2]))


def fmt_iqr(values: Sequence[float], digits: int = 3) -> str:
    m, lo, hi = median_iqr(values)
    if math.isnan(m):
        return "n/a"
    return f"{m:.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"


def median_or_inf(values: Sequence[float]) -> float:
    """Median where ``inf`` (never reached) sorts last; NaN when empty."""
    return statistics.median(values) if values else math.nan


def summarise(runs: Sequence[Mapping[str, object]], checkpoints: Sequence[int]) -> dict:
    """Per-planner summary of one assay's campaigns (JSON-ready)."""
    out: dict = {}
    for r in runs:
        out.setdefault(r["planner"], []).append(r)
    summary: dict = {}
    for planner, rs in out.items():
        ok = [r for r in rs if not r.get("error")]
        s: dict = {"seeds": len(rs), "failed": len(rs) - len(ok)}
        if ok and ok[0].get("regret"):
            s["regret"] = {
                str(k): median_iqr([r["regret"][str(k)] for r in ok]) for k in checkpoints
            }
        if ok and ok[0].get("hv"):
            s["hv"] = {str(k): median_iqr([r["hv"][str(k)] for r in ok]) for k in checkpoints}
        recs = [r["rec_regret"] for r in ok if r.get("rec_regret") is not None]
        if recs:
            s["rec_regret"] = median_iqr(recs)
            s["rec_infeasible"] = sum(1 for r in ok if r.get("rec_feasible") is False)
        secs = [x for r in ok for x in r["seconds"]]
        model_secs = [x for r in ok for x in r["seconds"][1:]]
        s["seconds_per_batch"] = statistics.median(secs) if secs else math.nan
        s["seconds_per_model_batch"] = statistics.median(model_secs) if model_secs else math.nan
        s["errors"] = sorted({str(r["error"]) for r in rs if r.get("error")})
        summary[planner] = s
    return summary
