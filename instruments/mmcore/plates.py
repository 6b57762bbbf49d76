"""Plate geometry for stage moves: where a well's centre is and where its fields lie.

Stage coordinates here are the plate's own frame (µm from the plate's top-left corner,
x along columns, y along rows), shifted by the driver's ``stage_offset_um`` to reach the
stage's frame. The table holds SBS-footprint values; a lab with other plates passes its own
:class:`PlateGeometry`. Instruments must not import simulators, so this table is separate
from (and tested against) the simulated lab's.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass

from instruments.exceptions import ImagingError

_WELL_RE = re.compile(r"^([A-Pa-p])0*([0-9]{1,2})$")


@dataclass(frozen=True)
class PlateGeometry:
    """One plate type (lengths in mm): ``rows`` x ``cols`` wells at ``pitch_mm``, well A1's
    centre at (``a1_x_mm``, ``a1_y_mm``) from the plate's corner, wells ``well_diameter_mm``
    across."""

    name: str
    rows: int
    cols: int
    pitch_mm: float
    a1_x_mm: float
    a1_y_mm: float
    well_diameter_mm: float

    def parse_well(self, well: str) -> tuple[int, int]:
        """``"B03"`` -> ``(1, 2)`` (zero-based row, column).

        Raises:
            ImagingError: a malformed name or a well outside the plate.
        """
        m = _WELL_RE.match(well.strip()) if isinstance(well, str) else None
        if m is None:
            raise ImagingError(f"no well {well!r} on a {self.name}-well plate: expected e.g. 'B03'")
        row, col = ord(m.group(1).upper()) - 65, int(m.group(2)) - 1
        if not (0 <= row < self.rows and 0 <= col < self.cols):
            raise ImagingError(
                f"no well {well!r} on a {self.name}-well plate "
                f"(rows A-{chr(64 + self.rows)}, columns 1-{self.cols})"
            )
        return row, col

    def well_centre_um(self, well: str) -> tuple[float, float]:
        """Centre ``(x, y)`` of ``well`` in the plate's frame (µm)."""
        row, col = self.parse_well(well)
        return (
            1000.0 * (self.a1_x_mm + col * self.pitch_mm),
            1000.0 * (self.a1_y_mm + row * self.pitch_mm),
        )


def _diameter_mm(area_mm2: float) -> float:
    return 2.0 * math.sqrt(area_mm2 / math.pi)


PLATE_GEOMETRIES: dict[str, PlateGeometry] = {
    "96": PlateGeometry("96", 8, 12, 9.0, 14.38, 11.24, _diameter_mm(32.2)),
    "384": PlateGeometry("384", 16, 24, 4.5, 12.13, 8.99, _diameter_mm(10.0)),
}


def plate_geometry(name: str) -> PlateGeometry:
    """The geometry of plate type ``name`` (``"96"``, ``"384"``).

    Raises:
        ImagingError: an unknown plate type.
    """
    try:
        return PLATE_GEOMETRIES[str(name)]
    except KeyError:
        raise ImagingError(
            f"unknown plate type {name!r}; known: {sorted(PLATE_GEOMETRIES)}"
        ) from None


def field_offsets_um(fields: int, step_um: tuple[float, float]) -> list[tuple[float, float]]:
    """Offsets ``(dx, dy)`` (µm) of ``fields`` fields from the well centre.

    Fields lie on the smallest square grid that holds them, centred on the well, filled
    row by row (the same layout as the simulated microscope), ``step_um = (x, y)`` apart.
    """
    side = max(1, math.ceil(math.sqrt(fields)))
    while side * side < fields:  # guard against float rounding
        side += 1
    out = []
    for f in range(fields):
        r, c = divmod(f, side)
        out.append(((c - (side - 1) / 2) * step_um[0], (r - (side - 1) / 2) * step_um[1]))
    return out


def field_positions_um(
    geometry: PlateGeometry,
    well: str,
    fields: int,
    step_um: tuple[float, float],
) -> list[tuple[float, float]]:
    """Field centres ``(x, y)`` (µm, plate frame) for ``fields`` fields of ``well``.

    Raises:
        ImagingError: ``fields < 1``, or a field centre falls outside the well.
    """
    if fields < 1:
        raise ImagingError(f"fields ({fields}) must be >= 1")
    cx, cy = geometry.well_centre_um(well)
    radius_um = 500.0 * geometry.well_diameter_mm
    positions = []
    for dx, dy in field_offsets_um(fields, step_um):
        if math.hypot(dx, dy) > radius_um:
            raise ImagingError(
                f"{fields} fields {step_um[0]:.0f} x {step_um[1]:.0f} µm apart do not fit in a "
                f"{geometry.well_diameter_mm:.2f} mm well of a {geometry.name}-well plate"
            )
        positions.append((cx + dx, cy + dy))
    return positions
