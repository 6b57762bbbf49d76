"""The rig: which driver serves each instrument role, and how campaign settings reach it.

| module | owns |
|---|---|
| :mod:`controller.rig.registry` | :class:`Driver`, finding drivers by name (entry points ``cellpilot.drivers``), preflight checks, building a campaign's instruments, commissioning (``devices check``) |
| :mod:`controller.rig.simulated` | the ``simulated`` handler and microscope, and the persistent virtual lab of a dry-run |
| :mod:`controller.rig.cavro` | Cavro / Hamilton syringe pumps on a serial bus (``cavro``), with the pump emulator in dry-runs |
| :mod:`controller.rig.mmcore` | Micro-Manager microscopes through pymmcore-plus (``mmcore``) |
| :mod:`controller.rig.pylabrobot` | any PyLabRobot liquid handler (``pylabrobot``) |

The drivers' device code lives in :mod:`instruments`; this package only wires it to campaign
files.
"""

from __future__ import annotations

from controller.rig.registry import (
    BuildContext,
    Driver,
    InstrumentConfigError,
    Instruments,
    available_drivers,
    build_instruments,
    check_devices,
    check_instruments,
    driver,
    find_driver,
    register_driver,
)

__all__ = [
    "BuildContext",
    "Driver",
    "InstrumentConfigError",
    "Instruments",
    "available_drivers",
    "build_instruments",
    "check_devices",
    "check_instruments",
    "driver",
    "find_driver",
    "register_driver",
]
