"""Campaign files: the example validates, round-trips, and every mistake names its field."""

from __future__ import annotations

import json

import pytest
import yaml

from controller.spec import (
    CampaignFileError,
    CampaignSpec,
    campaign_json_schema,
    load_campaign,
    parse_campaign,
)
from tests.controller.conftest import EXAMPLE, run_cli


def _example() -> dict:
    return yaml.safe_load(EXAMPLE.read_text())


def test_example_campaign_validates_and_round_trips():
    spec = load_campaign(EXAMPLE)
    assert spec.space.names == ["drug_a_um", "drug_b_um"]
    assert str(spec.outcome_constraints[0]) == "normal_viability >= 0.6"
    again = CampaignSpec.model_validate(
        yaml.safe_load(yaml.safe_dump(spec.model_dump(mode="json")))
    )
    assert again == spec
    assert again.spec_hash() == spec.spec_hash()


@pytest.mark.parametrize(
    ("mutate", "field", "reason"),
    [
        (
            lambda d: d["space"]["parameters"][0].update(low=20),
            "space.parameters[0]",
            "must be below high",
        ),
        (
            lambda d: d["space"]["parameters"][1].update(low=0),
            "space.parameters[1]",
            "log_scale needs low > 0",
        ),
        (lambda d: d.update(objectivs=d.pop("objectives")), "objectivs", "unknown field"),
        (lambda d: d.pop("budget"), "budget", "is required"),
        (lambda d: d.update(budget={}), "budget", "at least one of rounds"),
        (
            lambda d: d.update(outcome_constraints=["normal_viability => 0.6"]),
            "outcome_constraints[0]",
            "cannot parse",
        ),
        (
            lambda d: d["approval"].update(mode="sometimes"),
            "approval.mode",
            "'auto', 'manual' or 'policy'",
        ),
        (
            lambda d: d["space"]["parameters"].append(dict(d["space"]["parameters"][0])),
            "space",
            "duplicate parameter",
        ),
        (
            lambda d: d["space"].update(
                linear_constraints=[{"coefficients": {"nope": 1}, "op": "<=", "rhs": 1}]
            ),
            "space",
            "not numeric parameters",
        ),
    ],
)
def test_malformed_campaign_names_the_field(mutate, field, reason):
    data = _example()
    mutate(data)
    with pytest.raises(CampaignFileError) as err:
        parse_campaign(data, "bad.yaml")
    msg = str(err.value)
    assert msg.startswith("campaign file bad.yaml is invalid: ")
    assert field in msg and reason in msg
    assert "\n" not in msg


def test_bad_yaml_reports_line(tmp_path):
    p = tmp_path / "broken.yaml"
    p.write_text("name: x\nspace: [unclosed\n")
    with pytest.raises(CampaignFileError, match=r"not valid YAML at line \d+"):
        load_campaign(p)


def test_cli_refuses_bad_file_with_one_paragraph_and_no_traceback(tmp_path):
    data = _example()
    data["space"]["parameters"][0]["high"] = -1
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    proc = run_cli("run", str(p), "--dry-run", "--ledger", f"sqlite:///{tmp_path / 'l.db'}")
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr + proc.stdout
    assert "space.parameters[0]" in proc.stderr and "must be below high" in proc.stderr
    assert not (tmp_path / "l.db").exists()  # refused before anything was written


def test_cli_refuses_unpipettable_space_before_anything_moves(tmp_path):
    data = _example()
    data["space"]["parameters"][0]["high"] = 5000  # 5 mM from a 1 mM stock cannot be made
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    proc = run_cli(
        "run",
        str(p),
        "--dry-run",
        "--ledger",
        f"sqlite:///{tmp_path / 'l.db'}",
        "--data-dir",
        str(tmp_path / "data"),
    )
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "drug_a" in proc.stderr and "Traceback" not in proc.stderr
    assert not (tmp_path / "data" / "sim_lab.json").exists()


def test_unsupported_planning_combination_is_refused_before_anything_runs(tmp_path):
    data = _example()
    data["space"]["linear_constraints"] = [
        {"coefficients": {"drug_a_um": 1, "drug_b_um": 1}, "op": "<=", "rhs": 12}
    ]
    p = tmp_path / "lc.yaml"
    p.write_text(yaml.safe_dump(data))
    proc = run_cli("run", str(p), "--dry-run", "--ledger", f"sqlite:///{tmp_path / 'l.db'}")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert (
        "linear constraints over log-scaled parameters" in proc.stderr
        and "Traceback" not in proc.stderr
    )
    assert not (tmp_path / "l.db").exists()


def test_plate_parameters_and_prior_campaigns_are_checked():
    data = _example()
    data["planner"]["plate_parameters"] = ["incubation_h"]
    with pytest.raises(CampaignFileError, match=r"plate_parameters names \['incubation_h'\]"):
        parse_campaign(data, "x.yaml")
    data = _example()
    data["transfer"] = {"prior_campaigns": ["drug_combo"]}
    with pytest.raises(CampaignFileError, match="cannot name the campaign itself"):
        parse_campaign(data, "x.yaml")


def test_json_schema_covers_campaign_and_protocol_settings():
    schema = campaign_json_schema()
    assert set(schema["required"]) >= {"name", "space", "objectives", "budget"}
    text = json.dumps(schema)
    assert "final_volume_ul" in text and "log_scale" in text and "fields_per_well" in text
    proc = run_cli("schema")
    assert proc.returncode == 0 and json.loads(proc.stdout)["title"] == "CampaignSpec"


def test_unknown_driver_is_refused_before_the_ledger_is_touched(tmp_path):
    data = _example()
    data["instruments"]["microscope"] = {"driver": "hubble"}
    p = tmp_path / "bad.yaml"
    p.write_text(yaml.safe_dump(data))
    proc = run_cli("run", str(p), "--ledger", f"sqlite:///{tmp_path / 'l.db'}")
    assert proc.returncode == 2 and "Traceback" not in proc.stderr
    assert "instruments.microscope.driver: unknown driver 'hubble'" in proc.stderr
    assert not (tmp_path / "l.db").exists()
