"""Typed pump errors: one class per documented status-byte error code, plus driver faults.

Every firmware error carries ``code`` (the status byte's low nibble), ``raw`` (the reply bytes
that reported it) and ``requires_reinit`` (whether the pump must be initialised again before
any further plunger or valve move). Codes follow the XCalibur manual, tables 3-8/3-9, which
the Hamilton PSD/4 and PSD/6 share.
"""

from __future__ import annotations

from instruments.exceptions import (
    DeviceCommunicationError,
    InstrumentError,
    LiquidHandlingError,
)


class PumpError(InstrumentError):
    """Base class of every syringe-pump fault.

    Attributes:
        code: the firmware error code (0-15), or None for driver-side faults.
        raw: the reply bytes that reported the fault (b"" when there were none).
        requires_reinit: True when the pump must be initialised again before moving.
    """

    code: int | None = None
    requires_reinit: bool = False
    recovery: str = "retry the command"

    def __init__(self, message: str = "", *, raw: bytes = b"", address: str | None = None):
        self.raw = raw
        self.address = address
        where = f" (pump {address!r})" if address is not None else ""
        super().__init__(f"{message or self.__class__.__doc__}{where}")


class PumpFirmwareError(PumpError):
    """The pump reported an error code in its status byte."""


class InitializationError(PumpFirmwareError):
    """Initialization failed (code 1); cleared only by a successful initialisation."""

    code = 1
    requires_reinit = True
    recovery = "check the syringe and valve, then initialise again"


class InvalidCommand(PumpFirmwareError):
    """Invalid command (code 2)."""

    code = 2
    recovery = "fix the command string; no re-init needed"


class InvalidOperand(PumpFirmwareError):
    """Invalid operand (code 3), immediate or at run time for a later command in a string."""

    code = 3
    recovery = "fix the operand; query the position before continuing"


class InvalidCommandSequence(PumpFirmwareError):
    """Invalid command sequence (code 4) in an EEPROM program (s/e)."""

    code = 4
    recovery = "fix the stored program"


class FluidDetectionError(PumpFirmwareError):
    """Code 5: unused on the XCalibur (fluid detection on the XP 3000)."""

    code = 5


class EEPROMFailure(PumpFirmwareError):
    """EEPROM failure (code 6): fatal, the pump needs service."""

    code = 6
    requires_reinit = True
    recovery = "power-cycle; the pump needs service if it persists"


class NotInitialized(PumpFirmwareError):
    """Device not initialised (code 7)."""

    code = 7
    requires_reinit = True
    recovery = "initialise the pump"


class PlungerOverload(PumpFirmwareError):
    """Plunger overload (code 9); re-initialisation required."""

    code = 9
    requires_reinit = True
    recovery = "clear the blockage, then initialise; the delivered volume is unknown"


class ValveOverload(PumpFirmwareError):
    """Valve overload (code 10); re-initialisation required."""

    code = 10
    requires_reinit = True
    recovery = "check the valve, then initialise"


class PlungerMoveNotAllowed(PumpFirmwareError):
    """Plunger move not allowed (code 11): the valve is in bypass or throughput."""

    code = 11
    recovery = "turn the valve to a port first"


class CommandOverflow(PumpFirmwareError):
    """Command overflow (code 15): a command was sent while the pump was moving."""

    code = 15
    recovery = (
        "the pump was busy: wait until Q reports it ready, then resend (a pump that never "
        "becomes ready is stuck: send T, inspect it, then initialise)"
    )


ERRORS_BY_CODE: dict[int, type[PumpFirmwareError]] = {
    cls.code: cls
    for cls in (
        InitializationError,
        InvalidCommand,
        InvalidOperand,
        InvalidCommandSequence,
        FluidDetectionError,
        EEPROMFailure,
        NotInitialized,
        PlungerOverload,
        ValveOverload,
        PlungerMoveNotAllowed,
        CommandOverflow,
    )
}


class UnknownPumpError(PumpFirmwareError):
    """The pump reported an undocumented error code."""

    requires_reinit = True

    def __init__(self, code: int, *, raw: bytes = b"", address: str | None = None):
        self.code = code
        super().__init__(f"undocumented pump error code {code}", raw=raw, address=address)


def error_for_code(code: int, *, raw: bytes = b"", address: str | None = None) -> PumpFirmwareError:
    """The typed exception for a status-byte error code (1-15)."""
    cls = ERRORS_BY_CODE.get(code)
    if cls is None:
        return UnknownPumpError(code, raw=raw, address=address)
    return cls(raw=raw, address=address)


class PumpTimeout(PumpError):
    """The pump stayed busy past its predicted move time plus margin; it was sent ``T``."""

    requires_reinit = True
    recovery = "inspect the pump, then initialise"

    def __init__(
        self, message: str, *, predicted_s: float, waited_s: float, address: str | None = None
    ):
        self.predicted_s = predicted_s
        self.waited_s = waited_s
        super().__init__(message, address=address)


class PumpStuck(PumpTimeout):
    """The pump never became ready before an action (busy past any move it could be making)."""

    recovery = "the pump is stuck (T was sent): inspect the plunger and valve, then initialise"


class ReinitRequired(PumpError):
    """The driver refuses to move: an earlier fault requires ``initialize()`` first."""

    requires_reinit = True
    recovery = "call initialize()"


class PumpVolumeError(PumpError, LiquidHandlingError):
    """An impossible volume or port was requested; nothing was sent to the pump."""

    recovery = "request a volume within the syringe's range"


class PumpCommunicationError(PumpError, DeviceCommunicationError):
    """No valid answer from the pump after the allowed retries."""

    recovery = "check cabling, address and baud rate; query Q before resending a move"


class PortUnavailable(PumpCommunicationError):
    """The serial port could not be opened (wrong path or URL, or in use); nothing was sent."""

    recovery = "check the port: its path or URL, that it exists and that no other program holds it"


class AnswerLost(PumpCommunicationError):
    """DT: no valid answer to an action (not resent blind: settled through Q and reports)."""


class PumpConfigurationError(PumpError):
    """The pump reports a configuration (its valve) that differs from the one configured."""

    recovery = "fix the configured valve ports (or fit the valve the configuration names)"


class FramingError(PumpError):
    """Bytes that do not form a valid frame (bad checksum, bad status byte, bad layout)."""
