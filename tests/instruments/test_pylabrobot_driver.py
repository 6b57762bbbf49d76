"""The registered ``pylabrobot`` driver: built from settings, and whole dry-run campaigns
through PyLabRobot's frontend and the simulated-lab backend (including kill-and-resume)."""

from __future__ import annotations

import signal

import pytest
from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Campaign, Experiment, Step
from controller.rig.registry import (
    BuildContext,
    InstrumentConfigError,
    available_drivers,
    build_instruments,
)
from controller.spec import load_campaign, parse_campaign
from instruments.pylabrobot_handler import PLRLiquidHandler
from simulators.clock import SimulatedClock
from simulators.plr_backend import SimulatedLabBackend
from simulators.world import SimulatedLab
from tests.controller import test_crash_resume as crash
from tests.controller.conftest import (
    run_cli,
    small_campaign_data,
    write_campaign,  # noqa: F401  (fixture)
)

PLR = {
    "liquid_handler": {"driver": "pylabrobot", "settings": {"backend": "chatterbox"}},
    "microscope": {"driver": "simulated"},
}


def _spec(**settings):
    lh = {"driver": "pylabrobot", "settings": {"backend": "chatterbox", **settings}}
    return parse_campaign(small_campaign_data(instruments={**PLR, "liquid_handler": lh}))


def test_the_driver_is_registered():
    assert "pylabrobot" in available_drivers("liquid_handler")


def test_builds_from_settings_on_the_named_backend(tmp_path):
    spec = _spec(backend_options={"num_channels": 2}, tip_policy="per_source")
    inst = build_instruments(spec, dry_run=False, data_dir=tmp_path, clock=SimulatedClock())
    try:
        lh = inst.liquid_handler
        assert isinstance(lh, PLRLiquidHandler)
        assert lh.identify()["backend"] == "LiquidHandlerChatterboxBackend"
        assert lh.backend.num_channels == 2 and lh.tip_policy == "per_source"
        assert lh.seeded_volume_ul == 150.0  # from the protocol's settings
        lh.aspirate("medium", "medium", 0.0, 10.0)
        lh.dispense("small-P001", "B02", 10.0)
        assert lh.well_volume_ul("small-P001", "B02") == pytest.approx(160.0)
        assert (tmp_path / "plr_volumes.jsonl").exists()
    finally:
        inst.close()


def test_a_dry_run_uses_the_simulated_lab_backend(tmp_path):
    spec = _spec(deck_file="/nonexistent/deck.json", reservoirs={"medium": "t1"})
    clock = SimulatedClock()
    inst = build_instruments(spec, dry_run=True, data_dir=tmp_path, clock=clock)
    try:
        lh = inst.liquid_handler
        assert isinstance(lh.backend, SimulatedLabBackend)
        lab = inst.extras["lab"]
        assert lh.backend.lab is lab and lh.backend.clock is clock
        lh.aspirate("drug_a@100uM", "drug_a", 100.0, 20.0)
        lh.dispense("small-P001", "C03", 20.0)
        assert lab.concentrations_um("small-P001", "C03") == {
            "drug_a": pytest.approx(100.0 * 20.0 / 170.0)
        }
        assert clock.now() > 0
    finally:
        inst.close()


def test_bad_settings_are_refused_naming_the_field(tmp_path):
    spec = _spec(flow="fast")
    with pytest.raises(InstrumentConfigError, match="instruments.liquid_handler.settings"):
        build_instruments(spec, dry_run=False, data_dir=tmp_path, clock=SimulatedClock())
    spec = _spec(backend="star")  # hardware without a deck file
    with pytest.raises(InstrumentConfigError, match="deck_file"):
        build_instruments(spec, dry_run=False, data_dir=tmp_path, clock=SimulatedClock())


def test_volume_reporting_follows_the_simulation_section(tmp_path):
    data = small_campaign_data(instruments=PLR, simulation={"reports_volumes": False})
    from controller.rig.registry import find_driver

    ctx = BuildContext(
        spec=parse_campaign(data), data_dir=tmp_path, clock=SimulatedClock(), dry_run=True
    )
    lh = find_driver("liquid_handler", "pylabrobot")({"backend": "chatterbox"}, ctx)
    try:
        assert lh.well_volume_ul("P", "A01") is None
    finally:
        lh.close()


def _finished(path):
    spec = load_campaign(path)
    db = open_ledger_engine(spec.ledger.url)
    with Session(db) as s:
        camp = s.exec(select(Campaign)).one()
        exps = s.exec(select(Experiment)).all()
        steps = s.exec(select(Step)).all()
        return spec, db, camp, exps, steps


def test_a_small_dry_run_campaign_completes_through_pylabrobot(write_campaign, tmp_path):  # noqa: F811
    path = write_campaign(instruments=PLR)
    proc = run_cli("run", str(path), "--dry-run", "--quiet", timeout=120)
    assert proc.returncode == 0, proc.stderr + proc.stdout
    spec, db, camp, exps, _ = _finished(path)
    assert camp.status == "completed"
    assert sum(e.status == "measured" for e in exps) == 12
    journal = (tmp_path / "data" / "plr_volumes.jsonl").read_text()
    assert "small-P001_well_" in journal  # the volumes went through PyLabRobot's tracking
    lab = SimulatedLab(tmp_path / "data" / "sim_lab.json", read_only=True)
    assert any(lab.concentrations_um("small-P001", w) for w in ("B02", "C03", "D04", "E05", "F06"))
    crash._check_wells_exact(spec, db, tmp_path / "data")


def test_killed_dry_runs_resume_without_dispensing_twice(write_campaign, tmp_path):  # noqa: F811
    path = write_campaign(instruments=PLR, budget={"rounds": 1})
    for point in ("step_started/dispense:7", "step_executed/dispense:9"):
        proc = run_cli(
            "run",
            str(path),
            "--dry-run",
            "--quiet",
            timeout=120,
            env={"CELLPILOT_FAILPOINT": point},
        )
        assert proc.returncode == -signal.SIGKILL, proc.stderr
    final = run_cli("run", str(path), "--dry-run", "--quiet", timeout=120)
    assert final.returncode == 0, final.stderr
    spec, db, camp, exps, steps = _finished(path)
    assert camp.status == "completed"
    assert sum(e.status == "measured" for e in exps) == 6
    resolutions = [(st.result or {}).get("resolution", "") for st in steps]
    assert any("confirmed by the handler" in r for r in resolutions)
    assert any("had not happened" in r for r in resolutions)
    crash._check_wells_exact(spec, db, tmp_path / "data")
