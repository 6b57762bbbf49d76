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


def _counts(emu: PumpEmulator) -> tuple[int, int, int]:
    state = emu.pump(1)
    return state.plunger_moves, state.aspirated, state.dispensed


# -- issue 9, item 1: DT numeric reports have no checksum ----------------------------------


@pytest.mark.parametrize("mask", [0x12, 0x01])  # '3' -> '!' (malformed), '3' -> '2' (a digit)
def test_dt_corrupted_position_report_is_read_again(emulator, mask) -> None:
    with SyringePump(emulator.port, protocol="dt", **emulator.driver_options()) as pump:
        pump.initialize()
        pump.aspirate(100, port="input")  # 300 increments
        emulator.corrupt_next_replies(1, offset=3, mask=mask, command="?")
        assert pump.position_ul == pytest.approx(100)
        assert pump.session.stats.bad_frames >= 1


# -- item 2: OEM sequence numbers across processes ----------------------------------------


def test_oem_first_block_of_a_new_process_is_never_acknowledged_stale(emulator) -> None:
    options = emulator.driver_options()
    first = SyringePump(emulator.port, syringe_volume_ul=500, **options)
    first.initialize()
    first.aspirate(100, port="input")
    while emulator.pump(1).last_sequence != 1:  # the old process ends on sequence 1
        first.session.query("?")
    first.close()
    inits = emulator.pump(1).init_count
    with SyringePump(emulator.port, syringe_volume_ul=500, **options) as second:
        emulator.drop_next_requests(1)  # the new process's first block never arrives
        second.initialize()
        assert emulator.pump(1).init_count == inits + 1  # the init ran: not a stale ack
        assert emulator.pump(1).position == 0 and second.position_ul == 0
        second.aspirate(50, port="input")
    assert emulator.pump(1).position == 300


# -- item 3: a flipped bit in a DT status byte ---------------------------------------------


@pytest.mark.parametrize(
    ("command", "mask"),
    [("Q", 0x08), ("Q", 0x01), ("IP300R", 0x01), ("IP300R", 0x02), ("OD150R", 0x04)],
)
def test_dt_flipped_status_bit_is_not_a_firmware_error(emulator, command, mask) -> None:
    with SyringePump(emulator.port, protocol="dt", **emulator.driver_options()) as pump:
        pump.initialize()
        emulator.corrupt_next_replies(1, offset=2, mask=mask, command=command)
        pump.aspirate(100, port="input")
        pump.dispense(50, port="output")
        assert _counts(emulator) == (2, 300, 150)
        assert pump.position_ul == pytest.approx(50)


def test_dt_real_firmware_errors_are_still_raised(emulator) -> None:
    from instruments.pumps import InvalidOperand, PlungerOverload

    with SyringePump(emulator.port, protocol="dt", **emulator.driver_options()) as pump:
        pump.initialize()
        emulator.inject_overload(1)
        with pytest.raises(PlungerOverload):
            pump.aspirate(100, port="input")
        pump.initialize()
        with pytest.raises(InvalidOperand):  # refused by the pump: it did nothing
            pump.session.execute("A99999R", 0.0, settle=lambda: False)


# -- item 4: DT lost answers are settled through Q and the position ------------------------


def test_dt_lost_answer_or_lost_request_is_settled_and_runs_once(emulator) -> None:
    with SyringePump(emulator.port, protocol="dt", **emulator.driver_options()) as pump:
        pump.initialize()
        emulator.drop_next_replies(1)  # the move ran; its answer was lost
        pump.aspirate(100, port="input")
        assert _counts(emulator) == (1, 300, 0)
        emulator.drop_next_requests(1)  # the move never reached the pump
        pump.dispense(100, port="output")
        assert _counts(emulator) == (2, 300, 300)
        emulator.drop_next_replies(1)  # a valve turn's answer lost
        pump.set_valve(3)
        assert pump.valve == 3 and emulator.pump(1).valve_moves == 3


@pytest.mark.parametrize(("protocol", "seed"), [("dt", 1), ("oem", 2)])
def test_cycles_with_lost_requests_and_flipped_bits(protocol, seed) -> None:
    """The independent check of issue 9, shortened (benchmarks/pump_faults.py runs it in
    full): 10 % dropped and 10 % garbled answers, 5 % lost requests; nothing executed twice,
    nothing lost, positions exact, no exception."""
    cycles = 24
    faults = FaultConfig(drop_reply=0.1, garble_reply=0.1, drop_request=0.05, seed=seed)
    with PumpEmulator((1,), time_scale=0.001, faults=faults) as emu:
        pump = SyringePump(
            emu.port, syringe_volume_ul=500, protocol=protocol, max_retries=8,
            **emu.driver_options(),
        )  # fmt: skip
        pump.initialize()
        for _ in range(cycles):
            pump.aspirate(VOLUME_UL, port="input")
            pump.dispense(VOLUME_UL, port="output")
        increments = round(VOLUME_UL / pump.ul_per_increment)
        assert _counts(emu) == (2 * cycles, cycles * increments, cycles * increments)
        assert emu.pump(1).position == 0 and emu.pump(1).init_count == 1
        assert emu.lost_requests > 0 and emu.garbled > 0 and emu.dropped > 0
        print(f"{protocol} seed {seed}: {pump.session.stats}, lost {emu.lost_requests}")
        pump.close()
