"""Honest recommendation: the condition the model believes best, not the luckiest measurement.

Candidates are the campaign's observed conditions, a scrambled Sobol set over the space
(``raw_samples`` points, linear constraints met) and, for one objective, the maximiser of
:class:`FeasiblePosteriorMean` (the posterior mean of the objective, with a steep penalty
where the probability that every outcome constraint holds falls below ``min_probability``),
found by multi-start L-BFGS-B (or the mixed alternating optimiser) from the best candidates.

Every candidate is scored by the model: posterior mean per metric and the probability of
feasibility, which concerns the *expected* outcome of the condition (the latent function,
no well noise; sd in raw units) and is joint over the constraints (outputs are independent
GPs: a product of normal CDFs, so each constraint alone holds with at least that
probability: equivalently, each constrained metric's one-sided credible bound at that level
meets its bound).

- One objective: among candidates with probability of feasibility >= ``min_probability``
  (:data:`MIN_PROBABILITY`, 0.99, by default), the highest posterior mean of the objective
  wins.
- Several objectives: the predicted Pareto front (posterior means) of those candidates, then
  :func:`planners.multiobjective.choose_on_front` (the knee, or the operator's preference).
- If no candidate reaches ``min_probability``, the most probably feasible one is returned;
  its ``probability_feasible`` says how sure the model is.

The returned proposal carries the posterior mean and sd per metric and a 95 % credible
interval of the mean (``mean +- 1.96 sd``; a new measurement also has well noise).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Mapping
from typing import Any, cast

import torch
from botorch.acquisition import AcquisitionFunction
from botorch.optim import optimize_acqf
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from botorch.posteriors.gpytorch import GPyTorchPosterior
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor
from torch.quasirandom import SobolEngine

from planners.base import Proposal
from planners.encoding import DTYPE, SpaceEncoder
from planners.multiobjective import choose_on_front
from planners.surrogate import Surrogate

#: The probability of feasibility a recommended condition needs (when one reaches it).
#: Why 0.99 and not 0.9: the recommendation is the best point *on* the boundary the
#: probability draws, so it is the candidate whose constrained metric the model most
#: overestimates there (a winner's curse), and a stationary GP with near-homoscedastic noise
#: over heavy-tailed well noise (failed wells) is over-confident near a steep dose response.
#: On the peers benchmark (``benchmarks/peers.py``; 56 experiments, drug_combo,
#: drug_combo_partner, drug_trio, 5 seeds each) the chosen point's predicted
#: ``normal_viability`` exceeded the truth by +0.75 posterior sd on average (rms 1.45 sd), and
#: at 0.9 4 of 15 recommendations were truly infeasible (0.584-0.5992 against >= 0.6); at
#: 0.975 2, at 0.99 1 (0.595), at 0.999 none; median recommended-point regret (an infeasible
#: one counted as 1; drug_combo, drug_combo_partner, drug_trio) 0.081, 0.055, 0.128 at 0.9;
#: 0.101, 0.062, 0.143 at 0.99; 0.147, 0.107, 0.275 at 0.999. Left open: at 0.99 one drug_trio
#: seed took a feasible but poor condition in a sparsely sampled region (regret 1.04, posterior
#: sd of the constrained metric 0.03: the objective's mean was over-optimistic there).
MIN_PROBABILITY = 0.99
_PENALTY = 10.0


class FeasiblePosteriorMean(AcquisitionFunction):
    """Standardised posterior mean of the objective minus a feasibility penalty.

    ``value = (mean_obj - offset) / scale - 10 * max(0, log p_min - log P(feasible))``;
    ``X``: ``b x 1 x d`` -> ``b``.
    """

    def __init__(
        self, surrogate: Surrogate, offset: float, scale: float, min_probability: float
    ) -> None:
        super().__init__(model=surrogate.model)
        self.surrogate = surrogate
        self.offset, self.scale = offset, scale
        self.min_log_prob = math.log(min_probability)

    def forward(self, X: Tensor) -> Tensor:
        post = cast(GPyTorchPosterior, self.surrogate.model.posterior(X))
        mean = post.mean.squeeze(-2)
        sd = post.variance.clamp_min(1e-18).sqrt().squeeze(-2)
        value = (mean[..., 0] - self.offset) / self.scale
        shortfall = (self.min_log_prob - self.surrogate.log_feasibility(mean, sd)).clamp_min(0)
        return value - _PENALTY * shortfall


def recommend_point(
    surrogate: Surrogate,
    encoder: SpaceEncoder,
    settings: Mapping[str, Any],
    seed: int,
    *,
    preference: Mapping[str, float] | None = None,
    min_probability: float = MIN_PROBABILITY,
    optimize: bool = True,
    planner: str = "bayesian",
) -> Proposal:
    """The recommended condition of the current campaign (see the module docstring)."""
    X = torch.cat([surrogate.X_baseline, _sobol_candidates(encoder, settings["raw_samples"], seed)])
    X = _snap(encoder, X)
    mean, sd = surrogate.signed_moments(X)
    logpf = surrogate.log_feasibility(mean, sd)
    if optimize and surrogate.n_objectives == 1 and not encoder.has_log_constraints:
        best = _maximise(surrogate, encoder, settings, X, mean, logpf, min_probability, seed)
        X = torch.cat([X, _snap(encoder, best)])
        mean, sd = surrogate.signed_moments(X)
        logpf = surrogate.log_feasibility(mean, sd)
    ok = logpf >= math.log(min_probability) - 1e-12
    if not bool(ok.any()):
        k = int(logpf.argmax())
    elif surrogate.n_objectives == 1:
        k = int(torch.where(ok, mean[:, 0], torch.full_like(mean[:, 0], -math.inf)).argmax())
    else:
        idx = torch.nonzero(ok).reshape(-1)
        Yk = mean[idx, : surrogate.n_objectives]
        front = idx[is_non_dominated(Yk)]
        k = int(
            front[
                choose_on_front(
                    mean[front, : surrogate.n_objectives], surrogate.objectives, preference
                )
            ]
        )
    params = encoder.space.validate_point(encoder.decode(X[k : k + 1])[0])
    X_rec = encoder.encode([params])
    ((m, s),) = surrogate.predictions(X_rec)
    logpf_rec = surrogate.log_feasibility(*surrogate.signed_moments(X_rec))[0]
    return Proposal(
        params=params,
        predicted_mean=m,
        predicted_sd=s,
        predicted_interval={k_: (m[k_] - 1.96 * s[k_], m[k_] + 1.96 * s[k_]) for k_ in m},
        probability_feasible=float(logpf_rec.exp()) if surrogate.constraints else None,
        planner=planner,
    )


def _sobol_candidates(encoder: SpaceEncoder, n: int, seed: int) -> Tensor:
    U = SobolEngine(encoder.dim, scramble=True, seed=seed).draw(max(n, 16), dtype=DTYPE)
    X = encoder.unit_to_encoded(U)
    return X[torch.from_numpy(encoder.feasible_mask(X))]


def _snap(encoder: SpaceEncoder, X: Tensor) -> Tensor:
    """Round integer columns and categorical codes as decoding does."""
    X = X.clone()
    for i in encoder.cat_dims:
        X[:, i] = X[:, i].round()
    for i, values in encoder.int_values().items():
        span = len(values) - 1
        X[:, i] = (X[:, i].clamp(0, 1) * span).round() / span
    return X


def _maximise(
    surrogate: Surrogate,
    encoder: SpaceEncoder,
    settings: Mapping[str, Any],
    X: Tensor,
    mean: Tensor,
    logpf: Tensor,
    min_probability: float,
    seed: int,
) -> Tensor:
    """``1 x d``: a maximiser of :class:`FeasiblePosteriorMean`."""
    obj = mean[:, 0]
    acqf = FeasiblePosteriorMean(
        surrogate, float(obj.mean()), float(obj.std().clamp_min(1e-9)), min_probability
    )
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        values = acqf(X.unsqueeze(1))
    starts = X[values.topk(min(settings["num_restarts"], X.shape[0])).indices].unsqueeze(1)
    kwargs: dict[str, Any] = {
        "acq_function": acqf,
        "bounds": encoder.bounds,
        "q": 1,
        "num_restarts": starts.shape[0],
        "inequality_constraints": encoder.inequality_constraints() or None,
    }
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        if encoder.cat_dims:
            best, _ = optimize_acqf_mixed_alternating(
                **kwargs,
                raw_samples=settings["raw_samples"],
                cat_dims=encoder.cat_values(),
                discrete_dims=encoder.int_values() or None,
                options={"maxiter_alternating": settings["maxiter_alternating"]},
            )
        else:
            best, _ = optimize_acqf(
                **kwargs,
                batch_initial_conditions=starts,
                options={"maxiter": settings["maxiter"]},
                retry_on_optimization_warning=False,
            )
    return best.reshape(1, encoder.dim)
