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

ZIP is not implemented: it needs combination responses fitted along each dose row and
column, which a Bayesian-optimisation campaign's scattered doses do not provide.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy.optimize import brentq

from analyzers.dose_response import LogisticFit

__all__ = [
    "REFERENCE_MODELS",
    "SynergyPoint",
    "bliss_reference",
    "combination_index",
    "hsa_reference",
    "loewe_reference",
    "synergy_scores",
]

REFERENCE_MODELS = {
    "bliss": "Bliss independence: E_ref = E_a(d_a) x E_b(d_b) (surviving fractions multiply)",
    "hsa": "highest single agent: E_ref = min(E_a(d_a), E_b(d_b))",
    "loewe": "Loewe additivity: E_ref solves d_a/D_a(E) + d_b/D_b(E) = 1",
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
