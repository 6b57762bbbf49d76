"""Re-analysis with provenance: a one-plate dry-run is re-analysed with other settings; both
versions stay in the ledger; adopting the new one makes the next round's planner learn from it;
an altered image is refused; ``verify`` still holds; an old ledger still opens."""

from __future__ import annotations

import gzip
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, select
from typer.testing import CliRunner

from controller.cli import app
from controller.ledger.db import open_ledger_engine
from controller.ledger.models import (
    AnalysisVersion,
    Campaign,
    Event,
    Experiment,
    Measurement,
    RawData,
    Round,
)
from tests.controller.conftest import ROOT, small_campaign_data


def url() -> str:
    """This test's ledger, by absolute path (the process caches anchor paths per ledger URL, and
    the tests' copies share the template's campaign ids)."""
    return f"sqlite:///{Path.cwd() / 'ledger.db'}"


OTHER = {
    "z_prime_min": -1000.0,
    "max_control_cv": 100.0,
    "max_flagged_fraction": 1.0,
    "nucleus_diameter_um": 16.0,
}


@pytest.fixture(scope="module")
def template(tmp_path_factory) -> Path:
    """A finished one-plate dry-run with relative ledger and data paths."""
    lab = tmp_path_factory.mktemp("reanalysis-template")
    data = small_campaign_data(budget={"rounds": 1})
    data["ledger"] = {"url": "sqlite:///ledger.db", "data_dir": "data"}
    (lab / "small.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT)}
    proc = subprocess.run(
        [sys.executable, "-m", "controller.cli", "run", "small.yaml", "--dry-run", "--quiet"],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
        cwd=lab,
    )
    assert proc.returncode == 0, proc.stderr
    con = sqlite3.connect(lab / "ledger.db")
    con.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    con.close()
    # the key and this machine's anchor file beside it: each test gets its own copy, since the
    # copies of one ledger share its id, and so that anchor file
    shutil.copytree(Path(os.environ["CELLPILOT_LEDGER_KEY"]).parent, lab / "key")
    return lab


@pytest.fixture
def lab(template, tmp_path, monkeypatch):
    copy = tmp_path / "lab"
    shutil.copytree(template, copy, ignore=shutil.ignore_patterns("*-wal", "*-shm", "*.lock"))
    monkeypatch.setenv(
        "CELLPILOT_LEDGER_KEY", str(copy / "key" / Path(os.environ["CELLPILOT_LEDGER_KEY"]).name)
    )
    monkeypatch.chdir(copy)
    monkeypatch.setenv("COLUMNS", "200")
    # the campaign's own anchor file is the template's (its absolute path is in the start event)
    anchors = template / "data" / "ledger-anchor.jsonl"
    kept = anchors.read_bytes()
    yield copy
    anchors.write_bytes(kept)


def cli(*args: str):
    return CliRunner().invoke(app, [*args, "--ledger", url()])


def _status() -> dict:
    out = cli("status", "--campaign", "small", "--json")
    assert out.exit_code == 0, out.output
    return json.loads(out.output)


def test_a_second_version_is_kept_beside_the_first_and_adopting_it_steers_the_next_round(
    lab, monkeypatch
):
    (lab / "other.yaml").write_text(
        yaml.safe_dump({"analyzer": {"name": "nuclei_coculture", "settings": OTHER}})
    )
    out = cli(
        "reanalyze",
        "--campaign",
        "small",
        "--settings",
        "other.yaml",
        "--note",
        "bigger nuclei",
        "--json",
    )
    assert out.exit_code == 0, out.output
    recorded = json.loads(out.output)
    assert (
        recorded["version"] == 2 and recorded["raw_files_checked"] > 0 and not recorded["adopted"]
    )
    assert recorded["code_version"]["package"]

    status = _status()
    v1, v2 = status["analysis_versions"]
    assert (v1["number"], v1["adopted"], v2["number"], v2["adopted"]) == (1, True, 2, False)
    assert v2["settings"] == OTHER and v2["note"] == "bigger nuclei" and v2["rounds"] == [1]
    assert v1["settings"] == small_campaign_data()["analyzer"]["settings"]
    assert [r["analysis_version"] for r in status["round_details"]] == [1]
    assert status["best"]["analysis_version"] == 1
    # other settings, other outcomes; the planner's rows still hold version 1's
    differ = [
        e
        for e in v1["experiments"]
        if v1["experiments"][e]["outcomes"] != v2["experiments"][e]["outcomes"]
    ]
    assert differ
    with Session(open_ledger_engine(url())) as s:
        live = {str(e.id): e.outcomes for e in s.exec(select(Experiment))}
        assert live == {k: v["outcomes"] for k, v in v1["experiments"].items()}
        versions = {m.analysis_version for m in s.exec(select(Measurement))}
        assert versions == {1, 2}
    assert cli("verify").exit_code == 0

    used = cli(
        "analysis", "use", "--campaign", "small", "--version", "2", "--reason", "real nucleus size"
    )
    assert used.exit_code == 0, used.output
    assert "now plans from analysis version 2" in used.output
    again = cli("analysis", "use", "--campaign", "small", "--version", "2")
    assert again.exit_code == 2 and "already plans from analysis version 2" in again.output
    status = _status()
    assert [v["adopted"] for v in status["analysis_versions"]] == [False, True]
    assert [r["analysis_version"] for r in status["round_details"]] == [2]
    with Session(open_ledger_engine(url())) as s:
        (adopted,) = s.exec(select(Event).where(Event.kind == "analysis_adopted")).all()
        assert adopted.payload["version"] == 2 and adopted.payload["reason"] == "real nucleus size"
        assert adopted.actor  # who decided

    # The next round: the planner is given version 2's outcomes, and the round is analysed with it.
    from controller.loop import proposing
    from controller.loop.runner import CampaignRunner
    from controller.spec import load_campaign

    seen: list = []
    real_plan = proposing.plan
    monkeypatch.setattr(
        proposing,
        "plan",
        lambda planner, spec, history, *a, **k: (
            seen.append([(o.params, o.outcomes) for o in history]),
            real_plan(planner, spec, history, *a, **k),
        )[1],
    )
    data = yaml.safe_load((lab / "small.yaml").read_text())
    data["budget"] = {"rounds": 2}
    data["ledger"] = {"url": url(), "data_dir": str(lab / "data")}
    (lab / "small.yaml").write_text(yaml.safe_dump(data, sort_keys=False))
    result = CampaignRunner(load_campaign(lab / "small.yaml"), dry_run=True, amend=True).run()
    assert result.status == "completed"
    v2_measured = sorted(
        (json.dumps(p, sort_keys=True), o)
        for p, o in ((e["params"], e["outcomes"]) for e in _experiments(status, 2))
    )
    assert sorted((json.dumps(p, sort_keys=True), o) for p, o in seen[0]) == v2_measured
    with Session(open_ledger_engine(url())) as s:
        rnd2 = s.exec(select(Round).where(Round.index == 1)).one()
        assert rnd2.analysis_version == 2
        assert {
            m.analysis_version
            for m in s.exec(select(Measurement).where(Measurement.round_id == rnd2.id))
        } == {2}
    status = _status()
    assert status["analysis_versions"][1]["rounds"] == [1, 2]  # the adopted version goes on
    # version 1 does not cover round 2: it cannot be adopted back without re-analysing
    back = cli("analysis", "use", "--campaign", "small", "--version", "1")
    assert back.exit_code == 2 and "does not cover round(s) [2]" in back.output
    assert cli("verify").exit_code == 0

    listed = cli("analysis", "list", "--campaign", "small")
    assert "* version 2" in listed.output and "  version 1" in listed.output
    page = cli("report", "--campaign", "small", "--out", "report")
    assert page.exit_code == 0, page.output
    assert "Outcomes from analysis version 2" in (lab / "report" / "index.html").read_text()


def _experiments(status: dict, number: int) -> list[dict]:
    """Measured experiments of one version with their parameters (from the ledger)."""
    v = next(v for v in status["analysis_versions"] if v["number"] == number)
    with Session(open_ledger_engine(url())) as s:
        params = {str(e.id): e.params for e in s.exec(select(Experiment))}
    return [
        {"params": params[eid], "outcomes": r["outcomes"]}
        for eid, r in v["experiments"].items()
        if r["status"] == "measured"
    ]


def test_reanalyze_with_adopt_and_an_altered_image_is_refused(lab):
    with Session(open_ledger_engine(url())) as s:
        raw = s.exec(select(RawData)).first()
    image = Path(raw.path)
    original = image.read_bytes()
    image.write_bytes(original[:-1] + bytes([original[-1] ^ 1]))
    (lab / "s.json").write_text(json.dumps(OTHER))
    out = cli("reanalyze", "--campaign", "small", "--settings", "s.json", "--adopt")
    assert (
        out.exit_code == 4 and "was altered" in out.output and "nothing re-analysed" in out.output
    )
    with Session(open_ledger_engine(url())) as s:
        assert not s.exec(select(AnalysisVersion)).all()
    image.write_bytes(original)

    bad = cli("reanalyze", "--campaign", "small", "--analyzer", "no_such_analyzer")
    assert bad.exit_code == 2 and "no_such_analyzer" in bad.output
    out = cli("reanalyze", "--campaign", "small", "--settings", "s.json", "--adopt")
    assert out.exit_code == 0, out.output
    assert "now plans from version 2" in out.output
    with Session(open_ledger_engine(url())) as s:
        assert s.exec(select(Campaign)).one().analysis_version == 2
    ok = cli("verify")
    assert ok.exit_code == 0, ok.output
    # the adopted version is what the ledger's log says: editing the campaign row is tampering
    con = sqlite3.connect("ledger.db")
    con.execute("UPDATE campaign SET analysis_version = 1")
    con.commit()
    con.close()
    tampered = cli("verify")
    assert tampered.exit_code == 4 and "plans from analysis version 1" in tampered.output


def test_a_ledger_written_at_schema_0003_lists_its_original_analysis(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    con = sqlite3.connect("ledger.db")
    con.executescript(
        gzip.decompress(
            (Path(__file__).parent / "data" / "ledger_0003.sql.gz").read_bytes()
        ).decode()
    )
    con.close()
    with Session(open_ledger_engine(url())) as s:
        assert s.exec(select(Campaign)).one().analysis_version == 1
        assert {m.analysis_version for m in s.exec(select(Measurement))} == {1}
    (v1,) = _status()["analysis_versions"]
    assert v1["number"] == 1 and v1["adopted"] and v1["rounds"] == [1]
    # its images are not shipped: a re-analysis stops before writing anything
    out = cli("reanalyze", "--campaign", "small")
    assert out.exit_code == 4 and "is missing" in out.output


def test_an_operator_adopts_a_version_from_the_console(lab):
    """The console's "Plan from version 2" button: operators only, CSRF-checked, recorded with
    the logged-in name like ``cellpilot analysis use``."""
    from fastapi.testclient import TestClient

    from controller.console.app import create_app
    from controller.console.auth import add_user
    from tests.console.conftest import csrf_of, login

    (lab / "other.yaml").write_text(
        yaml.safe_dump({"analyzer": {"name": "nuclei_coculture", "settings": OTHER}})
    )
    assert cli("reanalyze", "--campaign", "small", "--settings", "other.yaml").exit_code == 0
    app = create_app(url())
    add_user(app.state.db, "ana", "ana-operator-pw", "operator")
    add_user(app.state.db, "vic", "vic-viewer-pw", "viewer")
    viewer = TestClient(app)
    login(viewer, "vic", "vic-viewer-pw")
    assert 'data-testid="adopt-analysis"' not in viewer.get("/campaigns/small").text
    token = csrf_of(viewer)
    refused = viewer.post("/campaigns/small/analysis/2/adopt", data={"csrf_token": token})
    assert refused.status_code == 403
    ana = TestClient(app)
    login(ana, "ana", "ana-operator-pw")
    page = ana.get("/campaigns/small").text
    assert 'action="/campaigns/small/analysis/2/adopt"' in page
    no_token = ana.post("/campaigns/small/analysis/2/adopt", data={"reason": "x"})
    assert no_token.status_code == 403
    done = ana.post(
        "/campaigns/small/analysis/2/adopt",
        data={"csrf_token": csrf_of(ana), "reason": "bigger nuclei fit the images"},
    )
    assert done.status_code == 200 and "now planning from analysis version 2" in done.text
    again = ana.post("/campaigns/small/analysis/2/adopt", data={"csrf_token": csrf_of(ana)})
    assert "already plans from analysis version 2" in again.text
    with Session(open_ledger_engine(url())) as s:
        (ev,) = s.exec(select(Event).where(Event.kind == "analysis_adopted")).all()
        assert ev.actor == "ana" and ev.payload["reason"] == "bigger nuclei fit the images"
    assert cli("verify").exit_code == 0
