"""A simulated robot arm and plate hotel: carries plates between the workcell's places.

An honest model of what a scheduler meets on a real workcell (a SCARA or gantry arm serving a
hotel, a liquid handler, an incubator and a microscope): each move takes time on the clock
(``transfer_s``, or a per-pair time), a one-plate place (the handler's deck position, the
microscope's stage) holds one plate, the incubator holds ``incubator_slots`` plates and the
hotel ``hotel_slots`` (unlimited by default), and a move into a full place is refused with
:class:`~instruments.exceptions.PlateHandlingError` before the arm moves. Where each plate is
lives in the shared :class:`~simulators.world.SimulatedLab` (durable before a move returns),
so a killed dry-run resumes with every plate where it "physically" is.
"""

from __future__ import annotations

import math
from typing import Any

from instruments.exceptions import PlateHandlingError
from instruments.interfaces import ONE_PLATE_PLACES, PLATE_LOCATIONS, Clock
from simulators.world import SimulatedLab


def parse_transfer_times(times: dict[str, Any]) -> dict[frozenset[str], float]:
    """``{"a->b": seconds}`` as ``{frozenset({a, b}): seconds}`` (either direction).

    Raises:
        ValueError: a key is not two different places joined by ``->``, or a time is not a
            finite number of seconds >= 0 (the message names the key).
    """
    out: dict[frozenset[str], float] = {}
    for pair, seconds in times.items():
        a, sep, b = str(pair).partition("->")
        if not sep or a not in PLATE_LOCATIONS or b not in PLATE_LOCATIONS or a == b:
            raise ValueError(
                f"transfer_times_s: {pair!r} is not 'source->destination' of two different "
                f"places among {list(PLATE_LOCATIONS)}"
            )
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, (int, float))
            or not (math.isfinite(seconds) and seconds >= 0)
        ):
            raise ValueError(f"transfer_times_s.{pair}: {seconds!r} is not a number of seconds")
        out[frozenset((a, b))] = float(seconds)
    return out


class SimulatedPlateMover:
    """The ``simulated`` plate mover.

    Args:
        lab: the virtual lab the plates are in.
        clock: advanced by each move's duration.
        transfer_s: the duration of a move between any two places (s).
        transfer_times_s: per-pair durations, ``{"hotel->liquid_handler": 40, ...}``
            (either direction); pairs not named take ``transfer_s``.
        incubator_slots: plates the incubator holds (None: unlimited).
        hotel_slots: plates the hotel holds (None: unlimited).
        fail_next: the next this many moves fail with a gripper fault (fault injection for
            tests; the plate stays where it was).
    """

    def __init__(
        self,
        lab: SimulatedLab,
        clock: Clock,
        *,
        transfer_s: float = 30.0,
        transfer_times_s: dict[str, float] | None = None,
        incubator_slots: int | None = None,
        hotel_slots: int | None = None,
        fail_next: int = 0,
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.default_transfer_s = float(transfer_s)
        self.pair_s = parse_transfer_times(transfer_times_s or {})
        self.capacity: dict[str, int | None] = {
            "hotel": hotel_slots,
            "liquid_handler": 1,
            "microscope": 1,
            "incubator": incubator_slots,
        }
        self.fail_next = int(fail_next)
        self.moves = 0

    def location(self, plate: str) -> str:
        return self.lab.plate_location(plate)

    def occupant(self, place: str) -> str | None:
        if place not in ONE_PLATE_PLACES:
            raise ValueError(f"{place!r} holds more than one plate")
        here = self.lab.plates_at(place)
        return here[0] if here else None

    def transfer_s(self, source: str, destination: str) -> float:
        return self.pair_s.get(frozenset((source, destination)), self.default_transfer_s)

    def move_plate(self, plate: str, destination: str) -> None:
        if destination not in PLATE_LOCATIONS:
            raise PlateHandlingError(
                f"no place {destination!r} in this workcell; places: {list(PLATE_LOCATIONS)}"
            )
        source = self.location(plate)
        if source == destination:
            return
        cap = self.capacity[destination]
        held = self.lab.plates_at(destination)
        if cap is not None and len(held) >= cap:
            raise PlateHandlingError(
                f"cannot move plate {plate} to the {destination}: full ({', '.join(held)})"
            )
        if self.fail_next > 0:
            self.fail_next -= 1
            raise PlateHandlingError(f"gripper fault moving plate {plate} from the {source}")
        self.clock.sleep(self.transfer_s(source, destination))
        self.lab.set_plate_location(plate, destination)
        self.moves += 1

    def identify(self) -> dict[str, Any]:
        return {
            "model": "simulated plate mover",
            "transfer_s": self.default_transfer_s,
            "plates": {p: self.location(p) for p in self.lab.plates},
        }
