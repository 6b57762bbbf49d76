"""The ``simulated`` liquid handler and microscope, and the persistent virtual lab they act on.

In a dry-run every driver without an emulator is replaced by these; the virtual lab
(``<data_dir>/sim_lab.json``) is shared by every instrument of the run, emulated drivers
included, so a killed dry-run resumes against the plate as it "physically" is.
"""

from __future__ import annotations

from typing import Any

from controller.rig.registry import BuildContext, driver
from instruments.interfaces import LiquidHandler, Microscope


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


@driver("liquid_handler", "simulated")
def liquid_handler(settings: dict[str, Any], ctx: BuildContext) -> LiquidHandler:
    from simulators.liquid_handler import SimulatedLiquidHandler

    opts = {"reports_volumes": ctx.spec.simulation.reports_volumes, **settings}
    return SimulatedLiquidHandler(simulated_lab(ctx), ctx.clock, **opts)


@driver("microscope", "simulated")
def microscope(settings: dict[str, Any], ctx: BuildContext) -> Microscope:
    from simulators.microscope import SimulatedMicroscope

    size = ctx.spec.simulation.image_size_px
    opts = {"image_size": (size, size), "seed": ctx.spec.simulation.seed, **settings}
    return SimulatedMicroscope(simulated_lab(ctx), ctx.clock, **opts)
