"""The simulated plate mover: moves take their time, places hold what they hold, and where
every plate is survives the process."""

from __future__ import annotations

import pytest

from instruments.exceptions import InstrumentError, PlateHandlingError
from instruments.interfaces import PlateMover
from simulators.clock import SimulatedClock
from simulators.plate_mover import SimulatedPlateMover
from simulators.world import SimulatedLab


def _mover(tmp_path, **kw):
    lab = SimulatedLab(tmp_path / "lab.json")
    clock = SimulatedClock()
    return SimulatedPlateMover(lab, clock, **kw), lab, clock


def test_a_move_takes_its_transfer_time_and_the_plate_is_where_it_was_taken(tmp_path):
    mover, _, clock = _mover(
        tmp_path, transfer_s=30, transfer_times_s={"incubator->microscope": 75}
    )
    assert isinstance(mover, PlateMover)
    assert mover.location("P1") == "hotel"
    mover.move_plate("P1", "liquid_handler")
    assert clock.now() == 30 and mover.location("P1") == "liquid_handler"
    mover.move_plate("P1", "incubator")
    mover.move_plate("P1", "microscope")  # the named pair, asked in the other direction
    assert clock.now() == 30 + 30 + 75
    assert mover.transfer_s("microscope", "incubator") == 75
    mover.move_plate("P1", "microscope")  # already there: nothing moves, no time passes
    assert clock.now() == 135 and mover.moves == 3
    assert mover.occupant("microscope") == "P1" and mover.occupant("liquid_handler") is None


def test_full_places_are_refused_before_the_arm_moves(tmp_path):
    mover, _, clock = _mover(tmp_path, incubator_slots=2, hotel_slots=1)
    mover.move_plate("P1", "liquid_handler")
    with pytest.raises(PlateHandlingError, match="liquid_handler: full"):
        mover.move_plate("P2", "liquid_handler")
    mover.move_plate("P1", "incubator")
    mover.move_plate("P2", "incubator")
    t = clock.now()
    with pytest.raises(PlateHandlingError, match="incubator: full"):
        mover.move_plate("P3", "incubator")
    assert clock.now() == t and mover.location("P3") == "hotel"
    mover.move_plate("P3", "microscope")  # P3 leaves the hotel: room for one
    mover.move_plate("P1", "hotel")
    with pytest.raises(PlateHandlingError, match="hotel: full"):
        mover.move_plate("P2", "hotel")
    with pytest.raises(PlateHandlingError, match="no place 'freezer'"):
        mover.move_plate("P2", "freezer")


def test_a_gripper_fault_is_an_instrument_error_and_leaves_the_plate_in_place(tmp_path):
    mover, _, clock = _mover(tmp_path, fail_next=1)
    with pytest.raises(InstrumentError, match="gripper fault"):
        mover.move_plate("P1", "liquid_handler")
    assert mover.location("P1") == "hotel" and clock.now() == 0
    mover.move_plate("P1", "liquid_handler")
    assert mover.location("P1") == "liquid_handler"


def test_locations_survive_a_new_process(tmp_path):
    mover, lab, _ = _mover(tmp_path)
    mover.move_plate("P1", "incubator")
    mover.move_plate("P2", "microscope")
    # no save(): each move is journaled durably before it returns
    again = SimulatedLab(tmp_path / "lab.json")
    assert again.plate_location("P1") == "incubator"
    assert again.plates_at("microscope") == ["P2"]


def test_bad_pair_names_are_refused():
    with pytest.raises(ValueError, match="source->destination"):
        SimulatedPlateMover(SimulatedLab(), SimulatedClock(), transfer_times_s={"hotel": 3})


def test_bad_settings_in_a_campaign_file_are_refused_naming_the_field():
    from controller.rig.registry import InstrumentConfigError, check_instruments
    from controller.spec import CampaignSpec
    from tests.controller.conftest import small_campaign_data

    for settings, message in (
        ({"transfer_s": -5}, "transfer_s: -5 is negative"),
        ({"transfer_times_s": {"hotel->fridge": 3}}, "not 'source->destination'"),
        ({"hotel_slots": 0}, "hotel_slots: 0 is not a positive integer"),
        ({"hotel_slots": 2}, "cannot hold the campaign's 3 plates"),
        ({"incubator_slots": 9}, "unknown settings"),
    ):
        data = small_campaign_data(budget={"rounds": 3})
        data["instruments"]["plate_mover"] = {"driver": "simulated", "settings": settings}
        with pytest.raises(InstrumentConfigError, match=message.replace("(", r"\(")):
            check_instruments(CampaignSpec.model_validate(data), dry_run=True)
