from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from simulators.biology import VirtualBiology
from simulators.clock import SimulatedClock
from simulators.liquid_handler import SimulatedLiquidHandler
from simulators.world import SimulatedLab, UnknownWellError

REPO = Path(__file__).resolve().parents[2]


def test_plates_appear_pre_seeded():
    lab = SimulatedLab(seeded_volume_ul=150.0)
    assert lab.well_volume_ul("P1", "B03") == 150.0
    assert lab.concentrations_um("P1", "b3") == {}
    assert lab.canonical_well("P1", "b3") == "B03"
    for bad in ("I01", "A13", "A00", "xx", ""):
        with pytest.raises(UnknownWellError, match="has no well"):
            lab.canonical_well("P1", bad)
    assert lab.is_edge("P1", "A05") and not lab.is_edge("P1", "C05")


def test_concentrations_follow_cv_mixing():
    lab = SimulatedLab()
    lab.aspirate_into_tip("drug_a@100uM", "drug_a", 100.0, 20.0)
    lab.dispense_from_tip("P1", "C05", 10.0, now_s=5.0)
    lab.aspirate_into_tip("vehicle", "vehicle", 0.0, 10.0)  # dilutes what is left in the tip
    lab.dispense_from_tip("P1", "C05", 20.0, now_s=9.0)
    state = lab.well_state("P1", "C05")
    assert state.volume_ul == pytest.approx(180.0)
    assert state.concentrations_um()["drug_a"] == pytest.approx(100.0 * 20.0 / 180.0)
    assert state.dose_time_s == 5.0
    assert lab.tip.volume_ul == 0.0
    assert lab.reservoir_drawn_ul("drug_a@100uM") == 20.0


def test_state_survives_reopen(tmp_path):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path)
    lab.aspirate_into_tip("drug_b@50uM", "drug_b", 50.0, 30.0)
    lab.dispense_from_tip("P1", "D04", 20.0, now_s=100.0)
    again = SimulatedLab(path)
    assert again.well_volume_ul("P1", "D04") == pytest.approx(170.0)
    assert again.concentrations_um("P1", "D04")["drug_b"] == pytest.approx(1000.0 / 170.0)
    assert again.tip.volume_ul == pytest.approx(10.0)
    assert not list(tmp_path.glob("*.tmp"))
    json.loads(path.read_text())


def test_dispensed_volumes_survive_sigkill(tmp_path):
    path = tmp_path / "lab.json"
    script = textwrap.dedent(
        f"""
        import os, signal
        from simulators.clock import SimulatedClock
        from simulators.liquid_handler import SimulatedLiquidHandler
        from simulators.world import SimulatedLab
        lab = SimulatedLab({str(path)!r})
        lh = SimulatedLiquidHandler(lab, SimulatedClock())
        lh.aspirate("drug_a@100uM", "drug_a", 100.0, 40.0)
        lh.dispense("P7", "B02", 25.0)
        os.kill(os.getpid(), signal.SIGKILL)
        """
    )
    proc = subprocess.run([sys.executable, "-c", script], cwd=REPO, capture_output=True)
    assert proc.returncode == -9, proc.stderr.decode()
    lab = SimulatedLab(path)
    lh = SimulatedLiquidHandler(lab, SimulatedClock())
    assert lh.well_volume_ul("P7", "B02") == pytest.approx(175.0)
    assert lab.tip.volume_ul == pytest.approx(15.0)


def test_cells_follow_doses_and_time():
    lab = SimulatedLab(biology=VirtualBiology(seed=4))
    clock = SimulatedClock()
    lh = SimulatedLiquidHandler(lab, clock)
    lh.aspirate("stauro", "staurosporine", 20.0, 10.0)
    lh.dispense("P1", "C03", 10.0)
    lh.aspirate("vehicle", "vehicle", 0.0, 10.0)
    lh.dispense("P1", "C04", 10.0)
    early_ctrl = lab.cells_in_well("P1", "C04", clock.now())
    clock.sleep(48 * 3600)
    ctrl = lab.cells_in_well("P1", "C04", clock.now())
    killed = lab.cells_in_well("P1", "C03", clock.now())
    assert ctrl.tumour > 3 * early_ctrl.tumour
    assert killed.tumour < 0.02 * ctrl.tumour and killed.normal < 0.02 * ctrl.normal


def _fill(lab: SimulatedLab) -> None:
    lab.aspirate_into_tip("drug_a@100uM", "drug_a", 100.0, 30.0)
    lab.dispense_from_tip("P1", "B02", 10.0, now_s=1.0)
    lab.dispense_from_tip("P1", "B03", 10.0, now_s=2.0)


@pytest.mark.parametrize("journal", [True, False])
def test_both_persistence_modes_reload_the_same_state(tmp_path, journal):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path, journal=journal, snapshot_every=2)
    _fill(lab)
    reopened = SimulatedLab(path)
    assert reopened.to_dict() == lab.to_dict()
    if not journal:
        assert json.loads(path.read_text())["seq"] == lab.to_dict()["seq"]


def test_torn_journal_line_is_ignored(tmp_path):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path)
    _fill(lab)
    with open(f"{path}.journal", "a") as fh:
        fh.write('{"op":"dispense","plate":"P1","well":"B04","volume_ul":5')  # killed mid-write
    reopened = SimulatedLab(path)
    assert reopened.well_volume_ul("P1", "B03") == pytest.approx(160.0)
    assert reopened.well_volume_ul("P1", "B04") == pytest.approx(150.0)


def test_journal_entries_already_in_the_snapshot_are_not_replayed(tmp_path):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path)
    _fill(lab)
    journal = Path(f"{path}.journal").read_text()
    lab.save()  # snapshot, then (as if the process died before truncating) restore the journal
    Path(f"{path}.journal").write_text(journal)
    reopened = SimulatedLab(path)
    assert reopened.well_volume_ul("P1", "B02") == pytest.approx(160.0)
    assert reopened.tip.volume_ul == pytest.approx(10.0)


def test_read_only_lab_sees_the_state_and_writes_nothing(tmp_path):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path)
    _fill(lab)
    journal_before = Path(f"{path}.journal").read_text()
    viewer = SimulatedLab(path, read_only=True)
    assert viewer.well_volume_ul("P1", "B03") == pytest.approx(160.0)
    assert Path(f"{path}.journal").read_text() == journal_before
    with pytest.raises(RuntimeError, match="read-only"):
        viewer.discard_tip()


@pytest.mark.parametrize("journal", [True, False])
def test_solvent_named_by_the_source_label_reaches_the_well_and_survives_reopen(tmp_path, journal):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path, journal=journal)
    lab.aspirate_into_tip("drug_a@200uM+2%dmso", "drug_a", 200.0, 10.0)
    lab.dispense_from_tip("P1", "C05", 10.0, now_s=1.0)
    lab.aspirate_into_tip("medium+2%dmso", "medium", 0.0, 40.0)
    lab.dispense_from_tip("P1", "C05", 40.0, now_s=2.0)
    lab.aspirate_into_tip("medium", "medium", 0.0, 50.0)  # plain medium: no solvent
    lab.dispense_from_tip("P1", "C06", 50.0, now_s=3.0)
    again = SimulatedLab(path)
    assert again.solvent_percent("P1", "C05") == pytest.approx({"dmso": 0.5})
    assert again.concentrations_um("P1", "C05") == pytest.approx({"drug_a": 10.0})
    assert again.solvent_percent("P1", "C06") == {}


def test_solvent_toxicity_reaches_the_cells_of_an_unmatched_well():
    lab = SimulatedLab(
        biology=VirtualBiology(seed=1, failure_rate=0.0, well_noise_sd=0.0, line_noise_sd=0.0)
    )
    for well, label in (("C05", "medium+8%dmso"), ("C06", "medium")):
        lab.aspirate_into_tip(label, "medium", 0.0, 50.0)
        lab.dispense_from_tip("P1", well, 50.0, now_s=0.0)  # C05: 2 % DMSO
    dmso = lab.cells_in_well("P1", "C05", 48 * 3600.0)
    plain = lab.cells_in_well("P1", "C06", 48 * 3600.0)
    assert dmso.normal < 0.65 * plain.normal and dmso.tumour < 0.8 * plain.tumour


def test_a_well_can_be_seeded_differently_from_its_plate(tmp_path):
    path = tmp_path / "lab.json"
    lab = SimulatedLab(path, biology=VirtualBiology(failure_rate=0.0))
    lab.seed_well("P1", "d4", (0.0, 0.0))
    again = SimulatedLab(path)
    assert again.cells_in_well("P1", "D04", 3600.0)[:2] == (0, 0)
    assert again.cells_in_well("P1", "D05", 3600.0).tumour > 1000
