"""A corrected campaign file resumes with ``--amend``; the change is in the event log."""

from __future__ import annotations

import json
from pathlib import Path

import yaml

from controller.spec import load_campaign
from tests.controller.conftest import run_cli


def _events(url: str, kind: str) -> list[dict]:
    from sqlmodel import Session, select

    from controller.ledger.db import open_ledger_engine
    from controller.ledger.models import Event

    with Session(open_ledger_engine(url)) as s:
        return [e.payload for e in s.exec(select(Event).where(Event.kind == kind))]


def test_plate_pipetted_under_one_file_is_analysed_under_the_amended_one(write_campaign) -> None:
    path: Path = write_campaign(budget={"rounds": 1})
    url = load_campaign(path).ledger.url
    killed = run_cli(
        "run",
        str(path),
        "--dry-run",
        "--quiet",
        env={"CELLPILOT_FAILPOINT": "step_executed/dispense:6"},
    )
    assert killed.returncode != 0  # killed mid-plate, wells already dispensed

    data = yaml.safe_load(path.read_text())
    data["analyzer"]["settings"]["min_snr"] = 4.0
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    refused = run_cli("run", str(path), "--dry-run", "--quiet")
    assert refused.returncode == 2
    assert "changed: analyzer.settings.min_snr" in refused.stderr and "--amend" in refused.stderr

    done = run_cli("run", str(path), "--dry-run", "--quiet", "--amend")
    assert done.returncode == 0, done.stderr
    status = json.loads(run_cli("status", "--campaign", "small", "--json", "--ledger", url).stdout)
    assert status["status"] == "completed" and status["valid_experiments"] == 6
    (amended,) = _events(url, "campaign_amended")
    assert amended["changed"] == ["analyzer.settings.min_snr"] and amended["old"] == {
        "analyzer.settings.min_snr": None
    }
    assert run_cli("verify", "--ledger", url).returncode == 0
    # The amended file is now the campaign's file: a plain resume needs no --amend.
    assert run_cli("run", str(path), "--dry-run", "--quiet").returncode == 0


def test_the_search_space_cannot_be_amended(write_campaign) -> None:
    path: Path = write_campaign(budget={"rounds": 1})
    assert run_cli("run", str(path), "--dry-run", "--quiet").returncode == 0
    data = yaml.safe_load(path.read_text())
    data["space"]["parameters"][0]["high"] = 5
    data["budget"] = {"rounds": 2}
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = run_cli("run", str(path), "--dry-run", "--quiet", "--amend")
    assert out.returncode == 2 and "['space'] cannot change" in out.stderr
