"""Planners: pure functions of (space, objectives, history, pending, seed) -> proposals.

Planners never touch the ledger or instruments. Register a planner with
:func:`planners.registry.register_planner` (or an entry point,
see :mod:`plugins`) and get one by name with :func:`get_planner`.

What the controller calls (every planner)::

    planner.check(space, objectives, outcome_constraints, plate_parameters=())
    planner.propose(space, objectives, history, pending, n, seed,
                    outcome_constraints=(), plate_parameters=())

and, for model-based planners (``bayesian``)::

    planner.recommend(space, objectives, history, outcome_constraints=(), preference=None)
    planner.pareto_front(history, objectives, outcome_constraints=())
    # or, model-free and without a planner: planners.multiobjective.pareto_front(...)

``history`` holds :class:`Observation` rows; ``task=None`` for the current campaign,
``task="<campaign name>"`` for prior campaigns named as transfer sources. ``plate_parameters``
take one value across a batch. ``preference`` weighs objectives (metric -> weight >= 0) when
choosing one point of a Pareto front.
"""

from __future__ import annotations

from planners.base import Observation, Planner, Proposal
from planners.exceptions import PlannerError, UnsupportedPlanningFeature
from planners.registry import available_planners, get_planner, register_planner
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
