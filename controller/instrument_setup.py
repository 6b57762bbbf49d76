"""Building the instruments a campaign file names, by role and driver name.

Simulation is not a flag inside the loop. In a dry-run, a driver registered with
``dry_run=True`` is kept and runs its real code against an emulator below it (pump firmware on
a pseudo-terminal, Python camera devices behind pymmcore-plus, a PyLabRobot backend that moves
simulated liquid); every other driver is swapped for ``simulated``. All of them act on one
persistent virtual lab (``<data_dir>/sim_lab.json``), so a killed dry-run resumes against the
plate as it "physically" is.

Drivers register with :func:`register_driver`; a duplicate (role, name) raises. Modules named
``controller.drivers_*`` are imported on first use so that each driver family registers itself.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.spec import CampaignSpec
from instruments.interfaces import Clock, LiquidHandler, Microscope


class InstrumentConfigError(Exception):
    """An ``instruments:`` entry names an unknown driver or bad settings."""


@dataclass
class BuildContext:
    """What a driver factory gets besides its settings.

    ``dry_run`` tells a dry-run-capable driver to talk to its emulator instead of hardware;
    :func:`simulated_lab` gives the virtual lab that emulators act on. ``commissioning``: the
    instrument is built only to be identified (``devices check``), so nothing may move.
    """

    spec: CampaignSpec
    data_dir: Path
    clock: Clock
    dry_run: bool = False
    commissioning: bool = False
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the simulated lab


Factory = Callable[[dict[str, Any], BuildContext], Any]
Validator = Callable[[dict[str, Any], CampaignSpec, bool], None]
_DRIVERS: dict[tuple[str, str], Factory] = {}
_VALIDATORS: dict[tuple[str, str], Validator] = {}
_DRY_RUN_CAPABLE: set[tuple[str, str]] = set()
ROLES = ("liquid_handler", "microscope")


def register_driver(
    role: str, name: str, *, dry_run: bool = False, validate: Validator | None = None
) -> Callable[[Factory], Factory]:
    """Register ``factory(settings, ctx)`` as driver ``name`` for ``role``.

    ``dry_run=True``: the driver can run in a dry-run against an emulator (``ctx.dry_run``).
    ``validate(settings, spec, dry_run)`` checks settings before a campaign starts (raising
    an error that names the field), so a bad ``instruments:`` section is refused before
    anything is written or moved.
    """

    def deco(factory: Factory) -> Factory:
        if (role, name) in _DRIVERS:
            raise InstrumentConfigError(f"a {role} driver named {name!r} is already registered")
        _DRIVERS[(role, name)] = factory
        if dry_run:
            _DRY_RUN_CAPABLE.add((role, name))
        if validate is not None:
            _VALIDATORS[(role, name)] = validate
        return factory

    return deco


def _chosen(spec: CampaignSpec, role: str, dry_run: bool) -> tuple[str, dict[str, Any]]:
    ispec = getattr(spec.instruments, role)
    keep = not dry_run or (role, ispec.driver) in _DRY_RUN_CAPABLE
    name = ispec.driver if keep else "simulated"
    return name, (ispec.settings if ispec.driver == name else {})


def check_instruments(spec: CampaignSpec, *, dry_run: bool) -> None:
    """Refuse unknown drivers and bad driver settings before a campaign starts."""
    _load_driver_modules()
    for role in ROLES:
        name, settings = _chosen(spec, role, dry_run)
        if (role, name) not in _DRIVERS:
            raise InstrumentConfigError(
                f"instruments.{role}.driver: unknown driver {name!r}; available: {available_drivers(role)}"
            )
        validate = _VALIDATORS.get((role, name))
        if validate is not None:
            validate(settings, spec, dry_run)


def _load_driver_modules() -> None:
    import importlib
    import pkgutil

    import controller

    for mod in pkgutil.iter_modules(controller.__path__):
        if mod.name.startswith("drivers_"):
            importlib.import_module(f"controller.{mod.name}")


def available_drivers(role: str) -> list[str]:
    _load_driver_modules()
    return sorted(n for r, n in _DRIVERS if r == role)


@dataclass
class Instruments:
    liquid_handler: LiquidHandler
    microscope: Microscope
    extras: dict[str, Any] = field(default_factory=dict)

    def close(self) -> None:
        for inst in (self.liquid_handler, self.microscope):
            close = getattr(inst, "close", None)
            if close is not None:
                close()


def build_instrument(role: str, ctx: BuildContext) -> Any:
    """Instantiate one role's driver (emulated or ``simulated`` in a dry-run)."""
    _load_driver_modules()
    name, settings = _chosen(ctx.spec, role, ctx.dry_run)
    try:
        factory = _DRIVERS[(role, name)]
    except KeyError:
        raise InstrumentConfigError(
            f"instruments.{role}.driver: unknown driver {name!r}; available: {available_drivers(role)}"
        ) from None
    return factory(settings, ctx)


def build_instruments(
    spec: CampaignSpec, *, dry_run: bool, data_dir: Path, clock: Clock
) -> Instruments:
    """Instantiate each role's driver (emulated or ``simulated`` when ``dry_run``)."""
    ctx = BuildContext(spec=spec, data_dir=Path(data_dir), clock=clock, dry_run=dry_run)
    built: dict[str, Any] = {}
    try:
        for role in ROLES:
            built[role] = build_instrument(role, ctx)
    except BaseException:
        for inst in built.values():
            close = getattr(inst, "close", None)
            if close is not None:
                close()
        raise
    return Instruments(built["liquid_handler"], built["microscope"], extras=ctx.shared)


def check_devices(spec: CampaignSpec, *, dry_run: bool, data_dir: Path, clock: Clock) -> list[dict[str, Any]]:
    """Connect to every instrument the campaign names; report each one's identity and state.

    For commissioning a rig: each role is built and asked ``identify()`` on its own, so one
    unreachable device does not hide the others. Nothing moves, is pipetted or imaged.
    """
    ctx = BuildContext(
        spec=spec, data_dir=Path(data_dir), clock=clock, dry_run=dry_run, commissioning=True
    )
    report = []
    for role in ROLES:
        name, _ = _chosen(spec, role, dry_run)
        row: dict[str, Any] = {"role": role, "driver": name, "ok": False}
        inst = None
        try:
            inst = build_instrument(role, ctx)
            row["identity"] = inst.identify()
            row["ok"] = True
        except Exception as e:  # commissioning reports every failure, it never stops at one
            row["error"] = f"{type(e).__name__}: {e}"
        finally:
            close = getattr(inst, "close", None)
            if close is not None:
                close()
        report.append(row)
    return report


# -- simulated drivers -------------------------------------------------------------------------


def simulated_lab(ctx: BuildContext):
    """The virtual lab of this run (created on first use, persisted under ``data_dir``)."""
    if "lab" not in ctx.shared:
        from simulators.biology import VirtualBiology
        from simulators.world import SimulatedLab

        sim = ctx.spec.simulation
        psettings = ctx.spec.protocol.settings
        ctx.data_dir.mkdir(parents=True, exist_ok=True)
        ctx.shared["lab"] = SimulatedLab(
            ctx.data_dir / "sim_lab.json",
            VirtualBiology(seed=sim.seed, failure_rate=sim.failed_well_rate),
            plate_type=str(psettings.get("plate_type", "96")),
            seeded_volume_ul=float(psettings.get("seeded_volume_ul", 150.0)),
            seeded_cells=(sim.seeded_cells_per_line, sim.seeded_cells_per_line),
        )
    return ctx.shared["lab"]


@register_driver("liquid_handler", "simulated")
def _sim_liquid_handler(settings: dict[str, Any], ctx: BuildContext) -> LiquidHandler:
    from simulators.liquid_handler import SimulatedLiquidHandler

    opts = {"reports_volumes": ctx.spec.simulation.reports_volumes, **settings}
    return SimulatedLiquidHandler(simulated_lab(ctx), ctx.clock, **opts)


@register_driver("microscope", "simulated")
def _sim_microscope(settings: dict[str, Any], ctx: BuildContext) -> Microscope:
    from simulators.microscope import SimulatedMicroscope

    size = ctx.spec.simulation.image_size_px
    opts = {"image_size": (size, size), "seed": ctx.spec.simulation.seed, **settings}
    return SimulatedMicroscope(simulated_lab(ctx), ctx.clock, **opts)
