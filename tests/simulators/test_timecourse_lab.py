from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from analyzers.plate import PlateAnalysis, analyze_plate
from instruments.exceptions import LiquidHandlingError
from planners.rl.problem import default_protocol_settings
from protocols.adaptive_dosing import AdaptiveDosing
from protocols.layout import PlateLayout, WellRole
from protocols.steps import Acquire, Aspirate, Dispense, Incubate, Mix, Step, Withdraw
from simulators.clock import SimulatedClock
from simulators.liquid_handler import SimulatedLiquidHandler
from simulators.microscope import SimulatedMicroscope
from simulators.timecourse_lab import TimecourseLab
from simulators.world import SimulatedLab

H = 3600.0


def dose(lab: TimecourseLab, well: str, reagent: str, stock: float, ul: float, t: float) -> None:
    lab.aspirate_into_tip(f"{reagent}@{stock}", reagent, stock, ul)
    lab.dispense_from_tip("P1", well, ul, t)


def test_dosed_wells_lose_tumour_cells_over_time_and_untouched_wells_grow():
    lab = TimecourseLab(culture_seed=1)
    lab.ensure_plate("P1", 0.0)
    dose(lab, "B02", "drug_a", 300.0, 1.0, 0.0)
    dose(lab, "B02", "drug_b", 300.0, 0.5, 0.0)
    assert lab.expected_cells("P1", "B02", 0.0) == pytest.approx(
        lab.expected_cells("P1", "B03", 0.0)
    )
    treated, untreated = (
        lab.expected_cells("P1", "B02", 48 * H),
        lab.expected_cells("P1", "B03", 48 * H),
    )
    assert treated[0] < 0.5 * untreated[0]
    assert untreated[0] > lab.expected_cells("P1", "B03", 0.0)[0]


def test_withdrawal_removes_drug_and_lets_the_culture_recover():
    lab = TimecourseLab(culture_seed=1)
    lab.ensure_plate("P1", 0.0)
    for w in ("B02", "B03"):
        dose(lab, w, "drug_a", 300.0, 1.0, 0.0)
    lab.withdraw_from_well("P1", "B03", 121.0, 12 * H)
    lab.aspirate_into_tip("medium", "medium", 0.0, 121.0)
    lab.dispense_from_tip("P1", "B03", 121.0, 12 * H)
    kept = lab.well_state("P1", "B03")
    assert kept.volume_ul == pytest.approx(151.0)
    assert kept.amounts_pmol["drug_a"] == pytest.approx(300.0 * 30.0 / 151.0)
    assert lab.expected_cells("P1", "B03", 72 * H)[0] > lab.expected_cells("P1", "B02", 72 * H)[0]


def test_state_survives_a_restart(tmp_path: Path):
    path = tmp_path / "lab.json"
    lab = TimecourseLab(path, culture_seed=2)
    lab.ensure_plate("P1", 0.0)
    dose(lab, "C04", "drug_a", 300.0, 1.0, 3600.0)
    lab.withdraw_from_well("P1", "C04", 50.0, 7200.0)
    again = TimecourseLab(path, culture_seed=2)
    assert again.expected_cells("P1", "C04", 40 * H) == lab.expected_cells("P1", "C04", 40 * H)
    assert again.well_state("P1", "C04") == lab.well_state("P1", "C04")


def test_plates_hold_different_lots_unless_identical():
    lab = TimecourseLab(culture_seed=0)
    assert lab.culture("P1").tumour_doubling_h[0] != lab.culture("P2").tumour_doubling_h[0]
    same = TimecourseLab(culture_seed=0, identical_cultures=True)
    assert same.culture("P1").tumour_doubling_h[0] == same.culture("P2").tumour_doubling_h[0]


def test_only_a_timecourse_lab_can_withdraw():
    clock = SimulatedClock()
    plain = SimulatedLiquidHandler(SimulatedLab(), clock)
    with pytest.raises(LiquidHandlingError, match="cannot remove liquid"):
        plain.withdraw("P1", "B02", 10.0)
    handler = SimulatedLiquidHandler(TimecourseLab(), clock)
    for _ in range(3):
        handler.withdraw("P1", "B02", 40.0)
    assert handler.well_volume_ul("P1", "B02") == pytest.approx(30.0)
    with pytest.raises(LiquidHandlingError, match="the well holds 30"):
        handler.withdraw("P1", "B02", 40.0)
    with pytest.raises(LiquidHandlingError, match="exceeds the tip"):
        handler.withdraw("P1", "B03", 60.0)


def run(
    steps: list[Step],
    handler: SimulatedLiquidHandler,
    clock: SimulatedClock,
    microscope: SimulatedMicroscope,
    layout: PlateLayout,
) -> PlateAnalysis:
    """Execute steps like the engine; analyse the images the steps acquired."""
    frames = {}
    for s in steps:
        if isinstance(s, Aspirate):
            handler.aspirate(s.source, s.reagent, s.stock_concentration_um, s.volume_ul)
        elif isinstance(s, Dispense):
            handler.dispense(s.plate, s.well, s.volume_ul)
        elif isinstance(s, Withdraw):
            handler.withdraw(s.plate, s.well, s.volume_ul)
        elif isinstance(s, Mix):
            handler.mix(s.plate, s.well, s.volume_ul, s.cycles)
        elif isinstance(s, Incubate):
            clock.sleep(s.duration_s)
        elif isinstance(s, Acquire):
            frames[s.well] = microscope.acquire_well(
                s.plate, s.well, s.channels, s.fields, s.exposure_ms
            )
    return analyze_plate(frames, layout)


def test_protocol_steps_run_on_the_simulated_handler_and_images_show_the_effect():
    proto = AdaptiveDosing(
        default_protocol_settings(
            decisions=3, negative_controls=3, positive_controls=3, mix_cycles=1
        )
    )
    clock = SimulatedClock()
    lab = TimecourseLab(culture_seed=3, seeded_cells=(1500.0, 1500.0))
    handler = SimulatedLiquidHandler(lab, clock)
    microscope = SimulatedMicroscope(lab, clock, seed=1)
    plate = proto.compile([{}, {}], "P1", seed=0)
    baseline = run(plate.steps, handler, clock, microscope, plate.layout)
    state = proto.initial_state(plate)
    strong = {"0": {"drug_a_um": 2.0, "drug_b_um": 1.0}, "1": {}}
    for k in range(3):
        actions = strong if k < 2 else {"0": {"exchange": 1}, "1": {"exchange": 1}}
        decision = proto.compile_decision(plate, state, actions)
        analysis = run(decision.steps, handler, clock, microscope, plate.layout)
        state = decision.state_after
    for well, liquid in state.wells.items():  # the lab holds what the protocol planned
        held = lab.well_state("P1", well)
        assert held.volume_ul == pytest.approx(liquid.volume_ul)
        for r, a in liquid.amounts_pmol.items():
            assert held.amounts_pmol.get(r, 0.0) == pytest.approx(a)

    def tumour(a: PlateAnalysis, group: int) -> float:
        return float(
            np.mean([a.wells[w].metrics["tumour_count"] for w in plate.layout.wells_of(group)])
        )

    # the analyzer's counts: both groups alike at baseline; the dosed one well below at the end
    assert tumour(baseline, 0) == pytest.approx(tumour(baseline, 1), rel=0.35)
    assert tumour(analysis, 0) < 0.5 * tumour(analysis, 1)

    def cells(role: WellRole) -> float:
        return float(
            np.mean(
                [
                    analysis.wells[w].metrics["cell_count"]
                    for w in plate.layout.wells_with_role(role)
                ]
            )
        )

    assert cells(WellRole.POSITIVE_CONTROL) < 0.1 * cells(WellRole.NEGATIVE_CONTROL)
