"""SimulatedLabBackend: the real PyLabRobot frontend and adapter move liquid in a SimulatedLab."""

from __future__ import annotations

import pytest

from instruments.exceptions import LiquidHandlingError
from instruments.pylabrobot_handler import PLRLiquidHandler
from simulators.clock import SimulatedClock
from simulators.liquid_handler import SimulatedLiquidHandler
from simulators.plr_backend import SimulatedLabBackend
from simulators.world import SimulatedLab


@pytest.fixture
def lab() -> SimulatedLab:
    return SimulatedLab(seeded_volume_ul=150.0)


@pytest.fixture
def clock() -> SimulatedClock:
    return SimulatedClock()


@pytest.fixture
def handler(lab, clock):
    h = PLRLiquidHandler(SimulatedLabBackend(lab, clock), seeded_volume_ul=150.0)
    yield h
    h.close()


TRANSFERS = [  # (source, reagent, stock µM, volume µL, well)
    ("drug_a@100uM", "drug_a", 100.0, 10.0, "B03"),
    ("drug_b@10uM", "drug_b", 10.0, 20.0, "B03"),
    ("medium", "medium", 0.0, 20.0, "B03"),
    ("drug_a@1000uM", "drug_a", 1000.0, 5.0, "C07"),
    ("medium", "medium", 0.0, 45.0, "C07"),
]


def _run(handler, plate="P1"):
    for source, reagent, conc, vol, well in TRANSFERS:
        handler.aspirate(source, reagent, conc, vol)
        handler.dispense(plate, well, vol)
    handler.mix(plate, "B03", 50.0, 2)
    handler.discard_tip()


def test_dispensed_drugs_arrive_in_the_simulated_wells(handler, lab):
    _run(handler)
    b03 = lab.well_state("P1", "B03")
    assert b03.volume_ul == pytest.approx(200.0)
    conc = b03.concentrations_um()
    assert conc["drug_a"] == pytest.approx(100.0 * 10.0 / 200.0)
    assert conc["drug_b"] == pytest.approx(10.0 * 20.0 / 200.0)
    assert set(conc) == {"drug_a", "drug_b"}  # medium is vehicle (0 µM)
    assert lab.concentrations_um("P1", "C07") == {"drug_a": pytest.approx(1000.0 * 5.0 / 200.0)}
    assert lab.well_volume_ul("P1", "A01") == pytest.approx(150.0)
    assert b03.dose_time_s is not None
    # PyLabRobot's tracked volumes agree with the simulated lab's
    for well in ("B03", "C07", "A01"):
        assert handler.well_volume_ul("P1", well) == pytest.approx(lab.well_volume_ul("P1", well))
    assert lab.reservoir_drawn_ul("medium") == pytest.approx(65.0)
    assert lab.tip.volume_ul == 0.0


def test_same_wells_as_the_simulated_handler(handler, lab, clock):
    _run(handler)
    ref_lab = SimulatedLab(seeded_volume_ul=150.0)
    _run(SimulatedLiquidHandler(ref_lab, SimulatedClock()))
    for well in ("B03", "C07", "A01"):
        mine, ref = lab.well_state("P1", well), ref_lab.well_state("P1", well)
        assert mine.volume_ul == pytest.approx(ref.volume_ul)
        assert mine.concentrations_um() == pytest.approx(ref.concentrations_um())


def test_operations_take_simulated_time(handler, clock):
    t0 = clock.now()
    handler.aspirate("medium", "medium", 0.0, 10.0)
    handler.dispense("P1", "A01", 10.0)
    assert clock.now() - t0 == pytest.approx(2 + 4 + 4)  # pick up a tip, aspirate, dispense
    assert handler.identify()["simulated"] is True
    assert handler.identify()["firmware"].startswith("cellpilot-sim")


def test_a_new_tip_is_clean(handler, lab):
    handler.aspirate("drug_a@100uM", "drug_a", 100.0, 10.0)
    handler.discard_tip()
    assert lab.tip.volume_ul == 0.0
    handler.aspirate("medium", "medium", 0.0, 10.0)
    handler.dispense("P1", "A01", 10.0)
    assert lab.concentrations_um("P1", "A01") == {}


def test_mixing_moves_nothing_and_well_to_well_transfer_is_refused(handler, lab):
    handler.aspirate("drug_a@100uM", "drug_a", 100.0, 10.0)
    handler.dispense("P1", "A01", 10.0)
    before = lab.well_state("P1", "A01")
    handler.mix("P1", "A01", 40.0, 3)
    assert lab.well_state("P1", "A01") == before
    lh, layout = handler.lh, handler.layout
    handler._run(lh.aspirate([layout.well("P1", "A01")], [10.0], use_channels=[0]), "aspirate")
    with pytest.raises(LiquidHandlingError, match="back into that well"):
        handler._run(lh.dispense([layout.well("P1", "A02")], [10.0], use_channels=[0]), "x")


def test_a_reservoir_the_backend_was_not_told_about_is_refused(lab, clock):
    backend = SimulatedLabBackend(lab, clock)
    backend.describe_reservoir("medium", "medium", 0.0)
    assert backend.reservoirs == {"medium": ("medium", 0.0)}
    with PLRLiquidHandler(backend) as h:
        trough = h.layout.reservoir("unlabelled")
        h._ensure_tip("unlabelled")
        with pytest.raises(LiquidHandlingError, match="nothing is known"):
            h._run(h.lh.aspirate([trough], [5.0], use_channels=[0]), "aspirate")


def test_the_simulated_robot_has_no_96_head():
    import asyncio

    backend = SimulatedLabBackend(SimulatedLab(), SimulatedClock())
    assert backend.num_channels == 1
    with pytest.raises(LiquidHandlingError, match="no 96 head"):
        asyncio.run(backend.aspirate96(None))


@pytest.mark.parametrize("backend", ["starlet", "star", "vantage", "evo", "opentrons"])
def test_each_backends_natural_deck_runs_in_simulation(backend):
    from instruments.pylabrobot_settings import handler_from_settings

    lab = SimulatedLab(seeded_volume_ul=150.0)
    settings = {"backend": backend, "seeded_volume_ul": 150.0, "plate_sites": 2}
    with handler_from_settings(settings, backend=SimulatedLabBackend(lab, SimulatedClock())) as h:
        for i in range(13):  # more stocks than one 12-trough reservoir plate holds
            h.aspirate(f"drug_a@{i + 1}uM", "drug_a", float(i + 1), 2.0)
            h.dispense(f"P{i % 3}", "B03", 2.0)  # three plates through two plate sites
        h.mix("P0", "B03", 20.0, 1)
        h.discard_tip()
        assert h.well_volume_ul("P0", "B03") == pytest.approx(lab.well_volume_ul("P0", "B03"))
    conc = sum(i + 1 for i in range(0, 13, 3)) * 2.0 / (150.0 + 2.0 * 5)
    assert lab.concentrations_um("P0", "B03")["drug_a"] == pytest.approx(conc)


def test_the_solvent_of_a_labelled_reservoir_reaches_the_well(handler, lab):
    handler.aspirate("drug_a@200uM+2%dmso", "drug_a", 200.0, 10.0)
    handler.dispense("P1", "B03", 10.0)
    handler.aspirate("medium+2%dmso", "medium", 0.0, 40.0)
    handler.dispense("P1", "B03", 40.0)
    assert lab.solvent_percent("P1", "B03") == pytest.approx({"dmso": 0.5})
    assert lab.concentrations_um("P1", "B03") == pytest.approx({"drug_a": 10.0})
