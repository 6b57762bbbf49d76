"""Keep plausible categorical levels alive: Thompson sampling over levels, reserved batch slots.

qLogNEI with a one-hot GP tends to put a whole batch on the level whose first (Sobol)
observations looked best and never return to the others. A level whose best condition has
not been tried yet, e.g. a basal medium that only wins once its growth factor is tuned, then
stays unexplored even while the model still gives it a fair chance of holding the optimum.

Rule, for one objective and each free categorical parameter:

1. **Probability that a level holds the optimum** (Thompson sampling over levels): joint
   posterior samples of the objective (outcome constraints as sampled feasibility) on a
   candidate set per level: every observed condition and every batch point with the
   parameter switched to that level, plus Sobol points at that level. ``p(level)`` is the
   share of samples whose best candidate has that level.
2. **Reserve**: each level with ``p(level) >= level_min_probability`` that the batch left out
   gets one slot, most probable first, at most ``level_reserve`` of the batch (a fraction,
   at least one slot). A reserved slot replaces the batch's last greedy point (the one the
   acquisition valued least) by a Thompson sample at that level
   (:func:`planners.explore.thompson_points`: the argmax of one posterior sample over Sobol
   points and perturbations of the best conditions, all switched to the level), or, with
   ``level_thompson=False``, by the acquisition's best point with the level fixed. The
   Thompson sample explores the level's own surface: the one-hot GP shares one continuous
   shape across levels, so the acquisition at a fixed level mostly re-tries the other
   levels' optimum there.

A level the model has written off (``p`` below the threshold) is left alone, and a level
already in the batch needs nothing, so a problem where two levels are both alive keeps its
batches as the acquisition chose them. Chosen on the development half of
``benchmarks/suite.py`` (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from torch import Tensor
from torch.quasirandom import SobolEngine

from planners.encoding import SpaceEncoder
from planners.explore import thompson_points
from planners.surrogate import Surrogate

#: Sobol candidates per level for the Thompson samples
_SOBOL_PER_LEVEL = 64
#: joint posterior samples
_SAMPLES = 128


def level_probabilities(
    surrogate: Surrogate,
    encoder: SpaceEncoder,
    X_known: Tensor,
    column: int,
    seed: int,
) -> Tensor:
    """Posterior probability that each level of categorical ``column`` holds the optimum.

    Args:
        X_known: encoded conditions (observed and proposed) switched to every level.

    Returns:
        ``k`` probabilities (sum 1), one per level code.
    """
    k = len(encoder.cat_values()[column])
    engine = SobolEngine(encoder.dim, scramble=True, seed=seed)
    U = encoder.unit_to_encoded(engine.draw(_SOBOL_PER_LEVEL, dtype=X_known.dtype))
    base = torch.cat([X_known, U])
    cands = base.repeat(k, 1)
    cands[:, column] = torch.arange(k, dtype=base.dtype).repeat_interleave(base.shape[0])
    cands = _feasible_linear(encoder, cands)
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = surrogate.model.posterior(cands)
        Z = post.rsample(torch.Size([_SAMPLES]))  # S x N x m
    f = Z[..., 0]
    cons = surrogate.constraint_callables() or []
    for c in cons:
        f = torch.where(c(Z) <= 0, f, torch.full_like(f, -math.inf))
    best = f.argmax(dim=-1)
    levels = cands[best, column].round().long()
    counts = torch.bincount(levels, minlength=k).to(X_known.dtype)
    return counts / counts.sum()


def _feasible_linear(encoder: SpaceEncoder, X: Tensor) -> Tensor:
    if not encoder.space.linear_constraints:
        return X
    mask = torch.as_tensor(encoder.feasible_mask(X))
    return X[mask] if bool(mask.any()) else X


def reserve_levels(
    acqf: AcquisitionFunction,
    surrogate: Surrogate,
    encoder: SpaceEncoder,
    X: Tensor,
    X_observed: Tensor,
    seed: int,
    settings: dict[str, Any],
    fixed: dict[int, float] | None,
    optimise: Any,
) -> tuple[Tensor, list[tuple[int, int, float]]]:
    """Replace the batch's last points by reserved levels (see the module docstring).

    Args:
        X: the ``n x d`` batch the acquisition chose (greedy order).
        X_observed: encoded observed conditions of the current campaign.
        fixed: encoded columns already fixed for the whole batch (plate parameters).
        optimise: ``(acqf, n, seed, fixed) -> n x d``, the batch optimiser for one point.

    Returns:
        The batch, and ``(column, level, probability)`` per reserved slot.
    """
    n = X.shape[0]
    share = float(settings.get("level_reserve", 0.0))
    p_min = float(settings.get("level_min_probability", 0.1))
    if share <= 0 or n < 2 or surrogate.n_objectives != 1:
        return X, []
    slots = max(1, int(share * n))
    wanted: list[tuple[float, int, int]] = []
    known = torch.cat([X_observed, X])
    for col in encoder.cat_dims:
        if fixed and col in fixed:
            continue
        probs = level_probabilities(surrogate, encoder, known, col, seed + 17 * col)
        present = set(X[:, col].round().long().tolist())
        wanted += [
            (float(p), col, lvl)
            for lvl, p in enumerate(probs.tolist())
            if p >= p_min and lvl not in present
        ]
    wanted = sorted(wanted, reverse=True)[:slots]
    if not wanted:
        return X, []
    keep = X[: n - len(wanted)]
    base = acqf.X_pending
    out = [keep]
    try:
        for i, (_, col, lvl) in enumerate(wanted):
            sofar = torch.cat(out)
            acqf.set_X_pending(sofar if base is None else torch.cat([base, sofar], dim=-2))
            cols = {**(fixed or {}), col: float(lvl)}
            if settings.get("level_thompson", True):
                out.append(thompson_points(surrogate, encoder, 1, seed + 101 + i, cols))
            else:
                out.append(optimise(acqf, 1, seed + 101 + i, cols))
    finally:
        acqf.set_X_pending(base)
    return torch.cat(out), [(col, lvl, p) for p, col, lvl in wanted]


def reserved_note(encoder: SpaceEncoder, reserved: Sequence[tuple[int, int, float]]) -> str:
    """Human-readable list of reserved levels, e.g. ``basal=custom (p 0.21)``."""
    parts = []
    for col, lvl, p in reserved:
        par = encoder.space.parameters[col]
        parts.append(f"{par.name}={par.levels[lvl]} (p {p:.2f})")  # type: ignore[union-attr]
    return ", ".join(parts)
