"""Outlier calls calibrated on measured variability: replicate wells and control wells.

A well's count of one cell line, ``N`` nuclei over its fields, is modelled on the log scale as
``y = log(N + 0.5)`` with variance ``σ² + 1/(N + 0.5)``: ``σ`` is the well-to-well spread
that seeding, growth and segmentation add (multiplicative, ~10 % on the simulator), the second
term is counting noise (Poisson), which dominates when few cells are left. ``σ`` is *measured
on the plate* (:func:`estimate_sigma`): from every group of wells that should agree (the
replicates of each experiment, the vehicle controls), by maximum likelihood with each group's
counting noise in its variance, leaving out groups whose spread is improbable under the fit
(so a few groups holding an artefact cannot inflate it).

A well is called an outlier of its group (:func:`group_outliers`) when, for any cell line,
its distance from the median of the group's *other* wells exceeds ``k`` standard errors of
that difference. Calls are made one at a time, the most extreme first, and a group keeps a
majority: with 3 replicates at most one well is called, with 5 at most two. ``k`` was chosen
on simulated plates (``benchmarks/outliers.py``, development seeds) to flag ≤ 2 % of clean
wells; the held-out figures are in ``benchmarks/README.md``.

This replaces a MAD rule over each experiment's own 2–3 replicates, whose MAD is nearly
always tiny, so its relative floor (5 % of the median, about half the real replicate CV)
set the cut-off and flagged ~14 % of good wells.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from functools import lru_cache

import numpy as np
from scipy.special import gammaln  # scipy.stats costs seconds to import

__all__ = ["OutlierCall", "estimate_sigma", "group_outliers", "log_count"]

#: the smallest spread assumed between wells that should agree (log scale ≈ CV)
SIGMA_FLOOR = 0.04


class OutlierCall(tuple[float, float, str, str]):
    """``(z, median, metric, reason)`` of one flagged well (a tuple, cheap to build)."""

    __slots__ = ()

    @property
    def z(self) -> float:
        return self[0]

    @property
    def median(self) -> float:
        return self[1]

    @property
    def metric(self) -> str:
        return self[2]

    @property
    def reason(self) -> str:
        return self[3]


def log_count(total: float, fields: float = 1.0) -> tuple[float, float]:
    """``(log((N + 0.5) / fields), counting variance 1/(N + 0.5))`` of a well's total count
    ``N`` over ``fields`` imaged fields (so wells imaged in different numbers of fields compare)."""
    n = max(float(total), 0.0) + 0.5
    return math.log(n / max(fields, 1e-9)), 1.0 / n


#: share of groups that may still hold a wild spread after trimming (a grid the fit chooses
#: from) and the range of sums of squares such a spread is spread over (log-uniform)
_EPS_GRID = np.array([0.01, 0.03, 0.1, 0.2, 0.3])
_BROAD_RANGE = (1e-3, 1e2)
#: groups counting fewer nuclei than ~10 per well (variance 1/N) carry no usable spread: on a log
#: scale a Poisson count that small is far from normal
MAX_COUNTING_VAR = 0.1
_SIGMA_GRID = np.exp(np.linspace(math.log(0.01), math.log(2.0), 400))


@lru_cache(maxsize=32)
def _trimmed_law(n: int) -> tuple[float, float]:
    """``(a, d)`` with ``SS_trim ≈ a·χ²(d)`` for ``n`` unit-variance normal wells, where
    ``SS_trim`` is the sum of squares of the ``n − 1`` wells left when the one farthest from
    the others' median is dropped (Satterthwaite's moment match to a seeded simulation)."""
    y = np.random.default_rng(n).standard_normal((20000, n))
    others = np.stack([np.delete(y, i, axis=1) for i in range(n)], axis=1)  # (reps, n, n-1)
    far = np.abs(y - np.median(others, axis=2)).argmax(axis=1)
    rest = others[np.arange(y.shape[0]), far]
    ss = ((rest - rest.mean(axis=1, keepdims=True)) ** 2).sum(axis=1)
    m, v = float(ss.mean()), float(ss.var())
    return v / (2 * m), 2 * m * m / v


def _trimmed_ss(y: np.ndarray) -> float:
    """Sum of squares about the mean once the well farthest from the others' median is out."""
    far = max(range(y.size), key=lambda i: abs(y[i] - np.median(np.delete(y, i))))
    rest = np.delete(y, far)
    return float(((rest - rest.mean()) ** 2).sum())


def estimate_sigma(
    groups: Sequence[Sequence[tuple[float, float]]], floor: float = SIGMA_FLOOR
) -> tuple[float, int]:
    """Well-to-well spread (log scale) beyond counting noise, by maximum likelihood over groups.

    Each group of 3 or more wells drops its most deviant well (the one farthest from the
    others' median), so one artefact per group (an empty well, a bubble, a missed dispense)
    cannot inflate the spread however many groups hold one; the sum of squares of the rest is
    ``(σ² + c_g)·a·χ²(d)`` (:func:`_trimmed_law`), ``c_g`` the counting variance at the group's
    median count. σ maximises the likelihood over groups, so groups of few nuclei (where
    counting noise dominates) weigh little instead of dragging a median of per-group excesses
    to the floor. A share ``ε`` of groups (fitted) may still hold a wild spread (two bad wells).

    Args:
        groups: per group of wells that should agree, ``(total count, fields)`` of one cell
            line in each well.

    Returns:
        ``(σ, number of groups used)``; σ is at least ``floor`` (also when no group has two
        wells).
    """
    ss, scale, df, c = [], [], [], []
    for counts in groups:
        if len(counts) < 2:
            continue
        y = np.array([log_count(n, f)[0] for n, f in counts])
        a, d = _trimmed_law(len(y)) if len(y) >= 3 else (1.0, 1.0)
        trimmed = _trimmed_ss(y) if len(y) >= 3 else float(((y - y.mean()) ** 2).sum())
        ss.append(max(trimmed, 1e-8))
        scale.append(a)
        df.append(d)
        c.append(log_count(float(np.median([n for n, _ in counts])))[1])
    use = np.array(c) <= MAX_COUNTING_VAR
    if not ss or not use.any():
        return floor, 0

    def col(x: list[float]) -> np.ndarray:
        return np.array(x)[use][:, None, None]

    ss_a, a_a, df_a, c_a = col(ss), col(scale), col(df), col(c)
    var = a_a * (_SIGMA_GRID[None, :, None] ** 2 + c_a)  # (groups, σ, 1)
    # log density of SS = var·χ²(df)
    clean = -0.5 * df_a * np.log(2 * var) - ss_a / (2 * var) + (0.5 * df_a - 1) * np.log(ss_a)
    clean = clean - gammaln(0.5 * df_a)
    broad = -np.log(ss_a) - math.log(math.log(_BROAD_RANGE[1] / _BROAD_RANGE[0]))
    eps = _EPS_GRID[None, None, :]
    lik = np.logaddexp(np.log1p(-eps) + clean, np.log(eps) + broad).sum(axis=0)  # (σ, ε)
    i, _ = np.unravel_index(int(np.argmax(lik)), lik.shape)
    return max(float(_SIGMA_GRID[i]), floor), int(use.sum())


def group_outliers(
    counts: Mapping[str, Mapping[str, float]],
    sigma: Mapping[str, float],
    k: float,
    min_wells: int = 3,
) -> dict[str, OutlierCall]:
    """Wells of one group (replicates, or one kind of control) that disagree with the rest.

    Args:
        counts: well → count metric → total count (e.g. ``total_tumour``), for the group's
            wells that were measured; an entry ``n_fields`` gives the fields it was counted
            over (default 1).
        sigma: count metric → σ from :func:`estimate_sigma`; metrics without one are skipped.
        k: the cut-off, in standard errors of a well's distance from the others' median.
        min_wells: groups smaller than this are not tested (two wells cannot say which one
            is wrong).

    Returns:
        well → :class:`OutlierCall`, most extreme first; at most ``(n − 1) // 2`` wells.
    """
    kept = dict(counts)
    calls: dict[str, OutlierCall] = {}
    limit = (len(counts) - 1) // 2
    while len(kept) >= min_wells and len(calls) < limit:
        worst: tuple[float, str, OutlierCall] | None = None
        for well in _candidates(kept, sigma):
            for metric, s in sigma.items():
                call = _distance(well, kept, metric, s)
                if call is not None and (worst is None or abs(call.z) > worst[0]):
                    worst = (abs(call.z), well, call)
        if worst is None or worst[0] <= k:
            break
        calls[worst[1]] = worst[2]
        del kept[worst[1]]
    return calls


def _candidates(group: Mapping[str, Mapping[str, float]], sigma: Mapping[str, float]) -> list[str]:
    """Wells that may be tested. With three wells only the one outside the closest pair: the
    median of two others is their mean, which a wild well drags away from a good one."""
    wells = list(group)
    if len(wells) != 3:
        return wells

    def apart(a: str, b: str) -> float:
        total = 0.0
        for metric, s in sigma.items():
            if metric in group[a] and metric in group[b]:
                ya = log_count(group[a][metric], group[a].get("n_fields", 1.0))[0]
                yb = log_count(group[b][metric], group[b].get("n_fields", 1.0))[0]
                level = math.exp((ya + yb) / 2) * group[a].get("n_fields", 1.0)
                total += (ya - yb) ** 2 / (2 * (s**2 + 1.0 / level))
        return total

    trios = [(wells[1], wells[2], wells[0]), (wells[0], wells[2], wells[1])]
    trios.append((wells[0], wells[1], wells[2]))
    return [min(trios, key=lambda t: apart(t[0], t[1]))[2]]


def _distance(
    well: str, group: Mapping[str, Mapping[str, float]], metric: str, sigma: float
) -> OutlierCall | None:
    """How far ``well`` sits from the median of the group's other wells, in standard errors."""
    if metric not in group[well]:
        return None
    others = [
        log_count(m[metric], m.get("n_fields", 1.0))
        for w, m in group.items()
        if w != well and metric in m
    ]
    if len(others) < 2:
        return None
    fields = group[well].get("n_fields", 1.0)
    y, _ = log_count(group[well][metric], fields)
    ref = float(np.median([o[0] for o in others]))
    n = len(others)
    # Counting noise as if the well held what the others do (the null hypothesis): an empty
    # well's own count says nothing about how noisy a count of that well should be.
    expected = math.exp(ref) * fields
    counting = 1.0 / expected
    # variance of the others' median: a mean for two, ~π/2 times a mean's for more
    spread = sigma**2 + float(np.mean([o[1] for o in others]))
    ref_var = spread / n if n <= 2 else spread * math.pi / (2 * n)
    z = (y - ref) / math.sqrt(sigma**2 + counting + ref_var)
    count, median = group[well][metric], expected - 0.5
    reason = (
        f"{metric} {count:.4g} vs {median:.4g} in the other wells: {abs(z):.1f} standard errors "
        f"(spread {sigma:.3f} + counting noise)"
    )
    return OutlierCall((z, median, metric, reason))
