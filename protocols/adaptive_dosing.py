"""The ``adaptive_dosing`` protocol: a plate imaged live every few hours and dosed in between.

A time-course plate runs a loop of image → decide → act → incubate. Each *decision unit* (a
condition group of ``replicates`` wells by default, or a single well with
``decision_unit: well``) gets, at each of ``decisions`` decision points ``interval_h`` apart, a
:class:`~protocols.timecourse.UnitAction`: exchange the medium (withdraw to
``residual_volume_ul``, refill to ``seeded_volume_ul``; the drug leaves with the medium), then
raise each drug by one of its ``dose_steps_um`` (or not at all). Negative-control wells get
nothing; positive-control wells get their killer once, before the baseline images.

The protocol compiles

- the plate (:meth:`AdaptiveDosing.compile`): layout, positive controls, baseline images;
- each decision (:meth:`AdaptiveDosing.compile_decision`): the transfers of every unit's
  action, one incubation of ``interval_h``, and the images that the next decision reads (the
  last decision's images are the end point).

Everything a decision could need is checked when the protocol is built, before any robot
moves: every dose step can be pipetted from the stocks at the handler's minimum volume, and a
well dosed with every drug's largest step at every decision without an exchange neither
overfills nor exceeds ``max_solvent_percent`` of solvent (solvent comes from the
``master_stock_um`` each stock was diluted from; reagents without one are aqueous).

Campaign YAML (the ``protocol:`` section)::

    name: adaptive_dosing
    settings:
      replicates: 3
      interval_h: 12
      decisions: 8
      dose_steps_um: {drug_a: [0.5, 1, 2], drug_b: [0.25, 0.5, 1]}
      stocks: {drug_a: [30, 300], drug_b: [30, 300], staurosporine: [100]}
      master_stock_um: {drug_a: 10000, drug_b: 10000, staurosporine: 10000}
      positive_control: {reagent: staurosporine, concentration_um: 1.0}
"""

from __future__ import annotations

import random
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planners.space import ContinuousParameter, IntegerParameter, Params, SearchSpace
from protocols.base import (
    VOLUME_EPS_UL,
    CompiledPlate,
    WellContents,
    choose_stock,
    split_volume,
)
from protocols.dose_response import ImagingSettings, PositiveControl
from protocols.exceptions import (
    ImpossibleVolume,
    InvalidDecision,
    PlateFull,
    UnknownReagent,
    UnmappedParameter,
)
from protocols.labware import PlateType, get_plate_type
from protocols.layout import PlateLayout, WellAssignment, WellRole
from protocols.steps import Acquire, Aspirate, Dispense, Incubate, Mix, Step, Withdraw
from protocols.timecourse import (
    EXCHANGE_PARAMETER,
    PlateState,
    Transfer,
    UnitAction,
    WellLiquid,
    dose_parameter,
)


class AdaptiveDosingSettings(BaseModel):
    """Settings of the ``adaptive_dosing`` protocol (the campaign file's protocol section)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate_type: Literal["96", "384"] = "96"
    replicates: int = Field(default=3, ge=1, description="wells per condition group")
    decision_unit: Literal["group", "well"] = Field(
        default="group",
        description="'group': one action for a condition group's replicate wells, decided "
        "from their pooled images; 'well': every well decided on its own",
    )
    negative_controls: int = Field(default=6, ge=0, description="untreated wells per plate")
    positive_controls: int = Field(default=4, ge=0)
    positive_control: PositiveControl | None = None
    exclude_edges: bool = True
    randomize: bool = True
    seeded_volume_ul: float = Field(default=150.0, gt=0, description="culture volume, µL")
    max_well_volume_ul: float | None = Field(
        default=None, gt=0, description="most a well may hold; default the plate's working volume"
    )
    dose_steps_um: dict[str, list[float]] = Field(
        min_length=1, description="drug -> the increments (µM) one decision may add"
    )
    stocks: dict[str, list[float]] = Field(min_length=1, description="reagent -> stocks, µM")
    master_stock_um: dict[str, float] = Field(
        default_factory=dict,
        description="reagent -> the pure-solvent stock its stocks were diluted from, µM "
        "(a stock at S µM is S / master solvent); reagents not listed are aqueous",
    )
    solvent: str = "DMSO"
    max_solvent_percent: float = Field(default=0.5, gt=0, le=100)
    medium: str = Field(default="medium", description="reservoir of fresh medium")
    residual_volume_ul: float = Field(
        default=30.0, ge=0, description="left on the cells when the medium is exchanged, µL"
    )
    min_volume_ul: float = Field(default=0.5, gt=0)
    max_volume_ul: float = Field(default=50.0, gt=0, description="largest volume per aspirate")
    mix_cycles: int = Field(default=2, ge=0)
    mix_volume_ul: float = Field(default=50.0, gt=0)
    interval_h: float = Field(default=12.0, gt=0, description="hours between decisions")
    decisions: int = Field(default=8, ge=1, description="decision points per plate")
    temperature_c: float = 37.0
    co2_percent: float = Field(default=5.0, ge=0, le=100)
    imaging: ImagingSettings = Field(default_factory=ImagingSettings)

    @model_validator(mode="after")
    def _checks(self) -> AdaptiveDosingSettings:
        for drug, steps in self.dose_steps_um.items():
            if not steps or any(not (s > 0) for s in steps) or len(set(steps)) != len(steps):
                raise ValueError(f"dose_steps_um.{drug}: give distinct positive increments (µM)")
        for reagent, concs in self.stocks.items():
            if not concs or any(not (c > 0) for c in concs):
                raise ValueError(f"stocks.{reagent}: give positive stock concentrations (µM)")
        if self.residual_volume_ul >= self.seeded_volume_ul:
            raise ValueError("residual_volume_ul must be below seeded_volume_ul")
        if self.positive_controls and self.positive_control is None:
            raise ValueError("positive_controls > 0 needs a positive_control")
        if self.medium in self.stocks:
            raise ValueError(f"medium {self.medium!r} must not be listed in stocks")
        return self


class AdaptiveDosing:
    """Live-imaged time-course plates dosed by decisions (see the module docstring)."""

    name: ClassVar[str] = "adaptive_dosing"
    settings_model: ClassVar[type[BaseModel]] = AdaptiveDosingSettings

    def __init__(self, settings: AdaptiveDosingSettings | Mapping[str, Any]) -> None:
        if not isinstance(settings, AdaptiveDosingSettings):
            settings = AdaptiveDosingSettings.model_validate(dict(settings))
        self.settings: AdaptiveDosingSettings = settings
        self.plate: PlateType = get_plate_type(settings.plate_type)
        self.max_well_volume_ul = settings.max_well_volume_ul or self.plate.working_volume_ul
        for drug in settings.dose_steps_um:
            self._stocks(drug, f"dose_steps_um.{drug}")
        self._control_transfers: list[Transfer] = []
        if settings.positive_control is not None:
            pc = settings.positive_control
            self._control_transfers = [
                self._addition(pc.reagent, pc.concentration_um, settings.seeded_volume_ul,
                               "positive_control")
            ]
        self._check_worst_case()

    # -- the action vocabulary ----------------------------------------------------------------

    @property
    def drugs(self) -> tuple[str, ...]:
        """Drugs a decision may add, in the settings' order."""
        return tuple(self.settings.dose_steps_um)

    def dose_levels(self, drug: str) -> list[float]:
        """0 followed by ``drug``'s dose steps, ascending (µM)."""
        return [0.0, *sorted(self.settings.dose_steps_um[drug])]

    def decision_times_h(self) -> list[float]:
        """Hours after the baseline images at which each decision is made."""
        return [k * self.settings.interval_h for k in range(self.settings.decisions)]

    @property
    def duration_h(self) -> float:
        """Baseline to end-point images, hours."""
        return self.settings.interval_h * self.settings.decisions

    def action_space(self) -> SearchSpace:
        """The parameters of one decision: ``<drug>_um`` increments and ``exchange`` (0/1)."""
        params: list[Any] = [
            ContinuousParameter(name=dose_parameter(d), low=0.0, high=max(self.dose_levels(d)),
                                unit="uM")
            for d in self.drugs
        ]
        params.append(IntegerParameter(name=EXCHANGE_PARAMETER, low=0, high=1))
        return SearchSpace(parameters=params)

    def to_action(self, params: Mapping[str, Any] | UnitAction, unit: int | str = "?") -> UnitAction:
        """A decision's parameters as a validated :class:`UnitAction`.

        Raises:
            InvalidDecision: unknown parameters, or a dose that is not 0 or a dose step.
        """
        try:
            action = params if isinstance(params, UnitAction) else UnitAction.from_params(
                params, self.drugs)
        except ValueError as e:
            raise InvalidDecision(unit, str(e)) from None
        for drug, dose in action.doses_um.items():
            if drug not in self.settings.dose_steps_um:
                raise InvalidDecision(unit, f"{drug!r} is not a drug of this protocol "
                                            f"({list(self.drugs)})")
            levels = self.dose_levels(drug)
            if not any(abs(dose - lv) <= 1e-9 * max(1.0, lv) for lv in levels):
                raise InvalidDecision(unit, f"{dose_parameter(drug)}={dose:g} is not one of the "
                                            f"dose steps {levels} uM")
        return action

    # -- liquid planning --------------------------------------------------------------------

    def _stocks(self, reagent: str, where: str) -> list[float]:
        try:
            return sorted(self.settings.stocks[reagent])
        except KeyError:
            raise UnknownReagent(reagent, self.settings.stocks, where) from None

    def _addition(self, reagent: str, dose_um: float, volume_ul: float, where: str) -> Transfer:
        """The transfer that raises ``reagent`` by ``dose_um`` in a well of ``volume_ul``."""
        s = self.settings
        stock, v = choose_stock(reagent, dose_um, self._stocks(reagent, where), volume_ul,
                                s.min_volume_ul)
        master = s.master_stock_um.get(reagent)
        solvent = min(stock / master, 1.0) if master else 0.0
        return Transfer(kind="add", reagent=reagent, stock_concentration_um=stock, volume_ul=v,
                        solvent_fraction=solvent)

    def plan_action(
        self, liquid: WellLiquid, action: UnitAction | Mapping[str, Any], unit: int | str = "?"
    ) -> list[Transfer]:
        """Transfers that apply ``action`` to a well holding ``liquid``, in order.

        Raises:
            InvalidDecision: the action is not in the vocabulary, or would overfill the well
                or exceed the solvent limit.
        """
        action = self.to_action(action, unit)
        s = self.settings
        transfers: list[Transfer] = []
        volume = liquid.volume_ul
        if action.exchange:
            removed = volume - s.residual_volume_ul
            if removed > VOLUME_EPS_UL:
                transfers.append(Transfer(kind="withdraw", volume_ul=removed))
            transfers.append(Transfer(kind="add", reagent=s.medium,
                                      volume_ul=s.seeded_volume_ul - min(volume,
                                                                         s.residual_volume_ul)))
            volume = s.seeded_volume_ul
        for drug in self.drugs:
            dose = action.doses_um.get(drug, 0.0)
            if dose > 0:
                transfers.append(self._addition(drug, dose, volume, f"unit {unit}"))
        after = liquid.apply_all(transfers)
        if after.volume_ul > self.max_well_volume_ul + VOLUME_EPS_UL:
            raise InvalidDecision(unit, f"the well would hold {after.volume_ul:.4g} uL, more than "
                                        f"{self.max_well_volume_ul:g} uL; exchange the medium")
        if after.solvent_percent > s.max_solvent_percent + 1e-9:
            raise InvalidDecision(unit, f"{s.solvent} would reach {after.solvent_percent:.3g} % "
                                        f"(limit {s.max_solvent_percent:g} %); exchange the medium")
        return transfers

    def _check_worst_case(self) -> None:
        """Every dose step is pipettable, and the largest steps at every decision without an
        exchange neither overfill a well nor exceed the solvent limit."""
        s = self.settings
        for drug in self.drugs:
            for dose in self.dose_levels(drug)[1:]:
                self._addition(drug, dose, s.seeded_volume_ul, f"dose_steps_um.{drug}")
        worst = UnitAction(doses_um={d: self.dose_levels(d)[-1] for d in self.drugs})
        liquid = WellLiquid(volume_ul=s.seeded_volume_ul)
        for k in range(s.decisions):
            liquid = liquid.apply_all(
                [self._addition(d, v, liquid.volume_ul, "worst case") for d, v in
                 worst.doses_um.items()])
            reason = ""
            if liquid.volume_ul > self.max_well_volume_ul + VOLUME_EPS_UL:
                reason = (f"a well dosed with the largest steps at every decision holds "
                          f"{liquid.volume_ul:.4g} uL after decision {k + 1}, above "
                          f"{self.max_well_volume_ul:g} uL")
            elif liquid.solvent_percent > s.max_solvent_percent + 1e-9:
                reason = (f"a well dosed with the largest steps at every decision reaches "
                          f"{liquid.solvent_percent:.3g} % {s.solvent} after decision {k + 1}, "
                          f"above max_solvent_percent {s.max_solvent_percent:g}")
            if reason:
                raise ImpossibleVolume("+".join(self.drugs), None, reason + "; use more "
                                       "concentrated stocks, smaller steps or fewer decisions")

    # -- plate ------------------------------------------------------------------------------

    def capacity(self) -> int:
        """Condition groups one plate holds after controls and edge exclusion."""
        s = self.settings
        free = len(self.plate.usable_wells(s.exclude_edges)) - s.negative_controls - \
            s.positive_controls
        return max(0, free // s.replicates)

    def check_space(self, space: SearchSpace) -> None:
        """Refuse a decision space with parameters this protocol cannot apply.

        Raises:
            UnmappedParameter: a parameter that is not an action parameter, or a dose range
                that misses some dose steps.
        """
        actions = {p.name: p for p in self.action_space().parameters}
        for p in space.parameters:
            if p.name not in actions:
                raise UnmappedParameter(p.name, f"not an action of adaptive_dosing "
                                                f"(actions: {sorted(actions)})")
            if p.type == "categorical":
                raise UnmappedParameter(p.name, "must be numeric")

    def layout(self, n_units: int, plate_id: str, seed: int) -> PlateLayout:
        """Replicate wells of each group and the controls (shuffled with ``seed``)."""
        s = self.settings
        items: list[tuple[WellRole, int | None, int]] = [
            (WellRole.SAMPLE, i, r) for i in range(n_units) for r in range(s.replicates)
        ]
        items += [(WellRole.NEGATIVE_CONTROL, None, r) for r in range(s.negative_controls)]
        items += [(WellRole.POSITIVE_CONTROL, None, r) for r in range(s.positive_controls)]
        usable = list(self.plate.usable_wells(s.exclude_edges))
        if len(items) > len(usable):
            raise PlateFull(len(items), len(usable),
                            f"{n_units} groups x {s.replicates} wells + controls; capacity is "
                            f"{self.capacity()} groups per plate")
        wells = random.Random(seed).sample(usable, len(items)) if s.randomize else \
            usable[: len(items)]
        assigned = sorted(
            (WellAssignment(well=w, role=role, experiment=e, replicate=r)
             for w, (role, e, r) in zip(wells, items, strict=True)),
            key=lambda a: self.plate.well_index(a.well),
        )
        return PlateLayout(plate_id=plate_id, plate_type=self.plate.name, wells=assigned)

    def compile(self, experiments: Sequence[Params], plate_id: str, seed: int) -> CompiledPlate:
        """Lay the plate out and return the steps before the first decision: the positive
        controls' killer, then baseline images of every used well.

        ``experiments`` are the condition groups; their parameters are labels the protocol
        passes through (e.g. ``{}`` or a culture lot) since decisions, not parameters, dose
        the wells.
        """
        layout = self.layout(len(experiments), plate_id, seed)
        steps: list[Step] = []
        for a in layout.wells:
            if a.role is WellRole.POSITIVE_CONTROL:
                steps += self._transfer_steps(plate_id, a.well, self._control_transfers)
        steps += self._acquire_steps(plate_id, layout)
        return CompiledPlate(protocol=self.name, layout=layout, steps=steps,
                             experiments=[dict(e) for e in experiments], seed=seed)

    def initial_state(self, compiled: CompiledPlate) -> PlateState:
        """The plate's liquid after :meth:`compile`'s steps ran."""
        base = WellLiquid(volume_ul=self.settings.seeded_volume_ul)
        wells = {
            a.well: base.apply_all(self._control_transfers)
            if a.role is WellRole.POSITIVE_CONTROL else base
            for a in compiled.layout.wells
        }
        return PlateState(plate_id=compiled.plate_id, wells=wells)

    def units(self, compiled: CompiledPlate) -> dict[str, list[str]]:
        """Decision units → their wells: ``"0"``, ``"1"``… (experiment indices) with
        ``decision_unit: group``; well names with ``decision_unit: well``."""
        out: dict[str, list[str]] = {}
        for a in compiled.layout.wells:
            if a.role is WellRole.SAMPLE:
                key = str(a.experiment) if self.settings.decision_unit == "group" else a.well
                out.setdefault(key, []).append(a.well)
        return out

    def expected_contents(self, compiled: CompiledPlate) -> dict[str, WellContents]:
        """Per used well, the nominal contents once :meth:`compile`'s steps ran."""
        return self.contents(self.initial_state(compiled))

    @staticmethod
    def contents(state: PlateState) -> dict[str, WellContents]:
        """Per used well, the nominal volume and concentrations (no decay) of ``state``."""
        return {
            w: WellContents(well=w, volume_ul=liq.volume_ul,
                            concentrations_um=liq.concentrations_um())
            for w, liq in state.wells.items()
        }

    # -- decisions --------------------------------------------------------------------------

    def compile_decision(
        self,
        compiled: CompiledPlate,
        state: PlateState,
        actions: Mapping[str | int, UnitAction | Mapping[str, Any]],
    ) -> CompiledDecision:
        """The steps that apply one decision point's actions, incubate and image again.

        Args:
            compiled: the plate from :meth:`compile`.
            state: the plate before this decision (:meth:`initial_state`, then each
                :attr:`CompiledDecision.state_after`).
            actions: an action for every unit of :meth:`units` (keys may be ints in group mode).

        Raises:
            InvalidDecision: the plate is finished, a unit is missing or unknown, or an action
                is invalid (nothing is compiled then).
        """
        s = self.settings
        if state.plate_id != compiled.plate_id:
            raise InvalidDecision(None, f"state of plate {state.plate_id!r} given for plate "
                                        f"{compiled.plate_id!r}")
        if state.next_decision >= s.decisions:
            raise InvalidDecision(None, f"plate {state.plate_id} has had all {s.decisions} "
                                        "decisions")
        units = self.units(compiled)
        given = {str(k): v for k, v in actions.items()}
        if set(given) != set(units):
            missing, extra = sorted(set(units) - set(given)), sorted(set(given) - set(units))
            raise InvalidDecision(None, f"actions must cover every unit exactly: missing "
                                        f"{missing}, unknown {extra}")
        valid = {u: self.to_action(a, u) for u, a in given.items()}
        by_well = {w: (u, valid[u]) for u, wells in units.items() for w in wells}
        wells = dict(state.wells)
        steps: list[Step] = []
        for w in sorted(by_well, key=self.plate.well_index):
            unit, action = by_well[w]
            transfers = self.plan_action(wells[w], action, unit)
            wells[w] = wells[w].apply_all(transfers)
            steps += self._transfer_steps(compiled.plate_id, w, transfers)
        steps.append(Incubate(plate=compiled.plate_id, duration_s=s.interval_h * 3600.0,
                              temperature_c=s.temperature_c, co2_percent=s.co2_percent))
        steps += self._acquire_steps(compiled.plate_id, compiled.layout)
        after = PlateState(plate_id=state.plate_id, next_decision=state.next_decision + 1,
                           wells=wells)
        return CompiledDecision(
            plate_id=compiled.plate_id, decision=state.next_decision,
            time_h=self.decision_times_h()[state.next_decision], actions=valid, steps=steps,
            state_after=after,
        )

    def _transfer_steps(self, plate_id: str, well: str, transfers: list[Transfer]) -> list[Step]:
        s = self.settings
        steps: list[Step] = []
        dosed = False
        for t in transfers:
            for part in split_volume(t.volume_ul, s.max_volume_ul):
                if t.kind == "withdraw":
                    steps.append(Withdraw(plate=plate_id, well=well, volume_ul=part))
                    continue
                steps.append(Aspirate(plate=plate_id, source=t.source, reagent=t.reagent,
                                      stock_concentration_um=t.stock_concentration_um,
                                      volume_ul=part))
                steps.append(Dispense(plate=plate_id, well=well, reagent=t.reagent,
                                      volume_ul=part))
                dosed = dosed or t.stock_concentration_um > 0
        if dosed and s.mix_cycles:
            steps.append(Mix(plate=plate_id, well=well, volume_ul=s.mix_volume_ul,
                             cycles=s.mix_cycles))
        return steps

    def _acquire_steps(self, plate_id: str, layout: PlateLayout) -> list[Step]:
        im = self.settings.imaging
        return [
            Acquire(plate=plate_id, well=a.well, channels=list(im.channels),
                    fields=im.fields_per_well, exposure_ms=im.exposure_ms)
            for a in sorted(layout.wells, key=lambda a: self.plate.well_index(a.well))
        ]


class CompiledDecision(BaseModel):
    """One decision point of one plate, ready to run.

    ``actions`` maps each unit to what it gets; ``steps`` are its transfers (row-major by
    well), one ``Incubate`` of ``interval_h`` and the next images; ``state_after`` is the
    plate's liquid once they ran (journal it with the decision).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    plate_id: str
    decision: int = Field(ge=0, description="index of the decision point")
    time_h: float = Field(description="hours after the baseline images")
    actions: dict[str, UnitAction]
    steps: list[Step]
    state_after: PlateState
