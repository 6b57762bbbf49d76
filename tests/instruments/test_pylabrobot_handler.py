"""PLRLiquidHandler on PyLabRobot's chatterbox backend: volumes, errors, tips, decks, persistence."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from pylabrobot.liquid_handling.backends import LiquidHandlerChatterboxBackend
from pylabrobot.resources import (
    PLT_CAR_L5AC_A00,
    TIP_CAR_480_A00,
    STARLetDeck,
    Trough_CAR_4R200_A00,
    hamilton_1_trough_200mL_Vb,
    hamilton_96_tiprack_300uL_filter,
)

from instruments.exceptions import LiquidHandlingError
from instruments.interfaces import LiquidHandler
from instruments.pylabrobot_deck import plr_well_name
from instruments.pylabrobot_handler import PLRLiquidHandler
from instruments.pylabrobot_settings import handler_from_settings, make_backend
from instruments.pylabrobot_state import VolumeJournal


def _chatterbox() -> LiquidHandlerChatterboxBackend:
    return LiquidHandlerChatterboxBackend(num_channels=1)


@pytest.fixture
def handler(tmp_path) -> Iterator[PLRLiquidHandler]:
    h = PLRLiquidHandler(_chatterbox(), seeded_volume_ul=150.0, state_path=tmp_path / "plr.jsonl")
    yield h
    h.close()


def test_implements_the_liquid_handler_protocol(handler):
    assert isinstance(handler, LiquidHandler)


def test_aspirate_dispense_mix_track_volumes_on_a_96_well_plate(handler):
    handler.aspirate("drug_a@100uM", "drug_a", 100.0, 20.0)
    assert handler.has_tip and handler.tip_volume_ul() == pytest.approx(20.0)
    handler.dispense("P1", "B03", 20.0)
    assert handler.tip_volume_ul() == pytest.approx(0.0)
    assert handler.well_volume_ul("P1", "B03") == pytest.approx(170.0)
    assert handler.well_volume_ul("P1", "b3") == pytest.approx(170.0)
    assert handler.well_volume_ul("P1", "H12") == pytest.approx(150.0)
    handler.mix("P1", "B03", 50.0, cycles=3)
    assert handler.well_volume_ul("P1", "B03") == pytest.approx(170.0)
    res = handler.layout.reservoir("drug_a@100uM")
    assert res.tracker.get_used_volume() == pytest.approx(50_000.0 - 20.0)
    assert handler.layout.plate("P1").num_items == 96
    handler.discard_tip()
    assert not handler.has_tip
    handler.discard_tip()  # nothing mounted: no-op


def test_over_aspiration_from_a_reservoir_raises(tmp_path):
    with PLRLiquidHandler(_chatterbox(), reservoir_volume_ul=100.0) as h:
        h.aspirate("medium", "medium", 0.0, 80.0)
        h.dispense("P1", "A01", 80.0)
        with pytest.raises(LiquidHandlingError, match="Not enough liquid"):
            h.aspirate("medium", "medium", 0.0, 30.0)
        # refused before anything moved: the reservoir still holds 20 µL
        assert h.layout.reservoir("medium").tracker.get_used_volume() == pytest.approx(20.0)


def test_more_than_the_tip_holds_raises(handler):
    with pytest.raises(LiquidHandlingError, match="Not enough space"):
        handler.aspirate("medium", "medium", 0.0, 1000.0)
    # nothing was drawn: the reservoir's tracked volume is rolled back
    assert handler.layout.reservoir("medium").tracker.get_used_volume() == pytest.approx(50_000.0)
    handler.aspirate("medium", "medium", 0.0, 10.0)
    assert handler.layout.reservoir("medium").tracker.get_used_volume() == pytest.approx(49_990.0)
    with pytest.raises(LiquidHandlingError, match="Not enough liquid"):
        handler.dispense("P1", "A01", 20.0)


def test_overflowing_a_well_raises(handler):
    handler.aspirate("medium", "medium", 0.0, 250.0)
    with pytest.raises(LiquidHandlingError, match="Not enough space"):
        handler.dispense("P1", "A01", 250.0)
    assert handler.well_volume_ul("P1", "A01") == pytest.approx(150.0)
    assert handler.tip_volume_ul() == pytest.approx(250.0)  # still in the tip
    handler.dispense("P1", "A01", 200.0)
    assert handler.well_volume_ul("P1", "A01") == pytest.approx(350.0)


@pytest.mark.parametrize("well", ["Z99", "A13", "I01", "", "B"])
def test_unknown_wells_raise(handler, well):
    with pytest.raises(LiquidHandlingError, match="well"):
        handler.well_volume_ul("P1", well)


def test_bad_requests_raise(handler):
    with pytest.raises(LiquidHandlingError, match="no tip"):
        handler.dispense("P1", "A01", 5.0)
    with pytest.raises(LiquidHandlingError, match="positive"):
        handler.aspirate("medium", "medium", 0.0, 0.0)
    with pytest.raises(LiquidHandlingError, match="negative"):
        handler.aspirate("medium", "medium", -1.0, 5.0)
    with pytest.raises(LiquidHandlingError, match="cycles"):
        handler.mix("P1", "A01", 5.0, cycles=0)


def test_well_names_map_to_pylabrobot_identifiers():
    assert plr_well_name("B03") == "B3"
    assert plr_well_name("h12") == "H12"
    with pytest.raises(LiquidHandlingError):
        plr_well_name("3B")


def test_tip_policies(tmp_path):
    with PLRLiquidHandler(_chatterbox(), tip_policy="per_aspirate") as h:
        for _ in range(3):
            h.aspirate("medium", "medium", 0.0, 5.0)
            h.dispense("P1", "A01", 5.0)
        assert h.journal.tips_used == 3
    with PLRLiquidHandler(_chatterbox(), tip_policy="per_source") as h:
        for source in ("medium", "medium", "drug_a@1uM"):
            h.aspirate(source, source.split("@")[0], 0.0, 5.0)
            h.dispense("P1", "A01", 5.0)
        assert h.journal.tips_used == 2
    with pytest.raises(LiquidHandlingError, match="tip_policy"):
        PLRLiquidHandler(_chatterbox(), tip_policy="never")


def test_empty_racks_refill_in_simulation_and_raise_on_hardware(tmp_path):
    with PLRLiquidHandler(_chatterbox(), tip_racks=1) as h:
        h.journal.set_tips_used(96)
        h.aspirate("medium", "medium", 0.0, 5.0)
        assert h.journal.tips_used == 1
    with PLRLiquidHandler(_chatterbox(), tip_racks=1, refill_tips=False) as h:
        h.journal.set_tips_used(96)
        with pytest.raises(LiquidHandlingError, match="out of tips"):
            h.aspirate("medium", "medium", 0.0, 5.0)


def test_without_volume_tracking_wells_cannot_be_measured():
    with PLRLiquidHandler(_chatterbox(), volume_tracking=False) as h:
        assert h.well_volume_ul("P1", "A01") is None


def test_tracked_volumes_survive_a_restart_and_interrupted_wells_are_unknown(tmp_path):
    state = tmp_path / "plr.jsonl"
    with PLRLiquidHandler(_chatterbox(), seeded_volume_ul=150.0, state_path=state) as h:
        h.aspirate("drug_a@100uM", "drug_a", 100.0, 30.0)
        h.dispense("P1", "C04", 10.0)
        h.dispense("P1", "C05", 10.0)
        tips = h.journal.tips_used
        well = h.layout.well("P1", "C05").name
    VolumeJournal(state).intend([well])  # a crash after the intent, before the volume
    with PLRLiquidHandler(_chatterbox(), seeded_volume_ul=150.0, state_path=state) as h:
        assert h.well_volume_ul("P1", "C04") == pytest.approx(160.0)
        assert h.well_volume_ul("P1", "C05") is None  # uncertain: quarantine, never repeat
        assert h.well_volume_ul("P1", "C06") == pytest.approx(150.0)
        assert h.layout.reservoir("drug_a@100uM").tracker.get_used_volume() == pytest.approx(
            50_000.0 - 30.0
        )
        assert h.journal.tips_used == tips
        assert not h.has_tip


def test_journal_ignores_a_torn_last_line(tmp_path):
    path = tmp_path / "j.jsonl"
    j = VolumeJournal(path)
    j.record({"a": 1.0}, tips_used=3)
    with open(path, "a") as fh:
        fh.write('{"volumes": {"a": 9')
    j2 = VolumeJournal(path)
    assert j2.volume_ul("a") == 1.0 and j2.tips_used == 3


def test_plates_rotate_through_the_plate_sites():
    with PLRLiquidHandler(_chatterbox(), plate_sites=2, seeded_volume_ul=100.0) as h:
        for barcode in ("P1", "P2", "P3"):
            h.aspirate("medium", "medium", 0.0, 5.0)
            h.dispense(barcode, "A01", 5.0)
        assert not h.deck.has_resource("P1") and h.deck.has_resource("P3")
        assert h.well_volume_ul("P1", "A01") == pytest.approx(105.0)  # back on the deck


def test_identify_reports_backend_deck_and_state(handler):
    info = handler.identify()
    assert info["backend"] == "LiquidHandlerChatterboxBackend"
    assert info["deck"] == "HamiltonSTARDeck" and info["ready"] is True
    assert info["pylabrobot"] == "0.2.2" and info["volume_tracking"] is True


def test_close_stops_the_event_loop_thread():
    h = PLRLiquidHandler(_chatterbox())
    h.close()
    assert not h._loop.thread.is_alive()
    h.close()


def _deck_file(tmp_path):
    deck = STARLetDeck()
    tips = TIP_CAR_480_A00("tip_car")
    tips[0] = hamilton_96_tiprack_300uL_filter("rack_1")
    deck.assign_child_resource(tips, rails=1)
    plates = PLT_CAR_L5AC_A00("plate_car")
    deck.assign_child_resource(plates, rails=8)
    troughs = Trough_CAR_4R200_A00("trough_car")
    troughs[0] = hamilton_1_trough_200mL_Vb("trough_1")
    troughs[1] = hamilton_1_trough_200mL_Vb("medium")
    deck.assign_child_resource(troughs, rails=14)
    path = tmp_path / "deck.json"
    deck.save(str(path))
    return path


def test_a_saved_deck_file_maps_sources_and_plate_sites(tmp_path):
    settings = {
        "backend": "chatterbox",
        "backend_options": {"num_channels": 1},
        "deck_file": str(_deck_file(tmp_path)),
        "reservoirs": {"drug_a@100uM": "trough_1"},
        "plate_sites": ["plate_car-0", "plate_car-1"],
        "reservoir_volume_ul": 100_000.0,
        "seeded_volume_ul": 150.0,
    }
    with handler_from_settings(settings) as h:
        h.aspirate("drug_a@100uM", "drug_a", 100.0, 10.0)
        h.dispense("P1", "A01", 10.0)
        h.aspirate("medium", "medium", 0.0, 40.0)  # found by its own name
        h.dispense("P1", "A01", 40.0)
        assert h.well_volume_ul("P1", "A01") == pytest.approx(200.0)
        assert h.layout.plate("P1").parent.name == "plate_car-0"
        assert h.layout.reservoir("drug_a@100uM").name == "trough_1"
        assert h.layout.tip_racks[0].name == "rack_1"
        with pytest.raises(LiquidHandlingError, match="not on the deck"):
            h.aspirate("drug_b@1uM", "drug_b", 1.0, 5.0)


def test_settings_are_checked():
    with pytest.raises(LiquidHandlingError, match="unknown pylabrobot setting"):
        handler_from_settings({"backend": "chatterbox", "speed": 3})
    with pytest.raises(LiquidHandlingError, match="unknown PyLabRobot backend"):
        handler_from_settings({"backend": "hamilton9000"})
    with pytest.raises(LiquidHandlingError, match="deck_file"):
        handler_from_settings({"backend": "star"})
    with pytest.raises(LiquidHandlingError, match="no labware"):
        handler_from_settings({"backend": "chatterbox", "plate_type": "no_such_plate"})
    with pytest.raises(LiquidHandlingError, match="cannot create"):
        make_backend("chatterbox", {"colour": "red"})
    with pytest.raises(LiquidHandlingError, match="no deck"):
        handler_from_settings({"backend": "chatterbox", "deck": "NoDeck"})


def test_a_backend_by_import_path():
    backend = make_backend(
        "pylabrobot.liquid_handling.backends:LiquidHandlerChatterboxBackend", {"num_channels": 2}
    )
    assert backend.num_channels == 2


def test_journal_compacts_itself(tmp_path):
    path = tmp_path / "j.jsonl"
    j = VolumeJournal(path, snapshot_every=10)
    for i in range(25):
        j.intend(["w"])
        j.record({"w": float(i)})
    assert len(path.read_text().splitlines()) <= 11
    j2 = VolumeJournal(path)
    assert j2.volume_ul("w") == 24.0 and not j2.is_uncertain("w")


class _SlowBackend(LiquidHandlerChatterboxBackend):
    async def aspirate(self, ops, use_channels, **kwargs):
        import asyncio

        await asyncio.sleep(5)


class _Interrupted(Exception):
    pass


class _PausingBackend(LiquidHandlerChatterboxBackend):
    async def aspirate(self, ops, use_channels, **kwargs):
        raise _Interrupted("pause requested")


def test_a_command_without_answer_times_out():
    with PLRLiquidHandler(_SlowBackend(num_channels=1), timeout_s=0.2) as h:
        with pytest.raises(LiquidHandlingError, match="no answer within 0.2 s"):
            h.aspirate("medium", "medium", 0.0, 5.0)
        # the interrupted aspirate leaves the reservoir uncertain in the journal
        assert h.journal.is_uncertain("medium")


def test_errors_that_are_not_pylabrobots_pass_through():
    with PLRLiquidHandler(_PausingBackend(num_channels=1)) as h:
        with pytest.raises(_Interrupted):
            h.aspirate("medium", "medium", 0.0, 5.0)


class _FaultyBackend(LiquidHandlerChatterboxBackend):
    async def dispense(self, ops, use_channels, **kwargs):
        raise RuntimeError("firmware error 42: clot detected")


def test_device_faults_become_liquid_handling_errors_and_leave_the_well_uncertain():
    with PLRLiquidHandler(_FaultyBackend(num_channels=1), seeded_volume_ul=100.0) as h:
        h.aspirate("medium", "medium", 0.0, 5.0)
        with pytest.raises(LiquidHandlingError, match="RuntimeError: firmware error 42"):
            h.dispense("P1", "A01", 5.0)
        assert h.well_volume_ul("P1", "A01") is None  # did it dispense? nobody knows
        assert h.well_volume_ul("P1", "A02") == pytest.approx(100.0)
