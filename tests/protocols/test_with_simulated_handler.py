"""Run compiled steps on the simulated liquid handler and compare its tracked wells with
``expected_contents`` (the check crash recovery relies on)."""

from __future__ import annotations

import pytest

from protocols.base import get_protocol
from protocols.steps import Aspirate, Dispense, Mix
from tests.protocols.protocol_testdata import base_settings

liquid_handler = pytest.importorskip("simulators.liquid_handler")
world = pytest.importorskip("simulators.world")


class _Clock:
    def __init__(self) -> None:
        self.t = 0.0

    def now(self) -> float:
        return self.t

    def sleep(self, seconds: float) -> None:
        self.t += seconds


@pytest.mark.parametrize("seed", [0, 1])
def test_simulated_handler_ends_with_the_expected_contents(seed: int) -> None:
    proto = get_protocol("dose_response", base_settings())
    experiments = [
        {"drug_a_um": a, "partner": partner, "partner_um": p}
        for a, partner, p in [(0.05, "drug_b", 50.0), (100.0, "drug_c", 0.0), (0.0, "drug_b", 0.5)]
    ]
    compiled = proto.compile(experiments, plate_id="P0001", seed=seed)
    lab = world.SimulatedLab(seeded_volume_ul=proto.settings.seeded_volume_ul)
    handler = liquid_handler.SimulatedLiquidHandler(lab, _Clock(), tip_capacity_ul=50.0)
    for step in compiled.steps:
        if isinstance(step, Aspirate):
            handler.aspirate(step.source, step.reagent, step.stock_concentration_um, step.volume_ul)
        elif isinstance(step, Dispense):
            handler.dispense(step.plate, step.well, step.volume_ul)
        elif isinstance(step, Mix):
            handler.mix(step.plate, step.well, step.volume_ul, step.cycles)
    for well, want in proto.expected_contents(compiled).items():
        assert lab.well_volume_ul("P0001", well) == pytest.approx(want.volume_ul)
        got = {k: v for k, v in lab.concentrations_um("P0001", well).items() if v > 1e-12}
        assert got.keys() == want.concentrations_um.keys(), well
        for reagent, conc in want.concentrations_um.items():
            assert got[reagent] == pytest.approx(conc, rel=1e-9)
    usage = compiled.reagent_usage_ul()
    for source, volume in usage.items():
        assert lab.reservoir_drawn_ul(source) == pytest.approx(volume)
