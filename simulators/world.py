"""The physical state of the simulated lab: plates, wells, reservoirs and the pipette tip.

A :class:`SimulatedLab` is the "physics" shared by the simulated liquid handler and the
simulated microscope. Plates appear pre-seeded the first time they are touched. Every well
tracks its liquid volume, the amount of each reagent in it (pmol = µM x µL), so
concentrations follow C·V mixing, the volume of each organic solvent (µL, so a DMSO share
follows the same mixing and reaches the cells) and the time liquid was first dispensed into
it (the dose time). What an aspirated liquid holds besides its reagent is read from the
source's label (:func:`protocols.liquids.label_solvent`: ``drug_a@200uM+2%dmso``), as an
operator reads a tube. A well's seeding can be overridden (:meth:`SimulatedLab.seed_well`,
e.g. a well that received no cells).

Persistence (with a ``state_path``): every mutation is made durable before the call returns,
so after the controller process is SIGKILLed the simulated plate still "physically" holds
what was dispensed. Two modes:

- ``journal=True`` (default): the mutation is appended as one JSON line to
  ``<state_path>.journal`` and flushed (µs); every ``snapshot_every`` mutations, on
  :meth:`save` and on open, the whole state is written atomically to ``state_path`` (temp
  file + ``os.replace``) and the journal is emptied. Journal lines carry a sequence number,
  so a crash between the snapshot and the truncation replays nothing twice; a torn last line
  is ignored. (A full snapshot per mutation costs ~3 ms on ext4, as ``os.replace`` over an
  existing file flushes it: 20 s of a ten-plate dry-run.)
- ``journal=False``: the whole state is written atomically after every mutation.

Only one :class:`SimulatedLab` may write a given ``state_path`` at a time.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from protocols.liquids import label_solvent
from simulators.biology import VirtualBiology, WellCounts

STATE_VERSION = 1
_WELL_RE = re.compile(r"^([A-Pa-p])0*([0-9]{1,2})$")


class UnknownWellError(ValueError):
    """A well name that does not exist on the plate (``"Z99"``, ``"A13"`` on a 96-well plate)."""

    def __init__(self, plate: str, well: str, reason: str) -> None:
        super().__init__(f"plate {plate!r} has no well {well!r}: {reason}")
        self.plate = plate
        self.well = well


@dataclass(frozen=True)
class PlateType:
    """Geometry of a plate type (SBS footprint; lengths in mm)."""

    name: str
    rows: int
    cols: int
    max_volume_ul: float
    well_area_mm2: float
    pitch_mm: float
    a1_x_mm: float
    a1_y_mm: float

    def well_names(self) -> list[str]:
        return [f"{chr(65 + r)}{c + 1:02d}" for r in range(self.rows) for c in range(self.cols)]

    def is_edge(self, well: str) -> bool:
        row, col = ord(well[0]) - 65, int(well[1:]) - 1
        return row in (0, self.rows - 1) or col in (0, self.cols - 1)

    def well_centre_um(self, well: str) -> tuple[float, float]:
        """Stage position ``(x, y)`` of a well's centre (µm)."""
        row, col = ord(well[0]) - 65, int(well[1:]) - 1
        return (
            1000.0 * (self.a1_x_mm + col * self.pitch_mm),
            1000.0 * (self.a1_y_mm + row * self.pitch_mm),
        )


PLATE_TYPES: dict[str, PlateType] = {
    "96": PlateType("96", 8, 12, 360.0, 32.2, 9.0, 14.38, 11.24),
    "384": PlateType("384", 16, 24, 112.0, 10.0, 4.5, 12.13, 8.99),
}


@dataclass
class WellState:
    """A copy of one well's contents: volume (µL), reagent amounts (pmol), dose time (s) and
    organic solvent volumes (µL)."""

    volume_ul: float
    amounts_pmol: dict[str, float] = field(default_factory=dict)
    dose_time_s: float | None = None
    solvents_ul: dict[str, float] = field(default_factory=dict)

    def concentrations_um(self) -> dict[str, float]:
        """Reagent concentrations (µM) in the well's current volume."""
        if self.volume_ul <= 0:
            return {}
        return {k: v / self.volume_ul for k, v in self.amounts_pmol.items() if v > 0}

    def solvent_percent(self) -> dict[str, float]:
        """Organic solvent shares (% v/v) of the well's current volume."""
        if self.volume_ul <= 0:
            return {}
        return {k: 100.0 * v / self.volume_ul for k, v in self.solvents_ul.items() if v > 0}


@dataclass
class TipState:
    """What the pipette tip holds: volume (µL), reagent amounts (pmol), solvent volumes (µL)."""

    volume_ul: float = 0.0
    amounts_pmol: dict[str, float] = field(default_factory=dict)
    solvents_ul: dict[str, float] = field(default_factory=dict)


class SimulatedLab:
    """Plates, reservoirs and the tip of a simulated lab, optionally persisted to JSON.

    Args:
        state_path: JSON file the state is persisted to (see the module docstring) and read
            from on construction (created if missing). None keeps the state in memory only.
        biology: the ground truth the cells follow; ``VirtualBiology(seed=0)`` by default.
        plate_type: key of :data:`PLATE_TYPES` for plates created on first touch.
        seeded_volume_ul: cell suspension already in every well of a new plate (µL).
        seeded_cells: ``(tumour, normal)`` cells seeded per well.
        seeding_lead_s: how long before a plate is first touched its cells were seeded (s).
        journal: persist mutations as an appended journal plus periodic snapshots (fast);
            False writes a full snapshot after every mutation.
        snapshot_every: mutations between snapshots in journal mode.
        fsync: also ``os.fsync`` each write (survives power loss, not just process death).
        read_only: load the state but never write it (for inspecting a lab another process
            is running; a mutation raises ``RuntimeError``).
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str] | None = None,
        biology: VirtualBiology | None = None,
        *,
        plate_type: str = "96",
        seeded_volume_ul: float = 150.0,
        seeded_cells: tuple[float, float] = (2000.0, 2000.0),
        seeding_lead_s: float = 24 * 3600.0,
        journal: bool = True,
        snapshot_every: int = 2000,
        fsync: bool = False,
        read_only: bool = False,
    ) -> None:
        if plate_type not in PLATE_TYPES:
            raise ValueError(f"unknown plate type {plate_type!r}; known: {sorted(PLATE_TYPES)}")
        self.state_path = Path(state_path) if state_path is not None else None
        self.biology = biology if biology is not None else VirtualBiology()
        self.default_plate_type = plate_type
        self.seeded_volume_ul = float(seeded_volume_ul)
        self.seeded_cells = (float(seeded_cells[0]), float(seeded_cells[1]))
        self.seeding_lead_s = float(seeding_lead_s)
        self._plates: dict[str, dict[str, Any]] = {}
        self._reservoirs: dict[str, dict[str, Any]] = {}
        self._tip = TipState()
        self._locations: dict[str, str] = {}  # plate -> place, for a plate mover
        self.journal = journal
        self.snapshot_every = max(int(snapshot_every), 1)
        self.fsync = fsync
        self._seq = 0
        self._since_snapshot = 0
        self.read_only = read_only
        if self.state_path is not None:
            self._load()
            if not read_only:
                self.save()  # compact: snapshot and empty journal

    # ----------------------------------------------------------------------- plates and wells

    def ensure_plate(self, plate: str, now_s: float = 0.0) -> PlateType:
        """Create ``plate`` pre-seeded if it was never touched; return its type."""
        if plate not in self._plates:
            record = {
                "plate_type": self.default_plate_type,
                "seeded_at_s": float(now_s) - self.seeding_lead_s,
                "seeded_volume_ul": self.seeded_volume_ul,
                "seeded_cells": list(self.seeded_cells),
            }
            self._mutate({"op": "plate", "plate": plate, "record": record})
        return PLATE_TYPES[self._plates[plate]["plate_type"]]

    def plate_type(self, plate: str) -> PlateType:
        """The type of ``plate`` (the default type for a plate not touched yet)."""
        rec = self._plates.get(plate)
        return PLATE_TYPES[rec["plate_type"] if rec else self.default_plate_type]

    @property
    def plates(self) -> list[str]:
        return sorted(self._plates)

    def canonical_well(self, plate: str, well: str) -> str:
        """``"b3"`` -> ``"B03"``.

        Raises:
            UnknownWellError: the name is malformed or outside the plate.
        """
        m = _WELL_RE.match(well.strip()) if isinstance(well, str) else None
        if m is None:
            raise UnknownWellError(plate, str(well), "expected a name such as 'B03'")
        row, col = ord(m.group(1).upper()) - 65, int(m.group(2))
        ptype = self.plate_type(plate)
        if row >= ptype.rows or not 1 <= col <= ptype.cols:
            raise UnknownWellError(
                plate,
                well,
                f"a {ptype.name}-well plate has rows A-{chr(64 + ptype.rows)} "
                f"and columns 1-{ptype.cols}",
            )
        return f"{chr(65 + row)}{col:02d}"

    def well_state(self, plate: str, well: str) -> WellState:
        """A copy of one well's contents (a never-touched well holds the seeded suspension)."""
        well = self.canonical_well(plate, well)
        rec = self._plates.get(plate)
        seeded = rec["seeded_volume_ul"] if rec else self.seeded_volume_ul
        w = rec["wells"].get(well) if rec else None
        if w is None:
            return WellState(volume_ul=seeded)
        return WellState(
            w["volume_ul"],
            dict(w["amounts_pmol"]),
            w["dose_time_s"],
            dict(w.get("solvents_ul", {})),
        )

    def well_volume_ul(self, plate: str, well: str) -> float:
        return self.well_state(plate, well).volume_ul

    def concentrations_um(self, plate: str, well: str) -> dict[str, float]:
        return self.well_state(plate, well).concentrations_um()

    def solvent_percent(self, plate: str, well: str) -> dict[str, float]:
        return self.well_state(plate, well).solvent_percent()

    def seed_well(
        self, plate: str, well: str, cells: tuple[float, float], now_s: float = 0.0
    ) -> None:
        """Override how many ``(tumour, normal)`` cells were seeded into one well (e.g. a
        seeding failure: ``(0, 0)``). Call before the well is imaged."""
        self.ensure_plate(plate, now_s)
        well = self.canonical_well(plate, well)
        self._mutate(
            {"op": "seed_well", "plate": plate, "well": well, "cells": [float(c) for c in cells]}
        )

    def is_edge(self, plate: str, well: str) -> bool:
        return self.plate_type(plate).is_edge(self.canonical_well(plate, well))

    # ------------------------------------------------------------------------------ the tip

    @property
    def tip(self) -> TipState:
        """A copy of the tip's contents."""
        return TipState(
            self._tip.volume_ul, dict(self._tip.amounts_pmol), dict(self._tip.solvents_ul)
        )

    def aspirate_into_tip(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        """Move ``volume_ul`` of ``reagent`` at ``stock_concentration_um`` from a reservoir
        into the tip, with the organic solvent its label names. No checks: the liquid handler
        checks limits before calling."""
        solvent = label_solvent(source)
        self._mutate(
            {
                "op": "aspirate",
                "source": source,
                "reagent": reagent,
                "stock_concentration_um": float(stock_concentration_um),
                "volume_ul": float(volume_ul),
                "solvent": solvent[0] if solvent else None,
                "solvent_percent": solvent[1] if solvent else 0.0,
            }
        )

    def dispense_from_tip(self, plate: str, well: str, volume_ul: float, now_s: float) -> None:
        """Move ``volume_ul`` of the tip's (well-mixed) contents into a well. No limit checks."""
        self.ensure_plate(plate, now_s)
        well = self.canonical_well(plate, well)
        self._mutate(
            {
                "op": "dispense",
                "plate": plate,
                "well": well,
                "volume_ul": float(volume_ul),
                "now_s": float(now_s),
            }
        )

    def discard_tip(self) -> None:
        """Drop whatever the tip holds."""
        self._mutate({"op": "discard_tip"})

    # ----------------------------------------------------------------------- plate places

    def plate_location(self, plate: str) -> str:
        """Where ``plate`` is (``"hotel"`` until something moves it; see
        :class:`simulators.plate_mover.SimulatedPlateMover`)."""
        return str(self._locations.get(plate, "hotel"))

    def plates_at(self, place: str) -> list[str]:
        """The plates at ``place``, sorted."""
        return sorted(p for p, loc in self._locations.items() if loc == place)

    def set_plate_location(self, plate: str, place: str) -> None:
        """Record that ``plate`` is now at ``place`` (durable before returning)."""
        self._mutate({"op": "locate", "plate": plate, "place": place})

    # ------------------------------------------------------------------ applying mutations

    def _apply(self, op: dict[str, Any]) -> None:
        kind = op["op"]
        if kind == "plate":
            self._plates.setdefault(op["plate"], {**op["record"], "wells": {}})
        elif kind == "aspirate":
            self._apply_aspirate(
                op["source"], op["reagent"], op["stock_concentration_um"], op["volume_ul"]
            )
            if op.get("solvent"):
                sv = self._tip.solvents_ul
                sv[op["solvent"]] = (
                    sv.get(op["solvent"], 0.0) + op["solvent_percent"] / 100.0 * op["volume_ul"]
                )
        elif kind == "seed_well":
            self._plates[op["plate"]].setdefault("well_seeding", {})[op["well"]] = op["cells"]
        elif kind == "dispense":
            self._apply_dispense(op["plate"], op["well"], op["volume_ul"], op["now_s"])
        elif kind == "discard_tip":
            self._tip = TipState()
        elif kind == "locate":
            self._locations[op["plate"]] = op["place"]
        else:
            raise ValueError(f"unknown simulated-lab operation {kind!r}")

    def _apply_aspirate(
        self, source: str, reagent: str, stock_concentration_um: float, volume_ul: float
    ) -> None:
        res = self._reservoirs.setdefault(
            source,
            {"reagent": reagent, "stock_concentration_um": stock_concentration_um, "drawn_ul": 0.0},
        )
        res["drawn_ul"] += volume_ul
        self._tip.volume_ul += volume_ul
        if stock_concentration_um > 0:
            amounts = self._tip.amounts_pmol
            amounts[reagent] = amounts.get(reagent, 0.0) + stock_concentration_um * volume_ul

    def _apply_dispense(self, plate: str, well: str, volume_ul: float, now_s: float) -> None:
        state = self.well_state(plate, well)
        tip = self._tip
        fraction = min(volume_ul / tip.volume_ul, 1.0) if tip.volume_ul > 0 else 0.0
        for reagent, amount in list(tip.amounts_pmol.items()):
            moved = amount * fraction
            tip.amounts_pmol[reagent] = amount - moved
            state.amounts_pmol[reagent] = state.amounts_pmol.get(reagent, 0.0) + moved
        for solvent, amount in list(tip.solvents_ul.items()):
            moved = amount * fraction
            tip.solvents_ul[solvent] = amount - moved
            state.solvents_ul[solvent] = state.solvents_ul.get(solvent, 0.0) + moved
        tip.amounts_pmol = {k: v for k, v in tip.amounts_pmol.items() if v > 1e-12}
        tip.solvents_ul = {k: v for k, v in tip.solvents_ul.items() if v > 1e-12}
        tip.volume_ul = max(tip.volume_ul - volume_ul, 0.0)
        if tip.volume_ul < 1e-9:
            tip.volume_ul, tip.amounts_pmol, tip.solvents_ul = 0.0, {}, {}
        record: dict[str, Any] = {
            "volume_ul": state.volume_ul + volume_ul,
            "amounts_pmol": state.amounts_pmol,
            "dose_time_s": state.dose_time_s if state.dose_time_s is not None else float(now_s),
        }
        if state.solvents_ul:
            record["solvents_ul"] = state.solvents_ul
        self._plates[plate]["wells"][well] = record

    def reservoir_drawn_ul(self, source: str) -> float:
        """Total volume drawn from reservoir ``source`` so far (µL)."""
        return float(self._reservoirs.get(source, {}).get("drawn_ul", 0.0))

    # ------------------------------------------------------------------------------- biology

    def cells_in_well(self, plate: str, well: str, now_s: float) -> WellCounts:
        """The cells in a well at time ``now_s`` (s), from the well's doses and the biology."""
        well = self.canonical_well(plate, well)
        rec = self._plates.get(plate)
        seeded_at = rec["seeded_at_s"] if rec else float(now_s) - self.seeding_lead_s
        seeded_cells = tuple(rec["seeded_cells"]) if rec else self.seeded_cells
        if rec and well in rec.get("well_seeding", {}):
            seeded_cells = tuple(rec["well_seeding"][well])
        state = self.well_state(plate, well)
        exposure = 0.0 if state.dose_time_s is None else max(now_s - state.dose_time_s, 0.0)
        return self.biology.well_counts(
            plate,
            well,
            state.concentrations_um(),
            exposure,
            seeded_cells=(seeded_cells[0], seeded_cells[1]),
            growth_s=max(now_s - seeded_at, 0.0),
            edge=self.plate_type(plate).is_edge(well),
            solvent_percent=state.solvent_percent(),
        )

    # --------------------------------------------------------------------------- persistence

    def to_dict(self) -> dict[str, Any]:
        return {
            "version": STATE_VERSION,
            "seq": self._seq,
            "biology_seed": self.biology.seed,
            "plates": self._plates,
            "reservoirs": self._reservoirs,
            "locations": self._locations,
            "tip": {
                "volume_ul": self._tip.volume_ul,
                "amounts_pmol": self._tip.amounts_pmol,
                "solvents_ul": self._tip.solvents_ul,
            },
        }

    @property
    def journal_path(self) -> Path | None:
        return None if self.state_path is None else Path(f"{self.state_path}.journal")

    def _mutate(self, op: dict[str, Any]) -> None:
        """Apply one mutation and make it durable before returning."""
        if self.read_only:
            raise RuntimeError(f"simulated lab {self.state_path} was opened read-only")
        self._apply(op)
        self._seq += 1
        if self.state_path is None:
            return
        if not self.journal or self._since_snapshot + 1 >= self.snapshot_every:
            self.save()
            return
        line = json.dumps({**op, "seq": self._seq}, separators=(",", ":")) + "\n"
        with open(self.journal_path, "a", encoding="utf-8") as fh:  # type: ignore[arg-type]
            fh.write(line)
            if self.fsync:
                fh.flush()
                os.fsync(fh.fileno())
        self._since_snapshot += 1

    def save(self) -> None:
        """Snapshot the state atomically (temp file, then ``os.replace``); empty the journal."""
        if self.state_path is None or self.read_only:
            return
        self.state_path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(
            prefix=self.state_path.name + ".", suffix=".tmp", dir=self.state_path.parent
        )
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                fh.write(json.dumps(self.to_dict(), separators=(",", ":")))
                if self.fsync:
                    fh.flush()
                    os.fsync(fh.fileno())
            os.replace(tmp, self.state_path)
        except BaseException:
            if os.path.exists(tmp):
                os.unlink(tmp)
            raise
        journal = self.journal_path
        if journal is not None and journal.exists():
            journal.write_text("")  # entries up to self._seq are in the snapshot
        self._since_snapshot = 0

    def close(self) -> None:
        """Snapshot the state (the journal is emptied); the lab stays usable."""
        self.save()

    def _load(self) -> None:
        assert self.state_path is not None and self.journal_path is not None
        if self.state_path.exists():
            data = json.loads(self.state_path.read_text(encoding="utf-8"))
            if data.get("version") != STATE_VERSION:
                raise ValueError(
                    f"{self.state_path}: unsupported state version {data.get('version')}"
                )
            self._plates = data["plates"]
            self._reservoirs = data["reservoirs"]
            self._locations = dict(data.get("locations", {}))  # absent in older states
            tip = data["tip"]
            self._tip = TipState(
                float(tip["volume_ul"]), dict(tip["amounts_pmol"]), dict(tip.get("solvents_ul", {}))
            )
            self._seq = int(data.get("seq", 0))
        if not self.journal_path.exists():
            return
        for line in self.journal_path.read_text(encoding="utf-8").splitlines(keepends=True):
            if not line.endswith("\n"):
                break  # torn last line: that mutation never completed
            try:
                op = json.loads(line)
            except json.JSONDecodeError:
                break
            seq = int(op.pop("seq"))
            if seq > self._seq:
                self._apply(op)
                self._seq = seq
