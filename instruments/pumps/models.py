"""Per-model tables (Cavro XCalibur / XLP 6000, Hamilton PSD/4 / PSD/6) and motion times.

Motion times follow the XCalibur manual, appendix B: distances in half-increments, a
trapezoidal velocity profile from the start speed ``v`` up to the top speed ``V`` and down to
the cutoff speed ``c`` (dispense) or ``v`` (aspirate), at ``L × 2500`` Hz/s. With the defaults
(v900 V1400 c900 L14) a full 3000-increment stroke takes 4.29 s, the "S11 = 4.30 s" entry.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: Speed codes S0-S40 in Hz (half-increments per second), XCalibur table.
SPEED_CODES_HZ: tuple[int, ...] = (
    6000, 5600, 5000, 4400, 3800, 3200, 2600, 2200, 2000, 1800,
    1600, 1400, 1200, 1000, 800, 600, 400, 200, 190, 180,
    170, 160, 150, 140, 130, 120, 110, 100, 90, 80,
    70, 60, 50, 40, 30, 20, 18, 16, 14, 12, 10,
)  # fmt: skip

INIT_SPEED_HZ = 500
VALVE_TURN_S = 0.25  # "turn time < 250 ms between adjacent ports"
ACCEL_UNIT_HZ_PER_S = 2500


@dataclass(frozen=True)
class PumpModel:
    """What differs between the supported pumps.

    Attributes:
        name: human-readable model name.
        increments: plunger increments per full stroke in standard mode (N0).
        fine_increments: increments per stroke in fine mode (N1).
        speed_code_range: the valid ``S`` operands (inclusive).
        top_speed_range_hz: the valid ``V`` operands (inclusive).
        start_speed_range_hz: the valid ``v`` operands.
        cutoff_speed_range_hz: the valid ``c`` operands.
        vendor: "tecan" or "hamilton".
    """

    name: str
    increments: int
    fine_increments: int
    speed_code_range: tuple[int, int]
    top_speed_range_hz: tuple[int, int]
    start_speed_range_hz: tuple[int, int] = (50, 1000)
    cutoff_speed_range_hz: tuple[int, int] = (50, 2700)
    vendor: str = "tecan"
    valve_report: str | None = "?76"


MODELS: dict[str, PumpModel] = {
    "xcalibur": PumpModel("Cavro XCalibur", 3000, 24000, (0, 40), (5, 6000)),
    "xlp6000": PumpModel("Cavro XLP 6000", 6000, 48000, (0, 40), (5, 6000)),
    "psd4": PumpModel(
        "Hamilton PSD/4", 3000, 24000, (1, 40), (2, 5800), vendor="hamilton", valve_report=None
    ),
    # Assumption (not in the reference notes): the PSD/6 resolves 6000 / 48000 steps per
    # stroke and shares the PSD/4 speed ranges.
    "psd6": PumpModel(
        "Hamilton PSD/6", 6000, 48000, (1, 40), (2, 5800), vendor="hamilton", valve_report=None
    ),
}

#: The most ports any supported distribution valve has.
MAX_VALVE_PORTS = 12


@dataclass(frozen=True)
class ValveType:
    """A valve head, as the ``U`` configuration code names it.

    Attributes:
        code: the ``U<n>`` code written to the pump's EEPROM.
        name: human-readable name.
        ports: the number of ports.
        distribution: True when ports are numbered (``I<n>``/``O<n>``); False for valves with
            named positions only (input, output, bypass, extra).
    """

    code: int
    name: str
    ports: int
    distribution: bool


#: Valve types by ``U`` code, from PyLabware's XLP 6000 table (T valves, code 5, come as 3- or
#: 4-port heads, so their port count is not known from the code and they are left out).
#: Assumption, not verified on a pump: the XCalibur's ``?76`` configuration report answers this
#: code; any other answer is treated as "not reported" and the configured ports are used.
VALVE_TYPES: dict[int, ValveType] = {
    v.code: v
    for v in (
        ValveType(1, "3-port Y", 3, False),
        ValveType(2, "4-port 90°", 4, False),
        ValveType(7, "6-port distribution", 6, True),
        ValveType(8, "9-port distribution", 9, True),
        ValveType(9, "4-port loop", 4, False),
        ValveType(11, "3-port distribution", 3, True),
    )
}


def parse_valve_report(text: str) -> ValveType | None:
    """The valve type in a ``?76`` answer, or None when the answer is not a known code."""
    text = text.strip()
    return VALVE_TYPES.get(int(text)) if text.isdigit() and len(text) <= 3 else None


def distribution_valve_code(ports: int) -> int | None:
    """The ``U`` code of a distribution valve with ``ports`` ports, if the table has one."""
    for valve in VALVE_TYPES.values():
        if valve.distribution and valve.ports == ports:
            return valve.code
    return None


def get_model(name: str) -> PumpModel:
    """The table for a model name ("xcalibur", "xlp6000", "psd4", "psd6")."""
    try:
        return MODELS[name]
    except KeyError:
        raise ValueError(f"unknown pump model {name!r}; choose from {sorted(MODELS)}") from None


@dataclass(frozen=True)
class SpeedSettings:
    """Plunger speeds in Hz (half-increments per second) and the slope code ``L``."""

    start_hz: int = 900
    top_hz: int = 1400
    cutoff_hz: int = 900
    slope_code: int = 14


def move_time_s(increments: int, speeds: SpeedSettings, *, dispense: bool) -> float:
    """Predicted time of one plunger move of ``increments`` (standard-mode) increments.

    Args:
        increments: the distance in full increments (sign ignored).
        speeds: the pump's speed settings.
        dispense: True for a move up (ends at the cutoff speed), False for a pickup (ends at v).

    Returns:
        The move time in seconds (appendix B's trapezoid, or a triangle for short moves).
    """
    distance = 2.0 * abs(increments)  # half-increments
    if distance == 0:
        return 0.0
    top = float(speeds.top_hz)
    start = min(float(speeds.start_hz), top)
    end = min(float(speeds.cutoff_hz if dispense else speeds.start_hz), top)
    accel = speeds.slope_code * ACCEL_UNIT_HZ_PER_S
    if top <= 50 or (start == top and end == top):
        return distance / top
    ramp_up = (top**2 - start**2) / (2 * accel)
    ramp_down = (top**2 - end**2) / (2 * accel)
    if ramp_up + ramp_down <= distance:
        cruise = (distance - ramp_up - ramp_down) / top
        return (top - start) / accel + (top - end) / accel + cruise
    peak = math.sqrt((2 * accel * distance + start**2 + end**2) / 2)
    if peak <= max(start, end):
        return distance / max(start, end)
    return (peak - start) / accel + (peak - end) / accel


def init_time_s(position_increments: int, speed_code: int | None = None) -> float:
    """Predicted initialisation time from ``position_increments`` (plunger to home + valve)."""
    hz = SPEED_CODES_HZ[speed_code] if speed_code is not None else INIT_SPEED_HZ
    return 2.0 * max(position_increments, 0) / hz + 2 * VALVE_TURN_S + 0.5
