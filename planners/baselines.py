"""Model-free baselines: scrambled Sobol and uniform random sampling.

Both sample the encoded unit cube (log-scaled parameters uniformly in log10, categorical
levels uniformly), decode, and keep points that satisfy the space's linear constraints
(rejection sampling; :class:`FeasibleRegionTooSmall` if the feasible region is tiny).
Plate parameters (shared by a whole batch) take the values of the batch's first point.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.quasirandom import SobolEngine

from planners.base import Observation, PlateParameters, Proposal
from planners.encoding import DTYPE, SpaceEncoder
from planners.exceptions import FeasibleRegionTooSmall, UnsupportedPlanningFeature
from planners.space import Objective, OutcomeConstraint, Params, SearchSpace

_CHUNK = 1024
_MAX_DRAWS = 2**18


def _take_feasible(
    encoder: SpaceEncoder,
    draw: Callable[[int], Tensor],
    skip: int,
    n: int,
    fixed: Params | None = None,
) -> list[Params]:
    """Draw chunks from ``draw``, drop infeasible points, skip ``skip`` feasible ones, keep ``n``.

    ``fixed`` (parameter name -> value) overrides those parameters in every draw.
    Returns decoded, validated parameter sets.
    """
    kept: list[Params] = []
    seen_feasible = 0
    tried = 0
    columns = encoder.fixed_columns(fixed or {})
    while len(kept) < n:
        if tried >= _MAX_DRAWS:
            raise FeasibleRegionTooSmall(seen_feasible, tried, skip + n)
        X = encoder.unit_to_encoded(draw(_CHUNK))
        for i, v in columns.items():
            X[:, i] = v
        tried += _CHUNK
        X = X[torch.from_numpy(encoder.feasible_mask(X))]
        first = max(0, skip - seen_feasible)
        seen_feasible += X.shape[0]
        for pt in encoder.decode(X[first : first + n - len(kept)]):
            kept.append(encoder.space.validate_point(pt))
    return kept


def sobol_points(
    space: SearchSpace, n: int, seed: int, skip: int = 0, fixed: Params | None = None
) -> list[Params]:
    """Feasible points ``skip .. skip+n-1`` of the scrambled Sobol sequence for ``seed``.

    ``fixed`` pins parameters (name -> value) in every point (the other columns still follow
    the sequence).
    """
    encoder = SpaceEncoder(space)
    engine = SobolEngine(encoder.dim, scramble=True, seed=seed)
    return _take_feasible(encoder, lambda m: engine.draw(m, dtype=DTYPE), skip, n, fixed)


def random_points(
    space: SearchSpace, n: int, seed: int, stream: int = 0, fixed: Params | None = None
) -> list[Params]:
    """``n`` feasible uniform-random points; ``(seed, stream)`` selects the random stream."""
    encoder = SpaceEncoder(space)
    rng = np.random.default_rng([seed, stream])
    draw = lambda m: torch.from_numpy(rng.random((m, encoder.dim)))  # noqa: E731
    return _take_feasible(encoder, draw, 0, n, fixed)


def check_plate_parameters(
    planner: str, space: SearchSpace, plate_parameters: PlateParameters
) -> Params | None:
    """Refuse plate parameters that are not parameters of ``space``; return pinned values.

    ``plate_parameters`` is a sequence of names (the planner chooses their shared value) or
    a mapping name -> value (the value is already chosen, e.g. when the controller tops up a
    plate whose other wells are proposed).

    Returns:
        the pinned values (validated and coerced), or ``None`` for a sequence of names.

    Raises:
        UnsupportedPlanningFeature: naming the unknown parameters.
        PointOutsideSpace: a pinned value outside its parameter's range or levels.
    """
    unknown = sorted(set(plate_parameters) - set(space.names))
    if unknown:
        raise UnsupportedPlanningFeature(
            planner,
            f"plate parameters {unknown}, which are not parameters of the search space",
            hint=f"plate_parameters must name parameters among {space.names}",
        )
    if not isinstance(plate_parameters, Mapping):
        return None
    pinned = dict(plate_parameters)
    probe = SearchSpace(parameters=[space.parameter(k) for k in pinned])
    return probe.validate_point(pinned)


def plate_batch(
    points: Callable[[Params | None], list[Params]],
    plate_parameters: PlateParameters,
    pinned: Params | None = None,
) -> list[Params]:
    """A batch sharing plate parameters: pinned values, or the first free point's values.

    ``points(fixed)`` returns the batch with ``fixed`` parameters pinned (``None``: free).
    """
    if pinned:
        return points(pinned)
    free = points(None)
    if not plate_parameters or not free:
        return free
    return points({k: free[0][k] for k in plate_parameters})


class _ModelFreePlanner:
    """What the model-free baselines share: plate-aware batches and the ``check`` method.

    Subclasses give ``_points(space, n, seed, offset, fixed)``, where ``offset`` counts the
    current campaign's points already used (history and pending) and ``fixed`` pins values.
    """

    name: str

    def _points(
        self, space: Any, n: int, seed: int, offset: int, fixed: Any
    ) -> Any:  # pragma: no cover - abstract
        raise NotImplementedError

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
        """``n`` points; ``plate_parameters`` take the first point's values in all of them."""
        pinned = check_plate_parameters(self.name, space, plate_parameters)
        offset = sum(o.task is None for o in history) + len(pending)
        pts = plate_batch(
            lambda fixed: self._points(space, n, seed, offset, fixed), plate_parameters, pinned
        )
        return [Proposal(params=p, planner=self.name) for p in pts]

    def check(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        plate_parameters: PlateParameters = (),
    ) -> None:
        """Model-free: everything is supported except unknown plate parameters."""
        check_plate_parameters(self.name, space, plate_parameters)


class SobolPlanner(_ModelFreePlanner):
    """Scrambled Sobol design; each round continues the sequence after the points already used.

    The number of points already used is ``len(history) + len(pending)``, so consecutive rounds
    with the same seed never repeat a point of the sequence.
    """

    name = "sobol"

    def _points(self, space: Any, n: int, seed: int, offset: int, fixed: Any) -> Any:
        return sobol_points(space, n, seed, skip=offset, fixed=fixed)


class RandomPlanner(_ModelFreePlanner):
    """Uniform random sampling in the encoded space (log10 for log-scaled parameters)."""

    name = "random"

    def _points(self, space: Any, n: int, seed: int, offset: int, fixed: Any) -> Any:
        return random_points(space, n, seed, stream=offset, fixed=fixed)
