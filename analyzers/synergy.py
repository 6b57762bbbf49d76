"""Drug-combination synergy scores, each against a stated reference model.

Responses are **viabilities** (fraction of the vehicle controls; 1 = no effect). Every score
is *reference − observed*: positive means synergy (the combination left fewer cells than the
reference predicts), negative antagonism. The single agents' responses at a combination's
doses are *measured* where the plate holds single-agent wells at those doses
(``protocols.single_agent``: each drug alone beside its combinations), else read from 4PL fits
of single-agent data (:func:`analyzers.dose_response.fit_logistic`); each point says which
(``reference``). Loewe always needs the fitted curves (it inverts them).

- **Bliss independence** (Bliss 1939): the drugs act independently, so surviving fractions
  multiply: ``E_ref = E_a(d_a) · E_b(d_b)``.
- **HSA**, highest single agent (Gaddum 1940; Berenbaum 1989): ``E_ref = min(E_a(d_a),
  E_b(d_b))``, the better drug alone at its dose.
- **Loewe additivity** (Loewe 1926): each drug is a dilution of the other. The combination
  index ``CI = d_a / D_a(E) + d_b / D_b(E)`` (``D_x(E)``: the dose of x alone giving effect
  E) is 1 for additive doses, < 1 for synergy; the Loewe reference ``E_ref`` solves
  ``CI(E) = 1``. Loewe is undefined where a drug alone cannot reach the effect (its curve
  flattens above it): those points get None, never a made-up value.

- **ZIP**, zero interaction potency (Yadav et al. 2015): :func:`zip_scores`, for a full dose
  matrix only (it fits the combination along each dose row and column, which scattered
  Bayesian-optimisation doses do not give; the report says when a campaign has no matrix).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import brentq

from analyzers.dose_response import LogisticFit, fit_logistic

__all__ = [
    "REFERENCE_MODELS",
    "SynergyPoint",
    "ZipResult",
    "bliss_reference",
    "combination_index",
    "hsa_reference",
    "loewe_reference",
    "synergy_scores",
    "zip_scores",
]

REFERENCE_MODELS = {
    "bliss": "Bliss independence: E_ref = E_a(d_a) x E_b(d_b) (surviving fractions multiply)",
    "hsa": "highest single agent: E_ref = min(E_a(d_a), E_b(d_b))",
    "loewe": "Loewe additivity: E_ref solves d_a/D_a(E) + d_b/D_b(E) = 1",
    "zip": "zero interaction potency (Yadav 2015): E_ref = E_a(d_a) x E_b(d_b), observed "
    "side from 4PL fits along each row and column of a dose matrix started from the partner "
    "alone",
}


class SynergyPoint(BaseModel):
    """Scores of one combination (reference − observed; > 0 is synergy)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    dose_a_um: float
    dose_b_um: float
    observed: float = Field(description="measured viability of the combination")
    bliss: float | None = None
    hsa: float | None = None
    loewe: float | None = Field(default=None, description="Loewe excess; None if undefined")
    combination_index: float | None = Field(default=None, description="Loewe CI at `observed`")
    reference: str = Field(
        default="fitted",
        description="single-agent responses behind Bliss/HSA: measured (wells on the plate), "
        "fitted (4PL curves) or mixed (one of each)",
    )


def bliss_reference(e_a: float, e_b: float) -> float:
    """Viability Bliss independence predicts from the single agents' viabilities."""
    return e_a * e_b


def hsa_reference(e_a: float, e_b: float) -> float:
    """Viability of the highest single agent (the lower of the two viabilities)."""
    return min(e_a, e_b)


def combination_index(
    fit_a: LogisticFit, fit_b: LogisticFit, dose_a_um: float, dose_b_um: float, effect: float
) -> float | None:
    """Loewe's combination index of doses that gave viability ``effect`` (None: undefined,
    a drug with a positive dose cannot reach ``effect`` alone)."""
    total = 0.0
    for fit, dose in ((fit_a, dose_a_um), (fit_b, dose_b_um)):
        if dose <= 0:
            continue
        alone = fit.dose_for(effect)
        if alone is None:
            return None
        total += dose / alone
    return total


def loewe_reference(
    fit_a: LogisticFit, fit_b: LogisticFit, dose_a_um: float, dose_b_um: float
) -> float | None:
    """The viability Loewe additivity predicts at ``(dose_a_um, dose_b_um)``, or None where it
    is undefined (the answer lies beyond a drug's reachable range)."""
    if dose_a_um <= 0:
        return float(fit_b.predict(dose_b_um))
    if dose_b_um <= 0:
        return float(fit_a.predict(dose_a_um))
    ranges = [sorted(f.parameters()[:2]) for f in (fit_a, fit_b)]
    lo, hi = max(r[0] for r in ranges), min(r[1] for r in ranges)
    if not lo < hi:
        return None
    span = hi - lo

    def excess(e: float) -> float:
        ci = combination_index(fit_a, fit_b, dose_a_um, dose_b_um, e)
        return (ci if ci is not None else math.inf) - 1.0

    a, b = lo + 1e-9 * span, hi - 1e-9 * span
    fa, fb = excess(a), excess(b)
    if not (np.isfinite(fa) and np.isfinite(fb)) or fa * fb > 0:
        return None
    return float(brentq(excess, a, b, xtol=1e-12 * max(span, 1.0)))


def synergy_scores(
    points: Sequence[tuple[float, float, float]],
    fit_a: LogisticFit,
    fit_b: LogisticFit,
    measured: Sequence[tuple[float | None, float | None]] | None = None,
) -> list[SynergyPoint]:
    """Bliss, HSA and Loewe scores of measured combinations.

    Args:
        points: ``(dose_a_um, dose_b_um, observed viability)`` per combination (replicate
            means, or each replicate).
        fit_a: 4PL fit of drug a alone (viability against dose).
        fit_b: 4PL fit of drug b alone.
        measured: per point, the viability of drug a alone and of drug b alone measured at
            its doses on its plate (None where not measured: the fit is used).

    Raises:
        ValueError: a single-agent fit that a point needs failed (it says why).
    """
    measured = measured if measured is not None else [(None, None)] * len(points)
    for i, (name, fit) in enumerate((("drug a", fit_a), ("drug b", fit_b))):
        if not fit.ok and any(m[i] is None for m in measured):
            raise ValueError(f"{name}: no single-agent curve ({fit.message})")
    out = []
    for (d_a, d_b, observed), (m_a, m_b) in zip(points, measured, strict=True):
        e_a = float(fit_a.predict(d_a)) if m_a is None else m_a
        e_b = float(fit_b.predict(d_b)) if m_b is None else m_b
        ok = fit_a.ok and fit_b.ok
        loewe = loewe_reference(fit_a, fit_b, d_a, d_b) if ok else None
        n_measured = (m_a is not None) + (m_b is not None)
        out.append(
            SynergyPoint(
                dose_a_um=d_a,
                dose_b_um=d_b,
                observed=observed,
                bliss=bliss_reference(e_a, e_b) - observed,
                hsa=hsa_reference(e_a, e_b) - observed,
                loewe=None if loewe is None else loewe - observed,
                combination_index=combination_index(fit_a, fit_b, d_a, d_b, observed)
                if ok
                else None,
                reference=("fitted", "mixed", "measured")[n_measured],
            )
        )
    return out


class ZipResult(BaseModel):
    """ZIP delta scores of a dose matrix (Yadav, Wennerberg, Aittokallio & Tang 2015)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    doses_a_um: list[float] = Field(description="positive doses of drug a (matrix rows)")
    doses_b_um: list[float] = Field(description="positive doses of drug b (matrix columns)")
    delta: list[list[float | None]] = Field(
        description="[i][j]: ZIP reference − fitted combination viability at (a_i, b_j); > 0 "
        "synergy; None where a row or column fit failed"
    )
    mean_delta: float | None = Field(description="the matrix's ZIP synergy score (mean delta)")


def zip_scores(
    doses_a_um: Sequence[float],
    doses_b_um: Sequence[float],
    viability: Sequence[Sequence[float]],
    fit_a: LogisticFit,
    fit_b: LogisticFit,
) -> ZipResult:
    """ZIP synergy of a full dose matrix, in viabilities (1 = no effect).

    The zero-interaction-potency reference is that neither drug shifts the other's potency:
    along each row (drug b fixed at ``b_j``) the combination follows drug a's curve started
    from ``E_b(b_j)``, giving ``E_ref = E_a(a_i) · E_b(b_j)``. The observed side is smoothed
    as Yadav et al. do: each row is fitted with a 4PL over drug a whose top is fixed at
    ``E_b(b_j)`` (bottom, IC50 and slope free), each column likewise over drug b from
    ``E_a(a_i)``, and the two fitted values are averaged. ``delta = E_ref − fitted`` (> 0: the
    drugs potentiate each other).

    Args:
        doses_a_um: the positive doses of drug a, one per row (≥ 3).
        doses_b_um: the positive doses of drug b, one per column (≥ 3).
        viability: ``[i][j]`` measured viability at ``(a_i, b_j)`` (replicate means).
        fit_a: drug a alone (4PL, viability against dose).
        fit_b: drug b alone.

    Raises:
        ValueError: a single-agent fit failed, or the matrix has fewer than 3 doses a side or
            the wrong shape.
    """
    a, b = list(map(float, doses_a_um)), list(map(float, doses_b_um))
    y = np.asarray(viability, np.float64)
    if len(a) < 3 or len(b) < 3 or y.shape != (len(a), len(b)):
        raise ValueError(
            f"ZIP needs a matrix of >= 3 x 3 positive doses; got {len(a)} x {len(b)} doses and "
            f"a {y.shape} matrix"
        )
    for name, fit in (("drug a", fit_a), ("drug b", fit_b)):
        if not fit.ok:
            raise ValueError(f"{name}: no single-agent curve ({fit.message})")
    e_a = fit_a.predict(np.array(a))
    e_b = fit_b.predict(np.array(b))
    rows = [_zip_line(a, y[:, j], float(e_b[j])) for j in range(len(b))]  # over a, b fixed
    cols = [_zip_line(b, y[i, :], float(e_a[i])) for i in range(len(a))]  # over b, a fixed
    delta: list[list[float | None]] = []
    for i in range(len(a)):
        out: list[float | None] = []
        for j in range(len(b)):
            row, col = rows[j], cols[i]
            if row is None or col is None:
                out.append(None)
                continue
            fitted = 0.5 * (float(row.predict(a[i])) + float(col.predict(b[j])))
            out.append(float(e_a[i] * e_b[j]) - fitted)
        delta.append(out)
    values = [d for r in delta for d in r if d is not None]
    return ZipResult(
        doses_a_um=a,
        doses_b_um=b,
        delta=delta,
        mean_delta=float(np.mean(values)) if values else None,
    )


def _zip_line(doses: list[float], values: np.ndarray, start: float) -> LogisticFit | None:
    """A 4PL along one row or column, from the partner alone (``start`` at dose 0)."""
    fit = fit_logistic([0.0, *doses], [start, *map(float, values)], top=start)
    return fit if fit.ok else None
