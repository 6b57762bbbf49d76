"""Errors raised by planners."""

from __future__ import annotations


class PlannerError(Exception):
    """Base class of every planner error."""


class UnsupportedPlanningFeature(PlannerError):
    """A campaign asks for something this planner does not implement.

    Attributes:
        planner: the planner's registered name.
        feature: what was asked for, in the campaign file's words.
    """

    def __init__(self, planner: str, feature: str, hint: str = "") -> None:
        self.planner = planner
        self.feature = feature
        msg = f"planner {planner!r} does not support {feature}"
        super().__init__(msg + (f"; {hint}" if hint else ""))


class PointOutsideSpace(PlannerError):
    """A parameter set does not lie in the search space (unknown name, out of bounds, bad level)."""


class DuplicatePlannerName(PlannerError):
    """Two planners were registered under the same name."""


class FeasibleRegionTooSmall(PlannerError):
    """Sampling found too few points that satisfy the space's linear constraints.

    Attributes:
        accepted: how many feasible points were found.
        tried: how many candidates were drawn.
    """

    def __init__(self, accepted: int, tried: int, needed: int) -> None:
        self.accepted = accepted
        self.tried = tried
        super().__init__(
            f"only {accepted} of {tried} sampled points satisfy the linear constraints "
            f"({needed} needed); the feasible region is too small, loosen the constraints "
            "or narrow the parameter bounds around it"
        )
