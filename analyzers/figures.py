"""Figures for a screening report: dose-response points with their 4PL fit, synergy maps.

Pure functions of data that draw on a matplotlib ``Axes`` (headless backend; the caller saves
the figure). Doses are plotted on a log axis; zero doses sit one decade below the lowest
positive dose, marked "0".
"""

from __future__ import annotations

from collections.abc import Sequence

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from matplotlib.axes import Axes  # noqa: E402
from matplotlib.colors import TwoSlopeNorm  # noqa: E402

from analyzers.dose_response import LogisticFit  # noqa: E402
from analyzers.synergy import REFERENCE_MODELS, SynergyPoint  # noqa: E402

__all__ = ["plot_dose_response", "plot_synergy", "save_figure"]


def _zero_at(doses: np.ndarray) -> float:
    positive = doses[doses > 0]
    return float(positive.min() / 10.0) if positive.size else 1e-3


def plot_dose_response(
    ax: Axes,
    doses_um: Sequence[float],
    responses: Sequence[float],
    fit: LogisticFit | None = None,
    *,
    label: str = "",
    color: str = "C0",
    ylabel: str = "viability",
) -> None:
    """Replicate points, the fitted curve and its IC50 (with the 95 % interval shaded)."""
    d = np.asarray(doses_um, dtype=float)
    y = np.asarray(responses, dtype=float)
    zero = _zero_at(d)
    ax.scatter(np.where(d > 0, d, zero), y, s=14, color=color, alpha=0.7, label=label or None)
    if fit is not None and fit.ok:
        grid = np.logspace(np.log10(zero), np.log10(max(d.max(), zero * 10)), 200)
        ax.plot(grid, fit.predict(grid), color=color, lw=1.5)
        ax.axvline(fit.parameters()[2], color=color, ls=":", lw=1)
        if "ic50_um" in fit.ci95:
            lo, hi = fit.ci95["ic50_um"]
            if 0 < lo and np.isfinite(hi):  # an unbounded interval has no span to shade
                ax.axvspan(lo, hi, color=color, alpha=0.12)
    ax.set_xscale("log")
    ax.set_xlabel("dose (µM; leftmost: 0)")
    ax.set_ylabel(ylabel)


def plot_synergy(
    ax: Axes, points: Sequence[SynergyPoint], score: str = "bliss", *, cmap: str = "RdBu_r"
) -> None:
    """Each measured combination at its doses, coloured by ``score`` (red: synergy).

    Raises:
        ValueError: ``score`` is not a per-combination score of
            :class:`~analyzers.synergy.SynergyPoint` (``bliss``, ``hsa``, ``loewe``; ZIP scores a
            whole dose matrix, :func:`analyzers.synergy.zip_scores`).
    """
    known = [m for m in REFERENCE_MODELS if m in SynergyPoint.model_fields]
    if score not in known:
        raise ValueError(f"unknown score {score!r}; known: {sorted(known)}")
    kept = [p for p in points if getattr(p, score) is not None]
    a = np.array([p.dose_a_um for p in kept], dtype=float)
    b = np.array([p.dose_b_um for p in kept], dtype=float)
    v = np.array([getattr(p, score) for p in kept], dtype=float)
    if v.size:
        span = max(float(np.abs(v).max()), 1e-6)
        sc = ax.scatter(
            np.where(a > 0, a, _zero_at(a)), np.where(b > 0, b, _zero_at(b)), c=v, s=60,
            cmap=cmap, norm=TwoSlopeNorm(0.0, -span, span), edgecolors="k", linewidths=0.3,
        )  # fmt: skip
        ax.figure.colorbar(sc, ax=ax, label=f"{score} (reference − observed)")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("drug a (µM)")
    ax.set_ylabel("drug b (µM)")
    ax.set_title(REFERENCE_MODELS[score], fontsize=8)


def save_figure(fig: plt.Figure, path: str) -> None:
    """Save ``fig`` as a PNG and close it."""
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
