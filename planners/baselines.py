"""Model-free baselines: scrambled Sobol and uniform random sampling.

Both sample the encoded unit cube (log-scaled parameters uniformly in log10, categorical
levels uniformly), decode, and keep points that satisfy the space's linear constraints
(rejection sampling; :class:`FeasibleRegionTooSmall` if the feasible region is tiny).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np
import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from planners.base import Observation, Proposal, register_planner
from planners.encoding import DTYPE, SpaceEncoder
from planners.exceptions import FeasibleRegionTooSmall
from planners.space import Objective, OutcomeConstraint, Params, SearchSpace

_CHUNK = 1024
_MAX_DRAWS = 2**18


def _take_feasible(
    encoder: SpaceEncoder, draw: Callable[[int], Tensor], skip: int, n: int
) -> list[Params]:
    """Draw chunks from ``draw``, drop infeasible points, skip ``skip`` feasible ones, keep ``n``.

    Returns decoded, validated parameter sets.
    """
    kept: list[Params] = []
    seen_feasible = 0
    tried = 0
    while len(kept) < n:
        if tried >= _MAX_DRAWS:
            raise FeasibleRegionTooSmall(seen_feasible, tried, skip + n)
        X = encoder.unit_to_encoded(draw(_CHUNK))
        tried += _CHUNK
        X = X[torch.from_numpy(encoder.feasible_mask(X))]
        first = max(0, skip - seen_feasible)
        seen_feasible += X.shape[0]
        for pt in encoder.decode(X[first : first + n - len(kept)]):
            kept.append(encoder.space.validate_point(pt))
    return kept


def sobol_points(space: SearchSpace, n: int, seed: int, skip: int = 0) -> list[Params]:
    """Feasible points ``skip .. skip+n-1`` of the scrambled Sobol sequence for ``seed``."""
    encoder = SpaceEncoder(space)
    engine = SobolEngine(encoder.dim, scramble=True, seed=seed)
    return _take_feasible(encoder, lambda m: engine.draw(m, dtype=DTYPE), skip, n)


def random_points(space: SearchSpace, n: int, seed: int, stream: int = 0) -> list[Params]:
    """``n`` feasible uniform-random points; ``(seed, stream)`` selects the random stream."""
    encoder = SpaceEncoder(space)
    rng = np.random.default_rng([seed, stream])
    return _take_feasible(encoder, lambda m: torch.from_numpy(rng.random((m, encoder.dim))), 0, n)


@register_planner("sobol")
class SobolPlanner:
    """Scrambled Sobol design; each round continues the sequence after the points already used.

    The number of points already used is ``len(history) + len(pending)``, so consecutive rounds
    with the same seed never repeat a point of the sequence.
    """

    name = "sobol"

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
        pts = sobol_points(space, n, seed, skip=len(history) + len(pending))
        return [Proposal(params=p, planner=self.name) for p in pts]


@register_planner("random")
class RandomPlanner:
    """Uniform random sampling in the encoded space (log10 for log-scaled parameters)."""

    name = "random"

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
        pts = random_points(space, n, seed, stream=len(history) + len(pending))
        return [Proposal(params=p, planner=self.name) for p in pts]
