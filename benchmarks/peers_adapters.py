"""One ask/tell interface over cellpilot's planners and the peers (Ax, BayBE, Optuna).

Every adapter is a :class:`Session` for one campaign: ``ask(n)`` returns ``n`` parameter
sets (validated by the assay's search space), ``tell(params, outcomes)`` records the measured
batch, ``recommend()`` returns the condition the optimiser would hand to the lab at the end
(``None`` for a two-objective campaign). Outcome constraints are passed in each tool's own
way; :data:`CONSTRAINT_HANDLING` says how, and the benchmark prints it.

Peers are imported lazily: without the ``peers`` extra only cellpilot's planners run.
"""

from __future__ import annotations

import logging
import math
import warnings
from collections.abc import Sequence
from typing import Any

import numpy as np

from planners.base import Observation, get_planner
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    Params,
)
from simulators.assays import Assay

PEERS = ("ax", "baybe", "optuna")

#: how each tool is given the assay's outcome constraints (printed with the results)
CONSTRAINT_HANDLING: dict[str, str] = {
    "cellpilot": "outcome_constraints modelled by the planner (feasibility-weighted qLogNEI)",
    "sobol": "ignored (model-free)",
    "random": "ignored (model-free)",
    "ax": "Ax outcome constraints ('normal_viability >= 0.6') in configure_optimization",
    "baybe": (
        "no outcome constraints in BayBE: one penalised target "
        "score = selectivity - 5 * max(0, 0.6 - normal_viability)"
    ),
    "optuna": "trial.set_constraint('normal_viability', 0.6 - value) before tell (TPE's constraint handling)",
}

#: how each tool's recommended condition is obtained
RECOMMENDATION: dict[str, str] = {
    "bayesian": (
        "planner.recommend(): highest posterior mean with P(feasible) >= 0.99 among observed, "
        "Sobol and optimised candidates"
    ),
    "sobol": "best observed (noisy) feasible measurement",
    "random": "best observed (noisy) feasible measurement",
    "ax": "Client.get_best_parameterization(use_model_predictions=True)",
    "baybe": "observed condition with the best posterior mean of the (penalised) target",
    "optuna": "study.best_trial (best observed feasible trial)",
}

_PENALTY = 5.0


def _quiet() -> None:
    logging.disable(logging.WARNING)  # Ax logs every trial at INFO
    warnings.filterwarnings("ignore")


class Session:
    """A campaign under one optimiser."""

    name: str

    def ask(self, n: int) -> list[Params]:
        raise NotImplementedError

    def tell(self, params: Sequence[Params], outcomes: Sequence[dict[str, float]]) -> None:
        raise NotImplementedError

    def recommend(self) -> Params | None:
        raise NotImplementedError


def _best_observed(assay: Assay, history: Sequence[Observation]) -> Params | None:
    """Best noisy measurement of the first objective among noisily-feasible observations."""
    obj = assay.objectives[0]
    ok = [o for o in history if assay.feasible(o.outcomes)] or list(history)
    if not ok:
        return None
    return max(ok, key=lambda o: obj.sign * o.outcomes[obj.metric]).params


class CellpilotSession(Session):
    """cellpilot's planners through ``get_planner`` and ``propose``/``recommend``.

    ``prior`` observations (e.g. ``task="prior"``) are prepended to the history the planner
    sees; only the campaign's own observations count as experiments.
    """

    def __init__(
        self,
        assay: Assay,
        planner: str,
        seed: int,
        settings: dict[str, Any] | None = None,
        prior: Sequence[Observation] = (),
    ) -> None:
        self.assay, self.seed, self.name = assay, seed, planner
        self.planner = get_planner(planner, **(settings or {}))
        self.prior = list(prior)
        self.history: list[Observation] = []

    def ask(self, n: int) -> list[Params]:
        a = self.assay
        props = self.planner.propose(
            a.space,
            a.objectives,
            self.prior + self.history,
            [],
            n,
            seed=self.seed,
            outcome_constraints=a.outcome_constraints,
        )
        return [a.space.validate_point(p.params) for p in props]

    def tell(self, params: Sequence[Params], outcomes: Sequence[dict[str, float]]) -> None:
        self.history += [
            Observation(params=p, outcomes=o) for p, o in zip(params, outcomes, strict=True)
        ]

    def recommend(self) -> Params | None:
        a = self.assay
        if len(a.objectives) > 1:
            return None
        rec = getattr(self.planner, "recommend", None)
        if rec is None:
            return _best_observed(a, self.history)
        out = rec(
            a.space,
            a.objectives,
            self.prior + self.history,
            outcome_constraints=a.outcome_constraints,
            seed=self.seed,
        )
        return a.space.validate_point(out.params)


# -------------------------------------------------------------------------------- Ax


class AxSession(Session):
    """Ax ``Client`` (service API) with its default generation strategy.

    Log-scaled parameters use ``scaling="log"``; outcome constraints are Ax outcome
    constraints; each measurement is reported with an unknown SEM (``(mean, None)``), so Ax
    infers the noise. A batch is ``get_next_trials(max_trials=n)``; when the initialisation
    step hands out fewer than ``n`` (it caps its Sobol trials), the call is repeated.
    """

    name = "ax"

    def __init__(self, assay: Assay, seed: int) -> None:
        _quiet()
        from ax import ChoiceParameterConfig, Client, RangeParameterConfig

        self.assay = assay
        params: list[Any] = []
        for p in assay.space.parameters:
            if isinstance(p, ContinuousParameter):
                params.append(
                    RangeParameterConfig(
                        name=p.name,
                        bounds=(p.low, p.high),
                        parameter_type="float",
                        scaling="log" if p.log_scale else None,
                    )
                )
            elif isinstance(p, IntegerParameter):
                params.append(
                    RangeParameterConfig(name=p.name, bounds=(p.low, p.high), parameter_type="int")
                )
            else:
                params.append(
                    ChoiceParameterConfig(
                        name=p.name, values=list(p.levels), parameter_type="str", is_ordered=False
                    )
                )
        if assay.space.linear_constraints:
            raise NotImplementedError("linear parameter constraints are not mapped to Ax here")
        self.client = Client(random_seed=seed)
        self.client.configure_experiment(parameters=params, name=f"{assay.name}_{seed}")
        objective = ", ".join(("" if o.sign > 0 else "-") + o.metric for o in assay.objectives)
        self.metrics = sorted(
            {o.metric for o in assay.objectives} | {c.metric for c in assay.outcome_constraints}
        )
        self.client.configure_optimization(
            objective=objective,
            outcome_constraints=[str(c) for c in assay.outcome_constraints] or None,
        )
        self._pending: list[int] = []

    def ask(self, n: int) -> list[Params]:
        out: list[Params] = []
        for _ in range(4):
            trials = self.client.get_next_trials(max_trials=n - len(out))
            for idx, p in trials.items():
                self._pending.append(idx)
                out.append(self.assay.space.validate_point(dict(p)))
            if len(out) >= n or not trials:
                break
        if len(out) < n:
            raise RuntimeError(f"Ax generated {len(out)} of {n} trials")
        return out

    def tell(self, params: Sequence[Params], outcomes: Sequence[dict[str, float]]) -> None:
        for idx, o in zip(self._pending, outcomes, strict=True):
            self.client.complete_trial(
                trial_index=idx, raw_data={m: (float(o[m]), None) for m in self.metrics}
            )
        self._pending = []

    def recommend(self) -> Params | None:
        if len(self.assay.objectives) > 1:
            return None
        params, _, _, _ = self.client.get_best_parameterization(use_model_predictions=True)
        return self.assay.space.validate_point(dict(params))


# ----------------------------------------------------------------------------- BayBE


class BaybeSession(Session):
    """BayBE ``Campaign`` with its default recommender, a batch per ``recommend``.

    BayBE's continuous parameters have no log scale: a log-scaled concentration is given
    to BayBE as its log10 (``bounds=(log10 low, log10 high)``), as a lab would. BayBE has no
    outcome constraints: a single-objective constrained assay becomes one penalised target
    (see :data:`CONSTRAINT_HANDLING`); a two-objective assay uses ``ParetoObjective``.
    """

    name = "baybe"

    def __init__(self, assay: Assay, seed: int) -> None:
        _quiet()
        from baybe import Campaign
        from baybe.objectives import ParetoObjective
        from baybe.parameters import (
            CategoricalParameter as BCat,
        )
        from baybe.parameters import (
            NumericalContinuousParameter,
            NumericalDiscreteParameter,
        )
        from baybe.searchspace import SearchSpace as BSpace
        from baybe.targets import NumericalTarget
        from baybe.utils.random import set_random_seed

        set_random_seed(seed)
        self.assay = assay
        params: list[Any] = []
        for p in assay.space.parameters:
            if isinstance(p, ContinuousParameter):
                lo, hi = (math.log10(p.low), math.log10(p.high)) if p.log_scale else (p.low, p.high)
                params.append(NumericalContinuousParameter(name=p.name, bounds=(lo, hi)))
            elif isinstance(p, IntegerParameter):
                params.append(
                    NumericalDiscreteParameter(
                        name=p.name, values=tuple(float(v) for v in range(p.low, p.high + 1))
                    )
                )
            else:
                params.append(BCat(name=p.name, values=tuple(p.levels), encoding="OHE"))
        if assay.space.linear_constraints:
            raise NotImplementedError("linear parameter constraints are not mapped to BayBE here")
        if len(assay.objectives) > 1:
            objective: Any = ParetoObjective(
                targets=[
                    NumericalTarget(name=o.metric, minimize=o.sign < 0) for o in assay.objectives
                ]
            )
            self.targets = [o.metric for o in assay.objectives]
        else:
            o = assay.objectives[0]
            objective = NumericalTarget(name="score", minimize=o.sign < 0).to_objective()
            self.targets = ["score"]
        self.campaign = Campaign(searchspace=BSpace.from_product(params), objective=objective)
        self._last: Any = None

    def _to_params(self, row: Any) -> Params:
        out: Params = {}
        for p in self.assay.space.parameters:
            v = row[p.name]
            if isinstance(p, ContinuousParameter) and p.log_scale:
                v = float(np.clip(10.0 ** float(v), p.low, p.high))
            elif isinstance(p, ContinuousParameter):
                v = float(np.clip(float(v), p.low, p.high))
            elif isinstance(p, IntegerParameter):
                v = int(round(float(v)))
            else:
                v = str(v)
            out[p.name] = v
        return self.assay.space.validate_point(out)

    def _score(self, o: dict[str, float]) -> float:
        obj = self.assay.objectives[0]
        value = float(o[obj.metric])
        for c in self.assay.outcome_constraints:
            gap = c.bound - o[c.metric] if c.op == ">=" else o[c.metric] - c.bound
            value -= obj.sign * _PENALTY * max(0.0, float(gap))
        return value

    def ask(self, n: int) -> list[Params]:
        self._last = self.campaign.recommend(batch_size=n)
        return [self._to_params(r) for _, r in self._last.iterrows()]

    def tell(self, params: Sequence[Params], outcomes: Sequence[dict[str, float]]) -> None:
        df = self._last.copy()
        if self.targets == ["score"]:
            df["score"] = [self._score(o) for o in outcomes]
        else:
            for t in self.targets:
                df[t] = [float(o[t]) for o in outcomes]
        self.campaign.add_measurements(df)

    def recommend(self) -> Params | None:
        if len(self.assay.objectives) > 1:
            return None
        meas = self.campaign.measurements
        names = [p.name for p in self.assay.space.parameters]
        stats = self.campaign.posterior_stats(meas[names], stats=("mean",))
        col = [c for c in stats.columns if c.startswith("score") and c.endswith("mean")][0]
        sign = self.assay.objectives[0].sign
        best = int(np.argmax(sign * stats[col].to_numpy()))
        return self._to_params(meas.iloc[best])


# ---------------------------------------------------------------------------- Optuna


class OptunaSession(Session):
    """Optuna ``TPESampler`` (default settings, seeded) with ask/tell, ``n`` asks per batch.

    Outcome constraints are set on each trial (``trial.set_constraint``) before ``tell``,
    which TPE's constrained mode uses; two objectives use the same TPESampler on a study with
    two directions (multi-objective TPE).
    """

    name = "optuna"

    def __init__(self, assay: Assay, seed: int) -> None:
        _quiet()
        import optuna

        optuna.logging.set_verbosity(optuna.logging.ERROR)
        self.optuna = optuna
        self.assay = assay
        directions = ["maximize" if o.sign > 0 else "minimize" for o in assay.objectives]
        self.study = optuna.create_study(
            directions=directions, sampler=optuna.samplers.TPESampler(seed=seed)
        )
        self._pending: list[Any] = []

    def _suggest(self, trial: Any) -> Params:
        out: Params = {}
        for p in self.assay.space.parameters:
            if isinstance(p, ContinuousParameter):
                out[p.name] = trial.suggest_float(p.name, p.low, p.high, log=p.log_scale)
            elif isinstance(p, IntegerParameter):
                out[p.name] = trial.suggest_int(p.name, p.low, p.high)
            elif isinstance(p, CategoricalParameter):
                out[p.name] = trial.suggest_categorical(p.name, list(p.levels))
        return self.assay.space.validate_point(out)

    def ask(self, n: int) -> list[Params]:
        self._pending = [self.study.ask() for _ in range(n)]
        return [self._suggest(t) for t in self._pending]

    def tell(self, params: Sequence[Params], outcomes: Sequence[dict[str, float]]) -> None:
        for trial, o in zip(self._pending, outcomes, strict=True):
            for c in self.assay.outcome_constraints:
                gap = c.bound - o[c.metric] if c.op == ">=" else o[c.metric] - c.bound
                trial.set_constraint(c.metric, float(gap))
            values = [float(o[ob.metric]) for ob in self.assay.objectives]
            self.study.tell(trial, values if len(values) > 1 else values[0])
        self._pending = []

    def recommend(self) -> Params | None:
        if len(self.assay.objectives) > 1:
            return None
        try:
            best = self.study.best_trial
        except ValueError:  # no feasible trial
            return None
        return self.assay.space.validate_point(dict(best.params))


def make_session(
    assay: Assay,
    planner: str,
    seed: int,
    *,
    profile: str = "fast",
    prior: Sequence[Observation] = (),
) -> Session:
    """The session for ``planner``: a cellpilot planner name, or one of :data:`PEERS`."""
    if planner == "ax":
        return AxSession(assay, seed)
    if planner == "baybe":
        return BaybeSession(assay, seed)
    if planner == "optuna":
        return OptunaSession(assay, seed)
    settings = {"profile": profile} if planner == "bayesian" else {}
    return CellpilotSession(assay, planner, seed, settings, prior)
