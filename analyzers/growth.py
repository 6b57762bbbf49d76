"""Growth-rate-normalised metrics (GR values; Hafner, Niepel, Chung & Sorger, Nat. Methods 2016).

A relative count (viability) ``x / x_ctrl`` depends on how fast a line divides during the assay:
the same drug that halts division looks far stronger on a line that doubles every day than on
one that doubles every three. GR values remove that by comparing growth *rates*:

    GR = 2 ** ( log2(x / x0) / log2(x_ctrl / x0) ) − 1

with ``x0`` the count at time zero (when the drug was added), ``x`` the treated count and
``x_ctrl`` the vehicle-control count at the end. GR = 1: no effect; 0: complete cytostasis (the
cells stopped dividing); < 0: cytotoxic (fewer cells than at time zero); −1: every cell died.
The ``dose_response`` protocol's ``time_zero_wells`` give ``x0``: wells of the same plate
imaged right before dosing.

Across doses, :func:`fit_gr` fits the GR curve and reports GEC50 (the dose of half the GR
effect), GR50 (the dose where GR = 0.5: the growth rate halved), GRmax (GR at the highest dose
tested: < 0 means the drug killed cells there) and GRinf (the curve's asymptote), each with a
95 % interval.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from analyzers.dose_response import LogisticFit, fit_logistic

__all__ = ["GRFit", "fit_gr", "gr_value"]


def gr_value(count: float, time_zero: float, control: float) -> float | None:
    """GR value of one well from per-field (or per-well) counts of one cell line.

    Args:
        count: treated count at the end of the assay.
        time_zero: the count at time zero (same units).
        control: the vehicle-control count at the end (same units).

    Returns:
        GR in ``[−1, ∞)`` (≈ ``[−1, 1]``), or None when it is undefined: no cells at time
        zero, or controls that did not grow (``control ≤ time_zero``).
    """
    if time_zero <= 0 or control <= time_zero:
        return None
    if count <= 0:
        return -1.0
    return float(2.0 ** (math.log2(count / time_zero) / math.log2(control / time_zero)) - 1.0)


class GRFit(BaseModel):
    """A GR dose-response curve and its summary metrics (Hafner et al. 2016).

    The curve is ``GR(d) = GRinf + (1 − GRinf) / (1 + (d / GEC50) ** h)`` (a 4PL with its top
    fixed at 1, no effect). Intervals are 95 % percentile intervals of a residual bootstrap
    (the doses kept, residuals resampled, the curve refitted).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fit: LogisticFit
    gec50_um: float | None = Field(default=None, description="dose of half the GR effect, µM")
    gr50_um: float | None = Field(
        default=None, description="dose where GR = 0.5 (None: the curve never falls that far)"
    )
    gr_max: float | None = Field(default=None, description="fitted GR at the highest dose")
    gr_inf: float | None = Field(default=None, description="GR asymptote at infinite dose")
    ci95: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="gec50_um, gr50_um, gr_max, gr_inf -> 95 % interval"
    )
    max_dose_um: float | None = None

    @property
    def ok(self) -> bool:
        return self.fit.ok


def fit_gr(
    doses_um: Sequence[float], gr_values: Sequence[float], n_boot: int = 100, seed: int = 0
) -> GRFit:
    """Fit a GR curve to ``(dose, GR value)`` points and summarise it with intervals.

    Args:
        doses_um: doses, µM (0 allowed).
        gr_values: GR values of the same wells (:func:`gr_value`).
        n_boot: bootstrap refits behind the intervals (0: none).
        seed: the bootstrap's seed.

    Returns:
        the fit; when it fails, ``fit.message`` says why and the metrics are None.
    """
    d = np.asarray(doses_um, np.float64)
    y = np.asarray(gr_values, np.float64)
    fit = fit_logistic(list(d), list(y), top=1.0)
    if not fit.ok or d.size == 0:
        return GRFit(fit=fit)
    top_dose = float(d.max())
    point = _gr_metrics(fit, top_dose)
    draws: dict[str, list[float]] = {k: [] for k in point}
    residuals = y - fit.predict(d)
    rng = np.random.default_rng(seed)
    for _ in range(n_boot):
        resampled = fit.predict(d) + rng.choice(residuals, d.size)
        boot = fit_logistic(list(d), list(resampled), top=1.0)
        if boot.ok:
            for k, v in _gr_metrics(boot, top_dose).items():
                # a GR50 the curve never reaches is beyond any dose: the interval is open
                draws[k].append(math.inf if v is None else v)
    ci = {
        k: (float(np.quantile(v, 0.025)), float(np.quantile(v, 0.975)))
        for k, v in draws.items()
        if len(v) >= max(10, n_boot // 2)
    }
    return GRFit(fit=fit, ci95=ci, max_dose_um=top_dose, **point)


def _gr_metrics(fit: LogisticFit, top_dose: float) -> dict[str, float | None]:
    _, bottom, gec50, _ = fit.parameters()
    return {
        "gec50_um": gec50,
        "gr50_um": fit.dose_for(0.5),
        "gr_max": float(fit.predict(top_dose)),
        "gr_inf": bottom,
    }
