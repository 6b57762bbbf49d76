"""Syringe-pump drivers: Tecan Cavro XCalibur / XLP 6000 and Hamilton PSD/4, PSD/6.

Three layers, as in PyLabRobot: :class:`SyringePump` (lab units) →
:class:`~instruments.pumps.backend.PumpSession` (firmware protocol, retries, polling) →
a transport (:class:`SerialTransport` over pyserial, or :class:`ReplayTransport`).
"""

from __future__ import annotations

from instruments.pumps.backend import PumpSession, broadcast
from instruments.pumps.errors import (
    CommandOverflow,
    EEPROMFailure,
    InitializationError,
    InvalidCommand,
    InvalidCommandSequence,
    InvalidOperand,
    NotInitialized,
    PlungerMoveNotAllowed,
    PlungerOverload,
    PumpCommunicationError,
    PumpError,
    PumpTimeout,
    PumpVolumeError,
    ReinitRequired,
    ValveOverload,
)
from instruments.pumps.models import MODELS, PumpModel, SpeedSettings, move_time_s
from instruments.pumps.pump import SyringePump
from instruments.pumps.transport import ReplayTransport, SerialTransport, open_transport

__all__ = [
    "MODELS",
    "CommandOverflow",
    "EEPROMFailure",
    "InitializationError",
    "InvalidCommand",
    "InvalidCommandSequence",
    "InvalidOperand",
    "NotInitialized",
    "PlungerMoveNotAllowed",
    "PlungerOverload",
    "PumpCommunicationError",
    "PumpError",
    "PumpModel",
    "PumpSession",
    "PumpTimeout",
    "PumpVolumeError",
    "ReinitRequired",
    "ReplayTransport",
    "SerialTransport",
    "SpeedSettings",
    "SyringePump",
    "ValveOverload",
    "broadcast",
    "move_time_s",
    "open_transport",
]
