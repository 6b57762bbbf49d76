"""Building the instruments a campaign file names, by role and driver name.

Simulation is not a flag inside the loop. In a dry-run, a driver registered with
``dry_run=True`` is kept and runs its real code against an emulator below it (pump firmware on
a pseudo-terminal, Python camera devices behind pymmcore-plus, a PyLabRobot backend that moves
simulated liquid); every other driver is swapped for ``simulated``. All of them act on one
persistent virtual lab (``<data_dir>/sim_lab.json``), so a killed dry-run resumes against the
plate as it "physically" is.

A driver is a :class:`Driver`: a factory ``(settings, ctx) -> instrument`` with its role, name,
whether it can run against an emulator, and a preflight validator. Drivers are found through
entry points of the group ``cellpilot.drivers`` named ``<role>.<name>`` (the built-ins are
entry points of cellpilot itself; a lab's package adds its own), or registered in code with
:func:`register_driver`. A duplicate (role, name) raises.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from controller.spec import CampaignSpec
from instruments.interfaces import Clock, LiquidHandler, Microscope, PlateMover
from plugins import PluginRegistry


class InstrumentConfigError(Exception):
    """An ``instruments:`` entry names an unknown driver or bad settings."""


@dataclass
class BuildContext:
    """What a driver factory gets besides its settings.

    ``dry_run`` tells a dry-run-capable driver to talk to its emulator instead of hardware;
    :func:`controller.rig.simulated.simulated_lab` gives the virtual lab that emulators act on.
    ``commissioning``: the instrument is built only to be identified (``devices check``), so
    nothing may move.
    """

    spec: CampaignSpec
    data_dir: Path
    clock: Clock
    dry_run: bool = False
    commissioning: bool = False
    shared: dict[str, Any] = field(default_factory=dict)  # e.g. the simulated lab


Factory = Callable[[dict[str, Any], BuildContext], Any]
Validator = Callable[[dict[str, Any], CampaignSpec, bool], None]
ChannelLister = Callable[[dict[str, Any], CampaignSpec], "set[str] | None"]
ROLES = ("liquid_handler", "microscope")
OPTIONAL_ROLES = ("plate_mover",)  # built only when the campaign file names one
GROUP = "cellpilot.drivers"


@dataclass(frozen=True)
class Driver:
    """One instrument driver as campaign files name it (``instruments.<role>.driver: <name>``).

    Attributes:
        role: ``liquid_handler``, ``microscope`` or ``plate_mover``.
        name: the driver's name in campaign files.
        factory: ``factory(settings, ctx)`` builds the instrument.
        dry_run: the driver runs its real code against an emulator in a dry-run (``ctx.dry_run``).
        validate: ``validate(settings, spec, dry_run)`` checks settings before a campaign starts,
            raising an error that names the field, so nothing is written or moved first.
        channels: a microscope's ``channels(settings, spec)``: the channel names it can image
            (None: cannot tell without connecting).
    """

    role: str
    name: str
    factory: Factory
    dry_run: bool = False
    validate: Validator | None = None
    channels: ChannelLister | None = None

    def __call__(self, settings: dict[str, Any], ctx: BuildContext) -> Any:
        return self.factory(settings, ctx)


def driver(
    role: str,
    name: str,
    *,
    dry_run: bool = False,
    validate: Validator | None = None,
    channels: ChannelLister | None = None,
) -> Callable[[Factory], Driver]:
    """Decorator: turn a factory into a :class:`Driver` (point an entry point at the result)."""
    if role not in ROLES + OPTIONAL_ROLES:
        raise InstrumentConfigError(
            f"unknown instrument role {role!r}; roles: {list(ROLES + OPTIONAL_ROLES)}"
        )

    def deco(factory: Factory) -> Driver:
        return Driver(role, name, factory, dry_run, validate, channels)

    return deco


DRIVERS: PluginRegistry[Driver] = PluginRegistry(
    GROUP,
    duplicate=lambda msg: InstrumentConfigError(f"a driver named {msg}"),
    unknown=lambda key, known: InstrumentConfigError(f"no driver {key!r}; known: {known}"),
)


def register_driver(
    role: str, name: str, *, dry_run: bool = False, validate: Validator | None = None
) -> Callable[[Factory], Driver]:
    """Decorator: register ``factory(settings, ctx)`` in code as driver ``name`` for ``role``."""

    def deco(factory: Factory) -> Driver:
        return DRIVERS.register(
            f"{role}.{name}", driver(role, name, dry_run=dry_run, validate=validate)(factory)
        )

    return deco


def find_driver(role: str, name: str) -> Driver | None:
    """The driver ``name`` for ``role``, or None when nothing provides it."""
    key = f"{role}.{name}"
    return DRIVERS.get(key) if key in DRIVERS.names() else None


def available_drivers(role: str) -> list[str]:
    """Names of the drivers for ``role``, sorted."""
    return sorted(k.split(".", 1)[1] for k in DRIVERS.names() if k.split(".", 1)[0] == role)


def roles(spec: CampaignSpec) -> tuple[str, ...]:
    """The roles this campaign builds: the required ones and the optional ones it names."""
    return ROLES + tuple(r for r in OPTIONAL_ROLES if getattr(spec.instruments, r) is not None)


def _chosen(spec: CampaignSpec, role: str, dry_run: bool) -> tuple[str, dict[str, Any]]:
    ispec = getattr(spec.instruments, role)
    found = find_driver(role, ispec.driver)
    keep = not dry_run or (found is not None and found.dry_run)
    name = ispec.driver if keep else "simulated"
    return name, (ispec.settings if ispec.driver == name else {})


def check_instruments(spec: CampaignSpec, *, dry_run: bool) -> None:
    """Refuse unknown drivers and bad driver settings before a campaign starts."""
    for role in roles(spec):
        name, settings = _chosen(spec, role, dry_run)
        found = _require(role, name)
        if found.validate is not None:
            found.validate(settings, spec, dry_run)


def microscope_channels(spec: CampaignSpec, *, dry_run: bool) -> set[str] | None:
    """The channels the campaign's microscope can image, or None when the driver cannot tell."""
    name, settings = _chosen(spec, "microscope", dry_run)
    found = _require("microscope", name)
    return None if found.channels is None else found.channels(settings, spec)


def _require(role: str, name: str) -> Driver:
    found = find_driver(role, name)
    if found is None:
        raise InstrumentConfigError(
            f"instruments.{role}.driver: unknown driver {name!r}; available: {available_drivers(role)}"
        )
    return found


@dataclass
class Instruments:
    liquid_handler: LiquidHandler
    microscope: Microscope
    extras: dict[str, Any] = field(default_factory=dict)
    plate_mover: PlateMover | None = None  # None: plates are carried by hand (no transfer time)

    def close(self) -> None:
        for inst in (self.liquid_handler, self.microscope, self.plate_mover):
            close = getattr(inst, "close", None)
            if close is not None:
                close()


def build_instrument(role: str, ctx: BuildContext) -> Any:
    """Instantiate one role's driver (emulated or ``simulated`` in a dry-run)."""
    name, settings = _chosen(ctx.spec, role, ctx.dry_run)
    return _require(role, name)(settings, ctx)


def build_instruments(
    spec: CampaignSpec, *, dry_run: bool, data_dir: Path, clock: Clock
) -> Instruments:
    """Instantiate each role's driver (emulated or ``simulated`` when ``dry_run``)."""
    ctx = BuildContext(spec=spec, data_dir=Path(data_dir), clock=clock, dry_run=dry_run)
    built: dict[str, Any] = {}
    try:
        for role in roles(spec):
            built[role] = build_instrument(role, ctx)
    except BaseException:
        for inst in built.values():
            close = getattr(inst, "close", None)
            if close is not None:
                close()
        raise
    return Instruments(
        built["liquid_handler"],
        built["microscope"],
        extras=ctx.shared,
        plate_mover=built.get("plate_mover"),
    )


def check_devices(
    spec: CampaignSpec, *, dry_run: bool, data_dir: Path, clock: Clock
) -> list[dict[str, Any]]:
    """Connect to every instrument the campaign names; report each one's identity and state.

    For commissioning a rig: each role is built and asked ``identify()`` on its own, so one
    unreachable device does not hide the others. Nothing moves, is pipetted or imaged.
    """
    ctx = BuildContext(
        spec=spec, data_dir=Path(data_dir), clock=clock, dry_run=dry_run, commissioning=True
    )
    report = []
    for role in roles(spec):
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
