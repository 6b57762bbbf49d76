"""Analyzers by the name campaign files use: entry points of the group ``cellpilot.analyzers``.

An analyzer is a callable ``(frames_by_well, layout, settings=None) -> PlateAnalysis`` (see
:func:`analyzers.plate.analyze_plate`) with optional attributes that let a campaign be checked
before anything moves: ``settings_model`` (a pydantic model of its settings), ``metrics`` (the
experiment-level metrics it produces, or a function of its settings returning them) and
``channels`` (the imaging channels it needs, likewise). The built-in ``nuclei_coculture`` is an entry point of
cellpilot itself; a lab's package adds its own by declaring one. :func:`register_analyzer`
registers in code; a duplicate name raises.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from analyzers.exceptions import DuplicateAnalyzer, UnknownAnalyzer
from plugins import PluginRegistry

GROUP = "cellpilot.analyzers"
F = TypeVar("F", bound=Callable[..., Any])

ANALYZERS: PluginRegistry[Callable[..., Any]] = PluginRegistry(
    GROUP, duplicate=lambda msg: DuplicateAnalyzer(f"analyzer {msg}"), unknown=UnknownAnalyzer
)


def register_analyzer(name: str) -> Callable[[F], F]:
    """Decorator registering an analyzer callable under ``name``.

    Raises:
        DuplicateAnalyzer: ``name`` is already registered.
    """

    def decorate(func: F) -> F:
        ANALYZERS.register(name, func)
        return func

    return decorate


def get_analyzer(name: str) -> Callable[..., Any]:
    """The analyzer registered as ``name``.

    Raises:
        UnknownAnalyzer: nothing is registered under ``name``.
    """
    return ANALYZERS.get(name)


def list_analyzers() -> list[str]:
    """Registered analyzer names, sorted."""
    return ANALYZERS.names()
