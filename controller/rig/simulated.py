"""The ``simulated`` liquid handler, microscope and plate mover, and the persistent virtual lab
they act on.

In a dry-run every driver without an emulator is replaced by these; the virtual lab
(``<data_dir>/sim_lab.json``) is shared by every instrument of the run, emulated drivers
included, so a killed dry-run resumes against the plate as it "physically" is.
"""

from __future__ import annotations

import inspect
import math
from typing import Any

from controller.rig.registry import BuildContext, InstrumentConfigError, driver
from controller.spec import CampaignSpec
from instruments.interfaces import LiquidHandler, Microscope, PlateMover


def simulated_lab(ctx: BuildContext):
    """The virtual lab of this run (created on first use, persisted under ``data_dir``)."""
    if "lab" not in ctx.shared:
        from protocols import protocol_class
        from simulators.biology import VirtualBiology
        from simulators.world import SimulatedLab

        sim = ctx.spec.simulation
        psettings = ctx.spec.protocol.settings
        ctx.data_dir.mkdir(parents=True, exist_ok=True)
        lab_class, extra = SimulatedLab, {}
        if callable(getattr(protocol_class(ctx.spec.protocol.name), "compile_decision", None)):
            # time-course plates: wells live through doses, decay and exchanges, one lot per plate
            from simulators.timecourse_lab import TimecourseLab

            lab_class, extra = TimecourseLab, {"culture_seed": sim.seed}
        ctx.shared["lab"] = lab_class(
            ctx.data_dir / "sim_lab.json",
            VirtualBiology(seed=sim.seed, failure_rate=sim.failed_well_rate),
            **extra,
            plate_type=str(psettings.get("plate_type", "96")),
            seeded_volume_ul=float(psettings.get("seeded_volume_ul", 150.0)),
            seeded_cells=(sim.seeded_cells_per_line, sim.seeded_cells_per_line),
        )
    return ctx.shared["lab"]


def _check_options(role: str, cls: type, settings: dict[str, Any], fixed: set[str]) -> None:
    """Settings must be keyword options of the simulator's constructor, numbers finite."""
    params = inspect.signature(cls).parameters
    known = {n for n, p in params.items() if p.kind is p.KEYWORD_ONLY} - fixed
    unknown = sorted(set(settings) - known)
    if unknown:
        raise InstrumentConfigError(
            f"instruments.{role}.settings: unknown settings {unknown}; known: {sorted(known)}"
        )
    for key, value in settings.items():
        default = params[key].default
        if isinstance(default, (int, float)) and not isinstance(default, bool):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
            ):
                raise InstrumentConfigError(
                    f"instruments.{role}.settings.{key}: {value!r} is not a finite number"
                )
            if value < 0:
                raise InstrumentConfigError(
                    f"instruments.{role}.settings.{key}: {value!r} is negative"
                )
        elif isinstance(default, bool) and not isinstance(value, bool):
            raise InstrumentConfigError(
                f"instruments.{role}.settings.{key}: {value!r} is not true or false"
            )


def _validate_handler(settings: dict[str, Any], spec: CampaignSpec, dry_run: bool) -> None:
    from simulators.liquid_handler import SimulatedLiquidHandler

    _check_options("liquid_handler", SimulatedLiquidHandler, settings, set())


def _validate_microscope(settings: dict[str, Any], spec: CampaignSpec, dry_run: bool) -> None:
    from simulators.microscope import SimulatedMicroscope

    _check_options("microscope", SimulatedMicroscope, settings, {"image_size", "seed"})


def _microscope_channels(settings: dict[str, Any], spec: CampaignSpec) -> set[str]:
    from simulators.microscope import CHANNELS

    return set(CHANNELS)


@driver("liquid_handler", "simulated", validate=_validate_handler)
def liquid_handler(settings: dict[str, Any], ctx: BuildContext) -> LiquidHandler:
    from simulators.liquid_handler import SimulatedLiquidHandler

    opts = {"reports_volumes": ctx.spec.simulation.reports_volumes, **settings}
    return SimulatedLiquidHandler(simulated_lab(ctx), ctx.clock, **opts)


@driver("microscope", "simulated", validate=_validate_microscope, channels=_microscope_channels)
def microscope(settings: dict[str, Any], ctx: BuildContext) -> Microscope:
    from simulators.microscope import SimulatedMicroscope

    size = ctx.spec.simulation.image_size_px
    opts = {"image_size": (size, size), "seed": ctx.spec.simulation.seed, **settings}
    return SimulatedMicroscope(simulated_lab(ctx), ctx.clock, **opts)


def _validate_mover(settings: dict[str, Any], spec: CampaignSpec, dry_run: bool) -> None:
    from simulators.plate_mover import SimulatedPlateMover, parse_transfer_times

    _check_options("plate_mover", SimulatedPlateMover, settings, {"incubator_slots"})
    where = "instruments.plate_mover.settings"
    times = settings.get("transfer_times_s", {})
    if not isinstance(times, dict):
        raise InstrumentConfigError(f"{where}.transfer_times_s: a mapping 'a->b': seconds")
    try:
        parse_transfer_times(times)
    except ValueError as e:
        raise InstrumentConfigError(f"instruments.plate_mover.settings.{e}") from None
    hotel = settings.get("hotel_slots")
    if hotel is not None and (isinstance(hotel, bool) or not isinstance(hotel, int) or hotel < 1):
        raise InstrumentConfigError(f"{where}.hotel_slots: {hotel!r} is not a positive integer")
    plates = spec.budget.rounds
    if hotel is not None and plates is not None and hotel < plates:
        # every plate ends in the hotel (the controller never discards one): a smaller hotel
        # would fill mid-campaign, after pipetting, and pause it
        raise InstrumentConfigError(
            f"{where}.hotel_slots: {hotel} cannot hold the campaign's {plates} plates "
            "(budget.rounds); every plate ends in the hotel"
        )


@driver("plate_mover", "simulated", validate=_validate_mover)
def plate_mover(settings: dict[str, Any], ctx: BuildContext) -> PlateMover:
    from simulators.plate_mover import SimulatedPlateMover

    w = ctx.spec.workcell
    slots = w.incubator_slots or w.max_plates_in_flight
    return SimulatedPlateMover(simulated_lab(ctx), ctx.clock, incubator_slots=slots, **settings)
