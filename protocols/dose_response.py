"""The ``dose_response`` protocol: dose seeded cells with reagents, incubate, image every well.

Each experiment is a set of final concentrations (µM) of one or more reagents. The protocol
lays replicates and controls out on a plate, turns each concentration into a volume of the
right stock (C1·V1 = C2·V2, with V2 the final well volume), tops every well up with vehicle to
the final volume, mixes, incubates the plate once and images each used well.

Campaign YAML (the ``protocol:`` section)::

    name: dose_response
    settings:
      plate_type: "96"
      replicates: 3
      negative_controls: 6
      positive_controls: 6
      positive_control: {reagent: staurosporine, concentration_um: 1.0}
      doses:
        - drug_a_um -> drug_a                          # continuous µM parameter → reagent
        - {parameter: partner_um, reagent_from: partner}  # categorical levels are reagents
      stocks: {drug_a: [10, 1000], drug_b: [100], drug_c: [100], staurosporine: [100]}
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationInfo, field_validator, model_validator

from planners.space import (
    CategoricalParameter,
    IntegerParameter,
    Params,
    SearchSpace,
)
from protocols.base import (
    VOLUME_EPS_UL,
    CompiledPlate,
    WellContents,
    choose_stock,
    max_volume_over_range,
    split_volume,
)
from protocols.exceptions import (
    ImpossibleVolume,
    MissingParameter,
    MixedPlateParameter,
    PlateFull,
    UnknownReagent,
    UnmappedParameter,
)
from protocols.labware import PLATE_TYPES, PlateType, get_plate_type
from protocols.layout import PlateLayout, WellAssignment, WellRole
from protocols.steps import Acquire, Aspirate, Dispense, Incubate, Mix, Step


def _reject_bool_numbers(cls: type[BaseModel], data: object) -> object:
    """``true``/``false`` where a number belongs is a mistake, not 1 or 0 (pydantic would coerce)."""
    if isinstance(data, dict):
        for name, field in cls.model_fields.items():
            value = data.get(field.alias or name)
            kinds = getattr(field.annotation, "__args__", (field.annotation,))
            if isinstance(value, bool) and bool not in kinds and any(k in (int, float) for k in kinds):
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
    exposure_ms: float = Field(default=20.0, gt=0, le=60_000, description="exposure per channel, ms")


class DoseResponseSettings(_Frozen):
    """Settings of the ``dose_response`` protocol (the campaign file's protocol section)."""

    plate_type: Literal["96", "384"] = Field(default="96", description="key of PLATE_TYPES")
    replicates: int = Field(default=3, ge=1, le=384, description="wells per experiment")
    negative_controls: int = Field(default=6, ge=0, le=384, description="vehicle-only wells per plate")
    positive_controls: int = Field(default=6, ge=0, le=384, description="wells with the positive control")
    positive_control: PositiveControl | None = Field(
        default=None, validate_default=True, description="required when positive_controls > 0"
    )
    vehicle: str = Field(
        default="medium", description="reagent-free diluent used for top-up (0 µM of everything)"
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
        min_length=1, description="reagent → available stock concentrations, µM"
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
        default=48.0, ge=0, le=24 * 60, description="incubation before imaging, hours (at most 60 days)"
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
        if self.mix_cycles and self.mix_volume > min(self.max_volume_ul, self.final_volume_ul):
            raise ValueError("mix_volume_ul exceeds max_volume_ul or final_volume_ul")
        return self

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


# ---------------------------------------------------------------------------------------------
# The protocol


Addition = tuple[str, float, float]  # (reagent, stock_concentration_um, volume_ul)


class DoseResponse:
    """Dose seeded wells with reagents at planned concentrations, incubate, image."""

    name: ClassVar[str] = "dose_response"
    settings_model: ClassVar[type[BaseModel]] = DoseResponseSettings

    def __init__(self, settings: DoseResponseSettings | dict[str, Any]) -> None:
        if not isinstance(settings, DoseResponseSettings):
            settings = DoseResponseSettings.model_validate(settings)
        self.settings: DoseResponseSettings = settings
        self.plate: PlateType = get_plate_type(settings.plate_type)
        for d in settings.doses:
            if d.reagent is not None:
                self._stocks(d.reagent, where=f"doses[{d.parameter}]")
        self._control_additions: list[Addition] = []
        if settings.positive_control is not None:
            pc = settings.positive_control
            self._stocks(pc.reagent, where="positive_control")
            self._control_additions = self.plan_additions({pc.reagent: pc.concentration_um})

    # -- volumes ---------------------------------------------------------------------------

    def _stocks(self, reagent: str, where: str = "") -> list[float]:
        try:
            return self.settings.stocks[reagent]
        except KeyError:
            raise UnknownReagent(reagent, self.settings.stocks, where) from None

    def plan_additions(self, doses_um: dict[str, float], context: str = "") -> list[Addition]:
        """Stocks and volumes that bring a seeded well to ``doses_um`` at the final volume.

        Reagents at 0 µM are skipped. Raises :class:`ImpossibleVolume` when a dose cannot be
        pipetted or the doses together leave a vehicle top-up that is neither 0 nor pipettable.
        """
        s = self.settings
        prefix = f"{context}: " if context else ""
        additions: list[Addition] = []
        for reagent in sorted(doses_um):
            dose = doses_um[reagent]
            if dose == 0:
                continue
            stocks = self._stocks(reagent, where=context)
            try:
                stock, volume = choose_stock(
                    reagent, dose, stocks, s.final_volume_ul, s.min_volume_ul
                )
            except ImpossibleVolume as e:
                raise ImpossibleVolume(reagent, dose, prefix + e.reason) from None
            additions.append((reagent, stock, volume))
        total = sum(v for _, _, v in additions)
        room = s.addable_volume_ul
        top_up = room - total
        if top_up < -VOLUME_EPS_UL or VOLUME_EPS_UL < top_up < s.min_volume_ul - VOLUME_EPS_UL:
            reagent = max(additions, key=lambda a: a[2])[0] if additions else s.vehicle
            raise ImpossibleVolume(
                reagent,
                doses_um.get(reagent, 0.0),
                f"{prefix}doses need {total:.3g} uL in total but {room:g} uL fit above the "
                f"{s.seeded_volume_ul:g} uL of cells (and any vehicle top-up must be 0 or ≥ "
                f"{s.min_volume_ul:g} uL); use more concentrated stocks",
            )
        return additions

    def resolve_doses(self, params: Params, experiment: int = 0) -> dict[str, float]:
        """Final concentration (µM) of each reagent that ``params`` asks for (0 µM included).

        Doses of one reagent reached through two mappings add up.
        """
        known = set(self.parameter_names())
        for name in params:
            if name not in known:
                raise UnmappedParameter(
                    name, "no entry in the protocol's doses (nor incubation_parameter) uses it"
                )
        doses: dict[str, float] = {}
        for d in self.settings.doses:
            if d.parameter not in params:
                raise MissingParameter(d.parameter, experiment)
            reagent = d.reagent
            if d.reagent_from is not None:
                if d.reagent_from not in params:
                    raise MissingParameter(d.reagent_from, experiment)
                reagent = str(params[d.reagent_from])
                self._stocks(reagent, where=f"parameter {d.reagent_from}")
            assert reagent is not None
            try:
                dose = float(params[d.parameter])
            except (TypeError, ValueError):
                raise UnmappedParameter(
                    d.parameter, f"{params[d.parameter]!r} is not a dose in uM"
                ) from None
            doses[reagent] = doses.get(reagent, 0.0) + dose
        return doses

    def parameter_names(self) -> list[str]:
        """Every campaign parameter this protocol reads (doses, reagent choices, plate-level)."""
        s = self.settings
        names = [d.parameter for d in s.doses] + [d.reagent_from for d in s.doses if d.reagent_from]
        return names + self.plate_parameters()

    def plate_parameters(self) -> list[str]:
        """Parameters shared by the whole plate: a batch must give them one value per plate."""
        name = self.settings.incubation_parameter
        return [name] if name else []

    def incubation_h(self, experiments: Sequence[Params]) -> float:
        """The plate's incubation time, hours (from the plate-level parameter if configured).

        Raises:
            MissingParameter, MixedPlateParameter, UnmappedParameter.
        """
        name = self.settings.incubation_parameter
        if name is None or not experiments:
            return self.settings.incubation_h
        values = set()
        for i, e in enumerate(experiments):
            if name not in e:
                raise MissingParameter(name, i)
            try:
                values.add(float(e[name]))
            except (TypeError, ValueError):
                raise UnmappedParameter(name, f"{e[name]!r} is not a time in hours") from None
        if len(values) > 1:
            raise MixedPlateParameter(name, values)
        hours = values.pop()
        if not (math.isfinite(hours) and hours >= 0):
            raise UnmappedParameter(name, f"incubation of {hours:g} h is impossible")
        return hours

    # -- plate capacity and search space -----------------------------------------------------

    def channels(self) -> list[str]:
        """The imaging channels every plate is acquired in (the microscope must have them)."""
        return list(self.settings.imaging.channels)

    def capacity(self) -> int:
        """Most experiments one plate holds after controls, replicates and edge exclusion."""
        s = self.settings
        free = (
            len(self.plate.usable_wells(s.exclude_edges))
            - s.negative_controls
            - s.positive_controls
        )
        return max(0, free // s.replicates)

    def check_space(self, space: SearchSpace) -> None:
        """Refuse, before the run, a search space that this protocol cannot realise everywhere.

        Checks that every space parameter is mapped and every mapping's parameter exists with
        the right type, that every reagent has a stock, that the smallest positive and the
        largest dose of each range can be pipetted, and that the largest doses together fit
        the well. (Linear constraints are ignored, so the check errs on the safe side.)

        Raises:
            UnmappedParameter, UnknownReagent, ImpossibleVolume, PlateFull.
        """
        s = self.settings
        if self.capacity() < 1:
            needed = s.replicates + s.negative_controls + s.positive_controls
            raise PlateFull(
                needed,
                len(self.plate.usable_wells(s.exclude_edges)),
                "not even one experiment fits",
            )
        used = set(self.parameter_names())
        for name in space.names:
            if name not in used:
                raise UnmappedParameter(
                    name,
                    "in the search space but no entry in the protocol's doses (nor incubation_parameter) uses it",
                )
        for name in self.plate_parameters():
            low, _, _ = self._dose_range(space, name, unit=("h", None), what="an incubation time")
            if low < 0:
                raise UnmappedParameter(name, "allows negative incubation times")
        worst_total = 0.0
        for d in s.doses:
            low, high, integer = self._dose_range(space, d.parameter)
            worst_total += max(
                self._check_range(r, low, high, d.parameter, integer)
                for r in self._reagents_of(space, d)
            )
        room = s.addable_volume_ul
        # Totals vary continuously up to the worst case, so any worst case above room − min
        # passes through top-ups that are positive but below the handler's minimum.
        if worst_total > room - s.min_volume_ul + VOLUME_EPS_UL:
            raise ImpossibleVolume(
                "+".join(sorted({r for d in s.doses for r in self._reagents_of(space, d)})),
                None,
                f"the highest doses together can need {worst_total:.3g} uL but {room:g} uL fit "
                f"(a vehicle top-up must be 0 or ≥ {s.min_volume_ul:g} uL); narrow the ranges or "
                "use more concentrated stocks",
            )

    def _dose_range(
        self,
        space: SearchSpace,
        name: str,
        unit: tuple[str | None, ...] = (None, "uM", "µM", "um"),
        what: str = "a dose",
    ) -> tuple[float, float, bool]:
        try:
            p = space.parameter(name)
        except KeyError:
            raise UnmappedParameter(
                name, "the protocol uses it but the search space lacks it"
            ) from None
        if isinstance(p, CategoricalParameter):
            raise UnmappedParameter(name, f"{what} must be a numeric parameter, not categorical")
        if p.unit not in unit:
            raise UnmappedParameter(name, f"{what} must be in {unit[0] or unit[1]}, not {p.unit!r}")
        return float(p.low), float(p.high), isinstance(p, IntegerParameter)

    def _reagents_of(self, space: SearchSpace, d: DoseMapping) -> list[str]:
        if d.reagent is not None:
            return [d.reagent]
        assert d.reagent_from is not None
        try:
            p = space.parameter(d.reagent_from)
        except KeyError:
            raise UnmappedParameter(
                d.reagent_from, "the protocol needs it but the search space lacks it"
            ) from None
        if not isinstance(p, CategoricalParameter):
            raise UnmappedParameter(
                d.reagent_from, "reagent_from must name a categorical parameter"
            )
        for level in p.levels:
            self._stocks(level, where=f"level of parameter {d.reagent_from}")
        return list(p.levels)

    def _check_range(
        self, reagent: str, low: float, high: float, parameter: str, integer: bool
    ) -> float:
        """Check ``[low, high]`` µM of ``reagent``; return the largest volume it can need (µL)."""
        s = self.settings
        stocks = self._stocks(reagent)
        if low < 0:
            raise ImpossibleVolume(reagent, low, f"parameter {parameter} allows negative doses")
        if high <= 0:
            return 0.0
        if low == 0 and integer:
            low = 1.0  # the smallest positive integer dose
        if low == 0:
            lowest = s.min_volume_ul * stocks[0] / s.final_volume_ul
            raise ImpossibleVolume(
                reagent,
                0.0,
                f"parameter {parameter} allows doses just above 0 uM, which cannot be pipetted; "
                f"the lowest positive dose is {lowest:.3g} uM: raise low to ≥ {lowest:.3g} "
                "(a log scale suits doses) or add a more dilute stock",
            )
        ctx = f"parameter {parameter} range [{low:g}, {high:g}] uM"
        for dose in (low, high):
            self.plan_additions({reagent: dose}, context=ctx)
        return max_volume_over_range(stocks, low, high, s.final_volume_ul, s.min_volume_ul)

    # -- compiling -------------------------------------------------------------------------

    def compile(self, experiments: Sequence[Params], plate_id: str, seed: int) -> CompiledPlate:
        """Lay ``experiments`` out on one plate and return the steps that run it.

        Steps: per used well (row-major), Aspirate/Dispense of each reagent, vehicle top-up to
        ``final_volume_ul``, Mix; then one Incubate; then one Acquire per used well.

        Raises:
            PlateFull, ImpossibleVolume, UnknownReagent, UnmappedParameter, MissingParameter,
            MixedPlateParameter.
        """
        experiments = [dict(e) for e in experiments]
        incubation_h = self.incubation_h(experiments)
        plans = [
            self.plan_additions(self.resolve_doses(e, i), context=f"experiment {i}")
            for i, e in enumerate(experiments)
        ]
        layout = self.layout(len(experiments), plate_id, seed)
        steps: list[Step] = []
        ordered = sorted(layout.wells, key=lambda a: self.plate.well_index(a.well))
        for a in ordered:
            if a.role is WellRole.SAMPLE:
                assert a.experiment is not None
                additions = plans[a.experiment]
            elif a.role is WellRole.POSITIVE_CONTROL:
                additions = self._control_additions
            else:
                additions = []
            steps.extend(self._well_steps(plate_id, a.well, additions))
        s = self.settings
        steps.append(
            Incubate(
                plate=plate_id,
                duration_s=incubation_h * 3600.0,
                temperature_c=s.temperature_c,
                co2_percent=s.co2_percent,
            )
        )
        im = s.imaging
        steps.extend(
            Acquire(
                plate=plate_id,
                well=a.well,
                channels=list(im.channels),
                fields=im.fields_per_well,
                exposure_ms=im.exposure_ms,
            )
            for a in ordered
        )
        return CompiledPlate(
            protocol=self.name, layout=layout, steps=steps, experiments=experiments, seed=seed
        )

    def _well_steps(self, plate_id: str, well: str, additions: list[Addition]) -> list[Step]:
        s = self.settings
        steps: list[Step] = []
        transfers = [(r, c, f"{r}@{c:g}uM", v) for r, c, v in additions]
        top_up = s.addable_volume_ul - sum(v for _, _, v in additions)
        if top_up > VOLUME_EPS_UL:
            transfers.append((s.vehicle, 0.0, s.vehicle, top_up))
        for reagent, conc, source, volume in transfers:
            for part in split_volume(volume, s.max_volume_ul):
                steps.append(
                    Aspirate(
                        plate=plate_id,
                        source=source,
                        reagent=reagent,
                        stock_concentration_um=conc,
                        volume_ul=part,
                    )
                )
                steps.append(Dispense(plate=plate_id, well=well, reagent=reagent, volume_ul=part))
        if s.mix_cycles:
            steps.append(
                Mix(plate=plate_id, well=well, volume_ul=s.mix_volume, cycles=s.mix_cycles)
            )
        return steps

    def layout(self, n_experiments: int, plate_id: str, seed: int) -> PlateLayout:
        """Place replicates and controls on the plate (shuffled with ``seed`` if randomising)."""
        s = self.settings
        items: list[tuple[WellRole, int | None, int]] = [
            (WellRole.SAMPLE, i, r) for i in range(n_experiments) for r in range(s.replicates)
        ]
        items += [(WellRole.NEGATIVE_CONTROL, None, r) for r in range(s.negative_controls)]
        items += [(WellRole.POSITIVE_CONTROL, None, r) for r in range(s.positive_controls)]
        usable = list(self.plate.usable_wells(s.exclude_edges))
        if len(items) > len(usable):
            raise PlateFull(
                len(items),
                len(usable),
                f"{n_experiments} experiments x {s.replicates} replicates + "
                f"{s.negative_controls + s.positive_controls} controls; capacity is "
                f"{self.capacity()} experiments per plate",
            )
        wells = (
            random.Random(seed).sample(usable, len(items)) if s.randomize else usable[: len(items)]
        )
        assigned = [
            WellAssignment(well=w, role=role, experiment=exp, replicate=rep)
            for w, (role, exp, rep) in zip(wells, items, strict=True)
        ]
        assigned.sort(key=lambda a: self.plate.well_index(a.well))
        return PlateLayout(plate_id=plate_id, plate_type=self.plate.name, wells=assigned)

    def expected_contents(self, compiled: CompiledPlate) -> dict[str, WellContents]:
        """Per used well: final volume (µL) and intended concentrations (µM, zeros omitted).

        Computed from the layout and experiments, independently of the steps, so it can be
        compared with a simulated handler's tracked state or with :func:`replay_steps`.
        """
        s = self.settings
        out: dict[str, WellContents] = {}
        for a in compiled.layout.wells:
            if a.role is WellRole.SAMPLE:
                assert a.experiment is not None
                doses = self.resolve_doses(compiled.experiments[a.experiment], a.experiment)
            elif a.role is WellRole.POSITIVE_CONTROL and s.positive_control is not None:
                doses = {s.positive_control.reagent: s.positive_control.concentration_um}
            else:
                doses = {}
            conc = {r: d for r, d in doses.items() if d > 0}
            out[a.well] = WellContents(
                well=a.well, volume_ul=s.final_volume_ul, concentrations_um=conc
            )
        return out
