"""The rig example (Cavro pumps + pymmcore-plus microscope) runs as a dry-run in CI through the
real drivers: pump bytes over a pseudo-terminal to the firmware emulator, images through an MDA
on pymmcore-plus's Python devices; and `devices check` commissions it."""

from __future__ import annotations

import json

import yaml
from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Experiment, RawData, Step
from tests.controller.conftest import ROOT, run_cli

RIG = ROOT / "examples" / "drug_combo_rig.yaml"


def test_devices_check_reports_each_instrument():
    proc = run_cli("devices", "check", str(RIG), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr
    rows = {r["role"]: r for r in json.loads(proc.stdout)}
    assert rows["liquid_handler"]["ok"] and rows["microscope"]["ok"]
    assert set(rows["liquid_handler"]["identity"]["pumps"]) == {"1", "2", "3"}
    assert rows["microscope"]["identity"]["devices"]["Camera"]["type"] == "Camera"
    real = run_cli("devices", "check", str(RIG), "--json")  # no rig attached here
    assert real.returncode == 3
    errors = {r["role"]: r.get("error", "") for r in json.loads(real.stdout)}
    assert "/dev/ttyUSB0" in errors["liquid_handler"] and "plate_scope.cfg" in errors["microscope"]


def test_rig_example_runs_on_emulated_pumps_and_mmcore(tmp_path):
    data = yaml.safe_load(RIG.read_text())
    data["budget"] = {"rounds": 1}
    data["ledger"] = {"url": f"sqlite:///{tmp_path / 'l.db'}", "data_dir": str(tmp_path / "data")}
    path = tmp_path / "rig.yaml"
    path.write_text(yaml.safe_dump(data))
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    db = open_ledger_engine(data["ledger"]["url"])
    with Session(db) as s:
        # 48 wells after controls, 3 replicates + 2 single-agent wells per experiment
        assert sum(e.status == "measured" for e in s.exec(select(Experiment))) == 9
        assert {st.status for st in s.exec(select(Step))} == {"done"}
        raw = s.exec(select(RawData)).first()
        assert raw.meta["channels"] == ["DAPI", "GFP"] and len(raw.meta["fields"]) == 3
    runs = [
        json.loads(line)
        for line in (tmp_path / "data" / "pump_runs.jsonl").read_text().splitlines()
    ]
    assert runs and runs[-1]
