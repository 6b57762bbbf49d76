"""The ``mmcore`` microscope driver: any Micro-Manager configuration through pymmcore-plus.

Campaign file::

    instruments:
      microscope:
        driver: mmcore
        settings:
          config: /opt/mm/scope.cfg     # or "simulated"
          channel_group: Channel        # presets named like the channels (DAPI, GFP)
          plate_type: "96"              # default: the protocol's plate_type
          stage_offset_um: [0, 0]       # stage position of the plate's corner
          field_step_um: null           # default: one camera field
          z_stack: {range_um: 4, step_um: 2}          # optional
          autofocus: {device: PFS, motor_offset_um: 0}  # optional
          mm_path: /opt/micro-manager   # optional: device adapter folder

In a dry-run, or with ``config: simulated``, the driver runs its real MDA code on a
``UniMMCore`` with the Python devices of :mod:`simulators.mm_devices` over the run's
simulated lab and clock (settings ``image_size_px``, ``pixel_size_um``, ``seed`` tune it;
defaults from the campaign's ``simulation`` section).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from controller.rig.registry import (
    BuildContext,
    InstrumentConfigError,
    driver,
)
from controller.rig.simulated import simulated_lab
from instruments.exceptions import InstrumentError
from instruments.interfaces import Microscope
from instruments.mmcore_microscope import Autofocus, MMCoreMicroscope, ZStack

_KNOWN = {
    "config", "channel_group", "plate_type", "stage_offset_um", "field_step_um",
    "pixel_size_um", "z_stack", "autofocus", "plate_property", "mm_path",
    "image_size_px", "seed",
}  # fmt: skip


def _validate(settings: dict[str, Any], spec: Any, dry_run: bool) -> None:
    """Preflight: known settings, a config, options that parse, a config file that exists."""
    unknown = sorted(set(settings) - _KNOWN)
    if unknown:
        raise InstrumentConfigError(
            f"instruments.microscope.settings: unknown settings {unknown}; known: {sorted(_KNOWN)}"
        )
    config = settings.get("config")
    if config is None:
        raise InstrumentConfigError(
            "instruments.microscope.settings.config: give a Micro-Manager .cfg path or 'simulated'"
        )
    _microscope_options(
        settings, BuildContext(spec=spec, data_dir=Path("."), clock=None, dry_run=dry_run)
    )
    if not dry_run and str(config) != "simulated" and not _config_path(config).is_file():
        raise InstrumentConfigError(
            f"instruments.microscope.settings.config: {str(_config_path(config))!r} does not exist"
        )


def _config_path(config: Any) -> Path:
    path = Path(str(config)).expanduser()
    return path if path.is_absolute() else Path.cwd() / path


def config_presets(path: Path, group: str) -> set[str]:
    """Preset names of ``group`` in a Micro-Manager configuration file (``ConfigGroup`` lines)."""
    presets = set()
    for line in path.read_text(errors="replace").splitlines():
        parts = [p.strip() for p in line.split(",")]
        if len(parts) >= 3 and parts[0] in ("ConfigGroup", "Config") and parts[1] == group:
            presets.add(parts[2])
    return presets


def _channels(settings: dict[str, Any], spec: Any) -> set[str] | None:
    """The channel group's presets: the simulated core's, or those the config file defines."""
    config = settings.get("config")
    group = str(settings.get("channel_group", "Channel"))
    if config is None or str(config) == "simulated":
        from simulators.microscope import CHANNELS

        return set(CHANNELS)
    path = _config_path(config)
    return config_presets(path, group) if path.is_file() else None


@driver("microscope", "mmcore", dry_run=True, validate=_validate, channels=_channels)
def mmcore_microscope(settings: dict[str, Any], ctx: BuildContext) -> Microscope:
    """Build :class:`MMCoreMicroscope` from the campaign's settings (see the module doc).

    Raises:
        InstrumentConfigError: unknown or malformed settings.
        InstrumentError: the configuration file is missing or cannot be loaded.
    """
    unknown = sorted(set(settings) - _KNOWN)
    if unknown:
        raise InstrumentConfigError(
            f"instruments.microscope.settings: unknown settings {unknown}; known: {sorted(_KNOWN)}"
        )
    config = settings.get("config")
    if config is None:
        raise InstrumentConfigError(
            "instruments.microscope.settings.config: give a Micro-Manager .cfg path or 'simulated'"
        )
    opts = _microscope_options(settings, ctx)
    if ctx.dry_run or str(config) == "simulated":
        return MMCoreMicroscope(_simulated_core(settings, ctx, opts), owns_core=True, **opts)
    path = Path(str(config)).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise InstrumentError(
            f"instruments.microscope.settings.config: Micro-Manager configuration file "
            f"{str(path)!r} does not exist"
        )
    return MMCoreMicroscope.from_config(path, mm_path=settings.get("mm_path"), **opts)


def _microscope_options(settings: dict[str, Any], ctx: BuildContext) -> dict[str, Any]:
    try:
        z = settings.get("z_stack")
        af = settings.get("autofocus")
        prop = settings.get("plate_property", ("Plate", "Barcode"))
        step = settings.get("field_step_um")
        px = settings.get("pixel_size_um")
        offset = settings.get("stage_offset_um", (0.0, 0.0))
        return {
            "plate": str(settings.get("plate_type", ctx.spec.protocol.settings.get("plate_type", "96"))),
            "channel_group": str(settings.get("channel_group", "Channel")),
            "clock": ctx.clock,
            "stage_offset_um": (float(offset[0]), float(offset[1])),
            "field_step_um": None if step is None else float(step),
            "pixel_size_um": None if px is None else float(px),
            "z_stack": None if not z else ZStack(float(z["range_um"]), float(z["step_um"])),
            "autofocus": None if not af else Autofocus(
                str(af["device"]),
                None if af.get("motor_offset_um") is None else float(af["motor_offset_um"]),
            ),
            "plate_property": None if not prop else (str(prop[0]), str(prop[1])),
        }  # fmt: skip
    except (KeyError, TypeError, ValueError, IndexError) as exc:
        raise InstrumentConfigError(f"instruments.microscope.settings: {exc!r}") from exc


def _simulated_core(settings: dict[str, Any], ctx: BuildContext, opts: dict[str, Any]) -> Any:
    from simulators.mm_devices import make_simulated_core

    size = int(settings.get("image_size_px", ctx.spec.simulation.image_size_px))
    scope: dict[str, Any] = {
        "image_size": (size, size),
        "seed": int(settings.get("seed", ctx.spec.simulation.seed)),
    }
    if opts["pixel_size_um"] is not None:
        scope["pixel_size_um"] = opts["pixel_size_um"]
    return make_simulated_core(
        simulated_lab(ctx), ctx.clock, channel_group=opts["channel_group"], **scope
    )
