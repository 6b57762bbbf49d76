"""Sobol and random baselines (planners/baselines.py)."""

from __future__ import annotations

import pytest

from planners.base import Observation, get_planner
from planners.baselines import sobol_points
from planners.exceptions import FeasibleRegionTooSmall
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    LinearConstraint,
    Objective,
    SearchSpace,
)

SPACE = SearchSpace(
    parameters=[
        ContinuousParameter(name="drug_a_um", low=0.001, high=10, log_scale=True),
        ContinuousParameter(name="x", low=0, high=1),
        IntegerParameter(name="time_h", low=12, high=72),
        CategoricalParameter(name="medium", levels=["DMEM", "RPMI", "MEM"]),
    ],
    linear_constraints=[
        LinearConstraint(coefficients={"x": 1.0, "time_h": 0.01}, op="<=", rhs=1.0)
    ],
)
OBJ = [Objective(metric="y")]


def _obs(params: dict) -> Observation:
    return Observation(params=params, outcomes={"y": 0.0})


@pytest.mark.parametrize("name", ["sobol", "random"])
def test_points_are_valid_and_feasible(name: str) -> None:
    props = get_planner(name).propose(SPACE, OBJ, [], [], 50, seed=3)
    assert len(props) == 50
    for p in props:
        assert SPACE.validate_point(p.params) == p.params
        assert p.planner == name
    levels = {p.params["medium"] for p in props}
    assert levels == {"DMEM", "RPMI", "MEM"}


@pytest.mark.parametrize("name", ["sobol", "random"])
def test_deterministic_per_seed(name: str) -> None:
    planner = get_planner(name)
    a = [p.params for p in planner.propose(SPACE, OBJ, [], [], 6, seed=1)]
    b = [p.params for p in planner.propose(SPACE, OBJ, [], [], 6, seed=1)]
    c = [p.params for p in planner.propose(SPACE, OBJ, [], [], 6, seed=2)]
    assert a == b
    assert a != c


def test_sobol_continues_the_sequence_across_rounds() -> None:
    planner = get_planner("sobol")
    whole = [p.params for p in planner.propose(SPACE, OBJ, [], [], 12, seed=5)]
    first = [p.params for p in planner.propose(SPACE, OBJ, [], [], 4, seed=5)]
    history = [_obs(p) for p in first[:3]]
    pending = first[3:]
    second = [p.params for p in planner.propose(SPACE, OBJ, history, pending, 8, seed=5)]
    assert first + second == whole


def test_random_rounds_differ() -> None:
    planner = get_planner("random")
    first = [p.params for p in planner.propose(SPACE, OBJ, [], [], 4, seed=5)]
    second = [p.params for p in planner.propose(SPACE, OBJ, [_obs(first[0])], [], 4, seed=5)]
    assert not set(map(str, first)) & set(map(str, second))


@pytest.mark.parametrize("name", ["sobol", "random"])
def test_tiny_feasible_region_is_a_clear_error(name: str) -> None:
    space = SearchSpace(
        parameters=[
            ContinuousParameter(name="a", low=0, high=1),
            ContinuousParameter(name="b", low=0, high=1),
        ],
        linear_constraints=[LinearConstraint(coefficients={"a": 1, "b": 1}, op="<=", rhs=1e-9)],
    )
    with pytest.raises(FeasibleRegionTooSmall, match="feasible region is too small"):
        get_planner(name).propose(space, OBJ, [], [], 4, seed=0)


def test_sobol_points_skip() -> None:
    pts = sobol_points(SPACE, 6, seed=0)
    assert sobol_points(SPACE, 2, seed=0, skip=4) == pts[4:]
