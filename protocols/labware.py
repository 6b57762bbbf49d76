"""Labware: plate geometries, well naming ('A01' … 'P24') and edge detection.

Volumes are in µL. ``max_volume_ul`` is the well's brim capacity; ``working_volume_ul`` the
largest volume a lab would fill for culture (the compiler refuses final volumes above it).
"""

from __future__ import annotations

import re

from pydantic import BaseModel, ConfigDict, Field

from protocols.exceptions import InvalidWell, UnknownPlateType

_WELL_RE = re.compile(r"^([A-Z])(\d{1,2})$")


class PlateType(BaseModel):
    """An SBS-format microplate: ``rows`` × ``columns`` wells, row letters from 'A'.

    Wells are named row letter + two-digit column ('A01'); lists of wells are row-major.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str = Field(description="key in PLATE_TYPES, e.g. '96'")
    rows: int = Field(ge=1, le=16)
    columns: int = Field(ge=1, le=24)
    max_volume_ul: float = Field(gt=0, description="brim capacity of one well, µL")
    working_volume_ul: float = Field(gt=0, description="largest culture volume per well, µL")

    @property
    def n_wells(self) -> int:
        return self.rows * self.columns

    def well_name(self, row: int, column: int) -> str:
        """Name of the well at 0-based ``row`` and ``column`` (``(1, 2)`` → ``'B03'``)."""
        if not (0 <= row < self.rows and 0 <= column < self.columns):
            raise InvalidWell(f"row {row}, column {column}", self.name)
        return f"{chr(ord('A') + row)}{column + 1:02d}"

    def parse_well(self, well: str) -> tuple[int, int]:
        """0-based ``(row, column)`` of a well name; accepts 'B3' as well as 'B03'."""
        m = _WELL_RE.match(well.strip().upper())
        if not m:
            raise InvalidWell(well, self.name)
        row, column = ord(m.group(1)) - ord("A"), int(m.group(2)) - 1
        if not (0 <= row < self.rows and 0 <= column < self.columns):
            raise InvalidWell(well, self.name)
        return row, column

    def normalize_well(self, well: str) -> str:
        """Canonical name of a well ('b3' → 'B03')."""
        return self.well_name(*self.parse_well(well))

    @property
    def wells(self) -> tuple[str, ...]:
        """Every well, row-major ('A01', 'A02', …)."""
        return tuple(self.well_name(r, c) for r in range(self.rows) for c in range(self.columns))

    def is_edge(self, well: str) -> bool:
        """True for wells in the outer ring (first/last row or column), which evaporate faster."""
        row, column = self.parse_well(well)
        return row in (0, self.rows - 1) or column in (0, self.columns - 1)

    def usable_wells(self, exclude_edges: bool) -> tuple[str, ...]:
        """Wells available for samples and controls, row-major."""
        if not exclude_edges:
            return self.wells
        return tuple(w for w in self.wells if not self.is_edge(w))

    def well_index(self, well: str) -> int:
        """Row-major index of a well (for sorting into the handler's travel order)."""
        row, column = self.parse_well(well)
        return row * self.columns + column


PLATE_TYPES: dict[str, PlateType] = {
    # Corning 3596/3904-style flat-bottom 96-well: 360 µL brim, ~300 µL working volume.
    "96": PlateType(name="96", rows=8, columns=12, max_volume_ul=360.0, working_volume_ul=300.0),
    # Corning 3764-style 384-well: ~112 µL brim, ~100 µL working volume.
    "384": PlateType(name="384", rows=16, columns=24, max_volume_ul=112.0, working_volume_ul=100.0),
}


def get_plate_type(name: str) -> PlateType:
    """The labware entry for ``name`` ('96' or '384'); raises :class:`UnknownPlateType`."""
    try:
        return PLATE_TYPES[str(name)]
    except KeyError:
        raise UnknownPlateType(str(name), PLATE_TYPES) from None
