"""The QC gate: a plate that fails QC is held for an operator, excluded, or re-queued, never fed
to the planner silently."""

from __future__ import annotations

import json

import pytest
from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Event, Experiment, Round
from tests.controller.conftest import run_cli, small_campaign_data


def _collapsed_controls(**changes) -> dict:
    """A plate whose positive control barely kills: Z' collapses and the plate fails QC."""
    data = small_campaign_data(**changes)
    data["analyzer"] = {"name": "nuclei_coculture"}  # the analyzer's own QC thresholds
    data["protocol"]["settings"]["positive_control"] = {
        "reagent": "staurosporine",
        "concentration_um": 0.0001,
    }
    return data


def _write(tmp_path, data):
    import yaml

    data["ledger"] = {
        "url": f"sqlite:///{tmp_path / 'ledger.db'}",
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path, data["ledger"]["url"]


def _statuses(url: str) -> list[str]:
    with Session(open_ledger_engine(url)) as s:
        return sorted({e.status for e in s.exec(select(Experiment))})


def _kinds(url: str) -> list[str]:
    with Session(open_ledger_engine(url)) as s:
        return [e.kind for e in s.exec(select(Event))]


def test_a_failed_plate_is_held_until_an_operator_decides(tmp_path) -> None:
    path, url = _write(tmp_path, _collapsed_controls(budget={"rounds": 1}))
    out = run_cli("run", str(path), "--dry-run", "--quiet")
    assert out.returncode == 0, out.stderr
    assert _statuses(url) == ["held"]
    assert "plate_held" in _kinds(url) and "plate_qc_failed" in _kinds(url)
    held = json.loads(run_cli("plates", "--json", "--ledger", url).stdout)
    assert [h["plate"] for h in held] == ["small-P001"] and any(
        "Z'" in f for f in held[0]["failures"]
    )
    status = json.loads(run_cli("status", "--campaign", "small", "--json", "--ledger", url).stdout)
    assert status["valid_experiments"] == 0  # nothing fed to the planner
    assert status["round_details"][0]["place"] == "held for a QC decision"

    ok = run_cli(
        "plate",
        "accept",
        "small-P001",
        "--reason",
        "controls mis-pipetted, samples fine",
        "--ledger",
        url,
        "--as",
        "ana",
    )
    assert ok.returncode == 0, ok.stderr
    assert _statuses(url) == ["measured"]
    again = run_cli("plate", "exclude", "small-P001", "--ledger", url, "--as", "ben")
    assert again.returncode == 2 and "not held" in again.stderr
    with Session(open_ledger_engine(url)) as s:
        accepted = s.exec(select(Event).where(Event.kind == "plate_accepted")).one()
        assert accepted.payload["claimed_as"] == "ana" and accepted.payload["reason"].startswith(
            "controls"
        )
    assert run_cli("verify", "--ledger", url).returncode == 0


@pytest.mark.parametrize(
    ("on_fail", "status"), [("exclude", "excluded"), ("requeue", "quarantined")]
)
def test_exclude_or_requeue_at_once(tmp_path, on_fail: str, status: str) -> None:
    path, url = _write(tmp_path, _collapsed_controls(budget={"rounds": 1}, qc={"on_fail": on_fail}))
    out = run_cli("run", str(path), "--dry-run", "--quiet")
    assert out.returncode == 0, out.stderr
    assert _statuses(url) == [status]
    with Session(open_ledger_engine(url)) as s:
        failed = s.exec(select(Event).where(Event.kind == "plate_qc_failed")).one()
        assert failed.payload["action"] == on_fail and failed.payload["failures"]
        assert s.exec(select(Round)).one().status == "analyzed"
    assert json.loads(run_cli("plates", "--json", "--ledger", url).stdout) == []
