"""The fluidics bridge: the real pump driver over a pty moves liquid in the simulated lab."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from instruments.dispenser import PlatePositioner, PumpDispenser
from instruments.exceptions import LiquidHandlingError
from instruments.pumps import PlungerOverload, PumpTimeout, SyringePump, open_transport
from simulators.clock import SimulatedClock
from simulators.fluidics import FluidicsBridge, ReagentLine, SimulatedPositioner, valve_position
from simulators.pump_emulator import PlungerMove, PumpEmulator
from simulators.world import SimulatedLab

SYRINGE_UL = {1: 500.0, 2: 100.0}  # pump 2 is an XLP 6000: 100 / 6000 µL per increment
LINES = {
    "medium": (1, 1, "medium", 0.0),
    "drug_a@100uM": (2, 1, "drug_a", 100.0),
    "drug_a@10uM": (2, 2, "drug_a", 10.0),
}


@dataclass
class Rig:
    emulator: PumpEmulator
    lab: SimulatedLab
    bridge: FluidicsBridge
    dispenser: PumpDispenser


@pytest.fixture
def rig(tmp_path) -> Iterator[Rig]:
    emulator = PumpEmulator((1, 2), time_scale=0.001, pump_models={2: "xlp6000"})
    clock = SimulatedClock(100.0)
    lab = SimulatedLab(tmp_path / "lab.json")
    positioner = SimulatedPositioner(lab, clock, seconds_per_move=2.0)
    bridge = FluidicsBridge(
        lab,
        clock,
        positioner,
        syringes_ul=SYRINGE_UL,
        lines={(a, p): ReagentLine(k, r, c) for k, (a, p, r, c) in LINES.items()},
        output_ports=6,
    ).attach(emulator)
    bus = open_transport(emulator.port)
    models = {1: "xcalibur", 2: "xlp6000"}
    pumps = {
        a: SyringePump(
            address=a,
            syringe_volume_ul=v,
            model=models[a],
            transport=bus,
            **emulator.driver_options(),
        )
        for a, v in SYRINGE_UL.items()
    }
    dispenser = PumpDispenser(
        pumps,
        {k: (a, p) for k, (a, p, _, _) in LINES.items()},
        output_port=6,
        positioner=positioner,
        stocks={k: c for k, (_, _, _, c) in LINES.items()},
    )
    dispenser.initialize()
    yield Rig(emulator, lab, bridge, dispenser)
    dispenser.close()
    bus.close()
    emulator.close()


def test_positioner_is_a_plate_positioner_and_checks_wells(rig) -> None:
    positioner = rig.bridge.positioner
    assert isinstance(positioner, PlatePositioner)
    positioner.move_to_well("P1", "b3")
    assert positioner.over_well == ("P1", "B03")
    with pytest.raises(LiquidHandlingError, match="has no well"):
        positioner.move_to_well("P1", "Z99")
    positioner.move_to_waste()
    assert positioner.over_well is None


def test_dispenses_reach_the_wells_metered_by_the_plunger(rig) -> None:
    d, lab = rig.dispenser, rig.lab
    d.aspirate("drug_a@100uM", "drug_a", 100.0, 1.234)  # 74.04 increments -> 74
    d.dispense("P1", "B02", 1.234)
    metered = 74 * 100.0 / 6000
    state = lab.well_state("P1", "B02")
    assert state.volume_ul == pytest.approx(150.0 + metered, abs=1e-12)
    assert state.amounts_pmol == pytest.approx({"drug_a": 100.0 * metered})
    assert state.dose_time_s == pytest.approx(104.0)  # to the waste at init, then to B02
    d.discard_tip()
    d.aspirate("medium", "medium", 0.0, 48.766)
    d.dispense("P1", "B02", 48.766)
    state = lab.well_state("P1", "B02")
    assert state.concentrations_um()["drug_a"] == pytest.approx(100.0 * metered / state.volume_ul)
    assert lab.reservoir_drawn_ul("drug_a@100uM") == pytest.approx(metered)
    assert lab.tip.volume_ul == 0.0
    assert rig.bridge.anomalies == [] and rig.emulator.listener_errors == []
    assert [t["well"] for t in rig.bridge.delivered] == ["B02", "B02"]


def test_two_stocks_of_one_reagent_come_from_their_own_lines(rig) -> None:
    d = rig.dispenser
    d.aspirate("drug_a@10uM", "drug_a", 10.0, 6.0)
    d.dispense("P1", "C03", 6.0)
    assert rig.lab.well_state("P1", "C03").amounts_pmol == pytest.approx({"drug_a": 60.0})
    with pytest.raises(LiquidHandlingError, match="holds 100 µM"):
        d.aspirate("drug_a@100uM", "drug_a", 1000.0, 1.0)  # wrong stock for that line
    with pytest.raises(LiquidHandlingError, match="no reagent line"):
        d.aspirate("drug_b@100uM", "drug_b", 100.0, 1.0)


def test_waste_and_init_never_reach_a_well(rig) -> None:
    d, lab = rig.dispenser, rig.lab
    d.aspirate("medium", "medium", 0.0, 30.0)
    d.dispense("P1", "D04", 10.0)
    d.discard_tip()  # the remaining 20 µL go to the waste trough
    assert rig.bridge.wasted_ul == pytest.approx(20.0)
    d.aspirate("medium", "medium", 0.0, 5.0)
    d.initialize()  # homing pushes the syringe out of the nozzle, which is over the waste
    assert rig.bridge.wasted_ul == pytest.approx(25.0)
    assert rig.bridge.syringe_ul(1) == 0.0
    assert lab.well_state("P1", "D04").volume_ul == pytest.approx(160.0)


def test_an_init_never_pushes_leftovers_into_the_last_well(rig) -> None:  # issue 9, item 6
    d, lab = rig.dispenser, rig.lab
    d.aspirate("medium", "medium", 0.0, 30.0)
    d.dispense("P1", "D04", 10.0)  # 20 µL left, the nozzle over D04
    d.initialize()  # as at a resume: the leftover leaves the nozzle
    assert lab.well_state("P1", "D04").volume_ul == pytest.approx(160.0)
    assert rig.bridge.wasted_ul == pytest.approx(20.0)
    assert rig.bridge.anomalies == []


def test_a_repeated_block_after_a_lost_answer_moves_liquid_once(rig) -> None:
    d = rig.dispenser
    d.aspirate("medium", "medium", 0.0, 20.0)
    rig.emulator.drop_next_replies(1)  # the answer to the dispense block is lost
    d.dispense("P1", "E05", 20.0)
    assert d.pumps[1].session.stats.retries >= 1
    assert rig.lab.well_state("P1", "E05").volume_ul == pytest.approx(170.0)
    assert rig.emulator.pump(1).plunger_moves == 2


def test_an_overloaded_dispense_delivers_the_part_it_travelled(rig) -> None:
    d = rig.dispenser
    d.aspirate("medium", "medium", 0.0, 40.0)
    rig.emulator.schedule_fault("plunger", 0, address=1)
    with pytest.raises(PlungerOverload):
        d.dispense("P1", "F06", 40.0)
    assert rig.lab.well_state("P1", "F06").volume_ul == pytest.approx(170.0)
    assert rig.bridge.delivered[-1]["partial"] is True


def test_a_pickup_through_the_output_port_is_an_anomaly(rig) -> None:
    pump = rig.dispenser.pumps[1]
    pump.aspirate(5.0, port=6)
    assert "carries no reagent line" in rig.bridge.anomalies[0]


def test_scheduled_faults_count_successful_moves(rig) -> None:
    emu, d = rig.emulator, rig.dispenser
    emu.schedule_fault("stuck", 2, address=2)
    d.aspirate("medium", "medium", 0.0, 10.0)  # pump 1: not counted
    d.dispense("P1", "B02", 10.0)
    d.aspirate("drug_a@100uM", "drug_a", 100.0, 1.0)  # pump 2, move 1
    d.dispense("P1", "B02", 1.0)  # move 2
    with pytest.raises(PumpTimeout, match="still busy"):
        d.aspirate("drug_a@100uM", "drug_a", 100.0, 1.0)  # move 3 sticks until T
    assert emu.pump(2).plunger_moves == 2
    with pytest.raises(ValueError, match="fault kind"):
        emu.schedule_fault("leak", 1)


def test_listener_errors_are_recorded_not_fatal() -> None:
    with PumpEmulator((1,), time_scale=0.001) as emu:
        moves: list[PlungerMove] = []
        emu.add_move_listener(lambda m: (_ for _ in ()).throw(RuntimeError("boom")))
        emu.add_move_listener(moves.append)
        pump = SyringePump(emu.port, address=1, syringe_volume_ul=500, **emu.driver_options())
        pump.initialize()
        pump.aspirate(50, port="input")
        pump.dispense(20, port="output")
        assert [(m.kind, m.increments, m.valve) for m in moves] == [
            ("pickup", 300, "i"),
            ("dispense", 120, "o"),
        ]
        assert emu.listener_errors == ["RuntimeError: boom", "RuntimeError: boom"]
        pump.close()


def test_valve_positions() -> None:
    assert valve_position(6) == "6" and valve_position("output") == "o"
    assert valve_position("03") == "3"
    with pytest.raises(ValueError, match="unknown valve port"):
        valve_position("sideways")


def _line_rig(tmp_path, *, flush_ul: float, line_ul: float = 10.0, waste_port: int | None = None):
    """Pump 2 (100 µL XLP) with two stocks of drug_a and a dispensing line of ``line_ul``."""
    emulator = PumpEmulator((2,), time_scale=0.001, pump_models={2: "xlp6000"})
    clock = SimulatedClock(0.0)
    lab = SimulatedLab(tmp_path / "lab.json")
    positioner = SimulatedPositioner(lab, clock)
    lines = {k: v for k, v in LINES.items() if v[0] == 2}
    bridge = FluidicsBridge(
        lab,
        clock,
        positioner,
        syringes_ul={2: 100.0},
        lines={(a, p): ReagentLine(k, r, c) for k, (a, p, r, c) in lines.items()},
        output_ports=6,
        output_line_ul=line_ul,
        waste_ports={2: waste_port} if waste_port else None,
    ).attach(emulator)
    pump = SyringePump(
        emulator.port, address=2, syringe_volume_ul=100.0, model="xlp6000",
        waste_port=waste_port, **emulator.driver_options(),
    )  # fmt: skip
    dispenser = PumpDispenser(
        {2: pump},
        {k: (a, p) for k, (a, p, _, _) in lines.items()},
        output_port=6,
        positioner=positioner,
        stocks={k: c for k, (_, _, _, c) in lines.items()},
        flush_ul=flush_ul,
        waste_port=waste_port,
    )
    dispenser.initialize()
    return emulator, lab, bridge, dispenser


def _metered(volume_ul: float) -> float:
    return round(volume_ul * 60) / 60  # 100 µL / 6000 increments


def test_without_a_flush_the_shared_line_carries_the_last_stock_over(tmp_path) -> None:
    emulator, lab, bridge, d = _line_rig(tmp_path, flush_ul=0.0)
    try:
        d.aspirate("drug_a@100uM", "drug_a", 100.0, 15.0)
        d.dispense("P1", "B02", 15.0)  # 10 µL of line prime, then 5 µL of the stock
        d.aspirate("drug_a@10uM", "drug_a", 10.0, 15.0)
        d.dispense("P1", "C03", 15.0)  # 10 µL of the 100 µM stock from the line
        assert lab.well_state("P1", "B02").amounts_pmol["drug_a"] == pytest.approx(500.0)
        assert lab.well_state("P1", "C03").amounts_pmol["drug_a"] == pytest.approx(1050.0)
        assert bridge.line_ul(2) == pytest.approx(10.0)
    finally:
        d.close()
        emulator.close()


@pytest.mark.parametrize("waste_port", [None, 5])
def test_switching_sources_flushes_the_shared_line_to_waste(tmp_path, waste_port) -> None:
    """Issue 9, item 10: a flush of the new source primes the shared line before a well."""
    emulator, lab, bridge, d = _line_rig(tmp_path, flush_ul=30.0, waste_port=waste_port)
    try:
        for well, source, stock in (
            ("B02", "drug_a@100uM", 100.0), ("C03", "drug_a@10uM", 10.0),
            ("D04", "drug_a@10uM", 10.0), ("E05", "drug_a@100uM", 100.0),
        ):  # fmt: skip
            d.aspirate(source, "drug_a", stock, 1.234)
            d.dispense("P1", well, 1.234)
            state = lab.well_state("P1", well)
            assert state.volume_ul == pytest.approx(150.0 + _metered(1.234), abs=1e-9)
            assert state.amounts_pmol == pytest.approx({"drug_a": stock * _metered(1.234)})
        assert d.flushes == 3  # first use, 100 -> 10, 10 -> 100; none for the repeat
        assert bridge.wasted_ul == pytest.approx(90.0)
        for source in ("drug_a@10uM", "drug_a@100uM"):  # what reached wells: its own wells'
            assert lab.reservoir_drawn_ul(source) == pytest.approx(2 * _metered(1.234))
        assert bridge.anomalies == []
    finally:
        d.close()
        emulator.close()


def test_an_init_through_a_waste_port_needs_no_stage(tmp_path) -> None:  # item 6
    emulator, lab, bridge, d = _line_rig(tmp_path, flush_ul=0.0, line_ul=0.0, waste_port=5)
    try:
        d.aspirate("drug_a@10uM", "drug_a", 10.0, 20.0)
        d.dispense("P1", "B02", 5.0)
        d.initialize()
        assert emulator.pump(2).init_count == 2 and bridge.wasted_ul == pytest.approx(15.0)
        assert lab.well_state("P1", "B02").volume_ul == pytest.approx(155.0)
    finally:
        d.close()
        emulator.close()


def test_the_stage_and_the_lines_keep_their_state_across_processes(tmp_path) -> None:
    clock = SimulatedClock(0.0)
    lab = SimulatedLab(tmp_path / "lab.json")
    stage = SimulatedPositioner(lab, clock, state_path=tmp_path / "stage.json")
    stage.move_to_well("P1", "C03")
    again = SimulatedPositioner(lab, clock, state_path=tmp_path / "stage.json")
    assert again.over_well == ("P1", "C03")  # a stage stays where it was
