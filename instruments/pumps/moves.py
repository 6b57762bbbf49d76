"""What a plunger move did to the liquid: the record shared by the driver and the emulator.

The emulator reports every move it executes (firmware side); :class:`~instruments.pumps.SyringePump`
reports every move it has confirmed through the pump's position report (driver side). Either
stream can drive a fluidics model (``simulators.fluidics``), so a dry-run against someone
else's emulator or a bench pump still moves simulated liquid.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal

MoveKind = Literal["pickup", "dispense", "init"]


@dataclass(frozen=True)
class PlungerMove:
    """One executed plunger movement, as the liquid sees it.

    Attributes:
        address: the driver address of the pump (1-15, 16 for '@').
        kind: "pickup" (plunger down: liquid drawn in through the valve), "dispense" (plunger
            up: liquid pushed out through the valve) or "init" (the plunger homed by Z/Y/W,
            pushing whatever the syringe held out through the init's output port).
        increments: standard-mode increments actually travelled (>= 0; an overloaded move
            travels only part of the way).
        valve: the valve position during the move: "i", "o", "b", "e" or a port number.
        increments_per_stroke: the pump's full stroke (3000 or 6000).
        overloaded: the move stopped on a fault (overload, stuck plunger).
    """

    address: int
    kind: MoveKind
    increments: int
    valve: str
    increments_per_stroke: int
    overloaded: bool = False


MoveListener = Callable[[PlungerMove], None]
