"""Campaign files are refused before anything is written when they cannot work (issue: files that
were accepted and then failed after a plate was pipetted; tracebacks on bad files)."""

from __future__ import annotations

import math
import os
from pathlib import Path

import pytest
import yaml

from controller.loop.preflight import CampaignConfigError, check_campaign
from controller.spec import CampaignFileError, load_campaign, parse_campaign
from tests.controller.campaign_mutations import mutations
from tests.controller.conftest import ROOT, run_cli, small_campaign_data

RIG = ROOT / "examples" / "drug_combo_rig.yaml"


def _check(data: dict, dry_run: bool = True) -> None:
    check_campaign(parse_campaign(data), dry_run=dry_run)


def _refused(data: dict, match: str) -> None:
    with pytest.raises((CampaignConfigError, CampaignFileError), match=match):
        _check(data)


def test_unknown_analyzer_and_settings_are_refused() -> None:
    _refused(
        small_campaign_data(analyzer={"name": "nuclei_cocultur"}),
        "analyzer.name: .*nuclei_cocultur",
    )
    _refused(
        small_campaign_data(analyzer={"name": "nuclei_coculture", "settings": {"min_snrr": 3}}),
        r"analyzer.settings: min_snrr: unknown field",
    )


def test_metrics_must_be_produced_by_the_analyzer() -> None:
    data = small_campaign_data(objectives=[{"metric": "selectivty", "direction": "maximize"}])
    _refused(data, r"objectives: \['selectivty'\] not produced by analyzer 'nuclei_coculture'")
    data = small_campaign_data(outcome_constraints=["normal_viabilty >= 0.6"])
    _refused(data, r"outcome_constraints: \['normal_viabilty'\] not produced")


def test_channels_must_exist_on_the_microscope_and_feed_the_analyzer() -> None:
    data = small_campaign_data()
    data["protocol"]["settings"]["imaging"]["channels"] = ["DAPI", "FITC"]
    _refused(data, r"imaging.channels: \['FITC'\] not on the microscope")
    data = small_campaign_data(analyzer={"settings": {"marker_channel": "RFP"}})
    _refused(data, r"analyzer.settings: needs channels \['RFP'\] the protocol does not image")


@pytest.mark.parametrize(
    ("path", "value", "match"),
    [
        (
            ("protocol", "settings", "imaging", "fields_per_well"),
            10**9,
            "fields_per_well: .*less than or equal to 400",
        ),
        (("protocol", "settings", "incubation_h"), math.inf, "incubation_h: .*finite"),
        (("protocol", "settings", "incubation_h"), 1e40, "incubation_h: .*less than or equal"),
        (("seed",), 10**40, "seed: .*less than or equal"),
        (("planner", "settings"), {"profile": {}}, "planner.settings: "),
        (("planner", "batch_size"), 0, "batch_size must be"),
        (("instruments", "microscope", "settings"), {"zoom": 2}, r"unknown settings \['zoom'\]"),
        (
            ("instruments", "liquid_handler", "settings"),
            {"tip_capacity_ul": "big"},
            "not a finite number",
        ),
    ],
)
def test_numbers_and_settings_are_bounded(path: tuple, value: object, match: str) -> None:
    data = small_campaign_data()
    parent = data
    for p in path[:-1]:
        parent = parent[p]
    parent[path[-1]] = value
    _refused(data, match)


def test_unreadable_files_get_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "latin1.yaml"
    bad.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(CampaignFileError, match="is not UTF-8 text"):
        load_campaign(bad)
    deep = tmp_path / "deep.yaml"
    deep.write_text("a: " + "[" * 3000 + "]" * 3000 + "\n")
    with pytest.raises(CampaignFileError, match="nests"):
        load_campaign(deep)
    fifo = tmp_path / "fifo.yaml"
    os.mkfifo(fifo)
    with pytest.raises(CampaignFileError, match="is not a regular file"):
        load_campaign(fifo)  # would block forever if it were opened
    huge = small_campaign_data(description="x" * 10_000_000)
    (tmp_path / "huge.yaml").write_text(yaml.safe_dump(huge))
    with pytest.raises(CampaignFileError) as err:
        load_campaign(tmp_path / "huge.yaml")
    assert len(str(err.value)) < 1000


def test_cli_refuses_before_writing_anything(tmp_path: Path) -> None:
    data = small_campaign_data(analyzer={"name": "no_such_analyzer"}, seed=3)
    ledger = tmp_path / "ledger.db"
    data["ledger"] = {"url": f"sqlite:///{ledger}", "data_dir": str(tmp_path / "data")}
    path = tmp_path / "c.yaml"
    path.write_text(yaml.safe_dump(data))
    for args in (["run", str(path), "--dry-run"], ["devices", "check", str(path), "--dry-run"]):
        out = run_cli(*args)
        assert out.returncode == 2, out.stderr
        assert "analyzer.name" in out.stderr and "Traceback" not in out.stderr
        assert len(out.stderr.strip().splitlines()) <= 3
    assert not ledger.exists() and not (tmp_path / "data").exists()


def test_mutated_campaign_files_never_raise_untyped_errors() -> None:
    """150 mutations of each example: every outcome is acceptance or a typed, one-paragraph refusal."""
    for example in (ROOT / "examples" / "drug_combo.yaml", RIG):
        base = yaml.safe_load(example.read_text())
        for label, data in mutations(base, 150, seed=11):
            try:
                spec = parse_campaign(data, label)
                check_campaign(spec, dry_run=True)
            except (CampaignFileError, CampaignConfigError) as err:
                assert "Traceback" not in str(err) and len(str(err)) < 2500, label
            except Exception as err:  # pragma: no cover - the failure message names the mutation
                pytest.fail(f"{example.name}: {label}: untyped {type(err).__name__}: {err}")
