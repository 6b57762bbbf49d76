"""Planners by the name campaign files use: entry points of the group ``cellpilot.planners``.

The built-ins (``bayesian``, ``sobol``, ``random``) are entry points of cellpilot itself; a
lab's package adds its own by declaring one. :func:`register_planner` registers in code.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from planners.base import Planner
from planners.exceptions import DuplicatePlannerName, PlannerError
from plugins import PluginRegistry

GROUP = "cellpilot.planners"


def _unknown(name: str, known: list[str]) -> PlannerError:
    return PlannerError(f"unknown planner {name!r}; available: {known}")


PLANNERS: PluginRegistry[Callable[..., Planner]] = PluginRegistry(
    GROUP, duplicate=lambda msg: DuplicatePlannerName(f"a planner named {msg}"), unknown=_unknown
)


def register_planner(name: str) -> Callable[[Callable[..., Planner]], Callable[..., Planner]]:
    """Class decorator: make a planner available to campaign files under ``name``."""

    def deco(factory: Callable[..., Planner]) -> Callable[..., Planner]:
        return PLANNERS.register(name, factory)

    return deco


def available_planners() -> list[str]:
    """Names of every planner, sorted."""
    return PLANNERS.names()


def get_planner(name: str, **settings: Any) -> Planner:
    """Build the planner registered under ``name`` with its settings (from the campaign file)."""
    return PLANNERS.get(name)(**settings)
