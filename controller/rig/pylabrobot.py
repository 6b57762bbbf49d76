"""The ``pylabrobot`` liquid-handler driver: any PyLabRobot-supported robot.

Campaign file::

    instruments:
      liquid_handler:
        driver: pylabrobot
        settings:
          backend: star                 # chatterbox | star | starlet | vantage | evo | opentrons
                                        # or "package.module:BackendClass"
          backend_options: {}           # keyword arguments of the backend (e.g. {host: ...})
          deck: STARDeck                # deck factory; default: the backend's natural deck
          deck_file: decks/star.json    # PyLabRobot deck JSON; required for hardware
          reservoirs: {"drug_a@100uM": trough_1, medium: "res_plate:A1"}
          plate_sites: [plate_carrier_site_0, plate_carrier_site_1]
          plate_type: cor_96_wellplate_360uL_Fb   # default from the protocol's plate_type
          tip_policy: per_aspirate      # or per_source
          volume_tracking: true         # answer well volumes from PyLabRobot's tracking

In a dry-run the driver keeps PyLabRobot's frontend and cellpilot's adapter but replaces the
backend with :class:`simulators.plr_backend.SimulatedLabBackend` over the run's simulated lab
and clock, on an auto-placed deck (``deck_file``, ``reservoirs`` and ``plate_sites`` are
ignored: the simulated deck has whatever the campaign needs). Tracked volumes persist in
``<data_dir>/plr_volumes.jsonl`` so crash recovery can confirm a dispense after a restart.
"""

from __future__ import annotations

from typing import Any

from controller.rig.registry import (
    BuildContext,
    InstrumentConfigError,
    driver,
)
from controller.rig.simulated import simulated_lab
from instruments.exceptions import InstrumentError
from instruments.interfaces import LiquidHandler

#: the protocol's plate_type -> PyLabRobot plate factory
PLATE_TYPES = {"96": "cor_96_wellplate_360uL_Fb"}
_HARDWARE_LAYOUT = ("deck_file", "reservoirs", "plate_sites", "tip_rack_names")


@driver("liquid_handler", "pylabrobot", dry_run=True)
def pylabrobot_liquid_handler(settings: dict[str, Any], ctx: BuildContext) -> LiquidHandler:
    """Build a :class:`~instruments.pylabrobot_handler.PLRLiquidHandler` from settings.

    Raises:
        InstrumentConfigError: unknown settings, backend, deck or labware.
    """
    from instruments.pylabrobot_settings import handler_from_settings

    psettings = ctx.spec.protocol.settings
    defaults: dict[str, Any] = {
        "seeded_volume_ul": float(psettings.get("seeded_volume_ul", 150.0)),
    }
    plate_type = str(psettings.get("plate_type", "96"))
    if "plate_type" not in settings:
        if plate_type not in PLATE_TYPES:
            raise InstrumentConfigError(
                f"instruments.liquid_handler.settings.plate_type: no default PyLabRobot plate "
                f"for a {plate_type}-well plate; name one (a pylabrobot.resources factory)"
            )
        defaults["plate_type"] = PLATE_TYPES[plate_type]
    backend = None
    settings = dict(settings)
    if ctx.dry_run:
        from simulators.plr_backend import SimulatedLabBackend

        backend = SimulatedLabBackend(simulated_lab(ctx), ctx.clock)
        for key in _HARDWARE_LAYOUT:
            settings.pop(key, None)
        settings.pop("deck", None)
        settings.pop("backend_options", None)
        defaults["volume_tracking"] = ctx.spec.simulation.reports_volumes
        defaults["refill_tips"] = True
    try:
        return handler_from_settings(
            settings,
            backend=backend,
            state_path=ctx.data_dir / "plr_volumes.jsonl",
            defaults=defaults,
        )
    except InstrumentError as exc:
        raise InstrumentConfigError(f"instruments.liquid_handler.settings: {exc}") from exc
