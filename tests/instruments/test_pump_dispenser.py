"""PumpDispenser: the LiquidHandler protocol on emulated pumps."""

from __future__ import annotations

import pytest

from instruments.dispenser import FixedNozzlePositioner, PumpDispenser
from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import LiquidHandler
from instruments.pumps import SyringePump, open_transport


@pytest.fixture
def dispenser(emulator):
    bus = open_transport(emulator.port)
    pumps = {
        1: SyringePump(
            address=1, syringe_volume_ul=500, transport=bus, **emulator.driver_options()
        ),
        2: SyringePump(
            address=2, syringe_volume_ul=250, transport=bus, **emulator.driver_options()
        ),
    }
    d = PumpDispenser(
        pumps,
        {"vehicle": (1, 1), "drug_a": (2, 2), "drug_b": (2, 3)},
        output_port=6,
        positioner=FixedNozzlePositioner(),
    )
    d.initialize()
    yield d
    d.close()
    bus.close()


def test_is_a_liquid_handler(dispenser) -> None:
    assert isinstance(dispenser, LiquidHandler)
    assert dispenser.well_volume_ul("P1", "A01") is None


def test_aspirate_and_dispense_into_wells(dispenser, emulator) -> None:
    dispenser.aspirate("res1", "drug_a", 100.0, 60)
    for well in ("A01", "A02", "A03"):
        dispenser.dispense("P1", well, 20)
    history = dispenser.positioner.history  # the init brought the waste under the nozzle
    assert history == [("waste", ""), ("P1", "A01"), ("P1", "A02"), ("P1", "A03")]
    pump2 = emulator.pump(2)
    assert pump2.position == 0 and pump2.valve == "6" and pump2.plunger_moves == 4
    dispenser.aspirate("res0", "vehicle", 0.0, 100)
    dispenser.dispense("P1", "B01", 100)
    assert emulator.pump(1).dispensed == 600


def test_impossible_requests_raise_liquid_handling_errors(dispenser, emulator) -> None:
    with pytest.raises(LiquidHandlingError, match="no reagent line"):
        dispenser.aspirate("r", "unknown", 1.0, 10)
    with pytest.raises(LiquidHandlingError, match="nothing aspirated"):
        dispenser.dispense("P1", "A01", 10)
    dispenser.aspirate("r", "drug_a", 1.0, 50)
    with pytest.raises(LiquidHandlingError, match="holds 50"):
        dispenser.dispense("P1", "A01", 60)
    with pytest.raises(LiquidHandlingError, match="discard it first"):
        dispenser.aspirate("r", "drug_b", 1.0, 10)
    with pytest.raises(LiquidHandlingError, match="cannot aspirate"):
        dispenser.aspirate("r", "drug_a", 1.0, 250)
    with pytest.raises(LiquidHandlingError, match="cannot mix"):
        dispenser.mix("P1", "A01", 50, 3)
    dispenser.discard_tip()
    assert emulator.pump(2).position == 0
    assert dispenser.positioner.current == ("waste", "")
    dispenser.aspirate("r", "drug_b", 1.0, 10)


def test_identify_lists_each_pump(dispenser, emulator) -> None:
    info = dispenser.identify()
    assert set(info["pumps"]) == {1, 2}
    assert info["pumps"][2]["firmware"] == emulator.firmware
    assert info["pumps"][2]["syringe_volume_ul"] == 250
    assert info["reagents"]["drug_b"] == [2, 3] and info["measures_wells"] is False
