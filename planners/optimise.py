"""Acquisition functions and their optimisation into a batch, plate-aware.

- One objective: qLogNEI (``qLogNoisyExpectedImprovement``); several: qLogNEHVI with the
  automatic reference point of :mod:`planners.multiobjective`. Pending experiments are
  ``X_pending``; outcome constraints are BoTorch ``constraints``; linear parameter
  constraints are ``inequality_constraints``.
- The batch is built by sequential greedy optimisation (each candidate becomes pending for
  the next).
- **Plate parameters** (one value per batch, e.g. incubation time): the first candidate is
  optimised with every parameter free; its plate-parameter values are then fixed
  (``fixed_features``) while the other ``n - 1`` candidates are optimised. The shared value
  is therefore the one the acquisition likes best for a single experiment, and the rest of
  the plate makes the most of it.
- **No repeats**: after decoding (integers rounded, levels snapped) a candidate that equals a
  pending one or an earlier one of the batch, or that rounding moved across a linear
  constraint, is replaced by a Sobol point (plate parameters kept). Only a nearly exhausted
  discrete space can force a repeat (after a bounded search).
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from typing import Any

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.multi_objective.logei import (
    qLogNoisyExpectedHypervolumeImprovement,
)
from botorch.acquisition.multi_objective.parego import qLogNParEGO
from botorch.optim import optimize_acqf
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from planners.baselines import sobol_points
from planners.encoding import SpaceEncoder
from planners.initial_conditions import rejection_ic_generator
from planners.multiobjective import reference_point
from planners.space import Params
from planners.surrogate import Surrogate


def build_acquisition(
    surrogate: Surrogate,
    X_pending: Tensor | None,
    seed: int,
    mc_samples: int,
    multi_objective: str = "nehvi",
) -> AcquisitionFunction:
    """qLogNEI (one objective) or, for several, qLogNEHVI (``multi_objective="nehvi"``) or
    qLogNParEGO (``"parego"``: qLogNEI of a random Chebyshev scalarisation, drawn from
    ``seed``), with constraints and pending points."""
    sampler = SobolQMCNormalSampler(torch.Size([mc_samples]), seed=seed)
    cache_root = surrogate.supports_cache_root
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if surrogate.n_objectives == 1:
            return qLogNoisyExpectedImprovement(
                model=surrogate.model,
                X_baseline=surrogate.X_baseline,
                sampler=sampler,
                objective=surrogate.single_mc_objective(),
                constraints=surrogate.constraint_callables(),
                X_pending=X_pending,
                prune_baseline=True,
                cache_root=cache_root,
            )
        if multi_objective == "parego":
            k = surrogate.n_objectives
            gen = torch.Generator().manual_seed(seed)
            w = -torch.log(torch.rand(k, generator=gen, dtype=torch.double))
            return qLogNParEGO(
                model=surrogate.model,
                X_baseline=surrogate.X_baseline,
                scalarization_weights=w / w.sum(),
                sampler=sampler,
                objective=surrogate.multi_mc_objective(),
                constraints=surrogate.constraint_callables(),
                X_pending=X_pending,
                prune_baseline=True,
                cache_root=cache_root,
            )
        mean, sd = surrogate.signed_moments(surrogate.X_baseline)
        k = surrogate.n_objectives
        ref = reference_point(mean[:, :k], surrogate.log_feasibility(mean, sd))
        return qLogNoisyExpectedHypervolumeImprovement(
            model=surrogate.model,
            ref_point=ref,
            X_baseline=surrogate.X_baseline,
            sampler=sampler,
            objective=surrogate.multi_mc_objective(),
            constraints=surrogate.constraint_callables(),
            X_pending=X_pending,
            prune_baseline=True,
            cache_root=cache_root,
        )


def optimise_batch(
    acqf: AcquisitionFunction,
    encoder: SpaceEncoder,
    n: int,
    seed: int,
    settings: dict[str, Any],
    plate_dims: Sequence[int] = (),
    pinned: dict[int, float] | None = None,
) -> Tensor:
    """Optimise the acquisition for a batch of ``n``: returns ``n x d`` encoded candidates.

    With ``plate_dims``, every candidate shares the first candidate's values there; with
    ``pinned`` (encoded column -> value), every candidate takes those values.
    """
    if pinned:
        return _optimise(acqf, encoder, n, seed, settings, pinned)
    if not plate_dims or n == 1:
        return _optimise(acqf, encoder, n, seed, settings, None)
    first = _optimise(acqf, encoder, 1, seed, settings, None)
    fixed = {i: float(first[0, i]) for i in plate_dims}
    base = acqf.X_pending
    acqf.set_X_pending(first if base is None else torch.cat([base, first], dim=-2))
    try:
        rest = _optimise(acqf, encoder, n - 1, seed + 1, settings, fixed)
    finally:
        acqf.set_X_pending(base)
    return torch.cat([first, rest], dim=0)


def optimise_points(
    acqf: AcquisitionFunction,
    encoder: SpaceEncoder,
    n: int,
    seed: int,
    settings: dict[str, Any],
    fixed: dict[int, float] | None = None,
) -> Tensor:
    """``n`` candidates (``n x d``) with the encoded columns in ``fixed`` held at their values."""
    return _optimise(acqf, encoder, n, seed, settings, fixed)


def _optimise(
    acqf: AcquisitionFunction,
    encoder: SpaceEncoder,
    n: int,
    seed: int,
    s: dict[str, Any],
    fixed: dict[int, float] | None,
) -> Tensor:
    ineq = encoder.inequality_constraints() or None
    kwargs: dict[str, Any] = {
        "acq_function": acqf,
        "bounds": encoder.bounds,
        "q": n,
        "num_restarts": s["num_restarts"],
        "raw_samples": s["raw_samples"],
        "inequality_constraints": ineq,
        "fixed_features": fixed,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        free_cats = {i: v for i, v in encoder.cat_values().items() if not fixed or i not in fixed}
        if free_cats:
            X, _ = optimize_acqf_mixed_alternating(
                **kwargs,
                cat_dims=encoder.cat_values(),
                discrete_dims=encoder.int_values() or None,
                options={
                    "maxiter_alternating": s["maxiter_alternating"],
                    "initialization_strategy": s["mixed_initialization"],
                    "maxiter_continuous": max(4, s["maxiter"] // 8),
                },
            )
        else:
            options: dict[str, Any] = {"maxiter": s["maxiter"], "batch_limit": 32}
            if ineq:  # SLSQP: fast feasible starts; it has no line-search cap
                kwargs["ic_generator"] = rejection_ic_generator(seed)
            else:  # L-BFGS-B
                options["maxls"] = s["maxls"]
            # A retry after an optimisation warning (e.g. the capped line search) doubled
            # the time for the same batch acquisition value; the batch is kept instead.
            X, _ = optimize_acqf(
                **kwargs,
                sequential=True,
                options=options,
                retry_on_optimization_warning=False,
            )
    return X.reshape(n, encoder.dim)


def repair(
    encoder: SpaceEncoder,
    X: Tensor,
    pending: Sequence[Params],
    n: int,
    seed: int,
    plate_parameters: Sequence[str] = (),
    skip: int = 0,
    pinned: Params | None = None,
) -> list[Params]:
    """Decode; replace repeats and rounding-infeasible points by Sobol points (see module).

    The Sobol fill uses points ``skip, skip+1, ...`` of the sequence for ``seed``; with an
    empty ``X`` (``0 x d``) this is the initial design.
    """
    taken = {encoder.key(p) for p in pending}
    out: list[Params] = []
    for p in encoder.decode(X):
        if pinned:
            p = {**p, **pinned}
        elif out and plate_parameters:  # rounding must not split the plate
            p = {**p, **{k: out[0][k] for k in plate_parameters}}
        key = encoder.key(p)
        if key in taken or not encoder.feasible([p])[0]:
            continue
        taken.add(key)
        out.append(encoder.space.validate_point(p))
    fixed = pinned or (
        {k: out[0][k] for k in plate_parameters} if out and plate_parameters else None
    )
    attempts = 0
    while len(out) < n:
        unique = attempts < 20
        attempts += 1
        for p in sobol_points(encoder.space, n - len(out), seed, skip=skip, fixed=fixed):
            skip += 1
            if not unique or encoder.key(p) not in taken:
                taken.add(encoder.key(p))
                out.append(p)
                if plate_parameters and fixed is None:
                    fixed = {k: p[k] for k in plate_parameters}
                    break
    return out[:n]
