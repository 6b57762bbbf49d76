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
    TIME_ZERO = "time_zero"  # imaged before dosing, never dosed: the count at time zero
    SINGLE_AGENT = "single_agent"  # one drug of the plate's combinations alone, at their dose


class WellAssignment(BaseModel):
    """One used well. ``experiment`` indexes the round's experiment list (None for controls and
    single-agent wells)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    well: str = Field(pattern=r"^[A-P](0[1-9]|1[0-9]|2[0-4])$", description="e.g. 'B03'")
    role: WellRole
    experiment: int | None = None
    replicate: int = Field(default=0, ge=0)
    doses_um: dict[str, float] = Field(
        default_factory=dict, description="single-agent wells: reagent -> final µM"
    )


class RecipePart(BaseModel):
    """One liquid that goes into an intermediate, in the order of the recipe."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    source: str = Field(
        description="label of a stock, of medium, of the solvent or of an intermediate"
    )
    volume_ul: float = Field(gt=0)


class Intermediate(BaseModel):
    """A working solution prepared before dosing (in a tube or a dilution-plate well).

    Dosing steps aspirate it by ``label``. It is made by mixing ``recipe`` in order; its
    organic solvent share equals every other dosing liquid's, so each well ends at the same
    solvent fraction whatever it received.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    label: str = Field(description="reservoir label the steps aspirate from")
    reagent: str | None = Field(description="None for the vehicle")
    concentration_um: float = Field(ge=0)
    solvent: str | None = None
    solvent_percent: float = Field(default=0.0, ge=0, le=100, description="% v/v")
    made_from: str = Field(description="label of the stock or intermediate it dilutes")
    dilution: float = Field(ge=1, description="fold dilution of made_from")
    depth: int = Field(
        ge=0, description="dilution steps from a stock (1: made from a stock; 0: vehicle)"
    )
    volume_ul: float = Field(gt=0, description="volume to prepare: this plate's use + dead volume")
    used_ul: float = Field(ge=0, description="drawn by this plate's dosing steps and dilutions")
    recipe: list[RecipePart]


class PlateLayout(BaseModel):
    """The used wells of one plate (wells not listed are empty), the solvent every dosed well
    ends at, and the intermediates to prepare before dosing."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate_id: str
    plate_type: str = Field(description="key of protocols.labware.PLATE_TYPES, e.g. '96'")
    wells: list[WellAssignment]
    solvent: str | None = Field(default=None, description="organic solvent of the dosed wells")
    solvent_percent: float = Field(
        default=0.0, ge=0, description="its share in every dosed well (controls included), % v/v"
    )
    intermediates: list[Intermediate] = Field(
        default_factory=list, description="prepared before dosing, most concentrated first"
    )

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
        control, ``+`` = positive control, ``t0`` = imaged at time zero, ``s`` = a single agent,
        ``.`` = empty; then the
        solvent every dosed well holds and the intermediates to prepare before dosing.

        Example (a 96-well plate, first rows)::

               01  02  03 ...
            A   .   .   . ...
            B   .  e0   - ...
        """
        plate = get_plate_type(self.plate_type)
        marks = {
            WellRole.NEGATIVE_CONTROL: "-",
            WellRole.POSITIVE_CONTROL: "+",
            WellRole.TIME_ZERO: "t0",
            WellRole.SINGLE_AGENT: "s",
        }
        cells = {w.well: marks.get(w.role, f"e{w.experiment}") for w in self.wells}
        width = max([3, *(len(c) + 1 for c in cells.values())])
        lines = [" " + "".join(f"{c + 1:02d}".rjust(width) for c in range(plate.columns))]
        for r in range(plate.rows):
            row = "".join(
                f"{cells.get(plate.well_name(r, c), '.'):>{width}}" for c in range(plate.columns)
            )
            lines.append(chr(ord("A") + r) + row)
        if self.solvent:
            lines.append(f"every dosed well: {self.solvent_percent:.3g} % v/v {self.solvent}")
        if self.intermediates:
            lines.append("prepare before dosing (in order):")
        for i in self.intermediates:
            recipe = " + ".join(f"{p.volume_ul:.4g} uL {p.source}" for p in i.recipe)
            lines.append(f"  {i.label:<28} {i.volume_ul:8.4g} uL = {recipe}")
        return "\n".join(lines)
