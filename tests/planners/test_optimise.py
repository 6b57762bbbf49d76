"""Plate-aware batches and repeat-free batches (planners/optimise.py, through the planners)."""

from __future__ import annotations

import numpy as np
import pytest

from planners.base import Observation, get_planner
from planners.exceptions import PointOutsideSpace, UnsupportedPlanningFeature
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)

TINY = {"num_restarts": 2, "raw_samples": 32, "maxiter": 20, "mc_samples": 32, "maxls": 5}
OBJ = [Objective(metric="y")]
SPACE = SearchSpace(
    parameters=[
        ContinuousParameter(name="dose_um", low=0.01, high=10, log_scale=True),
        ContinuousParameter(name="serum_pct", low=0, high=20),
        IntegerParameter(name="incubation_h", low=12, high=72),
        CategoricalParameter(name="medium", levels=["DMEM", "RPMI", "MEM", "F12"]),
    ]
)


def f(p: Params) -> float:
    return (
        -((np.log10(float(p["dose_um"])) - 0.2) ** 2)
        - ((float(p["serum_pct"]) - 8) / 20) ** 2
        - ((int(p["incubation_h"]) - 40) / 60) ** 2
        + (0.3 if p["medium"] == "RPMI" else 0.0)
    )


def _history(n: int, seed: int = 0) -> list[Observation]:
    rng = np.random.default_rng(seed)
    pts = get_planner("sobol").propose(SPACE, OBJ, [], [], n, seed=seed)
    return [
        Observation(
            params=p.params,
            outcomes={
                "y": f(p.params) + 0.02 * rng.normal(),
                "v": 1 - float(p.params["serum_pct"]) / 40,
            },
        )
        for p in pts
    ]


def _keys(props: list) -> list[str]:
    return [str(sorted(SPACE.validate_point(p.params).items())) for p in props]


@pytest.mark.parametrize("plate", [("incubation_h",), ("incubation_h", "medium")])
def test_plate_parameters_take_one_value_across_a_model_batch(plate: tuple[str, ...]) -> None:
    hist = _history(10)
    pending = [hist[0].params, hist[1].params]
    props = get_planner("bayesian", n_initial=8, **TINY).propose(
        SPACE,
        OBJ,
        hist,
        pending,
        6,
        seed=0,
        outcome_constraints=[OutcomeConstraint.model_validate("v >= 0.6")],
        plate_parameters=plate,
    )
    assert len(props) == 6
    for name in plate:
        assert len({p.params[name] for p in props}) == 1
    keys = _keys(props)
    assert len(set(keys)) == 6  # never the same point twice in a batch
    assert not set(keys) & {str(sorted(p.items())) for p in pending}


@pytest.mark.parametrize("name", ["bayesian", "sobol", "random"])
def test_plate_parameters_in_the_initial_design_and_baselines(name: str) -> None:
    props = get_planner(name).propose(
        SPACE, OBJ, [], [], 8, seed=3, plate_parameters=("incubation_h", "medium")
    )
    assert len({(p.params["incubation_h"], p.params["medium"]) for p in props}) == 1
    assert len(set(_keys(props))) == 8
    free = get_planner(name).propose(SPACE, OBJ, [], [], 8, seed=3)
    assert props[0].params == free[0].params  # the first point sets the plate's values


@pytest.mark.parametrize("name", ["bayesian", "sobol", "random"])
def test_unknown_plate_parameter_is_refused_by_check_and_propose(name: str) -> None:
    planner = get_planner(name)
    with pytest.raises(UnsupportedPlanningFeature, match=r"plate parameters \['temp_c'\]"):
        planner.check(SPACE, OBJ, (), plate_parameters=("temp_c",))
    with pytest.raises(UnsupportedPlanningFeature, match="temp_c"):
        planner.propose(SPACE, OBJ, [], [], 2, seed=0, plate_parameters=("temp_c",))
    planner.check(SPACE, OBJ, (), plate_parameters=("incubation_h",))


def test_prior_campaign_rows_do_not_shift_the_sobol_sequence() -> None:
    prior = [Observation(params=o.params, outcomes=o.outcomes, task="old") for o in _history(5)]
    a = get_planner("sobol").propose(SPACE, OBJ, prior, [], 3, seed=1)
    b = get_planner("sobol").propose(SPACE, OBJ, [], [], 3, seed=1)
    assert a == b


@pytest.mark.parametrize("name", ["bayesian", "sobol", "random"])
def test_pinned_plate_values_top_up_a_partly_proposed_plate(name: str) -> None:
    hist = _history(10)
    pinned = {"incubation_h": 24, "medium": "MEM"}
    planner = get_planner(name, **({"n_initial": 8, **TINY} if name == "bayesian" else {}))
    props = planner.propose(SPACE, OBJ, hist, [hist[0].params], 3, seed=0, plate_parameters=pinned)
    assert len(props) == 3 and len(set(_keys(props))) == 3
    assert all(p.params["incubation_h"] == 24 and p.params["medium"] == "MEM" for p in props)
    with pytest.raises(PointOutsideSpace, match="incubation_h"):
        planner.propose(SPACE, OBJ, hist, [], 2, seed=0, plate_parameters={"incubation_h": 99})
