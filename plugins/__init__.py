"""How cellpilot finds its planners, protocols, analyzers and instrument drivers.

Every kind of plugin is a :class:`PluginRegistry` over an ``importlib.metadata`` entry-point
group. The built-ins are entry points of the ``cellpilot`` distribution itself (see
``pyproject.toml``), so a registry never imports its implementations; a lab's own package adds
one by declaring an entry point and being ``pip install``-ed:

.. code-block:: toml

    [project.entry-points."cellpilot.analyzers"]
    my_assay = "my_lab.analysis:analyze_plate"

| group | what an entry point names |
|---|---|
| ``cellpilot.planners`` | a planner class (``propose``, ``check``) |
| ``cellpilot.protocols`` | a protocol class (``settings_model``, ``compile``, ...) |
| ``cellpilot.analyzers`` | an analyzer callable ``(frames, layout, settings) -> PlateAnalysis`` |
| ``cellpilot.drivers`` | a ``controller.rig.Driver`` (role, name, factory, validator) |

Objects may also be registered in code (:meth:`PluginRegistry.register`), e.g. in tests or a
notebook. A name registered twice, in code or by two distributions, raises.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from importlib.metadata import EntryPoint, entry_points
from typing import Generic, TypeVar

T = TypeVar("T")

__all__ = ["PluginRegistry", "PluginLoadError"]


class PluginLoadError(ImportError):
    """An entry point is declared but its object cannot be imported.

    Attributes:
        group: the entry-point group; name: the plugin's name; value: ``module:attribute``.
    """

    def __init__(self, group: str, name: str, value: str, cause: BaseException) -> None:
        super().__init__(
            f"plugin {name!r} ({group} = {value!r}) cannot be loaded: "
            f"{type(cause).__name__}: {cause}"
        )
        self.group, self.name, self.value = group, name, value


class PluginRegistry(Generic[T]):
    """Objects registered under names, from code or from an entry-point group.

    Args:
        group: the entry-point group, e.g. ``"cellpilot.planners"``.
        duplicate: builds the error raised when a name is registered twice (message -> error).
        unknown: builds the error raised for a name nobody registered (name, known names -> error).
    """

    def __init__(
        self,
        group: str,
        *,
        duplicate: Callable[[str], Exception],
        unknown: Callable[[str, list[str]], Exception],
    ) -> None:
        self.group = group
        self._duplicate = duplicate
        self._unknown = unknown
        self._in_code: dict[str, T] = {}
        self._loaded: dict[str, T] = {}
        self._lock = threading.RLock()  # a plugin module may register while being loaded

    def entry_points(self) -> dict[str, EntryPoint]:
        """Entry points of the group by name; two distributions naming one plugin differently raise."""
        found: dict[str, EntryPoint] = {}
        for ep in entry_points(group=self.group):
            other = found.get(ep.name)
            if other is not None and other.value != ep.value:
                raise self._duplicate(
                    f"{self.group}: {ep.name!r} is registered twice ({other.value} and {ep.value})"
                )
            found[ep.name] = ep
        return found

    def register(self, name: str, obj: T) -> T:
        """Register ``obj`` under ``name`` in code; a name already taken raises."""
        with self._lock:
            if name in self._in_code or name in self.entry_points():
                raise self._duplicate(f"{name!r} is already registered")
            self._in_code[name] = obj
        return obj

    def unregister(self, name: str) -> None:
        """Forget a plugin registered in code (entry points stay)."""
        with self._lock:
            self._in_code.pop(name, None)

    def names(self) -> list[str]:
        """Every registered name, sorted."""
        return sorted(set(self._in_code) | set(self.entry_points()))

    def get(self, name: str) -> T:
        """The object registered as ``name``; its module is imported on first use."""
        with self._lock:
            if name in self._in_code:
                return self._in_code[name]
            if name in self._loaded:
                return self._loaded[name]
            ep = self.entry_points().get(name)
            if ep is None:
                raise self._unknown(name, sorted(set(self._in_code) | set(self.entry_points())))
            try:
                obj: T = ep.load()
            except Exception as err:
                raise PluginLoadError(self.group, name, ep.value, err) from err
            self._loaded[name] = obj
            return obj
