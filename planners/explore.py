"""Unstick a campaign: Thompson-sampling slots when the incumbent has stopped moving.

A seed can get stuck: qLogNEI keeps refining around an incumbent the model is sure of while
the optimum sits elsewhere (a wrong early lengthscale, a lucky noisy point, a local
optimum). Sequential greedy qLogNEI then spends every slot near the same place.

Rule (one objective): the incumbent is the observed condition with the best posterior mean
(times its probability of feasibility under outcome constraints). When it was observed
``stall_batches`` batches ago or earlier (counted in batch sizes, in the order of the
history), ``explore_share`` of the batch (at least one slot) is replaced by Thompson samples:
each slot is the best point of one joint posterior sample over a candidate set of Sobol
points (global) and TuRBO-style perturbations of the best observed conditions (local; a
random subset of coordinates moved by ``N(0, 0.1)`` in the unit cube, categorical levels
redrawn with probability 0.2). The slots replace the last greedy points of the batch, the
ones the acquisition valued least. Campaigns that keep improving are untouched. Chosen on
the development half of ``benchmarks/suite.py`` (see ``benchmarks/README.md``).
"""

from __future__ import annotations

import math
import warnings
from typing import Any

import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from planners.encoding import SpaceEncoder
from planners.surrogate import Surrogate

_SOBOL = 512
_PERTURB = 128
_TOP = 4


def incumbent_score(surrogate: Surrogate, X: Tensor) -> Tensor:
    """Posterior mean of the (signed) first objective, log-feasibility penalised: ``n``."""
    mean, sd = surrogate.signed_moments(X)
    logp = surrogate.log_feasibility(mean, sd)
    scale = mean[:, 0].std().clamp_min(1e-9) if mean.shape[0] > 1 else torch.tensor(1.0)
    return mean[:, 0] + scale * logp.clamp_min(-50.0)


def batches_since_improvement(surrogate: Surrogate, batch: int) -> int:
    """Whole batches since the incumbent was observed (history order)."""
    X = surrogate.X_baseline
    if X.shape[0] == 0:
        return 0
    i = int(incumbent_score(surrogate, X).argmax())
    return (X.shape[0] - 1 - i) // max(1, batch)


def thompson_points(
    surrogate: Surrogate,
    encoder: SpaceEncoder,
    k: int,
    seed: int,
    fixed: dict[int, float] | None = None,
) -> Tensor:
    """``k`` points, each the argmax of one joint posterior sample on the candidates."""
    X = surrogate.X_baseline
    gen = torch.Generator().manual_seed(seed)
    engine = SobolEngine(encoder.dim, scramble=True, seed=seed)
    cands = [encoder.unit_to_encoded(engine.draw(_SOBOL, dtype=X.dtype))]
    top = X[incumbent_score(surrogate, X).argsort(descending=True)[:_TOP]]
    numeric = [i for i in range(encoder.dim) if i not in encoder.cat_dims]
    prob = min(1.0, 20.0 / max(1, len(numeric)))
    bounds = encoder.bounds
    for x in top:
        P = x.repeat(_PERTURB, 1)
        if numeric:
            move = torch.rand(_PERTURB, len(numeric), generator=gen, dtype=X.dtype) < prob
            move[
                torch.arange(_PERTURB), torch.randint(len(numeric), (_PERTURB,), generator=gen)
            ] = True
            step = 0.1 * torch.randn(_PERTURB, len(numeric), generator=gen, dtype=X.dtype)
            P[:, numeric] = (P[:, numeric] + move * step).clamp(0.0, 1.0)
        for i in encoder.cat_dims:
            switch = torch.rand(_PERTURB, generator=gen) < 0.2
            levels = torch.randint(int(bounds[1, i]) + 1, (_PERTURB,), generator=gen).to(X.dtype)
            P[switch, i] = levels[switch]
        cands.append(P)
    C = torch.cat(cands)
    if fixed:
        for i, v in fixed.items():
            C[:, i] = v
    if encoder.space.linear_constraints:
        mask = torch.as_tensor(encoder.feasible_mask(C))
        C = C[mask] if bool(mask.any()) else C
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        Z = surrogate.model.posterior(C).rsample(torch.Size([k]))  # k x N x m
    f = Z[..., 0]
    for c in surrogate.constraint_callables() or []:
        f = torch.where(c(Z) <= 0, f, torch.full_like(f, -math.inf))
    return C[f.argmax(dim=-1)]


def explore_slots(
    surrogate: Surrogate,
    encoder: SpaceEncoder,
    X: Tensor,
    n_kept: int,
    seed: int,
    settings: dict[str, Any],
    fixed: dict[int, float] | None,
) -> tuple[Tensor, int]:
    """Replace batch points before index ``n_kept`` (the greedy ones) from the end by
    Thompson samples when the campaign has stalled; returns the batch and the slot count."""
    n = X.shape[0]
    share = float(settings.get("explore_share", 0.0))
    stall = int(settings.get("stall_batches", 2))
    if share <= 0 or n < 2 or surrogate.n_objectives != 1:
        return X, 0
    if batches_since_improvement(surrogate, n) < stall:
        return X, 0
    k = min(max(1, int(share * n)), n_kept - 1)
    if k < 1:
        return X, 0
    T = thompson_points(surrogate, encoder, k, seed + 7919, fixed)
    return torch.cat([X[: n_kept - k], T, X[n_kept:]]), k
