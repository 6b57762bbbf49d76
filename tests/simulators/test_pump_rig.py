"""Dry-run pump rigs: the built-in emulator, or someone else's pumps with driver-side fluidics."""

from __future__ import annotations

import pytest

from instruments.pumps import SyringePump
from simulators.clock import SimulatedClock
from simulators.fluidics import ReagentLine
from simulators.pump_emulator import PumpEmulator
from simulators.pump_rig import RigPump, start_rig
from simulators.world import SimulatedLab

PUMPS = {1: RigPump("xcalibur", 300.0, 6)}
LINES = {(1, 1): ReagentLine("medium", "medium", 0.0), (1, 2): ReagentLine("dye@5uM", "dye", 5.0)}


def _rig(tmp_path, **kw):
    lab = SimulatedLab(tmp_path / "lab.json")
    rig = start_rig(
        lab, SimulatedClock(0.0), tmp_path, pumps=PUMPS, lines=LINES, output_port=6, **kw
    )
    return lab, rig


def test_external_pumps_feed_the_fluidics_from_the_driver(tmp_path) -> None:
    with PumpEmulator((1,), time_scale=0.001, transport="tcp") as emu:  # "someone else's"
        options = {**emu.driver_options(), "time_scale": 0.001}
        lab, rig = _rig(tmp_path, external_port=emu.port, line_ul=2.0)
        assert rig.external and rig.port == emu.port and rig.emulator is None
        with SyringePump(rig.port, syringe_volume_ul=300, **options) as pump:
            rig.watch({1: pump})
            pump.initialize()
            pump.aspirate(30, port=2)
            rig.positioner.move_to_well("P1", "B02")
            pump.dispense(10, port=6)  # 2 µL of system liquid leave the line first
        state = lab.well_state("P1", "B02")
        assert state.volume_ul == pytest.approx(160.0)
        assert state.amounts_pmol == pytest.approx({"dye": 5.0 * 8.0})
        assert rig.stats()["fluidics"]["anomalies"] == [] and "emulator" not in rig.stats()
        rig.close()
        # another process: the pumps still hold 20 µL, and so does the bridge's syringe
        lab2, again = _rig(tmp_path, external_port=emu.port, line_ul=2.0)
        assert again.bridge.syringe_ul(1) == pytest.approx(20.0)
        assert again.positioner.over_well == ("P1", "B02")
        assert emu.pump(1).position == 200 and not emu._listeners


def test_built_in_pumps_power_up_empty_and_can_fail_their_first_init(tmp_path) -> None:
    from instruments.pumps import InitializationError

    lab, rig = _rig(tmp_path, time_scale=0.001, init_failure=True)
    try:
        assert not rig.external
        with SyringePump(rig.port, syringe_volume_ul=300, **rig.emulator.driver_options()) as p:
            rig.watch({1: p})  # built-in: the emulator's firmware reports the moves
            with pytest.raises(InitializationError):
                p.initialize()
            p.initialize()
            p.aspirate(30, port=1)
        assert rig.bridge.syringe_ul(1) == pytest.approx(30.0)
        assert rig.stats()["emulator"]["pumps"][1]["init_count"] == 1
    finally:
        rig.close()
