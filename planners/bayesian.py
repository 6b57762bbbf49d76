"""The default planner: Bayesian optimisation with BoTorch.

Until ``n_initial`` current-campaign observations carry every objective, proposals come from
the scrambled Sobol sequence. After that, one GP per metric (each objective and each
outcome-constrained metric) is fitted on encoded inputs with standardised outcomes
(:mod:`planners.surrogate`; prior campaigns' data through :mod:`planners.transfer`, guarded
against negative transfer); the acquisition is qLogNEI for one objective and qLogNEHVI for
several (:mod:`planners.optimise`, :mod:`planners.multiobjective`), optimised with pending
experiments as ``X_pending``, outcome constraints as BoTorch ``constraints`` callables, linear
parameter constraints as ``inequality_constraints`` and plate parameters fixed across the
batch. ``recommend`` is :mod:`planners.recommendation`.

Two kinds of slot may replace the last greedy points of a one-objective batch: a level of a
categorical parameter that the posterior still gives a fair chance of holding the optimum
but that the batch left out gets a Thompson-sampled point at that level
(:mod:`planners.levels`, ``level_reserve``), and a campaign whose incumbent has not moved
for ``stall_batches`` batches gets Thompson-sampled points (:mod:`planners.explore`,
``explore_share``). Setting either share to 0 turns it off.

Prior campaigns (observations with ``task`` set) shorten the initial design to
``max(4, number of parameters + 1)`` and guide a quarter of it (at least one point) while it
lasts: those points maximise the acquisition on a model of the largest prior campaign alone
(pending and already-measured points count as pending). It is a bounded bet, since no
current data can yet say whether the prior is related; the rest of the initial design stays
Sobol, and once :data:`planners.transfer.MIN_CURRENT` current observations exist the guard
of :mod:`planners.transfer` decides per round whether prior data are used at all.

Supported together: any number of objectives, outcome constraints, linear parameter
constraints over non-log parameters, plate parameters, categorical/integer parameters and
prior campaigns. Refused (:meth:`BayesianPlanner.check`): linear constraints over
log-scaled parameters, unknown plate parameters, an outcome constraint or objective named
twice, no objective.
"""

from __future__ import annotations

import math
import warnings
from collections import Counter
from collections.abc import Mapping, Sequence
from typing import Any

import torch

from planners.base import Observation, PlateParameters, Proposal
from planners.baselines import check_plate_parameters
from planners.encoding import SpaceEncoder
from planners.exceptions import PlannerError, UnsupportedPlanningFeature
from planners.explore import explore_slots
from planners.levels import reserve_levels
from planners.multiobjective import pareto_front
from planners.optimise import build_acquisition, optimise_batch, optimise_points, repair
from planners.recommendation import MIN_PROBABILITY, recommend_point
from planners.space import Objective, OutcomeConstraint, Params, SearchSpace
from planners.surrogate import Surrogate, current_rows
from planners.transfer import MIN_CURRENT

#: Optimiser settings per profile. ``fast`` targets < 2 s for q=8 at ~60 observations on one
#: thread; ``thorough`` spends roughly 10x more on the acquisition optimisation.
#: ``maxls`` caps L-BFGS-B line-search steps: flat log-EI surfaces late in a campaign made
#: line searches take ~1000 acquisition evaluations per batch (4 s); 5 halves that with the
#: same batch acquisition value.
#: With categorical parameters, ``optimize_acqf_mixed_alternating`` runs; its default
#: "continuous_relaxation" start-point search was half its time (q=8, 60 observations, one
#: outcome constraint: 2.7 s CPU vs 1.6 s with "random" starts, same batch acquisition value).
#: Constrained q=8 at 100 observations (CPU s on a loaded 2-core machine; drug_combo_partner,
#: drug_trio, 3x10-level categoricals): restarts 4 / maxiter 60 / 64 MC samples 2.6, 2.2,
#: 2.5; 32 samples 1.9, 1.6, 2.4; 2 restarts 1.8, 1.5, 1.8; 3 restarts, maxiter 40 and 32
#: samples (now) 1.7, 1.6, 1.9. ``benchmarks/planner_efficiency.py`` runs this profile
#: against ``thorough`` and the previous settings for sample efficiency.
#: Several objectives: qLogNEHVI (``multi_objective="nehvi"``) with ``mc_samples_multi`` MC
#: samples; 2 objectives, q=8, 60 observations: 1.5-2.4 s CPU with 32 samples, 1.8-2.8 s with
#: 64. ``"parego"`` (qLogNParEGO, one random scalarisation per batch) took 1.0-1.5 s.
PROFILES: dict[str, dict[str, Any]] = {
    "fast": {
        "num_restarts": 3,
        "raw_samples": 128,
        "maxiter": 40,
        "mc_samples": 32,
        "maxls": 5,
        "maxiter_alternating": 2,
        "mixed_initialization": "random",
        "multi_objective": "nehvi",
        "mc_samples_multi": 32,
        "level_reserve": 0.25,
        "level_min_probability": 0.1,
        "level_thompson": True,
        "explore_share": 0.25,
        "stall_batches": 2,
        "initial_per_parameter": 2.0,
        "initial_max": 16,
    },
    "thorough": {
        "num_restarts": 12,
        "raw_samples": 1024,
        "maxiter": 200,
        "mc_samples": 256,
        "maxls": 20,
        "maxiter_alternating": 16,
        "mixed_initialization": "continuous_relaxation",
        "multi_objective": "nehvi",
        "mc_samples_multi": 128,
        "level_reserve": 0.25,
        "level_min_probability": 0.1,
        "level_thompson": True,
        "explore_share": 0.25,
        "stall_batches": 2,
        "initial_per_parameter": 2.0,
        "initial_max": 16,
    },
}

_NAME = "bayesian"


def _check(
    space: SearchSpace,
    objectives: Sequence[Objective],
    outcome_constraints: Sequence[OutcomeConstraint],
    plate_parameters: PlateParameters,
) -> tuple[SpaceEncoder, Params | None]:
    if not objectives:
        raise PlannerError("the campaign names no objective to optimise")
    metrics = [o.metric for o in objectives]
    if len(set(metrics)) != len(metrics):
        raise UnsupportedPlanningFeature(_NAME, f"the same objective twice ({metrics})")
    encoder = SpaceEncoder(space)
    if encoder.has_log_constraints:
        raise UnsupportedPlanningFeature(
            _NAME,
            "linear constraints over log-scaled parameters",
            hint="constrain parameters on a linear scale, or use the 'sobol' planner",
        )
    return encoder, check_plate_parameters(_NAME, space, plate_parameters)


class BayesianPlanner:
    """GP + qLogNEI / qLogNEHVI Bayesian optimisation, the default planner.

    Each model-based proposal carries the posterior mean and sd (raw units) of every
    objective and outcome-constrained metric, and ``acquisition_value``: the acquisition of
    that point alone, given the pending experiments (not of the whole batch).

    Args:
        profile: ``"fast"`` (a batch in about a second or two) or ``"thorough"``.
        n_initial: current-campaign observations (with every objective measured) before the
            model is used; default ``max(8, initial_per_parameter x number of parameters)``
            (``initial_per_parameter`` 2), but at most ``max(initial_max, number of
            parameters)`` (``initial_max`` 16; None: no cap), or ``max(4, number of
            parameters + 1)`` when prior campaigns' data are given.
        use_prior_data: use prior campaigns' observations (``task`` set) at all.
        num_restarts, raw_samples, maxiter, mc_samples, maxiter_alternating,
            mixed_initialization: override the profile's optimiser settings (see
            :data:`PROFILES`).
    """

    name = _NAME

    def __init__(
        self,
        profile: str = "fast",
        n_initial: int | None = None,
        use_prior_data: bool = True,
        **overrides: Any,
    ) -> None:
        if profile not in PROFILES:
            raise PlannerError(f"unknown profile {profile!r}; choose one of {sorted(PROFILES)}")
        unknown = set(overrides) - set(PROFILES[profile])
        if unknown:
            raise PlannerError(
                f"unknown setting(s) {sorted(unknown)} for planner {_NAME!r}; "
                f"known: {sorted(PROFILES[profile]) + ['n_initial', 'profile', 'use_prior_data']}"
            )
        self.profile = profile
        self.n_initial = n_initial
        self.use_prior_data = use_prior_data
        self.settings: dict[str, Any] = {**PROFILES[profile], **overrides}

    def initial_design_size(self, space: SearchSpace, with_prior_data: bool = False) -> int:
        """Current-campaign observations with every objective needed before the GP is used."""
        if self.n_initial is not None:
            return self.n_initial
        d = len(space.parameters)
        if with_prior_data:
            return max(MIN_CURRENT + 1, d + 1)
        n = max(8, math.ceil(float(self.settings["initial_per_parameter"]) * d))
        cap = self.settings["initial_max"]
        return n if cap is None else max(8, min(n, max(int(cap), d)))

    def check(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        plate_parameters: PlateParameters = (),
    ) -> None:
        """Raise :class:`UnsupportedPlanningFeature` (or :class:`PlannerError`) early for what
        this planner refuses; see the module docstring."""
        _check(space, objectives, outcome_constraints, plate_parameters)

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
        plate_parameters: PlateParameters = (),
    ) -> list[Proposal]:
        """Propose ``n`` experiments; see the module docstring for the method."""
        encoder, pinned = _check(space, objectives, outcome_constraints, plate_parameters)
        plate = list(plate_parameters)
        if n < 1:
            return []
        metrics = [o.metric for o in objectives]
        n_obs = len(current_rows(history, metrics))
        n_current = sum(o.task is None for o in history)
        with_prior = self.use_prior_data and any(
            o.task is not None and metrics[0] in o.outcomes for o in history
        )
        if n_obs < max(2, self.initial_design_size(space, with_prior)):
            guided: list[Proposal] = []
            if with_prior and n >= 2:
                guided = self._prior_guided(
                    encoder,
                    objectives,
                    history,
                    pending,
                    max(1, n // 4),
                    seed,
                    outcome_constraints,
                    plate,
                    pinned,
                )
            if guided and plate and pinned is None:
                pinned = {k: guided[0].params[k] for k in plate}
            empty = torch.zeros(0, encoder.dim, dtype=encoder.bounds.dtype)
            params = repair(
                encoder,
                empty,
                [*pending, *(g.params for g in guided)],
                n - len(guided),
                seed,
                plate,
                skip=n_current + len(pending),
                pinned=pinned,
            )
            return guided + [Proposal(params=p, planner=self.name) for p in params]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            return self._model_based(
                encoder,
                objectives,
                history,
                pending,
                n,
                seed,
                outcome_constraints,
                plate,
                pinned,
            )

    def _prior_guided(
        self,
        encoder: SpaceEncoder,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        pending: Sequence[Params],
        k: int,
        seed: int,
        outcome_constraints: Sequence[OutcomeConstraint],
        plate: Sequence[str],
        pinned: Params | None,
    ) -> list[Proposal]:
        """``k`` initial-design points chosen by the acquisition on the largest prior
        campaign's model (see the module docstring); none if it has fewer than 3 rows."""
        metrics = [o.metric for o in objectives]
        sizes = Counter(o.task for o in history if o.task is not None)
        task = min(sizes, key=lambda t: (-sizes[t], str(t)))
        prior = [
            Observation(params=o.params, outcomes=o.outcomes) for o in history if o.task == task
        ]
        if len(current_rows(prior, metrics)) < 3:
            return []
        avoid = [*pending, *(o.params for o in history if o.task is None)]
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            surrogate = Surrogate(
                encoder, objectives, prior, outcome_constraints, use_prior_data=False
            )
            multi = len(objectives) > 1
            acqf = build_acquisition(
                surrogate,
                encoder.encode(avoid) if avoid else None,
                seed,
                self.settings["mc_samples_multi" if multi else "mc_samples"],
                self.settings["multi_objective"],
            )
            plate_dims = [encoder.space.names.index(name) for name in plate]
            columns = encoder.fixed_columns(pinned) if pinned else None
            X = optimise_batch(acqf, encoder, k, seed, self.settings, plate_dims, columns)
        params = repair(encoder, X, avoid, k, seed + 1, plate, pinned=pinned)
        return [Proposal(params=p, planner=self.name) for p in params]

    def _model_based(
        self,
        encoder: SpaceEncoder,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        pending: Sequence[Params],
        n: int,
        seed: int,
        outcome_constraints: Sequence[OutcomeConstraint],
        plate_parameters: Sequence[str],
        pinned: Params | None,
    ) -> list[Proposal]:
        surrogate = Surrogate(
            encoder, objectives, history, outcome_constraints, use_prior_data=self.use_prior_data
        )
        X_pending = encoder.encode(pending) if pending else None
        acqf = build_acquisition(
            surrogate,
            X_pending,
            seed,
            self.settings["mc_samples" if len(objectives) == 1 else "mc_samples_multi"],
            self.settings["multi_objective"],
        )
        plate_dims = [encoder.space.names.index(k) for k in plate_parameters]
        pinned_columns = encoder.fixed_columns(pinned) if pinned else None
        X = optimise_batch(acqf, encoder, n, seed, self.settings, plate_dims, pinned_columns)
        batch_fixed = pinned_columns or (
            {i: float(X[0, i]) for i in plate_dims} if plate_dims else None
        )
        X, reserved = reserve_levels(
            acqf,
            surrogate,
            encoder,
            X,
            surrogate.X_baseline,
            seed,
            self.settings,
            batch_fixed,
            lambda a, k, s, f: optimise_points(a, encoder, k, s, self.settings, f),
        )
        X, _ = explore_slots(
            surrogate, encoder, X, n - len(reserved), seed, self.settings, batch_fixed
        )
        n_current = sum(o.task is None for o in history)
        params = repair(encoder, X, pending, n, seed + n_current, plate_parameters, pinned=pinned)
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

    def recommend(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        *,
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        preference: Mapping[str, float] | None = None,
        optimize: bool = True,
        seed: int = 0,
        min_probability: float = MIN_PROBABILITY,
    ) -> Proposal:
        """The condition the model believes best, with predicted mean, sd, 95 % interval and
        probability of feasibility; see :mod:`planners.recommendation` for the rule.

        Args:
            preference: with several objectives, a weight (>= 0) per objective metric; the
                point of the predicted Pareto front with the best weighted sum of normalised
                objectives wins. ``None``: the knee (max-min of normalised objectives).
            optimize: also search the space (not only observed and Sobol conditions).
            min_probability: probability (joint over the outcome constraints, of the
                condition's expected outcome) that a recommendation is feasible; see
                :data:`planners.recommendation.MIN_PROBABILITY` for the default 0.99.

        Raises:
            PlannerError: if fewer than 2 current observations carry every objective, or the
                preference names a metric that is not an objective.
        """
        encoder, _ = _check(space, objectives, outcome_constraints, ())
        metrics = [o.metric for o in objectives]
        have = len(current_rows(history, metrics))
        if have < 2:
            raise PlannerError(
                f"need at least 2 observations of {metrics} to recommend, have {have}"
            )
        with torch.random.fork_rng():
            torch.manual_seed(seed)
            surrogate = Surrogate(
                encoder,
                objectives,
                history,
                outcome_constraints,
                use_prior_data=self.use_prior_data,
            )
            return recommend_point(
                surrogate,
                encoder,
                self.settings,
                seed,
                preference=preference,
                min_probability=min_probability,
                optimize=optimize,
                planner=self.name,
            )

    def pareto_front(
        self,
        history: Sequence[Observation],
        objectives: Sequence[Objective],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
    ) -> list[Observation]:
        """The measured Pareto front (see :func:`planners.multiobjective.pareto_front`)."""
        return pareto_front(history, objectives, outcome_constraints)


def recommend(
    space: SearchSpace,
    objectives: Sequence[Objective],
    history: Sequence[Observation],
    *,
    outcome_constraints: Sequence[OutcomeConstraint] = (),
    preference: Mapping[str, float] | None = None,
    profile: str = "fast",
    seed: int = 0,
) -> Proposal:
    """The condition the model believes best; see :meth:`BayesianPlanner.recommend`."""
    return BayesianPlanner(profile=profile).recommend(
        space,
        objectives,
        history,
        outcome_constraints=outcome_constraints,
        preference=preference,
        seed=seed,
    )
