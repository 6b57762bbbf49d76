"""Planners: pure functions of (space, objectives, history, pending, seed) -> proposals.

Planners never touch the ledger or instruments. Register a planner with
:func:`planners.base.register_planner` and get one by name with :func:`get_planner`.
"""

from __future__ import annotations

from planners.base import (
    Observation,
    Planner,
    Proposal,
    available_planners,
    get_planner,
    register_planner,
)
from planners.exceptions import PlannerError, UnsupportedPlanningFeature
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    LinearConstraint,
    Objective,
    OutcomeConstraint,
    Parameter,
    SearchSpace,
)

__all__ = [
    "CategoricalParameter",
    "ContinuousParameter",
    "IntegerParameter",
    "LinearConstraint",
    "Objective",
    "Observation",
    "OutcomeConstraint",
    "Parameter",
    "Planner",
    "PlannerError",
    "Proposal",
    "SearchSpace",
    "UnsupportedPlanningFeature",
    "available_planners",
    "get_planner",
    "register_planner",
]
