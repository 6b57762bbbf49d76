"""Settings of the ``dose_response`` protocol: the campaign file's ``protocol.settings``.

Every field has a description (they appear in ``cellpilot schema``). Stocks are in DMSO unless
``solvent`` or ``stock_solvents`` say otherwise, and every dosed well, controls included, ends
at ``solvent_percent`` (0.5 % v/v by default) of it.
"""

from __future__ import annotations

import math
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from protocols.labware import PLATE_TYPES
from protocols.liquids import Solvent, is_organic

__all__ = [
    "DoseMapping",
    "DoseResponseSettings",
    "ImagingSettings",
    "PositiveControl",
]


def _reject_bool_numbers(cls: type[BaseModel], data: object) -> object:
    """``true``/``false`` where a number belongs is a mistake, not 1 or 0 (pydantic would coerce)."""
    if isinstance(data, dict):
        for name, field in cls.model_fields.items():
            value = data.get(field.alias or name)
            kinds = getattr(field.annotation, "__args__", (field.annotation,))
            if (
                isinstance(value, bool)
                and bool not in kinds
                and any(k in (int, float) for k in kinds)
            ):
                raise ValueError(f"{name}: {str(value).lower()} is not a number")
    return data


class _Frozen(BaseModel):
    # No NaN or infinity anywhere: a dose, a volume or an hour must be a real number.
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)

    @model_validator(mode="before")
    @classmethod
    def _no_bool_numbers(cls, data: object) -> object:
        return _reject_bool_numbers(cls, data)


class DoseMapping(_Frozen):
    """How one campaign parameter becomes a reagent dose.

    Either ``reagent`` is fixed (``drug_a_um -> drug_a``), or ``reagent_from`` names a
    categorical parameter whose levels are reagent names, dosed at ``parameter``. YAML may
    write the fixed form as the string ``"drug_a_um -> drug_a"``.
    """

    parameter: str = Field(description="numeric parameter holding the final concentration, µM")
    reagent: str | None = Field(default=None, description="reagent dosed by `parameter`")
    reagent_from: str | None = Field(
        default=None, description="categorical parameter whose value is the reagent to dose"
    )

    @model_validator(mode="before")
    @classmethod
    def _parse_arrow(cls, data: object) -> object:
        if isinstance(data, str):
            parts = [p.strip() for p in data.split("->")]
            if len(parts) != 2 or not all(parts):
                raise ValueError(f"cannot parse dose {data!r}; write it as 'drug_a_um -> drug_a'")
            return {"parameter": parts[0], "reagent": parts[1]}
        return data

    @model_validator(mode="after")
    def _one_source(self) -> DoseMapping:
        if (self.reagent is None) == (self.reagent_from is None):
            raise ValueError("give exactly one of 'reagent' or 'reagent_from'")
        return self


class PositiveControl(_Frozen):
    """The known killer that positive-control wells receive."""

    reagent: str = Field(description="reagent name, must have a stock")
    concentration_um: float = Field(gt=0, description="final concentration in the well, µM")


class ImagingSettings(_Frozen):
    """What the microscope acquires in each used well after incubation."""

    channels: list[str] = Field(default=["DAPI", "GFP"], min_length=1)
    fields_per_well: int = Field(default=4, ge=1, le=400, description="fields imaged per well")
    exposure_ms: float = Field(
        default=20.0, gt=0, le=60_000, description="exposure per channel, ms"
    )


class DoseResponseSettings(_Frozen):
    """Settings of the ``dose_response`` protocol (the campaign file's protocol section)."""

    plate_type: Literal["96", "384"] = Field(default="96", description="key of PLATE_TYPES")
    replicates: int = Field(default=3, ge=1, le=384, description="wells per experiment")
    negative_controls: int = Field(
        default=6, ge=0, le=384, description="vehicle-only wells per plate"
    )
    positive_controls: int = Field(
        default=6, ge=0, le=384, description="wells with the positive control"
    )
    positive_control: PositiveControl | None = Field(
        default=None, validate_default=True, description="required when positive_controls > 0"
    )
    vehicle: str = Field(
        default="medium",
        description="reagent-free medium that dilutes stocks and intermediates; with an organic "
        "solvent, the top-up is this medium holding the plate's working share of it",
    )
    exclude_edges: bool = Field(default=True, description="leave the outer ring of wells empty")
    randomize: bool = Field(default=True, description="randomise well positions with the seed")
    seeded_volume_ul: float = Field(
        default=150.0, ge=0, description="volume of cells already in each well"
    )
    final_volume_ul: float = Field(
        default=200.0,
        gt=0,
        validate_default=True,
        description="volume of each used well at the end",
    )
    doses: list[DoseMapping] = Field(min_length=1, description="parameter → reagent mappings")
    stocks: dict[str, list[float]] = Field(
        min_length=1,
        description="reagent → available stock concentrations, µM (in `solvent` unless "
        "`stock_solvents` names another)",
    )
    solvent: Solvent = Field(
        default="dmso",
        description="solvent of the stocks; when organic (dmso, ethanol) every dosed well, "
        "controls included, ends at `solvent_percent` of it (back-filled with vehicle)",
    )
    solvent_percent: float = Field(
        default=0.5,
        gt=0,
        le=10,
        description="% v/v of the organic solvent in every dosed well; designs whose doses "
        "would need more are refused before anything runs (ignored for aqueous solvents)",
    )
    stock_solvents: dict[str, Solvent] = Field(
        default_factory=dict,
        description="reagent → solvent of its stocks where it differs from `solvent` (an "
        "aqueous stock: water, medium or pbs)",
    )
    dilution_factor: float = Field(
        default=10.0,
        ge=2,
        le=100,
        description="fold dilution between successive intermediates of one reagent",
    )
    max_serial_dilutions: int = Field(
        default=3,
        ge=0,
        le=6,
        description="most serial dilutions below a stock's working solution for doses too low "
        "to pipette from it; 0: doses come from stocks (or their working solutions) only",
    )
    intermediate_dead_volume_ul: float = Field(
        default=50.0, ge=0, description="extra volume prepared of each intermediate, µL"
    )
    single_agent_wells: bool | None = Field(
        default=None,
        description="per plate, wells holding each drug of a combination alone at the dose it "
        "has in that plate's combinations (measured single-agent responses for Bliss/HSA); "
        "default: on when two or more doses are mapped",
    )
    single_agent_replicates: int = Field(
        default=1,
        ge=1,
        le=384,
        description="wells per single-agent dose (the report fits every plate's single-agent "
        "wells together, so one per dose gives curve points)",
    )
    time_zero_wells: int = Field(
        default=0,
        ge=0,
        le=384,
        description="vehicle wells imaged before dosing and never dosed: the time-zero counts "
        "that growth-rate (GR) metrics need; 0: no GR metrics",
    )
    min_volume_ul: float = Field(
        default=0.5, gt=0, description="smallest volume the handler pipettes accurately"
    )
    max_volume_ul: float = Field(
        default=50.0, gt=0, description="largest volume per aspirate (tip capacity)"
    )
    mix_cycles: int = Field(
        default=3, ge=0, le=100, description="mix cycles per well after dosing; 0: no mix"
    )
    mix_volume_ul: float | None = Field(
        default=None,
        gt=0,
        description="mix volume; default min(max_volume_ul, final_volume_ul / 2)",
    )
    incubation_h: float = Field(
        default=48.0,
        ge=0,
        le=24 * 60,
        description="incubation before imaging, hours (at most 60 days)",
    )
    incubation_parameter: str | None = Field(
        default=None,
        description="campaign parameter (hours) that sets the incubation per plate, overriding "
        "incubation_h; every experiment of a plate must share its value",
    )
    temperature_c: float = Field(default=37.0, ge=0, le=60, description="incubator temperature, °C")
    co2_percent: float = Field(default=5.0, ge=0, le=100, description="incubator CO2, %")
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)

    @field_validator("positive_control")
    @classmethod
    def _control_given(
        cls, v: PositiveControl | None, info: ValidationInfo
    ) -> PositiveControl | None:
        if v is None and info.data.get("positive_controls", 0) > 0:
            raise ValueError(
                "positive_controls > 0 needs a positive_control (or set positive_controls: 0)"
            )
        return v

    @field_validator("final_volume_ul")
    @classmethod
    def _final_fits(cls, v: float, info: ValidationInfo) -> float:
        seeded = info.data.get("seeded_volume_ul")
        if seeded is not None and v <= seeded:
            raise ValueError(f"must exceed seeded_volume_ul ({seeded:g}) to leave room for doses")
        plate = PLATE_TYPES.get(str(info.data.get("plate_type")))
        if plate is not None and v > plate.working_volume_ul:
            raise ValueError(
                f"{v:g} uL exceeds the working volume of a {plate.name}-well plate "
                f"({plate.working_volume_ul:g} uL)"
            )
        return v

    @field_validator("stocks")
    @classmethod
    def _sorted_stocks(cls, v: dict[str, list[float]]) -> dict[str, list[float]]:
        out = {}
        for reagent, concs in v.items():
            if not concs or any(not (math.isfinite(c) and c > 0) for c in concs):
                raise ValueError(f"{reagent}: give one or more positive stock concentrations (uM)")
            out[reagent] = sorted(set(concs))
        return out

    @field_validator("max_volume_ul")
    @classmethod
    def _tip_above_min(cls, v: float, info: ValidationInfo) -> float:
        low = info.data.get("min_volume_ul")
        if low is not None and v < low:
            raise ValueError(f"must be at least min_volume_ul ({low:g})")
        return v

    @model_validator(mode="after")
    def _cross_checks(self) -> DoseResponseSettings:
        params = [d.parameter for d in self.doses]
        dup = sorted({p for p in params if params.count(p) > 1})
        if dup:
            raise ValueError(f"doses: parameters mapped twice: {dup}")
        if self.incubation_parameter in params:
            raise ValueError(f"{self.incubation_parameter!r} is both a dose and the incubation")
        selectors = {d.reagent_from for d in self.doses if d.reagent_from}
        if selectors & set(params):
            raise ValueError(
                f"doses: {sorted(selectors & set(params))} used as dose and reagent_from"
            )
        if self.addable_volume_ul < self.min_volume_ul:
            raise ValueError(
                f"final_volume_ul - seeded_volume_ul ({self.addable_volume_ul:g} uL) is below "
                f"min_volume_ul ({self.min_volume_ul:g} uL): nothing could be pipetted"
            )
        if self.vehicle in self.stocks:
            raise ValueError(f"vehicle {self.vehicle!r} must not be listed in stocks")
        self._check_solvents()
        if self.mix_cycles and self.mix_volume > min(self.max_volume_ul, self.final_volume_ul):
            raise ValueError("mix_volume_ul exceeds max_volume_ul or final_volume_ul")
        return self

    def _check_solvents(self) -> None:
        unknown = sorted(set(self.stock_solvents) - set(self.stocks))
        if unknown:
            raise ValueError(f"stock_solvents: {unknown} have no stocks")
        for reagent in self.stocks:
            solvent = self.stock_solvent(reagent)
            if is_organic(solvent) and solvent != self.solvent:
                raise ValueError(
                    f"stock_solvents: {reagent} is in {solvent} but the plate's solvent is "
                    f"{self.solvent}; one plate can be vehicle-matched to one organic solvent "
                    f"(set solvent: {solvent}, or use stocks in {self.solvent} or water)"
                )
        if is_organic(self.solvent) and self.working_solvent_fraction > 1:
            raise ValueError(
                f"solvent_percent {self.solvent_percent:g} % of {self.final_volume_ul:g} uL "
                f"exceeds the {self.addable_volume_ul:g} uL added above the cells"
            )

    def stock_solvent(self, reagent: str) -> str:
        """The solvent of ``reagent``'s stocks."""
        return self.stock_solvents.get(reagent, self.solvent)

    @property
    def matched_solvent(self) -> str | None:
        """The organic solvent every dosed well is matched to (None: aqueous plate)."""
        return self.solvent if is_organic(self.solvent) else None

    @property
    def working_solvent_fraction(self) -> float:
        """Solvent share (0–1) of every liquid added to a well: with it, the well ends at
        ``solvent_percent`` whatever mix of liquids it received."""
        if self.matched_solvent is None:
            return 0.0
        return self.solvent_percent / 100.0 * self.final_volume_ul / self.addable_volume_ul

    @property
    def single_agents(self) -> bool:
        """Whether plates get single-agent wells (``single_agent_wells``, default: ≥ 2 doses)."""
        if self.single_agent_wells is None:
            return len(self.doses) >= 2
        return self.single_agent_wells

    @property
    def mix_volume(self) -> float:
        """Mix volume per cycle, µL."""
        if self.mix_volume_ul is not None:
            return self.mix_volume_ul
        return min(self.max_volume_ul, self.final_volume_ul / 2)

    @property
    def addable_volume_ul(self) -> float:
        """Room for reagents and vehicle in a seeded well, µL."""
        return self.final_volume_ul - self.seeded_volume_ul
