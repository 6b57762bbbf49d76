"""Analyzers register under the name a campaign file uses; a duplicate name raises.

An analyzer is a callable ``(frames_by_well, layout, settings=None) -> PlateAnalysis``
(see :func:`analyzers.plate.analyze_plate`).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from analyzers.exceptions import DuplicateAnalyzer, UnknownAnalyzer

F = TypeVar("F", bound=Callable[..., Any])

_REGISTRY: dict[str, Callable[..., Any]] = {}


def register_analyzer(name: str) -> Callable[[F], F]:
    """Decorator registering an analyzer callable under ``name``.

    Raises:
        DuplicateAnalyzer: ``name`` is already registered.
    """

    def decorate(func: F) -> F:
        if name in _REGISTRY:
            raise DuplicateAnalyzer(f"analyzer {name!r} is already registered")
        _REGISTRY[name] = func
        return func

    return decorate


def get_analyzer(name: str) -> Callable[..., Any]:
    """The analyzer registered as ``name``.

    Raises:
        UnknownAnalyzer: nothing is registered under ``name``.
    """
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownAnalyzer(name, list(_REGISTRY)) from None


def list_analyzers() -> list[str]:
    """Registered analyzer names, sorted."""
    return sorted(_REGISTRY)
