"""The ``dose_response`` protocol: dose seeded cells with reagents, incubate, image every well.

Each experiment is a set of final concentrations (µM) of one or more reagents. The protocol
lays replicates, controls and time-zero wells out on a plate, images the time-zero wells,
turns each concentration into a volume of the right working solution (C1·V1 = C2·V2, with V2
the final well volume; :mod:`protocols.dilution` says which solution and how to prepare it),
tops every dosed well up with vehicle to the final volume, so that every one of them (controls
included) ends at the same solvent share, mixes, incubates the plate once and images each
dosed well. With two or more doses mapped, each plate also holds every drug of its
combinations alone at the doses used there (:mod:`protocols.single_agent`).

Campaign YAML (the ``protocol:`` section)::

    name: dose_response
    settings:
      plate_type: "96"
      replicates: 3
      negative_controls: 6
      positive_controls: 6
      time_zero_wells: 4
      positive_control: {reagent: staurosporine, concentration_um: 1.0}
      doses:
        - drug_a_um -> drug_a                          # continuous µM parameter → reagent
        - {parameter: partner_um, reagent_from: partner}  # categorical levels are reagents
      stocks: {drug_a: [10000], drug_b: [10000], drug_c: [10000], staurosporine: [1000]}
      solvent: dmso                                    # the stocks' solvent (default)
      solvent_percent: 0.5                             # in every dosed well (default)
"""

from __future__ import annotations

import math
import random
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, ClassVar

from pydantic import BaseModel

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
    max_volume_over_range,
    split_volume,
)
from protocols.dilution import Solution, SolutionPlan, check_together, overfill_error
from protocols.dose_response_settings import (
    DoseMapping,
    DoseResponseSettings,
    ImagingSettings,
    PositiveControl,
)
from protocols.exceptions import (
    ImpossibleVolume,
    MissingParameter,
    MixedPlateParameter,
    PlateFull,
    UnknownReagent,
    UnmappedParameter,
)
from protocols.labware import PlateType, get_plate_type
from protocols.layout import PlateLayout, WellAssignment, WellRole
from protocols.single_agent import check_fit, single_agent_doses, wells_per_experiment
from protocols.steps import Acquire, Aspirate, Dispense, Incubate, Mix, Step

__all__ = [
    "Addition",
    "DoseMapping",
    "DoseResponse",
    "DoseResponseSettings",
    "ImagingSettings",
    "PositiveControl",
]


@dataclass(frozen=True)
class Addition:
    """One liquid added to a well: ``volume_ul`` of ``solution`` (a reagent's, or the vehicle)."""

    solution: Solution
    volume_ul: float

    @property
    def reagent(self) -> str | None:
        return self.solution.reagent


class DoseResponse:
    """Dose seeded wells with reagents at planned concentrations, incubate, image."""

    name: ClassVar[str] = "dose_response"
    settings_model: ClassVar[type[BaseModel]] = DoseResponseSettings

    def __init__(self, settings: DoseResponseSettings | dict[str, Any]) -> None:
        if not isinstance(settings, DoseResponseSettings):
            settings = DoseResponseSettings.model_validate(settings)
        self.settings: DoseResponseSettings = settings
        self.plate: PlateType = get_plate_type(settings.plate_type)
        self.solutions = SolutionPlan(settings)
        for d in settings.doses:
            if d.reagent is not None:
                self._stocks(d.reagent, where=f"doses[{d.parameter}]")
        self._control_additions: list[Addition] = []
        if settings.positive_control is not None:
            pc = settings.positive_control
            self._stocks(pc.reagent, where="positive_control")
            self._control_additions = self.plan_additions(
                {pc.reagent: pc.concentration_um}, context="positive_control"
            )

    # -- volumes ---------------------------------------------------------------------------

    def _stocks(self, reagent: str, where: str = "") -> list[float]:
        try:
            return self.settings.stocks[reagent]
        except KeyError:
            raise UnknownReagent(reagent, self.settings.stocks, where) from None

    def plan_additions(self, doses_um: dict[str, float], context: str = "") -> list[Addition]:
        """Solutions and volumes that bring a seeded well to ``doses_um`` at the final volume,
        the vehicle top-up included (last; absent when the doses fill the well exactly).

        Reagents at 0 µM are skipped. Raises :class:`ImpossibleVolume` when a dose cannot be
        pipetted, or when the doses together need more than fits above the cells (with an
        organic solvent: more than ``solvent_percent`` of it) or leave a vehicle top-up that
        is neither 0 nor pipettable.
        """
        s = self.settings
        prefix = f"{context}: " if context else ""
        additions: list[Addition] = []
        for reagent in sorted(doses_um):
            dose = doses_um[reagent]
            if dose == 0:
                continue
            self._stocks(reagent, where=context)
            try:
                solution, volume = self.solutions.choose(reagent, dose)
            except ImpossibleVolume as e:
                raise ImpossibleVolume(reagent, dose, prefix + e.reason) from None
            additions.append(Addition(solution, volume))
        total = sum(a.volume_ul for a in additions)
        top_up = s.addable_volume_ul - total
        if top_up < -VOLUME_EPS_UL or VOLUME_EPS_UL < top_up < s.min_volume_ul - VOLUME_EPS_UL:
            volumes = [(a.solution.label, a.volume_ul, a.reagent) for a in additions]
            raise overfill_error(self.settings, self.solutions, doses_um, volumes, prefix)
        if top_up > VOLUME_EPS_UL:
            additions.append(Addition(self.solutions.vehicle, top_up))
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

    def deck_sources(self) -> list[str]:
        """Every reservoir label the dosing steps may aspirate from, whatever the doses: the
        vehicle, each reagent's working solutions and serial dilutions (for a rig's lines)."""
        labels = [self.solutions.vehicle.label]
        for reagent in sorted(self.settings.stocks):
            labels += [sol.label for sol in reversed(self.solutions.ladder(reagent))]
        return labels

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
        free = len(self.plate.usable_wells(s.exclude_edges)) - self._n_reference_wells()
        return max(0, free // wells_per_experiment(s))

    def _n_reference_wells(self) -> int:
        s = self.settings
        return s.negative_controls + s.positive_controls + s.time_zero_wells

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
            needed = wells_per_experiment(s) + self._n_reference_wells()
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
        worst: list[tuple[str, str, float, float]] = []  # parameter, reagent, high, µL
        for d in s.doses:
            low, high, integer = self._dose_range(space, d.parameter)
            volume, reagent = max(
                (self._check_range(r, low, high, d.parameter, integer), r)
                for r in self._reagents_of(space, d)
            )
            worst.append((d.parameter, reagent, high, volume))
        check_together(self.settings, self.solutions, worst)

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
        self._stocks(reagent)
        ladder = [x.concentration_um for x in self.solutions.ladder(reagent)]
        if low < 0:
            raise ImpossibleVolume(reagent, low, f"parameter {parameter} allows negative doses")
        if high <= 0:
            return 0.0
        if low == 0 and integer:
            low = 1.0  # the smallest positive integer dose
        if low == 0:
            lowest = s.min_volume_ul * ladder[0] / s.final_volume_ul
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
        return max_volume_over_range(ladder, low, high, s.final_volume_ul, s.min_volume_ul)

    # -- compiling -------------------------------------------------------------------------

    def compile(self, experiments: Sequence[Params], plate_id: str, seed: int) -> CompiledPlate:
        """Lay ``experiments`` out on one plate and return the steps that run it.

        Steps: one Acquire per time-zero well (before any liquid moves); per dosed well
        (row-major; single-agent wells included), Aspirate/Dispense of each reagent's working solution, vehicle top-up to
        ``final_volume_ul``, Mix; then one Incubate; then one Acquire per dosed well. The
        intermediates those steps draw from are listed, with their recipes, in the layout.

        Raises:
            PlateFull, ImpossibleVolume, UnknownReagent, UnmappedParameter, MissingParameter,
            MixedPlateParameter.
        """
        experiments = [dict(e) for e in experiments]
        incubation_h = self.incubation_h(experiments)
        resolved = [self.resolve_doses(e, i) for i, e in enumerate(experiments)]
        plans = [self.plan_additions(d, context=f"experiment {i}") for i, d in enumerate(resolved)]
        vehicle_only = self.plan_additions({})
        singles = single_agent_doses(self.settings, resolved)
        single_plans = [self.plan_additions(d, context=f"single agent {d}") for d in singles]
        layout = self.layout(len(experiments), plate_id, seed, singles)
        single_index = {tuple(sorted(d.items())): i for i, d in enumerate(singles)}
        ordered = sorted(layout.wells, key=lambda a: self.plate.well_index(a.well))
        time_zero = [a for a in ordered if a.role is WellRole.TIME_ZERO]
        dosed = [a for a in ordered if a.role is not WellRole.TIME_ZERO]
        steps: list[Step] = [self._acquire(plate_id, a.well) for a in time_zero]
        drawn: dict[str, float] = {}
        for a in dosed:
            if a.role is WellRole.SAMPLE:
                assert a.experiment is not None
                additions = plans[a.experiment]
            elif a.role is WellRole.POSITIVE_CONTROL:
                additions = self._control_additions
            elif a.role is WellRole.SINGLE_AGENT:
                additions = single_plans[single_index[tuple(sorted(a.doses_um.items()))]]
            else:
                additions = vehicle_only
            for add in additions:
                drawn[add.solution.label] = drawn.get(add.solution.label, 0.0) + add.volume_ul
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
        steps.extend(self._acquire(plate_id, a.well) for a in dosed)
        layout = layout.model_copy(update={"intermediates": self.solutions.preparation(drawn)})
        return CompiledPlate(
            protocol=self.name, layout=layout, steps=steps, experiments=experiments, seed=seed
        )

    def _acquire(self, plate_id: str, well: str) -> Acquire:
        im = self.settings.imaging
        return Acquire(
            plate=plate_id,
            well=well,
            channels=list(im.channels),
            fields=im.fields_per_well,
            exposure_ms=im.exposure_ms,
        )

    def _well_steps(self, plate_id: str, well: str, additions: list[Addition]) -> list[Step]:
        s = self.settings
        steps: list[Step] = []
        for add in additions:
            sol = add.solution
            reagent = sol.reagent if sol.reagent is not None else s.vehicle
            for part in split_volume(add.volume_ul, s.max_volume_ul):
                steps.append(
                    Aspirate(
                        plate=plate_id,
                        source=sol.label,
                        reagent=reagent,
                        stock_concentration_um=sol.concentration_um,
                        volume_ul=part,
                        solvent=sol.solvent,
                        solvent_percent=sol.solvent_percent,
                    )
                )
                steps.append(Dispense(plate=plate_id, well=well, reagent=reagent, volume_ul=part))
        if s.mix_cycles:
            steps.append(
                Mix(plate=plate_id, well=well, volume_ul=s.mix_volume, cycles=s.mix_cycles)
            )
        return steps

    def layout(
        self,
        n_experiments: int,
        plate_id: str,
        seed: int,
        single_agents: Sequence[dict[str, float]] = (),
    ) -> PlateLayout:
        """Place replicates, controls, time-zero and single-agent wells (``single_agents``:
        one ``{reagent: µM}`` per condition) on the plate (shuffled with ``seed`` if
        randomising). The intermediates are added by :meth:`compile`."""
        s = self.settings
        items: list[tuple[WellRole, int | None, int, dict[str, float]]] = [
            (WellRole.SAMPLE, i, r, {}) for i in range(n_experiments) for r in range(s.replicates)
        ]
        items += [(WellRole.NEGATIVE_CONTROL, None, r, {}) for r in range(s.negative_controls)]
        items += [(WellRole.POSITIVE_CONTROL, None, r, {}) for r in range(s.positive_controls)]
        items += [(WellRole.TIME_ZERO, None, r, {}) for r in range(s.time_zero_wells)]
        reps = range(s.single_agent_replicates)
        items += [(WellRole.SINGLE_AGENT, None, r, dict(d)) for d in single_agents for r in reps]
        usable = list(self.plate.usable_wells(s.exclude_edges))
        check_fit(
            s, len(items), len(single_agents), len(usable),
            f"{n_experiments} experiments x {s.replicates} replicates + "
            f"{s.negative_controls + s.positive_controls} controls + {s.time_zero_wells} "
            f"time-zero wells; capacity is {self.capacity()} experiments per plate",
        )  # fmt: skip
        wells = (
            random.Random(seed).sample(usable, len(items)) if s.randomize else usable[: len(items)]
        )
        assigned = [
            WellAssignment(well=w, role=role, experiment=exp, replicate=rep, doses_um=doses)
            for w, (role, exp, rep, doses) in zip(wells, items, strict=True)
        ]
        assigned.sort(key=lambda a: self.plate.well_index(a.well))
        return PlateLayout(
            plate_id=plate_id,
            plate_type=self.plate.name,
            wells=assigned,
            solvent=s.matched_solvent,
            solvent_percent=s.solvent_percent if s.matched_solvent else 0.0,
        )

    def expected_contents(self, compiled: CompiledPlate) -> dict[str, WellContents]:
        """Per used well: volume (µL), intended concentrations (µM, zeros omitted) and solvent
        share (% v/v). Time-zero wells hold the seeded cells only.

        Computed from the layout and experiments, independently of the steps, so it can be
        compared with a simulated handler's tracked state or with :func:`replay_steps`.
        """
        s = self.settings
        solvent = {s.matched_solvent: s.solvent_percent} if s.matched_solvent else {}
        out: dict[str, WellContents] = {}
        for a in compiled.layout.wells:
            if a.role is WellRole.TIME_ZERO:
                out[a.well] = WellContents(well=a.well, volume_ul=s.seeded_volume_ul)
                continue
            if a.role is WellRole.SAMPLE:
                assert a.experiment is not None
                doses = self.resolve_doses(compiled.experiments[a.experiment], a.experiment)
            elif a.role is WellRole.POSITIVE_CONTROL and s.positive_control is not None:
                doses = {s.positive_control.reagent: s.positive_control.concentration_um}
            elif a.role is WellRole.SINGLE_AGENT:
                doses = dict(a.doses_um)
            else:
                doses = {}
            conc = {r: d for r, d in doses.items() if d > 0}
            out[a.well] = WellContents(
                well=a.well,
                volume_ul=s.final_volume_ul,
                concentrations_um=conc,
                solvent_percent=dict(solvent),
            )
        return out
