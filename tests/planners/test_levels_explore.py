"""Reserved slots for plausible categorical levels (planners/levels.py) and Thompson slots for
stalled campaigns (planners/explore.py), through the planner's public propose()."""

from __future__ import annotations

import math

import numpy as np
import torch

from planners.base import Observation
from planners.bayesian import PROFILES, BayesianPlanner
from planners.encoding import SpaceEncoder
from planners.explore import batches_since_improvement, thompson_points
from planners.levels import level_probabilities, reserve_levels
from planners.optimise import build_acquisition, optimise_points
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)
from planners.surrogate import Surrogate

TINY = {"num_restarts": 2, "raw_samples": 32, "maxiter": 30, "mc_samples": 32, "maxls": 5}
OBJ = [Objective(metric="y")]
SPACE = SearchSpace(
    parameters=[
        CategoricalParameter(name="medium", levels=["A", "B", "C"]),
        ContinuousParameter(name="u", low=0, high=1),
        ContinuousParameter(name="v", low=0, high=1),
    ]
)


def f(p: Params) -> float:
    """A: broad bump 1.0; B: narrow bump 1.3 in a corner (not yet found); C: hopeless."""
    u, v = float(p["u"]), float(p["v"])
    if p["medium"] == "A":
        return math.exp(-((u - 0.5) ** 2 + (v - 0.5) ** 2) / 0.2)
    if p["medium"] == "B":
        return 1.3 * math.exp(-((u - 0.9) ** 2 + (v - 0.9) ** 2) / 0.02)
    return -1.0


def _history() -> list[Observation]:
    rng = np.random.default_rng(0)
    rows: list[Params] = []
    for _ in range(14):
        rows.append(
            {"medium": "A", "u": float(rng.uniform(0.2, 0.8)), "v": float(rng.uniform(0.2, 0.8))}
        )
    for u, v in ((0.1, 0.2), (0.3, 0.1)):
        rows.append({"medium": "B", "u": u, "v": v})
    for u, v in ((0.2, 0.8), (0.5, 0.5), (0.8, 0.2), (0.5, 0.9), (0.9, 0.6)):
        rows.append({"medium": "C", "u": u, "v": v})
    return [Observation(params=p, outcomes={"y": f(p) + 0.02 * rng.normal()}) for p in rows]


def test_level_probabilities_keep_an_unexplored_level_and_drop_a_hopeless_one() -> None:
    enc = SpaceEncoder(SPACE)
    hist = _history()
    torch.manual_seed(0)
    s = Surrogate(enc, OBJ, hist)
    p = level_probabilities(s, enc, s.X_baseline, 0, seed=0)
    assert torch.isclose(p.sum(), torch.tensor(1.0, dtype=p.dtype))
    assert p[0] > 0.2 and p[1] > 0.04  # A is good, B can still hold the optimum
    assert p[2] < 0.05  # C was measured everywhere: hopeless


def test_a_plausible_level_left_out_of_the_batch_gets_a_reserved_slot() -> None:
    """The rule itself, on a batch the acquisition put on A alone: the last point goes to B
    (plausible), none to C (written off); levels already in the batch need nothing."""
    enc = SpaceEncoder(SPACE)
    torch.manual_seed(0)
    s = Surrogate(enc, OBJ, _history())
    acqf = build_acquisition(s, None, 0, 32)
    settings = {**TINY, **PROFILES["fast"], "level_min_probability": 0.04}

    def opt(a: object, k: int, seed: int, fixed: dict[int, float]) -> torch.Tensor:
        return optimise_points(acqf, enc, k, seed, settings, fixed)

    X = torch.tensor(
        [[0.0, 0.5, 0.5], [0.0, 0.45, 0.55], [0.0, 0.6, 0.4], [0.0, 0.4, 0.4]], dtype=torch.double
    )
    out, reserved = reserve_levels(acqf, s, enc, X, s.X_baseline, 0, settings, None, opt)
    assert [(c, lvl) for c, lvl, _ in reserved] == [(0, 1)]
    assert torch.equal(out[:3], X[:3]) and out[3, 0] == 1.0
    X[1, 0] = 1.0  # B already in the batch: unchanged
    assert torch.equal(reserve_levels(acqf, s, enc, X, s.X_baseline, 0, settings, None, opt)[0], X)
    off = {**settings, "level_reserve": 0.0}
    assert reserve_levels(acqf, s, enc, X, s.X_baseline, 0, off, None, opt)[1] == []
    planner = BayesianPlanner(n_initial=8, level_min_probability=0.04, **TINY)
    props = planner.propose(SPACE, OBJ, _history(), [], 4, seed=1)
    assert props == planner.propose(SPACE, OBJ, _history(), [], 4, seed=1)  # deterministic
    assert "C" not in [p.params["medium"] for p in props]


def test_reserve_respects_outcome_constraints_and_plate_parameters() -> None:
    hist = [
        Observation(params=o.params, outcomes={**o.outcomes, "tox": float(o.params["u"])})
        for o in _history()
    ]
    cons = [OutcomeConstraint.model_validate("tox <= 0.95")]
    on = BayesianPlanner(n_initial=8, **TINY)
    props = on.propose(SPACE, OBJ, hist, [], 4, seed=2, outcome_constraints=cons)
    assert len(props) == 4
    plate = on.propose(SPACE, OBJ, hist, [], 4, seed=2, plate_parameters=["medium"])
    assert len({p.params["medium"] for p in plate}) == 1


CONT = SearchSpace(parameters=[ContinuousParameter(name=n, low=0, high=1) for n in ("a", "b", "c")])


def _ordered(best_first: bool) -> list[Observation]:
    """24 observations; the best one first (stalled for 2 batches of 8) or last."""
    rng = np.random.default_rng(3)
    pts = rng.uniform(size=(24, 3))
    y = -((pts - 0.3) ** 2).sum(axis=1)
    order = np.argsort(-y) if best_first else np.argsort(y)
    return [
        Observation(
            params=dict(zip("abc", map(float, pts[i]), strict=True)), outcomes={"y": float(y[i])}
        )
        for i in order
    ]


def test_stall_is_counted_in_batches_since_the_incumbent() -> None:
    enc = SpaceEncoder(CONT)
    torch.manual_seed(0)
    assert batches_since_improvement(Surrogate(enc, OBJ, _ordered(True)), 8) >= 2
    assert batches_since_improvement(Surrogate(enc, OBJ, _ordered(False)), 8) == 0
    T = thompson_points(Surrogate(enc, OBJ, _ordered(True)), enc, 3, seed=0, fixed={0: 0.25})
    assert T.shape == (3, 3) and torch.all(T[:, 0] == 0.25)


def test_stalled_campaign_gets_different_points_improving_one_does_not() -> None:
    on = BayesianPlanner(n_initial=8, **TINY)
    off = BayesianPlanner(n_initial=8, explore_share=0.0, **TINY)
    stalled, moving = _ordered(True), _ordered(False)
    assert on.propose(CONT, OBJ, moving, [], 8, seed=0) == off.propose(
        CONT, OBJ, moving, [], 8, seed=0
    )
    a = [p.params for p in on.propose(CONT, OBJ, stalled, [], 8, seed=0)]
    b = [p.params for p in off.propose(CONT, OBJ, stalled, [], 8, seed=0)]
    assert a[:6] == b[:6] and a[6] != b[6] and a[7] != b[7]  # the last two greedy points
    assert len({tuple(p.values()) for p in a}) == 8
