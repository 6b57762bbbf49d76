"""The planner registry and protocol (planners/base.py)."""

from __future__ import annotations

import pytest

from planners.base import Planner, available_planners, get_planner, register_planner
from planners.exceptions import DuplicatePlannerName, PlannerError


def test_builtin_planners_are_registered() -> None:
    assert {"bayesian", "sobol", "random"} <= set(available_planners())
    for name in ("bayesian", "sobol", "random"):
        planner = get_planner(name)
        assert isinstance(planner, Planner)
        assert planner.name == name


def test_duplicate_name_raises() -> None:
    available_planners()
    with pytest.raises(DuplicatePlannerName, match="'sobol' is already registered"):

        @register_planner("sobol")
        class Another:  # pragma: no cover - never registered
            name = "sobol"


def test_unknown_name_lists_the_available_planners() -> None:
    with pytest.raises(PlannerError, match=r"unknown planner 'nope'; available: \[.*'bayesian'"):
        get_planner("nope")
