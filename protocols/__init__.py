"""Protocols: labware, plate layouts, concentration → volume math, compiling experiments to steps.

Protocols are found by name in :mod:`protocols.registry` (entry points of the group
``cellpilot.protocols``; the built-ins are ``dose_response`` and ``adaptive_dosing``).
"""

from __future__ import annotations

from protocols.base import CompiledPlate, PlateProtocol, WellContents, replay_steps
from protocols.registry import get_protocol, protocol_class, register_protocol, registered_protocols

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
