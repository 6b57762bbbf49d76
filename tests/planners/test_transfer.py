"""Transfer from prior campaigns and the negative-transfer guard (planners/transfer.py)."""

from __future__ import annotations

import math
import statistics

import numpy as np
import torch

from planners.base import Observation, get_planner
from planners.encoding import SpaceEncoder
from planners.models import MetricData, predict
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    Objective,
    Params,
    SearchSpace,
)
from planners.transfer import choose_model

TINY = {"num_restarts": 2, "raw_samples": 64, "maxiter": 30, "mc_samples": 32, "maxls": 5}
SPACE = SearchSpace(
    parameters=[
        ContinuousParameter(name="x", low=0, high=1),
        ContinuousParameter(name="z", low=0, high=1),
    ]
)
OBJ = [Objective(metric="y")]


def f(p: Params) -> float:
    x, z = float(p["x"]), float(p["z"])
    return -4 * ((x - 0.72) ** 2 + (z - 0.25) ** 2) + 0.3 * np.sin(5 * x)


def related(p: Params) -> float:  # another cell line: same landscape, other scale and offset
    return 2.0 * f(p) + 1.0


def unrelated(p: Params) -> float:
    return -4 * ((float(p["x"]) - 0.1) ** 2 + (float(p["z"]) - 0.9) ** 2)


F_OPT = max(f({"x": x, "z": z}) for x in np.linspace(0, 1, 101) for z in np.linspace(0, 1, 101))


def _prior(fn, n: int = 20, seed: int = 11, space: SearchSpace = SPACE) -> list[Observation]:
    rng = np.random.default_rng(seed)
    pts = get_planner("sobol").propose(space, OBJ, [], [], n, seed=seed)
    return [
        Observation(params=p.params, outcomes={"y": fn(p.params) + 0.02 * rng.normal()}, task="old")
        for p in pts
    ]


def _campaign(
    prior: list[Observation], seed: int, rounds: int = 3, q: int = 4
) -> list[Observation]:
    """The current campaign's observations after ``rounds`` rounds (first: Sobol design)."""
    rng = np.random.default_rng(seed)
    hist = list(prior)
    planner = get_planner("bayesian", n_initial=4, **TINY)
    for _ in range(rounds):
        for p in planner.propose(SPACE, OBJ, hist, [], q, seed=seed):
            hist.append(
                Observation(params=p.params, outcomes={"y": f(p.params) + 0.02 * rng.normal()})
            )
    return [o for o in hist if o.task is None]


def _regret(prior: list[Observation], seed: int) -> float:
    return F_OPT - max(f(o.params) for o in _campaign(prior, seed))


def test_related_prior_helps_and_unrelated_prior_does_not_hurt() -> None:
    seeds = range(2)
    cold = [_regret([], s) for s in seeds]
    rel = [_regret(_prior(related, n=12), s) for s in seeds]
    unrel = [_regret(_prior(unrelated, n=12), s) for s in seeds]
    # 12 experiments; cold-start regret is ~0.01, a related prior reaches ~0.001
    assert statistics.median(rel) < 0.3 * statistics.median(cold), (rel, cold)
    assert statistics.median(unrel) <= statistics.median(cold) + 0.01, (unrel, cold)


def test_a_declined_prior_leaves_the_model_round_exactly_as_cold() -> None:
    # Once the guard can judge (current data), an unrelated prior is declined and the
    # planner proposes exactly what it would without it.
    rng = np.random.default_rng(0)
    cur = [
        Observation(params=p.params, outcomes={"y": f(p.params) + 0.02 * rng.normal()})
        for p in get_planner("sobol").propose(SPACE, OBJ, [], [], 8, seed=2)
    ]
    planner = get_planner("bayesian", n_initial=4, **TINY)
    with_prior = planner.propose(SPACE, OBJ, _prior(unrelated, n=16) + cur, [], 3, seed=0)
    assert with_prior == planner.propose(SPACE, OBJ, cur, [], 3, seed=0)


def test_the_initial_design_is_guided_by_a_prior_campaign() -> None:
    planner = get_planner("bayesian", **TINY)
    props = planner.propose(SPACE, OBJ, _prior(related, n=16), [], 8, seed=0)
    cold = planner.propose(SPACE, OBJ, [], [], 8, seed=0)
    assert props[2:] == cold[:6]  # a quarter guided, the rest the cold Sobol design
    guided = [p.params for p in props[:2]]
    assert all(f(g) > F_OPT - 0.3 for g in guided), guided  # near the optimum already


def _data(encoder: SpaceEncoder, fn, n: int, seed: int) -> MetricData:
    rng = np.random.default_rng(seed)
    pts = get_planner("sobol").propose(encoder.space, OBJ, [], [], n, seed=seed)
    Y = [[fn(p.params) + 0.02 * rng.normal()] for p in pts]
    return MetricData(
        "y", encoder.encode([p.params for p in pts]), torch.tensor(Y, dtype=torch.double)
    )


def test_guard_keeps_the_cold_model_for_unrelated_data_and_takes_related_data() -> None:
    encoder = SpaceEncoder(SPACE)
    current = _data(encoder, f, 8, seed=1)
    rel = choose_model(encoder, current, [_data(encoder, related, 20, seed=2)])
    unrel = choose_model(encoder, current, [_data(encoder, unrelated, 20, seed=2)])
    assert rel.transfer and rel.loo_transfer > rel.loo_cold
    assert not unrel.transfer
    # the transfer model predicts the current task better where it was not measured
    test = _data(encoder, f, 64, seed=5)
    err = {
        name: float(((predict(c.model, test.X)[0] - test.Y) ** 2).mean())
        for name, c in (("rel", rel), ("unrel", unrel))
    }
    assert err["rel"] < err["unrel"]


def test_too_many_current_points_keep_the_cold_model(monkeypatch) -> None:
    import planners.transfer as transfer

    monkeypatch.setattr(transfer, "MAX_CURRENT", 6)
    encoder = SpaceEncoder(SPACE)
    choice = choose_model(encoder, _data(encoder, f, 8, seed=1), [_data(encoder, related, 10, 2)])
    assert not choice.transfer and math.isnan(choice.loo_transfer)


def test_too_few_current_points_keep_the_cold_model() -> None:
    encoder = SpaceEncoder(SPACE)
    choice = choose_model(encoder, _data(encoder, f, 2, seed=1), [_data(encoder, related, 10, 2)])
    assert not choice.transfer


def test_transfer_in_a_mixed_space_gives_valid_proposals_with_predictions() -> None:
    space = SearchSpace(
        parameters=[*SPACE.parameters, CategoricalParameter(name="m", levels=["a", "b", "c"])]
    )
    bonus = {"a": 0.0, "b": 0.4, "c": -0.2}

    def g(p: Params) -> float:
        return f(p) + bonus[str(p["m"])]

    prior = _prior(lambda p: 3 * g(p), n=12, space=space)
    rng = np.random.default_rng(0)
    cur = [
        Observation(params=p.params, outcomes={"y": g(p.params) + 0.02 * rng.normal()})
        for p in get_planner("sobol").propose(space, OBJ, [], [], 6, seed=4)
    ]
    props = get_planner("bayesian", n_initial=4, **TINY).propose(
        space, OBJ, prior + cur, [], 3, seed=0
    )
    assert len(props) == 3
    for p in props:
        assert space.validate_point(p.params) == p.params
        assert p.predicted_sd["y"] > 0


def test_use_prior_data_false_ignores_prior_campaigns() -> None:
    prior = _prior(related)
    cur = _prior(f, n=6, seed=3)
    cur = [Observation(params=o.params, outcomes=o.outcomes) for o in cur]
    a = get_planner("bayesian", n_initial=4, use_prior_data=False, **TINY)
    b = get_planner("bayesian", n_initial=4, **TINY)
    assert a.propose(SPACE, OBJ, prior + cur, [], 2, seed=0) == b.propose(
        SPACE, OBJ, cur, [], 2, seed=0
    )
