from __future__ import annotations

import pytest

from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import LiquidHandler
from simulators.clock import SimulatedClock
from simulators.liquid_handler import SimulatedLiquidHandler
from simulators.world import SimulatedLab


@pytest.fixture
def lh() -> SimulatedLiquidHandler:
    return SimulatedLiquidHandler(SimulatedLab(), SimulatedClock(), tip_capacity_ul=50.0)


def test_implements_interface_and_identifies(lh):
    assert isinstance(lh, LiquidHandler)
    ident = lh.identify()
    assert ident["ready"] is True and ident["simulated"] is True


def test_tracks_volume_concentration_and_time(lh):
    lh.aspirate("drug_a@100uM", "drug_a", 100.0, 10.0)
    lh.dispense("P1", "B03", 10.0)
    lh.aspirate("vehicle", "vehicle", 0.0, 40.0)
    lh.dispense("P1", "B03", 40.0)
    lh.mix("P1", "B03", 30.0, cycles=3)
    lh.discard_tip()
    assert lh.well_volume_ul("P1", "B03") == pytest.approx(200.0)
    assert lh.lab.concentrations_um("P1", "B03")["drug_a"] == pytest.approx(5.0)
    assert lh.clock.now() == pytest.approx(4 * 4.0 + 3 * 2.0 + 2.0)
    assert lh.lab.tip.volume_ul == 0.0


@pytest.mark.parametrize(
    ("action", "match"),
    [
        (lambda h: h.aspirate("s", "drug_a", 10.0, 60.0), "does not fit"),
        (lambda h: h.aspirate("s", "drug_a", 10.0, 0.2), "below the minimum"),
        (lambda h: h.aspirate("s", "drug_a", 10.0, -1.0), "must be positive"),
        (lambda h: h.dispense("P1", "B03", 5.0), "the tip holds 0"),
        (lambda h: h.dispense("P1", "Z99", 5.0), "has no well"),
        (lambda h: h.well_volume_ul("P1", "A13"), "has no well"),
        (lambda h: h.mix("P1", "B03", 10.0, cycles=0), "cycles"),
    ],
)
def test_impossible_operations_raise(lh, action, match):
    with pytest.raises(LiquidHandlingError, match=match):
        action(lh)


def test_over_aspiration_after_partial_fill_and_dispense_more_than_held(lh):
    lh.aspirate("s", "drug_a", 10.0, 30.0)
    with pytest.raises(LiquidHandlingError, match="does not fit"):
        lh.aspirate("s", "drug_a", 10.0, 25.0)
    with pytest.raises(LiquidHandlingError, match="requested"):
        lh.dispense("P1", "B03", 31.0)
    assert lh.lab.tip.volume_ul == pytest.approx(30.0)  # nothing moved on failure
    assert lh.well_volume_ul("P1", "B03") == pytest.approx(150.0)


def test_overflow_raises_and_leaves_the_well_unchanged(lh):
    for _ in range(4):  # 150 + 4 * 50 = 350 of 360 µL
        lh.aspirate("v", "vehicle", 0.0, 50.0)
        lh.dispense("P1", "C03", 50.0)
    lh.aspirate("v", "vehicle", 0.0, 20.0)
    with pytest.raises(LiquidHandlingError, match="overflows"):
        lh.dispense("P1", "C03", 20.0)
    assert lh.well_volume_ul("P1", "C03") == pytest.approx(350.0)


def test_handler_without_level_detection_returns_none():
    lh = SimulatedLiquidHandler(SimulatedLab(), SimulatedClock(), reports_volumes=False)
    assert lh.well_volume_ul("P1", "B03") is None
