"""Valve ports: how the driver names them, how the firmware commands and reports them."""

from __future__ import annotations

from instruments.pumps.errors import PumpConfigurationError, PumpVolumeError
from instruments.pumps.models import MAX_VALVE_PORTS, ValveType

ValvePort = str | int
NAMED_PORTS = {"input": "I", "output": "O", "bypass": "B", "extra": "E"}
VALVE_NAMES = {"i": "input", "o": "output", "b": "bypass", "e": "extra"}


def valve_position(port: ValvePort) -> str:
    """A valve port as the firmware reports it (``?6``): "i", "o", "b", "e" or "<n>".

    ``6`` and ``"06"`` give "6"; ``"output"`` gives "o". Raises ValueError otherwise.
    """
    text = str(port).strip().lower()
    if isinstance(port, bool) or not (text.isdigit() or text in NAMED_PORTS):
        raise ValueError(f"unknown valve port {port!r}")
    return str(int(text)) if text.isdigit() else NAMED_PORTS[text].lower()


def parse_valve_report(text: str) -> str:
    """The valve position in a ``?6`` answer ("i", "o", "b", "e" or "1".."12").

    Raises:
        ValueError: anything else (a damaged answer).
    """
    value = text.strip().lower()
    if value in VALVE_NAMES:
        return value
    if value.isdigit() and 1 <= int(value) <= MAX_VALVE_PORTS and len(value) <= 2:
        return str(int(value))
    raise ValueError("not a valve position")


def display(position: str) -> str | int:
    """A firmware valve position for people: "input" ... or the port number."""
    return int(position) if position.isdigit() else VALVE_NAMES.get(position, position)


def valve_command(port: ValvePort, ports: int, valve_type: ValveType | None) -> str:
    """The firmware command turning the valve to ``port`` ("I", "O", "B", "E" or "I<n>").

    Args:
        port: "input", "output", "bypass", "extra" or a port number (int or digits).
        ports: the valve's numbered ports (as configured or reported).
        valve_type: the valve as the pump reports it (None: not reported).

    Raises:
        PumpVolumeError: a port this valve does not have (nothing is sent).
    """
    if isinstance(port, str) and port.strip().lower() in NAMED_PORTS:
        return NAMED_PORTS[port.strip().lower()]
    number: int | None = None
    if isinstance(port, int) and not isinstance(port, bool):
        number = port
    elif isinstance(port, str) and port.strip().isdigit():
        number = int(port)
    if number is None:
        raise PumpVolumeError(f"unknown valve port {port!r}")
    if valve_type is not None and not valve_type.distribution:
        raise PumpVolumeError(
            f"valve port {number}: the pump reports a {valve_type.name} valve, which has no "
            "numbered ports; use input, output, bypass or extra"
        )
    if not 1 <= number <= ports:
        raise PumpVolumeError(f"valve port {number} not in 1..{ports}")
    return f"I{number}"


def check_reported_valve(
    reported: ValveType | None, configured: int | None, address: str
) -> ValveType | None:
    """The valve the pump reports, once checked against the configured port count.

    Raises:
        PumpConfigurationError: the pump reports a valve with another number of ports.
    """
    if reported is not None and configured is not None and reported.ports != configured:
        raise PumpConfigurationError(
            f"the pump reports a {reported.name} valve ({reported.ports} ports), "
            f"configured with {configured}",
            address=address,
        )
    return reported
