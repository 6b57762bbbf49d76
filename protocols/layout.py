"""Plate layouts: which well holds which experiment's replicate, and where the controls are.

The layout is the only thing besides images that the analyzer sees.
"""

from __future__ import annotations

from enum import Enum

from pydantic import BaseModel, ConfigDict, Field

from protocols.labware import get_plate_type


class WellRole(str, Enum):
    SAMPLE = "sample"
    NEGATIVE_CONTROL = "negative_control"  # vehicle only
    POSITIVE_CONTROL = "positive_control"  # a known killer


class WellAssignment(BaseModel):
    """One used well. ``experiment`` indexes the round's experiment list (None for controls)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    well: str = Field(pattern=r"^[A-P](0[1-9]|1[0-9]|2[0-4])$", description="e.g. 'B03'")
    role: WellRole
    experiment: int | None = None
    replicate: int = Field(default=0, ge=0)


class PlateLayout(BaseModel):
    """The used wells of one plate. Wells not listed are empty."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate_id: str
    plate_type: str = Field(description="key of protocols.labware.PLATE_TYPES, e.g. '96'")
    wells: list[WellAssignment]

    def by_well(self) -> dict[str, WellAssignment]:
        return {w.well: w for w in self.wells}

    def wells_of(self, experiment: int) -> list[str]:
        """Wells holding replicates of experiment index ``experiment``."""
        return [w.well for w in self.wells if w.experiment == experiment]

    def wells_with_role(self, role: WellRole) -> list[str]:
        return [w.well for w in self.wells if w.role == role]

    @property
    def n_experiments(self) -> int:
        idx = {w.experiment for w in self.wells if w.experiment is not None}
        return len(idx)

    def render(self) -> str:
        """A text map of the plate for operators: ``e3`` = experiment 3, ``-`` = negative
        control, ``+`` = positive control, ``.`` = empty.

        Example (a 96-well plate, first rows)::

               01  02  03 ...
            A   .   .   . ...
            B   .  e0   - ...
        """
        plate = get_plate_type(self.plate_type)
        marks = {
            WellRole.NEGATIVE_CONTROL: "-",
            WellRole.POSITIVE_CONTROL: "+",
        }
        cells = {w.well: marks.get(w.role, f"e{w.experiment}") for w in self.wells}
        width = max([3, *(len(c) + 1 for c in cells.values())])
        lines = [" " + "".join(f"{c + 1:02d}".rjust(width) for c in range(plate.columns))]
        for r in range(plate.rows):
            row = "".join(
                f"{cells.get(plate.well_name(r, c), '.'):>{width}}" for c in range(plate.columns)
            )
            lines.append(chr(ord("A") + r) + row)
        return "\n".join(lines)
