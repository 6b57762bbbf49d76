"""Four-parameter logistic (4PL) dose-response fits with confidence intervals.

The model (response falling with dose when ``hill > 0``)::

    y(d) = bottom + (top − bottom) / (1 + (d / ic50) ** hill)

``ic50`` (µM) is the *relative* IC50 (EC50 for a rising response): the dose halfway between top
and bottom; :attr:`LogisticFit.absolute_ic50_um` is the dose where ``y = 0.5`` (the usual
viability IC50), when the curve crosses it. Fits are least squares
(:func:`scipy.optimize.curve_fit`, trust-region reflective) on ``log10(ic50)``, from several
starts; 95 % confidence intervals come from the parameter covariance and Student's t with
``n − 4`` degrees of freedom (``log10(ic50)``'s interval, exponentiated, for the IC50). Zero
doses are the curve's top (``d = 0``). With too few points or doses the fit says why instead of
inventing numbers.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import OptimizeWarning, curve_fit
from scipy.special import stdtrit

__all__ = ["LogisticFit", "fit_logistic", "logistic"]

PARAMETERS = ("top", "bottom", "log10_ic50", "hill")


def logistic(
    dose_um: np.ndarray | float, top: float, bottom: float, ic50_um: float, hill: float
) -> np.ndarray:
    """The 4PL curve at ``dose_um`` (µM, ≥ 0; any shape)."""
    d = np.maximum(np.asarray(dose_um, dtype=np.float64), 0.0)
    with np.errstate(divide="ignore", over="ignore"):
        ratio = np.where(d > 0, (d / ic50_um) ** hill, 0.0)
    out: np.ndarray = bottom + (top - bottom) / (1.0 + ratio)
    return out


def _model(d: np.ndarray, top: float, bottom: float, log10_ic50: float, hill: float) -> np.ndarray:
    return logistic(d, top, bottom, 10.0**log10_ic50, hill)


class LogisticFit(BaseModel):
    """A fitted 4PL curve. Parameters are None when the fit failed (``message`` says why)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    top: float | None = None
    bottom: float | None = None
    ic50_um: float | None = Field(default=None, description="relative IC50/EC50, µM")
    hill: float | None = Field(default=None, description="slope; > 0 when the response falls")
    ci95: dict[str, tuple[float, float]] = Field(
        default_factory=dict, description="top, bottom, ic50_um, hill -> 95 % interval"
    )
    n: int = Field(description="points fitted")
    r2: float | None = None
    rmse: float | None = None
    message: str = "ok"

    @property
    def ok(self) -> bool:
        return self.ic50_um is not None

    def predict(self, dose_um: np.ndarray | float) -> np.ndarray:
        """The fitted response at ``dose_um``.

        Raises:
            ValueError: the fit failed.
        """
        return logistic(dose_um, *self.parameters())

    def parameters(self) -> tuple[float, float, float, float]:
        """``(top, bottom, ic50_um, hill)``.

        Raises:
            ValueError: the fit failed.
        """
        if self.top is None or self.bottom is None or self.ic50_um is None or self.hill is None:
            raise ValueError(f"no curve: {self.message}")
        return self.top, self.bottom, self.ic50_um, self.hill

    def dose_for(self, response: float) -> float | None:
        """The dose (µM) at which the curve reaches ``response``, or None if it never does."""
        if not self.ok:
            return None
        top, bottom, ic50, hill = self.parameters()
        if top == bottom or not (min(top, bottom) < response < max(top, bottom)):
            return None
        ratio = (top - bottom) / (response - bottom) - 1.0
        return float(ic50 * ratio ** (1.0 / hill))

    @property
    def absolute_ic50_um(self) -> float | None:
        """The dose where the response is 0.5 (viability halved), if the curve crosses 0.5."""
        return self.dose_for(0.5)


def fit_logistic(
    doses_um: Sequence[float],
    responses: Sequence[float],
    *,
    top: float | None = None,
    bottom: float | None = None,
) -> LogisticFit:
    """Fit a 4PL curve to ``(dose, response)`` points (replicates as separate points).

    Args:
        doses_um: doses, µM (0 allowed: the top).
        responses: responses (e.g. viability, GR value), same length.
        top: fix the upper asymptote instead of fitting it (e.g. ``top=1`` for viabilities
            normalised to vehicle): fewer points are then needed.
        bottom: fix the lower asymptote instead of fitting it.

    Returns:
        the fit; with fewer points than free parameters + 1, fewer than three distinct
        positive doses, or no convergence, a fit with ``message`` saying so.
    """
    d = np.asarray(doses_um, dtype=np.float64)
    y = np.asarray(responses, dtype=np.float64)
    keep = np.isfinite(d) & np.isfinite(y) & (d >= 0)
    d, y = d[keep], y[keep]
    fixed = {"top": top, "bottom": bottom}
    free = [p for p in PARAMETERS if fixed.get(p) is None]
    positive = np.unique(d[d > 0])
    if d.size < len(free) + 1 or positive.size < 3:
        return LogisticFit(
            n=int(d.size),
            message=f"{d.size} points at {positive.size} positive doses: too few for a fit",
        )

    def f(x: np.ndarray, *theta: float) -> np.ndarray:
        values = dict(zip(free, theta, strict=True))
        return _model(x, **{p: values.get(p, fixed.get(p)) for p in PARAMETERS})  # type: ignore[arg-type]

    best = _best_of_starts(f, d, y, free, positive)
    if best is None:
        return LogisticFit(n=int(d.size), message="the fit did not converge")
    theta, cov, sse = best
    values = {
        **{p: v for p, v in fixed.items() if v is not None},
        **dict(zip(free, theta, strict=True)),
    }
    dof = d.size - len(free)
    sst = float(np.sum((y - y.mean()) ** 2))
    return LogisticFit(
        top=float(values["top"]),
        bottom=float(values["bottom"]),
        ic50_um=float(10.0 ** values["log10_ic50"]),
        hill=float(values["hill"]),
        ci95=_intervals(free, theta, cov, dof),
        n=int(d.size),
        r2=1.0 - sse / sst if sst > 0 else None,
        rmse=math.sqrt(sse / d.size),
    )


def _best_of_starts(
    f: Callable[..., np.ndarray],
    d: np.ndarray,
    y: np.ndarray,
    free: Sequence[str],
    positive: np.ndarray,
) -> tuple[np.ndarray, np.ndarray, float] | None:
    """Least squares from a few starting IC50s and slopes; the lowest residual wins."""
    lo, hi = math.log10(positive.min()), math.log10(positive.max())
    start = {"top": float(np.max(y)), "bottom": float(np.min(y))}
    if np.corrcoef(np.log10(np.maximum(d, positive.min() / 10)), y)[0, 1] > 0:
        start = {"top": float(np.min(y)), "bottom": float(np.max(y))}  # a rising response
    bounds_lo = {"top": -np.inf, "bottom": -np.inf, "log10_ic50": lo - 3, "hill": 0.05}
    bounds_hi = {"top": np.inf, "bottom": np.inf, "log10_ic50": hi + 3, "hill": 20.0}
    best = None
    for log_ic50 in np.linspace(lo, hi, 4):
        for hill in (1.0, 3.0):
            p0 = [{**start, "log10_ic50": log_ic50, "hill": hill}[p] for p in free]
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", OptimizeWarning)
                    theta, cov = curve_fit(
                        f, d, y, p0=p0, method="trf", maxfev=5000,
                        bounds=([bounds_lo[p] for p in free], [bounds_hi[p] for p in free]),
                    )  # fmt: skip
            except (RuntimeError, ValueError):
                continue
            sse = float(np.sum((f(d, *theta) - y) ** 2))
            if best is None or sse < best[2]:
                best = (theta, cov, sse)
    return best


def _intervals(
    free: Sequence[str], theta: np.ndarray, cov: np.ndarray, dof: int
) -> dict[str, tuple[float, float]]:
    if dof < 1 or not np.all(np.isfinite(cov)):
        return {}
    t = float(stdtrit(dof, 0.975))  # Student t quantile
    out = {}
    for i, p in enumerate(free):
        half = t * math.sqrt(max(float(cov[i, i]), 0.0))
        lo, hi = float(theta[i] - half), float(theta[i] + half)
        if p == "log10_ic50":
            out["ic50_um"] = (_pow10(lo), _pow10(hi))
        else:
            out[p] = (lo, hi)
    return out


def _pow10(x: float) -> float:
    """``10 ** x``, infinite past the float range (an unbounded interval, not an overflow)."""
    return math.inf if x > 308.0 else 10.0**x
