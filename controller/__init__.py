"""The controller: everything that runs a campaign, grouped by job.

| package | owns |
|---|---|
| :mod:`controller.spec` | campaign files (pydantic): loading, validation, JSON Schema |
| :mod:`controller.loop` | the runner's state machine, the approval gate, operator actions, the step engine and its journal, round analysis, events, alerts, clocks, start-time scheduling |
| :mod:`controller.rig` | instrument drivers by name and their wiring to campaign settings, dry-run emulators, commissioning |
| :mod:`controller.ledger` | the SQL ledger: tables, migrations, queries, accounts |
| :mod:`controller.cli` | the ``cellpilot`` command line, one module per group of commands |
| :mod:`controller.console` | the operator web console (FastAPI) |
| :mod:`controller.report` | the campaign's HTML report |

Imports run one way: ``controller`` may import every other package; nothing imports
``controller`` (``tests/test_layering.py``). Modules that moved when the controller was
grouped (``controller.runner`` → ``controller.loop.runner`` and so on) stay importable under
their old names, with a :class:`DeprecationWarning`.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.machinery
import importlib.util
import sys
import warnings
from types import ModuleType

#: old module path -> new module path (grouped by job in cellpilot 0.2)
MOVED_MODULES: dict[str, str] = {
    **{
        f"controller.{m}": f"controller.loop.{m}"
        for m in (
            "runner",
            "engine",
            "gate",
            "operator",
            "analysis",
            "events",
            "clocks",
            "failpoints",
            "alerts",
            "scheduling",
        )
    },
    "controller.instrument_setup": "controller.rig.registry",
    "controller.drivers_cavro": "controller.rig.cavro",
    "controller.drivers_mmcore": "controller.rig.mmcore",
    "controller.drivers_pylabrobot": "controller.rig.pylabrobot",
    "controller.cli_console": "controller.cli.console",
    "controller.cli_pump": "controller.cli.pump",
    "controller.progress": "controller.cli.progress",
    "controller.queries": "controller.ledger.queries",
}


class _MovedModuleFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """Serves an old module path as the module at its new path (the same module object)."""

    def __init__(self) -> None:
        self._specs: dict[str, importlib.machinery.ModuleSpec | None] = {}

    def find_spec(self, fullname: str, path: object = None, target: object = None):
        if fullname not in MOVED_MODULES:
            return None
        return importlib.util.spec_from_loader(fullname, self)

    def create_module(self, spec) -> ModuleType:
        new = MOVED_MODULES[spec.name]
        warnings.warn(f"{spec.name} moved to {new}", DeprecationWarning, stacklevel=2)
        module = importlib.import_module(new)
        self._specs[new] = module.__spec__
        return module

    def exec_module(self, module: ModuleType) -> None:
        # The module at the new path is already executed; importlib has just pointed its
        # __spec__ at the old name, so point it back.
        module.__spec__ = self._specs[module.__name__]


if not any(isinstance(f, _MovedModuleFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedModuleFinder())
