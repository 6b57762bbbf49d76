"""Protocols: labware, plate layouts, concentration → volume math, compiling experiments to steps.

Importing the package registers the built-in protocols (``dose_response``, ``adaptive_dosing``).
"""

from __future__ import annotations

from protocols import adaptive_dosing as _adaptive_dosing  # noqa: F401  (registers it)
from protocols import dose_response as _dose_response  # noqa: F401  (registers the protocol)
from protocols.base import (
    CompiledPlate,
    PlateProtocol,
    WellContents,
    get_protocol,
    protocol_class,
    register_protocol,
    registered_protocols,
    replay_steps,
)

__all__ = [
    "CompiledPlate",
    "PlateProtocol",
    "WellContents",
    "get_protocol",
    "protocol_class",
    "register_protocol",
    "registered_protocols",
    "replay_steps",
]
