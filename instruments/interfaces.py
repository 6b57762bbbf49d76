"""The small interfaces the controller drives instruments through.

Real drivers (pyserial pumps, pymmcore-plus microscopes, PyLabRobot handlers) and simulators
implement the same ``typing.Protocol`` classes. Everything is in lab units: µL, µM, seconds,
plate barcodes and well names such as ``"B03"``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class Clock(Protocol):
    """Time source. Real runs use wall time; dry-runs a simulated clock that jumps."""

    def now(self) -> float:
        """Seconds since the epoch (wall) or since the campaign began (simulated)."""
        ...

    def sleep(self, seconds: float) -> None:
        """Wait ``seconds`` (a simulated clock advances at once)."""
        ...


@runtime_checkable
class LiquidHandler(Protocol):
    """One pipetting channel moving stock solutions into plate wells."""

    def aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        """Draw ``volume_ul`` from reservoir ``source`` into the tip.

        Raises:
            instruments.exceptions.LiquidHandlingError: the volume cannot be drawn.
        """
        ...

    def dispense(self, plate: str, well: str, volume_ul: float) -> None:
        """Dispense ``volume_ul`` of what the tip holds into ``well`` of ``plate``."""
        ...

    def mix(self, plate: str, well: str, volume_ul: float, cycles: int) -> None:
        """Mix a well by pipetting up and down."""
        ...

    def discard_tip(self) -> None:
        """Drop whatever the tip holds (used after an uncertain aspirate)."""
        ...

    def well_volume_ul(self, plate: str, well: str) -> float | None:
        """The liquid volume in a well, or None when this handler cannot measure it.

        Crash recovery asks this to resolve a dispense journaled ``started`` but not ``done``.
        """
        ...

    def identify(self) -> dict[str, Any]:
        """Identity and state for commissioning (model, serial, firmware, ready)."""
        ...


@dataclass(frozen=True)
class Frame:
    """One field of one well: a ``(C, Y, X)`` image stack with its metadata.

    ``channels[i]`` names ``image[i]``; ``position_um`` is the stage position of the field
    centre; ``timestamp_s`` is the clock's time at acquisition.
    """

    image: np.ndarray
    channels: tuple[str, ...]
    plate: str
    well: str
    field: int
    pixel_size_um: float
    position_um: tuple[float, float]
    timestamp_s: float
    metadata: dict[str, Any] = dataclasses.field(default_factory=dict)  # 'field' is a field here


@runtime_checkable
class Microscope(Protocol):
    """A plate-imaging microscope."""

    def acquire_well(
        self,
        plate: str,
        well: str,
        channels: Sequence[str],
        fields: int,
        exposure_ms: float,
    ) -> list[Frame]:
        """Image ``fields`` fields of one well in each channel; one :class:`Frame` per field."""
        ...

    def identify(self) -> dict[str, Any]:
        """Identity and state for commissioning."""
        ...


#: Where a plate can be in a workcell: the places a plate mover carries plates between.
PLATE_LOCATIONS = ("hotel", "liquid_handler", "incubator", "microscope")
#: The places that hold one plate at a time (the handler's deck position, the stage).
ONE_PLATE_PLACES = ("liquid_handler", "microscope")


@runtime_checkable
class PlateMover(Protocol):
    """A robot arm (with its plate hotel) that carries plates between the workcell's places.

    Places are :data:`PLATE_LOCATIONS`: the hotel (plates waiting, and where a new plate
    starts), the liquid handler's deck position and the microscope's stage (one plate each),
    and the incubator (its slots). The mover knows where each plate is, so a move is asked
    for by destination and a resumed run re-asks safely.
    """

    def location(self, plate: str) -> str:
        """Where ``plate`` is now (``"hotel"`` for a plate never moved)."""
        ...

    def occupant(self, place: str) -> str | None:
        """The plate on a one-plate place (deck position, stage), or None."""
        ...

    def move_plate(self, plate: str, destination: str) -> None:
        """Carry ``plate`` from where it is to ``destination`` (blocks for the transfer).

        Raises:
            InstrumentError: the destination is full or unknown, or the arm failed.
        """
        ...

    def transfer_s(self, source: str, destination: str) -> float:
        """The expected duration of one move (s), for schedules and estimates."""
        ...

    def identify(self) -> dict[str, Any]:
        """Identity and state for commissioning."""
        ...
