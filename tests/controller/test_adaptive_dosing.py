"""Time-course plates from ``cellpilot run``: a tiny RL policy (trained once per session, in
seconds) doses a small adaptive_dosing plate through the whole chain (simulated images →
analyzer → agent → gate → handler), and a kill between a decision and its action applies
nothing twice."""

from __future__ import annotations

import copy
import signal
import threading
import time
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session, col, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import (
    Approval,
    Campaign,
    DecisionPoint,
    Experiment,
    Measurement,
    Proposal,
    RawData,
    Round,
    Step,
    Well,
)
from controller.loop.operator import OperatorError, approve, pending_proposals
from controller.loop.preflight import CampaignConfigError
from controller.loop.runner import CampaignRunner
from controller.spec import load_campaign
from planners.rl.policy import TrainConfig
from planners.rl.train import train
from protocols.timecourse import PlateState
from simulators.timecourse_lab import TimecourseLab
from tests.controller.conftest import ROOT, run_cli

#: a small time-course: 3 decisions, groups of 2 wells, 4 vehicle and 2 killed wells
PROTOCOL = {
    "replicates": 2,
    "negative_controls": 4,
    "positive_controls": 2,
    "interval_h": 12,
    "decisions": 3,
    "dose_steps_um": {"drug_a": [0.5, 1.0, 2.0], "drug_b": [0.25, 0.5, 1.0]},
    "stocks": {"drug_a": [30, 300], "drug_b": [30, 300], "staurosporine": [100]},
    "master_stock_um": {"drug_a": 10000, "drug_b": 10000, "staurosporine": 10000},
    "positive_control": {"reagent": "staurosporine", "concentration_um": 1.0},
    "imaging": {"channels": ["DAPI", "GFP"], "fields_per_well": 1, "exposure_ms": 20},
}
GROUPS = 3


@pytest.fixture(scope="session")
def tiny_policy(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A policy for :data:`PROTOCOL`, trained in seconds (it decides, but badly)."""
    path = tmp_path_factory.mktemp("rl_policy") / "tiny.zip"
    train(TrainConfig.tiny(problem={"protocol": PROTOCOL}), path)
    return path


@pytest.fixture
def campaign(tmp_path: Path, tiny_policy: Path):
    """Write the example campaign shrunk to :data:`PROTOCOL` (and overrides); returns its path."""

    def write(name: str = "tc", **overrides) -> Path:
        data = yaml.safe_load((ROOT / "examples" / "adaptive_dosing.yaml").read_text())
        data = copy.deepcopy(data)
        data["name"] = name
        data["planner"] = {
            "name": "rl",
            "batch_size": GROUPS,
            "settings": {"policy": str(tiny_policy), "particles": 32},
        }
        data["protocol"]["settings"] = {**data["protocol"]["settings"], **PROTOCOL}
        # one 160 px field per well is too few nuclei for the default QC bounds (see conftest)
        data["analyzer"] = {
            "name": "nuclei_coculture",
            "settings": {
                "z_prime_min": -1000.0,
                "max_control_cv": 100.0,
                "max_flagged_fraction": 1.0,
            },
        }
        data["simulation"]["image_size_px"] = 160
        data["ledger"] = {
            "url": f"sqlite:///{tmp_path / 'ledger.db'}",
            "data_dir": str(tmp_path / name),
        }
        data.update(overrides)
        path = tmp_path / f"{name}.yaml"
        path.write_text(yaml.safe_dump(data, sort_keys=False))
        return path

    return write


def _check_liquid_exact(spec, db, data_dir: Path) -> None:
    """Every well holds exactly what its applied decisions put there (volumes and drug amounts,
    as journaled in the last decision point's ``state_after``), and the lab recorded one liquid
    event per done withdraw/dispense step: no action applied twice."""
    lab = TimecourseLab(data_dir / "sim_lab.json")
    with Session(db) as s:
        camp = s.exec(select(Campaign).where(Campaign.name == spec.name)).one()
        for r in s.exec(select(Round).where(Round.campaign_id == camp.id)):
            last = s.exec(
                select(DecisionPoint)
                .where(DecisionPoint.round_id == r.id)
                .order_by(col(DecisionPoint.index).desc())
            ).first()
            state = PlateState.model_validate(last.state_after)
            for well, liquid in state.wells.items():
                got = lab.well_state(r.plate_id, well)
                assert got.volume_ul == pytest.approx(liquid.volume_ul, abs=1e-6), well
                for drug, pmol in liquid.amounts_pmol.items():
                    assert got.amounts_pmol.get(drug, 0.0) == pytest.approx(pmol, rel=1e-6), (
                        well,
                        drug,
                    )
            steps = list(s.exec(select(Step).where(Step.round_id == r.id, Step.status == "done")))
            events = lab._plates[r.plate_id].get("events", {})
            for well in state.wells:
                ev = events.get(well, [])
                n_disp = sum(st.kind == "dispense" and well in st.wells for st in steps)
                n_wd = sum(st.kind == "withdraw" and well in st.wells for st in steps)
                assert sum("add_ul" in e for e in ev) == n_disp, well
                assert sum("withdraw_ul" in e for e in ev) == n_wd, well


def _check_chain(spec, db, tiny_policy: Path) -> None:
    """The ledger holds the whole chain: images and measurements at every time point, one
    decision point per decision with the policy's id and checksum, a decided proposal per unit,
    the action's steps, and the end-point outcomes."""
    import json

    meta = json.loads(Path(f"{tiny_policy}.json").read_text())
    n_dec = PROTOCOL["decisions"]
    with Session(db) as s:
        camp = s.exec(select(Campaign).where(Campaign.name == spec.name)).one()
        assert camp.status == "completed", camp.pause_reason
        rnd = s.exec(select(Round).where(Round.campaign_id == camp.id)).one()
        assert rnd.status == "analyzed"
        used = len(s.exec(select(Well).where(Well.round_id == rnd.id)).all())
        assert used == GROUPS * 2 + 6
        for t in range(n_dec + 1):  # baseline, after each decision
            raws = s.exec(
                select(RawData).where(RawData.round_id == rnd.id, RawData.time_point == t)
            ).all()
            assert len(raws) == used and all(Path(r.path).exists() for r in raws)
            counts = s.exec(
                select(Measurement).where(
                    Measurement.round_id == rnd.id,
                    Measurement.time_point == t,
                    Measurement.metric == "tumour_count",
                    col(Measurement.well_id).is_not(None),
                )
            ).all()
            assert len(counts) == used
        points = list(
            s.exec(
                select(DecisionPoint)
                .where(DecisionPoint.round_id == rnd.id)
                .order_by(col(DecisionPoint.index))
            )
        )
        assert [p.index for p in points] == list(range(n_dec))
        for p in points:
            assert p.status == "compiled"
            assert p.policy_id == meta["policy_id"] and p.policy["sha256"] == meta["sha256"]
            assert set(p.actions) == {"0", "1", "2"} and set(p.forecasts) == set(p.actions)
            assert all(len(h["time_points"]) == p.index + 1 for h in p.observations.values())
            props = s.exec(select(Proposal).where(Proposal.decision_point_id == p.id)).all()
            assert len(props) == GROUPS and all(q.planner == "rl" for q in props)
            assert all("tumour_viability" in q.predicted_mean for q in props)
            assert all(
                s.exec(select(Approval).where(Approval.proposal_id == q.id)).first() for q in props
            )
            steps = s.exec(
                select(Step).where(Step.round_id == rnd.id, Step.time_point == p.index + 1)
            ).all()
            assert steps[0].seq == p.first_seq
            assert sum(st.kind == "incubate" for st in steps) == 1
            assert sum(st.kind == "acquire" for st in steps) == used
        assert {st.status for st in s.exec(select(Step).where(Step.round_id == rnd.id))} == {"done"}
        exps = s.exec(select(Experiment).where(Experiment.round_id == rnd.id)).all()
        assert len(exps) == GROUPS and all(e.status == "measured" for e in exps)
        assert all("selectivity" in e.outcomes for e in exps)


def test_dry_run_through_the_whole_chain(campaign, tiny_policy, tmp_path):
    path = campaign()
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    spec = load_campaign(path)
    db = open_ledger_engine(spec.ledger.url)
    _check_chain(spec, db, tiny_policy)
    _check_liquid_exact(spec, db, tmp_path / "tc")
    status = run_cli("status", "--campaign", "tc", "--ledger", spec.ledger.url)
    assert status.returncode == 0, status.stderr
    assert "decision points of plate" in status.stdout
    from controller.report import write_report

    page = write_report(spec.ledger.url, "tc", tmp_path / "report").read_text()
    assert (
        "Time-courses and the agent&#x27;s actions" in page
        or "Time-courses and the agent's actions" in page
    )
    assert (tmp_path / "report" / "timecourse_1.png").exists()
    _check_verify_binds_decisions(spec.ledger.url, db)


def _check_verify_binds_decisions(url: str, db) -> None:
    """``verify`` passes, then notices a rewritten decision (what the agent applied) and a step
    moved to another time point."""
    import sqlalchemy as sa

    ok = run_cli("verify", "--ledger", url)
    assert ok.returncode == 0, ok.stdout + ok.stderr
    with db.begin() as conn:
        dp_id = conn.execute(sa.text("SELECT min(id) FROM decisionpoint")).scalar()
        conn.execute(
            sa.text("UPDATE decisionpoint SET actions = :a WHERE id = :i"),
            {"a": '{"g1": {"doses_um": {"drug_a": 2.0}}}', "i": dp_id},
        )
        conn.execute(sa.text("UPDATE step SET time_point = 0 WHERE time_point = 1"))
    bad = run_cli("verify", "--ledger", url)
    assert bad.returncode != 0
    assert f"decisionpoint {dp_id} was altered" in bad.stdout + bad.stderr
    assert "step: rows altered" in bad.stdout + bad.stderr


#: kills inside the time-course, each between a decision and (the end of) its action
KILL_POINTS = [
    "decision_proposed:2",  # decision 1 journaled, not through the gate
    "decision_compiled:2",  # decision 1 approved and its steps journaled, none run
    "step_started/withdraw:5",  # a withdrawal journaled, the liquid not moved
    "step_executed/withdraw:9",  # liquid withdrawn, done not journaled
    "step_executed/dispense:40",  # a dose dispensed, done not journaled
]


def test_sigkill_between_a_decision_and_its_action_applies_nothing_twice(
    campaign, tiny_policy, tmp_path
):
    path = campaign()
    kills = 0
    for point in KILL_POINTS:
        proc = run_cli("run", str(path), "--dry-run", "--quiet", env={"CELLPILOT_FAILPOINT": point})
        if proc.returncode == -signal.SIGKILL:
            kills += 1
        else:
            assert proc.returncode == 0, proc.stderr
    assert kills >= 4, "the failpoints did not fire"
    final = run_cli("run", str(path), "--dry-run", "--quiet")
    assert final.returncode == 0, final.stderr
    spec = load_campaign(path)
    db = open_ledger_engine(spec.ledger.url)
    _check_chain(spec, db, tiny_policy)
    _check_liquid_exact(spec, db, tmp_path / "tc")
    with Session(db) as s:  # each decision made once: one proposal per unit and decision point
        props = s.exec(select(Proposal).where(col(Proposal.decision_point_id).is_not(None))).all()
        assert len(props) == GROUPS * PROTOCOL["decisions"]
        resolutions = [(st.result or {}).get("resolution", "") for st in s.exec(select(Step))]
        assert any("confirmed by the handler" in r for r in resolutions)


def test_policy_approval_rejects_decisions_outside_the_signed_bounds(campaign, tmp_path):
    approval = {
        "mode": "policy",
        "policy": {
            "signed_by": "ana",
            "outside": "reject",
            "parameter_bounds": {"drug_a_um": [0, 0.5]},
        },
    }
    spec = load_campaign(campaign(approval=approval))
    result = CampaignRunner(spec, dry_run=True).run()
    assert result.status == "completed", result.pause_reason
    db = open_ledger_engine(spec.ledger.url)
    with Session(db) as s:
        props = s.exec(select(Proposal).where(col(Proposal.decision_point_id).is_not(None))).all()
        actors = {
            s.exec(select(Approval.actor).where(Approval.proposal_id == p.id)).one() for p in props
        }
        assert actors == {"policy:ana"}
        for p in s.exec(select(DecisionPoint)):
            for q in (q for q in props if q.decision_point_id == p.id):
                applied = p.actions[q.unit]
                if q.status == "rejected":  # outside the envelope: nothing is added
                    assert q.params["drug_a_um"] > 0.5 and applied.get("doses_um", {}) == {}
                else:
                    assert applied.get("doses_um", {}).get("drug_a", 0.0) <= 0.5
    _check_liquid_exact(spec, db, tmp_path / "tc")


def test_manual_approval_shows_the_policys_forecast(campaign):
    spec = load_campaign(campaign(approval={"mode": "manual", "poll_s": 0.1}))
    runner = CampaignRunner(spec, dry_run=True)
    done: list = []
    thread = threading.Thread(target=lambda: done.append(runner.run()), daemon=True)
    thread.start()
    db = open_ledger_engine(spec.ledger.url)
    seen = 0
    deadline = time.monotonic() + 240
    while thread.is_alive() and time.monotonic() < deadline:
        try:
            rows = pending_proposals(db, spec.name)
        except OperatorError:  # the runner has not written the campaign yet
            rows = []
        if rows:
            assert all(r["unit"] is not None and r["decision"] is not None for r in rows)
            assert all(
                {"tumour_viability", "normal_viability", "drug_um"} <= set(r["predicted_mean"])
                for r in rows
            )
            seen += len(rows)
            approve(db, None, "ana", spec.name)
        time.sleep(0.05)
    thread.join(timeout=5)
    assert done and done[0].status == "completed", done
    assert seen == GROUPS * PROTOCOL["decisions"]


def test_a_time_course_protocol_needs_a_deciding_planner(campaign):
    spec = load_campaign(campaign(planner={"name": "sobol", "batch_size": 3}))
    with pytest.raises(CampaignConfigError, match="planner.name"):
        CampaignRunner(spec, dry_run=True).preflight()
