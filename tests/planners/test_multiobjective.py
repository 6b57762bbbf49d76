"""Several objectives: qLogNEHVI proposals, Pareto front, knee and preference (planners/multiobjective.py)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from planners.base import Observation, get_planner
from planners.exceptions import PlannerError
from planners.multiobjective import choose_on_front, pareto_front, reference_point
from planners.space import ContinuousParameter, Objective, OutcomeConstraint, Params, SearchSpace

TINY = {"num_restarts": 2, "raw_samples": 32, "maxiter": 20, "mc_samples_multi": 16, "maxls": 5}
SPACE = SearchSpace(
    parameters=[
        ContinuousParameter(name="dose", low=0, high=1),
        ContinuousParameter(name="other", low=0, high=1),
    ]
)
# Kill (minimise tumour viability) against safety (maximise normal viability): both fall
# with dose, so the front is the dose axis at other = 0.5.
OBJS = [Objective(metric="tumour", direction="minimize"), Objective(metric="normal")]


def truth(p: Params) -> dict[str, float]:
    d, o = float(p["dose"]), float(p["other"])
    pen = (o - 0.5) ** 2
    return {"tumour": 1 - d + pen, "normal": 1 - d**2 - pen, "count": 100 * (1 - d)}


def _history(n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    pts = get_planner("sobol").propose(SPACE, OBJS, [], [], n, seed=seed)
    out = []
    for p in pts:
        t = truth(p.params)
        out.append(
            Observation(
                params=p.params, outcomes={k: v + 0.01 * rng.normal() for k, v in t.items()}
            )
        )
    return out


def test_two_objective_proposals_carry_both_predictions_and_honour_a_constraint() -> None:
    hist = _history(12)
    cons = [OutcomeConstraint.model_validate("normal >= 0.75")]  # dose <= 0.5
    props = get_planner("bayesian", n_initial=8, **TINY).propose(
        SPACE, OBJS, hist, [], 4, seed=0, outcome_constraints=cons
    )
    assert len(props) == 4
    for p in props:
        assert {"tumour", "normal"} <= set(p.predicted_mean)
        assert float(p.params["dose"]) < 0.65


def test_pareto_front_is_measured_and_respects_constraints() -> None:
    rows = [
        Observation(params={"dose": 0.1, "other": 0.5}, outcomes={"tumour": 0.9, "normal": 0.99}),
        Observation(params={"dose": 0.5, "other": 0.5}, outcomes={"tumour": 0.5, "normal": 0.75}),
        Observation(params={"dose": 0.5, "other": 0.9}, outcomes={"tumour": 0.7, "normal": 0.6}),
        Observation(params={"dose": 0.9, "other": 0.5}, outcomes={"tumour": 0.1, "normal": 0.2}),
        Observation(params={"dose": 0.2, "other": 0.5}, outcomes={"tumour": 0.0}),  # no normal
        Observation(
            params={"dose": 0.9, "other": 0.5}, outcomes={"tumour": 0.0, "normal": 9}, task="old"
        ),
    ]
    front = pareto_front(rows, OBJS)
    assert [o.params["dose"] for o in front] == [0.1, 0.5, 0.9]
    cons = [OutcomeConstraint.model_validate("normal >= 0.5")]
    assert [o.params["dose"] for o in pareto_front(rows, OBJS, cons)] == [0.1, 0.5]
    planner = get_planner("bayesian")
    assert planner.pareto_front(rows, OBJS, cons) == pareto_front(rows, OBJS, cons)


def test_knee_and_preference_choose_different_points() -> None:
    front = torch.tensor([[0.0, 1.0], [0.6, 0.7], [1.0, 0.0]], dtype=torch.double)
    assert choose_on_front(front, OBJS) == 1  # the balanced point
    assert choose_on_front(front, OBJS, {"tumour": 1.0}) == 2
    assert choose_on_front(front, OBJS, {"normal": 3.0, "tumour": 0.1}) == 0
    with pytest.raises(PlannerError, match="not objectives"):
        choose_on_front(front, OBJS, {"selectivity": 1.0})
    with pytest.raises(PlannerError, match=">= 0"):
        choose_on_front(front, OBJS, {"normal": -1.0})


def test_reference_point_is_below_the_front() -> None:
    Y = torch.tensor([[0.0, 1.0], [0.5, 0.5], [1.0, 0.0], [-5.0, -5.0]], dtype=torch.double)
    logp = torch.tensor([0.0, 0.0, 0.0, -10.0], dtype=torch.double)  # last: infeasible
    ref = reference_point(Y, logp)
    assert torch.allclose(ref, torch.tensor([-0.1, -0.1], dtype=torch.double))


def test_recommend_with_two_objectives_returns_a_predicted_front_point() -> None:
    hist = _history(16)
    planner = get_planner("bayesian", **TINY)
    knee = planner.recommend(SPACE, OBJS, hist)
    kill = planner.recommend(SPACE, OBJS, hist, preference={"tumour": 1.0})
    safe = planner.recommend(SPACE, OBJS, hist, preference={"normal": 1.0})
    assert float(kill.params["dose"]) > float(knee.params["dose"]) > float(safe.params["dose"])
    assert abs(float(knee.params["other"]) - 0.5) < 0.25
    lo, hi = knee.predicted_interval["tumour"]
    assert lo < knee.predicted_mean["tumour"] < hi
