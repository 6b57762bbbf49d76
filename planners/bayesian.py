"""The default planner: Bayesian optimisation with BoTorch (GP + qLogNoisyExpectedImprovement).

Until ``n_initial`` observations carry the objective metric, proposals come from the scrambled
Sobol sequence. After that, one GP per metric (the objective and each outcome-constrained
metric) is fitted on encoded inputs with standardised outcomes; qLogNEI is optimised with
pending experiments as ``X_pending``, outcome constraints as BoTorch ``constraints`` callables
and linear parameter constraints as ``inequality_constraints``.
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Callable, Sequence
from typing import Any

import torch
from botorch.acquisition import PosteriorMean
from botorch.acquisition.logei import qLogNoisyExpectedImprovement
from botorch.acquisition.objective import GenericMCObjective, ScalarizedPosteriorTransform
from botorch.models import ModelListGP
from botorch.models.model import Model
from botorch.optim import optimize_acqf
from botorch.optim.optimize_mixed import optimize_acqf_mixed_alternating
from botorch.sampling import SobolQMCNormalSampler
from torch import Tensor

from planners.base import Observation, Proposal, register_planner
from planners.baselines import sobol_points
from planners.encoding import SpaceEncoder
from planners.exceptions import PlannerError, UnsupportedPlanningFeature
from planners.initial_conditions import rejection_ic_generator
from planners.models import fit_gp, metric_data, predict
from planners.space import Objective, OutcomeConstraint, Params, SearchSpace

#: Optimiser settings per profile. ``fast`` targets < 2 s for q=8 at ~60 observations on one
#: thread; ``thorough`` spends roughly 10x more on the acquisition optimisation.
#: ``maxls`` caps L-BFGS-B line-search steps: flat log-EI surfaces late in a campaign made
#: line searches take ~1000 acquisition evaluations per batch (4 s); 5 halves that with the
#: same batch acquisition value.
#: With categorical parameters, ``optimize_acqf_mixed_alternating`` runs; its default
#: "continuous_relaxation" start-point search was half its time (q=8, 60 observations, one
#: outcome constraint: 2.7 s CPU vs 1.6 s with "random" starts, same batch acquisition value).
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {
        "num_restarts": 4,
        "raw_samples": 128,
        "maxiter": 60,
        "mc_samples": 64,
        "maxls": 5,
        "maxiter_alternating": 2,
        "mixed_initialization": "random",
    },
    "thorough": {
        "num_restarts": 12,
        "raw_samples": 1024,
        "maxiter": 200,
        "mc_samples": 256,
        "maxls": 20,
        "maxiter_alternating": 16,
        "mixed_initialization": "continuous_relaxation",
    },
}

_NAME = "bayesian"


def _single_objective(objectives: Sequence[Objective]) -> Objective:
    if len(objectives) > 1:
        raise UnsupportedPlanningFeature(
            _NAME,
            f"{len(objectives)} objectives ({', '.join(o.metric for o in objectives)})",
            hint="multi-objective search is not implemented yet",
        )
    if not objectives:
        raise PlannerError("the campaign names no objective to optimise")
    return objectives[0]


def _check_space(encoder: SpaceEncoder) -> None:
    if encoder.has_log_constraints:
        raise UnsupportedPlanningFeature(
            _NAME,
            "linear constraints over log-scaled parameters",
            hint="constrain parameters on a linear scale, or use the 'sobol' planner",
        )


class _Surrogate:
    """The fitted model of one round; outputs are ``metrics``: the objective (times its sign,
    so it is maximised) first, then each constrained metric (raw units).

    When every constrained metric was measured wherever the objective was (the usual case),
    one multi-output ``SingleTaskGP`` models them all (independent GPs batched together,
    which qLogNEI evaluates about 3x faster than a ``ModelListGP``); otherwise each metric
    gets its own GP on its own observations, in a ``ModelListGP``.
    """

    def __init__(
        self,
        encoder: SpaceEncoder,
        objective: Objective,
        history: Sequence[Observation],
        outcome_constraints: Sequence[OutcomeConstraint],
    ) -> None:
        self.objective = objective
        data = metric_data(encoder, history, objective.metric)
        self.X_baseline = data.X
        self.metrics = [objective.metric]
        self.constraints: list[OutcomeConstraint] = []
        per_metric = {objective.metric: data}
        for c in outcome_constraints:
            cdata = per_metric.get(c.metric) or metric_data(encoder, history, c.metric)
            if cdata.X.shape[0] < 3:
                continue  # too little data to model; the constraint is ignored this round
            per_metric[c.metric] = cdata
            if c.metric not in self.metrics:
                self.metrics.append(c.metric)
            self.constraints.append(c)
        Ys = [per_metric[m].Y for m in self.metrics]
        Ys[0] = objective.sign * Ys[0]
        if all(torch.equal(per_metric[m].X, data.X) for m in self.metrics):
            self.model: Model = fit_gp(encoder, data.X, torch.cat(Ys, dim=-1))
        else:
            self.model = ModelListGP(
                *(
                    fit_gp(encoder, per_metric[m].X, y)
                    for m, y in zip(self.metrics, Ys, strict=True)
                )
            )

    def mc_objective_and_constraints(
        self,
    ) -> tuple[GenericMCObjective | None, list[Callable[[Tensor], Tensor]] | None]:
        """Objective on output 0 and BoTorch constraints (feasible where ``<= 0``)."""
        if len(self.metrics) == 1:
            return None, None
        cons: list[Callable[[Tensor], Tensor]] = []
        for c in self.constraints:
            i = self.metrics.index(c.metric)
            # output 0 is the objective times its sign; undo that for a constraint on it
            sg = self.objective.sign if i == 0 else 1.0
            if c.op == ">=":
                cons.append(lambda Z, i=i, b=c.bound, sg=sg: b - sg * Z[..., i])
            else:
                cons.append(lambda Z, i=i, b=c.bound, sg=sg: sg * Z[..., i] - b)
        return GenericMCObjective(lambda Z, X: Z[..., 0]), cons

    def objective_transform(self) -> ScalarizedPosteriorTransform | None:
        """Selects output 0 (the signed objective) of a multi-output model."""
        if len(self.metrics) == 1:
            return None
        weights = torch.zeros(len(self.metrics), dtype=self.X_baseline.dtype)
        weights[0] = 1.0
        return ScalarizedPosteriorTransform(weights=weights)

    def predictions(self, X: Tensor) -> list[tuple[dict[str, float], dict[str, float]]]:
        """Per row of ``X``: (mean, sd) per metric in raw units and the metric's own sign."""
        mean, sd = predict(self.model, X)
        signs = [self.objective.sign] + [1.0] * (len(self.metrics) - 1)
        return [
            (
                {
                    m: float(g * mean[k, j])
                    for j, (m, g) in enumerate(zip(self.metrics, signs, strict=True))
                },
                {m: float(sd[k, j]) for j, m in enumerate(self.metrics)},
            )
            for k in range(X.shape[0])
        ]


@register_planner(_NAME)
class BayesianPlanner:
    """GP + qLogNEI Bayesian optimisation, the default planner.

    Each model-based proposal carries the posterior mean and sd (raw units) of the objective
    and of every outcome-constrained metric, and ``acquisition_value``: the log expected
    improvement of that point alone, given the pending experiments (not of the whole batch).

    Args:
        profile: ``"fast"`` (a batch in about a second or two) or ``"thorough"``.
        n_initial: observations (with the objective measured) before the model is used;
            default ``max(8, 2 * number of parameters)``.
        num_restarts, raw_samples, maxiter, mc_samples, maxiter_alternating,
            mixed_initialization: override the profile's optimiser settings (see
            :data:`PROFILES`).
    """

    name = _NAME

    def __init__(
        self, profile: str = "fast", n_initial: int | None = None, **overrides: Any
    ) -> None:
        if profile not in PROFILES:
            raise PlannerError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        unknown = set(overrides) - set(PROFILES[profile])
        if unknown:
            raise PlannerError(
                f"unknown setting(s) {sorted(unknown)} for planner {_NAME!r}; "
                f"known: {sorted(PROFILES[profile]) + ['n_initial', 'profile']}"
            )
        self.profile = profile
        self.n_initial = n_initial
        self.settings: dict[str, Any] = {**PROFILES[profile], **overrides}

    def initial_design_size(self, space: SearchSpace) -> int:
        """Observations with the objective needed before the GP is used."""
        return self.n_initial if self.n_initial is not None else max(8, 2 * len(space.parameters))

    def propose(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        pending: Sequence[Params],
        n: int,
        seed: int,
        *,
        outcome_constraints: Sequence[OutcomeConstraint] = (),
    ) -> list[Proposal]:
        """Propose ``n`` experiments; see the module docstring for the method."""
        objective = _single_objective(objectives)
        encoder = SpaceEncoder(space)
        _check_space(encoder)
        if n < 1:
            return []
        n_obs = sum(
            1
            for o in history
            if objective.metric in o.outcomes and math.isfinite(o.outcomes[objective.metric])
        )
        if n_obs < max(2, self.initial_design_size(space)):
            return self._sobol(space, history, pending, n, seed, set())
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return self._model_based(
                encoder, objective, history, pending, n, seed, outcome_constraints
            )

    def _sobol(
        self,
        space: SearchSpace,
        history: Sequence[Observation],
        pending: Sequence[Params],
        n: int,
        seed: int,
        taken: set[tuple[object, ...]],
    ) -> list[Proposal]:
        """Sobol points continuing the sequence, skipping repeats of pending/``taken`` points.

        In a small discrete space that is nearly exhausted, repeats are allowed after a
        bounded search rather than looping forever.
        """
        encoder = SpaceEncoder(space)
        taken = taken | {encoder.key(p) for p in pending}
        skip, out, attempts = len(history) + len(pending), [], 0
        while len(out) < n:
            unique = attempts < 20
            attempts += 1
            for p in sobol_points(space, n - len(out), seed, skip=skip):
                skip += 1
                if not unique or encoder.key(p) not in taken:
                    taken.add(encoder.key(p))
                    out.append(Proposal(params=p, planner=self.name))
        return out

    def _model_based(
        self,
        encoder: SpaceEncoder,
        objective: Objective,
        history: Sequence[Observation],
        pending: Sequence[Params],
        n: int,
        seed: int,
        outcome_constraints: Sequence[OutcomeConstraint],
    ) -> list[Proposal]:
        surrogate = _Surrogate(encoder, objective, history, outcome_constraints)
        X_pending = encoder.encode(pending) if pending else None
        acqf = self._acquisition(surrogate, X_pending, seed)
        X = self._optimise(acqf, encoder, n, seed)
        params = self._repair(encoder, X, pending, n, seed, len(history))
        X_final = encoder.encode(params)
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            acqf.set_X_pending(X_pending)
            values = acqf(X_final.unsqueeze(1)).tolist()
        preds = surrogate.predictions(X_final)
        return [
            Proposal(
                params=p,
                predicted_mean=m,
                predicted_sd=s,
                acquisition_value=float(v),
                planner=self.name,
            )
            for p, (m, s), v in zip(params, preds, values, strict=True)
        ]

    def _acquisition(
        self, surrogate: _Surrogate, X_pending: Tensor | None, seed: int
    ) -> qLogNoisyExpectedImprovement:
        mc_objective, constraints = surrogate.mc_objective_and_constraints()
        sampler = SobolQMCNormalSampler(torch.Size([self.settings["mc_samples"]]), seed=seed)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return qLogNoisyExpectedImprovement(
                model=surrogate.model,
                X_baseline=surrogate.X_baseline,
                sampler=sampler,
                objective=mc_objective,
                constraints=constraints,
                X_pending=X_pending,
                prune_baseline=True,
                cache_root=True,
            )

    def _optimise(
        self, acqf: qLogNoisyExpectedImprovement, encoder: SpaceEncoder, n: int, seed: int
    ) -> Tensor:
        """Optimise the acquisition for a batch of ``n``: returns ``n x d`` encoded candidates."""
        s = self.settings
        ineq = encoder.inequality_constraints() or None
        kwargs: dict[str, Any] = {
            "acq_function": acqf,
            "bounds": encoder.bounds,
            "q": n,
            "num_restarts": s["num_restarts"],
            "raw_samples": s["raw_samples"],
            "inequality_constraints": ineq,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if encoder.cat_dims:
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
                options = {"maxiter": s["maxiter"], "batch_limit": 32}
                if ineq:  # SLSQP: fast feasible starts; it has no line-search cap
                    kwargs["ic_generator"] = rejection_ic_generator(seed)
                else:  # L-BFGS-B
                    options["maxls"] = s["maxls"]
                X, _ = optimize_acqf(**kwargs, sequential=True, options=options)
        return X.reshape(n, encoder.dim)

    def _repair(
        self,
        encoder: SpaceEncoder,
        X: Tensor,
        pending: Sequence[Params],
        n: int,
        seed: int,
        n_history: int,
    ) -> list[Params]:
        """Decode; drop points that rounding made infeasible or that repeat pending/batch points;
        fill the gap with Sobol points."""
        taken = {encoder.key(p) for p in pending}
        out: list[Params] = []
        for p in encoder.decode(X):
            key = encoder.key(p)
            if key in taken or not encoder.feasible([p])[0]:
                continue
            taken.add(key)
            out.append(encoder.space.validate_point(p))
        if len(out) < n:
            fill = self._sobol(encoder.space, [], [], n - len(out), seed + n_history, taken)
            out += [f.params for f in fill]
        return out[:n]

    def recommend(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        *,
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        optimize: bool = True,
        seed: int = 0,
    ) -> Proposal:
        """The condition the model believes best, with its predicted mean and sd.

        Candidates are the observed conditions and (with ``optimize`` and no outcome
        constraints) a maximiser of the posterior mean. Among candidates predicted to satisfy
        every outcome constraint (posterior mean), the one with the best predicted objective
        wins; if none is predicted feasible, the one closest to feasibility wins.

        Raises:
            PlannerError: if fewer than 2 observations carry the objective metric.
        """
        objective = _single_objective(objectives)
        encoder = SpaceEncoder(space)
        data = metric_data(encoder, history, objective.metric)
        if data.X.shape[0] < 2:
            raise PlannerError(
                f"need at least 2 observations of {objective.metric!r} to recommend, "
                f"have {data.X.shape[0]}"
            )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            surrogate = _Surrogate(encoder, objective, history, outcome_constraints)
            X = data.X
            if optimize and not surrogate.constraints and not encoder.has_log_constraints:
                X = torch.cat([X, self._posterior_mean_argmax(encoder, surrogate)])
        params = [space.validate_point(p) for p in encoder.decode(X)]
        X = encoder.encode(params)
        preds = surrogate.predictions(X)
        best = max(range(len(params)), key=lambda k: self._rank(preds[k][0], surrogate))
        mean, sd = preds[best]
        return Proposal(
            params=params[best], predicted_mean=mean, predicted_sd=sd, planner=self.name
        )

    @staticmethod
    def _rank(mean: dict[str, float], surrogate: _Surrogate) -> tuple[float, float]:
        violation = 0.0
        for c in surrogate.constraints:
            v = mean[c.metric]
            violation += max(0.0, c.bound - v) if c.op == ">=" else max(0.0, v - c.bound)
        return (-violation, surrogate.objective.sign * mean[surrogate.objective.metric])

    def _posterior_mean_argmax(self, encoder: SpaceEncoder, surrogate: _Surrogate) -> Tensor:
        acqf = PosteriorMean(surrogate.model, posterior_transform=surrogate.objective_transform())
        kwargs: dict[str, Any] = {
            "acq_function": acqf,
            "bounds": encoder.bounds,
            "q": 1,
            "num_restarts": self.settings["num_restarts"],
            "raw_samples": self.settings["raw_samples"],
            "inequality_constraints": encoder.inequality_constraints() or None,
        }
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            if encoder.cat_dims:
                X, _ = optimize_acqf_mixed_alternating(
                    **kwargs,
                    cat_dims=encoder.cat_values(),
                    discrete_dims=encoder.int_values() or None,
                )
            else:
                X, _ = optimize_acqf(**kwargs, options={"maxiter": self.settings["maxiter"]})
        return X.reshape(1, encoder.dim)


def recommend(
    space: SearchSpace,
    objectives: Sequence[Objective],
    history: Sequence[Observation],
    *,
    outcome_constraints: Sequence[OutcomeConstraint] = (),
    profile: str = "fast",
    seed: int = 0,
) -> Proposal:
    """The condition the model believes best; see :meth:`BayesianPlanner.recommend`."""
    return BayesianPlanner(profile=profile).recommend(
        space, objectives, history, outcome_constraints=outcome_constraints, seed=seed
    )
