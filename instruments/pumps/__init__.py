"""Syringe-pump drivers: Tecan Cavro XCalibur / XLP 6000 and Hamilton PSD/4, PSD/6.

Three layers, as in PyLabRobot: :class:`SyringePump` (lab units) →
:class:`~instruments.pumps.backend.PumpSession` (firmware protocol, retries, polling) →
a transport (:class:`SerialTransport` over pyserial, or :class:`ReplayTransport`).
"""

from __future__ import annotations

from instruments.pumps.backend import PumpSession, broadcast
from instruments.pumps.errors import (
    AnswerLost,
    CommandOverflow,
    EEPROMFailure,
    InitializationError,
    InvalidCommand,
    InvalidCommandSequence,
    InvalidOperand,
    NotInitialized,
    PlungerMoveNotAllowed,
    PlungerOverload,
    PortUnavailable,
    PumpCommunicationError,
    PumpConfigurationError,
    PumpError,
    PumpStuck,
    PumpTimeout,
    PumpVolumeError,
    ReinitRequired,
    ValveOverload,
)
from instruments.pumps.models import (
    MODELS,
    VALVE_TYPES,
    PumpModel,
    SpeedSettings,
    ValveType,
    move_time_s,
)
from instruments.pumps.moves import PlungerMove
from instruments.pumps.pump import SyringePump
from instruments.pumps.transport import ReplayTransport, SerialTransport, open_transport

__all__ = [
    "MODELS",
    "VALVE_TYPES",
    "AnswerLost",
    "CommandOverflow",
    "EEPROMFailure",
    "InitializationError",
    "InvalidCommand",
    "InvalidCommandSequence",
    "InvalidOperand",
    "NotInitialized",
    "PlungerMoveNotAllowed",
    "PlungerMove",
    "PlungerOverload",
    "PortUnavailable",
    "PumpCommunicationError",
    "PumpConfigurationError",
    "PumpError",
    "PumpModel",
    "PumpSession",
    "PumpStuck",
    "PumpTimeout",
    "PumpVolumeError",
    "ReinitRequired",
    "ReplayTransport",
    "SerialTransport",
    "SpeedSettings",
    "SyringePump",
    "ValveOverload",
    "ValveType",
    "broadcast",
    "move_time_s",
    "open_transport",
]
