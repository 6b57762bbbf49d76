"""Mapping cellpilot's world onto a PyLabRobot deck: tip racks, reservoirs, plates, wells.

cellpilot names stocks by source (``"drug_a@100uM"``), plates by barcode and wells as
``"B03"``; PyLabRobot needs resources on a deck. :class:`DeckLayout` owns that mapping:

- **auto layout** (chatterbox, simulation): tip racks, one trough per source (created the first
  time a source is aspirated from) and plate sites are placed on the deck at fixed
  coordinates; on a slotted deck (Opentrons ``OTDeck``) they go into free slots, sources
  into the troughs of 12-trough reservoir plates. Never use it on hardware: the positions are
  invented.
- **deck file** (hardware): a deck saved with PyLabRobot (``deck.save("deck.json")``) holds
  the tip racks, the reservoirs and the plate sites (plate-carrier sites or other holders).
  ``reservoirs`` maps each source name to a container (``"trough_1"``) or a well of a
  reservoir plate (``"reservoir_plate:A1"``); a source not mapped is looked up by its own
  name; ``plate_sites`` names the holders plates are put on.

A plate is created from the plate-type factory the first time its barcode is touched and put
on the least recently used plate site (the plate that was there has left the deck).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from typing import Any, cast

from pylabrobot.resources import (
    Container,
    Coordinate,
    Deck,
    Plate,
    ResourceHolder,
    TipRack,
    TipSpot,
    Trough,
    Well,
)

from instruments.exceptions import LiquidHandlingError

_WELL_RE = re.compile(r"^([A-Pa-p])0*([0-9]{1,2})$")

# auto layout: rows of resources at fixed deck coordinates (mm)
_TIP_ROW_Y, _PLATE_ROW_Y, _TROUGH_ROW_Y, _X0, _PITCH_X = 20.0, 130.0, 240.0, 120.0, 135.0
_TROUGH_SIZE = (18.0, 80.0, 40.0)
_TROUGHS_PER_ROW = 32
_DECK_ARGS: dict[str, dict[str, Any]] = {"VantageDeck": {"size": 1.3}}
_RESERVOIR_PLATE = "nest_12_troughplate_15000uL_Vb"  # slotted decks: 12 stocks per slot


def resource_factory(name: str) -> Callable[[str], Any]:
    """A PyLabRobot resource factory by its name in ``pylabrobot.resources``.

    Raises:
        LiquidHandlingError: no such factory.
    """
    import pylabrobot.resources as plr_resources

    factory = getattr(plr_resources, name, None)
    if not callable(factory):
        raise LiquidHandlingError(f"pylabrobot.resources has no labware named {name!r}")
    return cast(Callable[[str], Any], factory)


def make_deck(name: str) -> Deck:
    """A PyLabRobot deck by factory name (``STARLetDeck``, ``OTDeck``, ``EVO150Deck``, ...)."""
    import pylabrobot.resources as plr_resources

    factory = getattr(plr_resources, name, None)
    if factory is None:
        raise LiquidHandlingError(f"pylabrobot.resources has no deck named {name!r}")
    return factory(**_DECK_ARGS.get(name, {}))


def plr_well_name(well: str) -> str:
    """``"B03"`` -> ``"B3"`` (PyLabRobot's identifier).

    Raises:
        LiquidHandlingError: a malformed well name.
    """
    m = _WELL_RE.match(well.strip()) if isinstance(well, str) else None
    if m is None:
        raise LiquidHandlingError(f"bad well name {well!r}; expected a name such as 'B03'")
    return f"{m.group(1).upper()}{int(m.group(2))}"


class DeckLayout:
    """Resources on a PyLabRobot deck for cellpilot's sources, plates and tips.

    Args:
        deck: the deck (a fresh one for auto layout, or one loaded from a deck file).
        auto: place resources at invented coordinates (simulation only).
        plate_type: factory name of the plate labware (``cor_96_wellplate_360uL_Fb``).
        tip_rack_type: factory name of the tip racks created by the auto layout.
        tip_racks: how many racks the auto layout places.
        tip_rack_names: racks of a deck file to use (when None: every ``TipRack`` but a
            Hamilton teaching rack).
        plate_sites: auto layout: how many plate positions; deck file: names of holders.
        reservoirs: source name -> resource name (``"trough"`` or ``"plate:A1"``).
        reservoir_max_volume_ul: capacity of an auto-layout trough (µL).
        initial_volume: ``initial_volume(name, kind)`` gives the starting volume (µL) of a
            container when it first appears; ``kind`` is ``"reservoir"`` or ``"well"``.
    """

    def __init__(
        self,
        deck: Deck,
        *,
        auto: bool,
        plate_type: str = "cor_96_wellplate_360uL_Fb",
        tip_rack_type: str = "hamilton_96_tiprack_300uL_filter",
        tip_racks: int = 4,
        tip_rack_names: list[str] | None = None,
        plate_sites: int | list[str] = 2,
        reservoirs: dict[str, str] | None = None,
        reservoir_max_volume_ul: float = 50_000.0,
        initial_volume: Callable[[str, str], float] | None = None,
    ) -> None:
        self.deck = deck
        self.auto = auto
        self.plate_factory = resource_factory(plate_type)
        self.reservoir_names = dict(reservoirs or {})
        self.reservoir_max_volume_ul = float(reservoir_max_volume_ul)
        self.initial_volume = initial_volume or (lambda name, kind: 0.0)
        self._sources: dict[str, Container] = {}
        self._plates: dict[str, Plate] = {}
        self._site_use: list[tuple[Any, str | None]] = []  # (site, barcode), LRU first
        self._slotted = auto and hasattr(deck, "assign_child_at_slot")
        self._reservoir_plates: list[Plate] = []
        if auto:
            factory = resource_factory(tip_rack_type)
            n_sites = plate_sites if isinstance(plate_sites, int) else len(plate_sites)
            self.tip_racks = [factory(f"tips_{i + 1}") for i in range(tip_racks)]
            if self._slotted:  # an Opentrons-style deck: labware goes into numbered slots
                for rack in self.tip_racks:
                    deck.assign_child_at_slot(rack, self._free_slot())
                for _ in range(n_sites):
                    self._site_use.append((self._slot_holder(self._free_slot()), None))
            else:
                for i, rack in enumerate(self.tip_racks):
                    location = Coordinate(_X0 + i * _PITCH_X, _TIP_ROW_Y, 0)
                    deck.assign_child_resource(rack, location=location)
                self._site_use = [
                    (Coordinate(_X0 + i * _PITCH_X, _PLATE_ROW_Y, 0), None) for i in range(n_sites)
                ]
        else:
            self.tip_racks = self._find_tip_racks(tip_rack_names)
            names = plate_sites if isinstance(plate_sites, list) else []
            self._site_use = [(self._holder(n), None) for n in names]
        if not self.tip_racks:
            raise LiquidHandlingError("the deck has no tip racks")
        if not self._site_use:
            raise LiquidHandlingError("the deck has no plate sites (settings: plate_sites)")

    # -------------------------------------------------------------------------------- tips

    @property
    def tip_spots(self) -> list[TipSpot]:
        """Every tip spot of the racks in order (rack by rack, column-major as PLR orders them)."""
        return [spot for rack in self.tip_racks for spot in rack.get_all_items()]

    def refill_tips(self) -> None:
        """Fill every rack (the operator replaced them)."""
        for rack in self.tip_racks:
            rack.fill()

    # -------------------------------------------------------------------------- reservoirs

    def reservoir(self, source: str) -> Container:
        """The container holding stock ``source`` (auto layout: created on first use)."""
        if source in self._sources:
            return self._sources[source]
        if self.auto and self._slotted:
            container = self._next_reservoir_well()
        elif self.auto:
            container = self._new_trough(source)
        else:
            container = self._lookup_container(self.reservoir_names.get(source, source), source)
        if not container.tracker.is_disabled:
            volume = self.initial_volume(container.name, "reservoir")
            container.tracker.set_volume(min(volume, container.max_volume))
        self._sources[source] = container
        return container

    def _new_trough(self, source: str) -> Trough:
        if self.deck.has_resource(source):
            raise LiquidHandlingError(f"source {source!r} clashes with a deck resource's name")
        i = len(self._sources)
        sx, sy, sz = _TROUGH_SIZE
        trough = Trough(
            source, size_x=sx, size_y=sy, size_z=sz, max_volume=self.reservoir_max_volume_ul
        )
        row, col = divmod(i, _TROUGHS_PER_ROW)
        location = Coordinate(_X0 + col * (sx + 2), _TROUGH_ROW_Y + row * (sy + 5), 0)
        self.deck.assign_child_resource(trough, location=location)
        return trough

    def _next_reservoir_well(self) -> Container:
        """The next unused trough of a 12-trough reservoir plate (slotted decks)."""
        used = {c.name for c in self._sources.values()}
        for res_plate in self._reservoir_plates:
            for well in res_plate.get_all_items():
                if well.name not in used:
                    return well
        res_plate = resource_factory(_RESERVOIR_PLATE)(
            f"reservoirs_{len(self._reservoir_plates) + 1}"
        )
        self.deck.assign_child_at_slot(res_plate, self._free_slot())
        self._reservoir_plates.append(res_plate)
        return res_plate.get_all_items()[0]

    def _free_slot(self) -> int:
        for i, holder in enumerate(self.deck._slot_holders[:11]):  # slot 12 is the trash
            if holder.resource is None and all(site is not holder for site, _ in self._site_use):
                return i + 1
        raise LiquidHandlingError("no free deck slot left for labware")

    def _slot_holder(self, slot: int) -> ResourceHolder:
        return self.deck._slot_holders[slot - 1]

    def _lookup_container(self, name: str, source: str) -> Container:
        resource_name, _, well = name.partition(":")
        if not self.deck.has_resource(resource_name):
            raise LiquidHandlingError(
                f"source {source!r} is not on the deck: no resource {resource_name!r} "
                "(map it under settings.reservoirs)"
            )
        res = self.deck.get_resource(resource_name)
        if well:
            if not isinstance(res, Plate):
                raise LiquidHandlingError(
                    f"{resource_name!r} is not a plate; cannot use well {well!r}"
                )
            res = res.get_well(plr_well_name(well))
        if not isinstance(res, Container):
            raise LiquidHandlingError(f"{name!r} is a {type(res).__name__}, not a container")
        return res

    # ------------------------------------------------------------------------------ plates

    def plate(self, barcode: str) -> Plate:
        """The plate resource of ``barcode``, put on a plate site the first time it is used."""
        plate = self._plates.get(barcode)
        if plate is not None:
            self._touch(barcode)
            return plate
        site, old = self._site_use.pop(0)
        if old is not None:
            self._plates.pop(old).unassign()
        if self.deck.has_resource(barcode):
            raise LiquidHandlingError(
                f"plate barcode {barcode!r} clashes with a deck resource's name"
            )
        plate = self.plate_factory(barcode)
        if isinstance(site, Coordinate):
            self.deck.assign_child_resource(plate, location=site)
        else:
            site.assign_child_resource(plate)
        for well in plate.get_all_items():
            if not well.tracker.is_disabled:
                well.tracker.set_volume(self.initial_volume(well.name, "well"))
        self._plates[barcode] = plate
        self._site_use.append((site, barcode))
        return plate

    def well(self, barcode: str, well: str) -> Well:
        """The PyLabRobot well ``well`` (``"B03"``) of plate ``barcode``.

        Raises:
            LiquidHandlingError: a malformed name or a well outside the plate.
        """
        name = plr_well_name(well)
        plate = self.plate(barcode)
        row, col = ord(name[0]) - 65, int(name[1:])
        if row >= plate.num_items_y or not 1 <= col <= plate.num_items_x:
            raise LiquidHandlingError(
                f"plate {barcode!r} has no well {well!r}: a {plate.num_items}-well plate has rows "
                f"A-{chr(64 + plate.num_items_y)} and columns 1-{plate.num_items_x}"
            )
        return plate.get_well(name)

    def _touch(self, barcode: str) -> None:
        for i, (_site, b) in enumerate(self._site_use):
            if b == barcode:
                self._site_use.append(self._site_use.pop(i))
                return

    # --------------------------------------------------------------------------- deck file

    def _find_tip_racks(self, names: list[str] | None) -> list[TipRack]:
        if names is None:  # every rack but the Hamilton deck's teaching rack
            return [
                r
                for r in self.deck.get_all_resources()
                if isinstance(r, TipRack) and "teaching" not in r.name
            ]
        racks = []
        for n in names:
            if not self.deck.has_resource(n) or not isinstance(self.deck.get_resource(n), TipRack):
                raise LiquidHandlingError(f"tip rack {n!r} is not on the deck")
            racks.append(self.deck.get_resource(n))
        return racks

    def _holder(self, name: str) -> ResourceHolder:
        if not self.deck.has_resource(name):
            raise LiquidHandlingError(f"plate site {name!r} is not on the deck")
        site = self.deck.get_resource(name)
        if not isinstance(site, ResourceHolder):
            raise LiquidHandlingError(
                f"plate site {name!r} is a {type(site).__name__}, not a holder"
            )
        if site.resource is not None:
            raise LiquidHandlingError(f"plate site {name!r} already holds {site.resource.name!r}")
        return site
