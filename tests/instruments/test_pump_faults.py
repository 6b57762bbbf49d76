"""A plate's worth of dispenses through an unreliable link: no double execution."""

from __future__ import annotations

import time

import pytest

from instruments.pumps import SyringePump
from simulators.pump_emulator import FaultConfig, PumpEmulator

CYCLES = 96
VOLUME_UL = 40.0


@pytest.mark.parametrize("seed", [1, 2])
def test_96_cycles_with_dropped_and_garbled_answers(seed) -> None:
    faults = FaultConfig(drop_reply=0.05, garble_reply=0.05, seed=seed)
    with PumpEmulator((1,), time_scale=0.001, faults=faults) as emu:
        pump = SyringePump(emu.port, address=1, syringe_volume_ul=500, **emu.driver_options())
        started = time.monotonic()
        pump.initialize()
        for _ in range(CYCLES):
            pump.aspirate(VOLUME_UL, port="input")
            pump.dispense(VOLUME_UL, port="output")
        elapsed = time.monotonic() - started
        state = emu.pump(1)
        increments = round(VOLUME_UL / pump.ul_per_increment)
        stats = pump.session.stats
        print(
            f"seed {seed}: {stats.blocks} blocks, {stats.retries} retries "
            f"({stats.timeouts} timeouts, {stats.bad_frames} bad frames), "
            f"emulator dropped {emu.dropped} garbled {emu.garbled}, {elapsed:.2f} s"
        )
        assert state.plunger_moves == 2 * CYCLES
        assert state.aspirated == state.dispensed == CYCLES * increments
        assert state.position == 0 and state.error == 0
        assert emu.dropped > 0 and emu.garbled > 0
        assert stats.retries >= emu.dropped
        pump.close()
