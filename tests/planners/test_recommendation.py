"""Honest recommendation (planners/recommendation.py): feasible with high probability, with intervals."""

from __future__ import annotations

import numpy as np
import pytest

from planners.base import Observation, get_planner
from planners.bayesian import BayesianPlanner
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)

TINY = {"num_restarts": 2, "raw_samples": 64, "maxiter": 30, "mc_samples": 32, "maxls": 5}
OBJ = [Objective(metric="y")]
SPACE = SearchSpace(
    parameters=[
        ContinuousParameter(name="x", low=0, high=1),
        ContinuousParameter(name="z", low=0, high=1),
    ]
)
CONS = [OutcomeConstraint.model_validate("viability >= 0.6")]


def truth(p: Params) -> dict[str, float]:
    """y grows with x; viability = 1 - x, so the constrained optimum is x = 0.4, z = 0.5."""
    x, z = float(p["x"]), float(p["z"])
    return {"y": x - (z - 0.5) ** 2, "viability": 1 - x}


def _history(n: int, seed: int = 0, noise: float = 0.02) -> list[Observation]:
    rng = np.random.default_rng(seed)
    pts = get_planner("sobol").propose(SPACE, OBJ, [], [], n, seed=seed)
    return [
        Observation(
            params=p.params,
            outcomes={k: v + noise * rng.normal() for k, v in truth(p.params).items()},
        )
        for p in pts
    ]


def test_constrained_recommendation_searches_the_space_and_is_probably_feasible() -> None:
    hist = _history(20)
    best = BayesianPlanner(**TINY).recommend(SPACE, OBJ, hist, outcome_constraints=CONS)
    x = float(best.params["x"])
    assert best.probability_feasible is not None and best.probability_feasible >= 0.9
    assert truth(best.params)["viability"] >= 0.6 - 0.05  # truly (nearly) feasible
    assert 0.25 < x < 0.42  # close to the boundary, not only an observed point
    assert abs(float(best.params["z"]) - 0.5) < 0.2
    lo, hi = best.predicted_interval["y"]
    assert lo < best.predicted_mean["y"] < hi
    assert hi - lo == pytest.approx(2 * 1.96 * best.predicted_sd["y"])
    # better than the best observed feasible condition, by the truth
    observed = max(truth(o.params)["y"] for o in hist if truth(o.params)["viability"] >= 0.6)
    assert truth(best.params)["y"] >= observed - 0.02


def test_stricter_probability_moves_the_recommendation_inside() -> None:
    hist = _history(20)
    planner = BayesianPlanner(**TINY)
    loose = planner.recommend(SPACE, OBJ, hist, outcome_constraints=CONS, min_probability=0.5)
    strict = planner.recommend(SPACE, OBJ, hist, outcome_constraints=CONS, min_probability=0.99)
    assert float(strict.params["x"]) <= float(loose.params["x"]) + 1e-6
    assert strict.probability_feasible >= 0.99


def test_infeasible_everywhere_returns_the_most_probably_feasible_point() -> None:
    hist = _history(12)
    cons = [OutcomeConstraint.model_validate("viability >= 1.5")]
    best = BayesianPlanner(**TINY).recommend(SPACE, OBJ, hist, outcome_constraints=cons)
    assert best.probability_feasible is not None and best.probability_feasible < 0.5
    assert float(best.params["x"]) < 0.3  # where viability is highest


def test_recommendation_in_a_mixed_space_is_valid() -> None:
    space = SearchSpace(
        parameters=[*SPACE.parameters, CategoricalParameter(name="m", levels=["a", "b", "c"])]
    )
    rng = np.random.default_rng(1)
    hist = []
    for p in get_planner("sobol").propose(space, OBJ, [], [], 16, seed=1):
        t = truth(p.params)
        t["y"] += 0.3 if p.params["m"] == "b" else 0.0
        hist.append(
            Observation(
                params=p.params, outcomes={k: v + 0.02 * rng.normal() for k, v in t.items()}
            )
        )
    best = BayesianPlanner(**TINY).recommend(space, OBJ, hist, outcome_constraints=CONS)
    assert space.validate_point(best.params) == best.params
    assert best.params["m"] == "b"


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_default_recommendation_is_truly_feasible_with_noisy_data(seed: int) -> None:
    """The default probability (0.99) keeps the recommended condition inside the bound,
    by the truth, although it sits at the boundary the model draws from noisy data."""
    hist = _history(24, seed=seed, noise=0.05)
    best = BayesianPlanner(**TINY).recommend(SPACE, OBJ, hist, outcome_constraints=CONS, seed=seed)
    assert best.probability_feasible is not None and best.probability_feasible >= 0.99
    assert truth(best.params)["viability"] >= 0.6
    assert float(best.params["x"]) > 0.2  # still near the constrained optimum x = 0.4
