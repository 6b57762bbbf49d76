"""The whole chain in one process: BoTorch planner -> auto approval -> dose_response protocol ->
simulated handler and microscope -> OME-TIFF files -> nuclei analyzer -> ledger -> next round."""

from __future__ import annotations

import json
from pathlib import Path

import tifffile
from sqlmodel import Session, select

from controller.ledger.models import (
    Approval,
    Campaign,
    Experiment,
    Measurement,
    Proposal,
    RawData,
    Round,
    Step,
    Well,
)
from controller.loop.engine import sha256_file
from controller.loop.events import EventBus, EventKind, verify_chain
from controller.loop.runner import CampaignRunner
from controller.report import write_report
from controller.spec import load_campaign
from tests.controller.conftest import run_cli


def test_closed_loop_records_everything(write_campaign, tmp_path):
    path = write_campaign(
        planner={"name": "bayesian", "batch_size": 6, "settings": {"profile": "fast"}},
        budget={"rounds": 3},
    )
    spec = load_campaign(path)
    seen: list[EventKind] = []
    bus = EventBus()
    bus.subscribe(lambda kind, payload: seen.append(kind))
    result = CampaignRunner(spec, dry_run=True, events=bus).run()
    assert result.status == "completed" and result.rounds == 3 and result.valid_experiments == 18

    db = __import__("controller.ledger.db", fromlist=["x"]).open_ledger_engine(spec.ledger.url)
    with Session(db) as s:
        camp = s.exec(select(Campaign)).one()
        props = s.exec(select(Proposal).order_by(Proposal.id)).all()
        assert len(props) == 18
        # rounds 1-2 are the Sobol initial design; round 3 is model-based with predictions
        modelled = [p for p in props if p.predicted_mean]
        assert len(modelled) == 6
        for p in modelled:
            assert set(p.predicted_mean) >= {"selectivity"} and p.predicted_sd["selectivity"] > 0
            assert p.acquisition_value is not None
        assert len(s.exec(select(Approval)).all()) == 18
        exps = s.exec(select(Experiment)).all()
        assert all(e.status == "measured" and e.n_valid_replicates >= 1 for e in exps)
        for r in s.exec(select(Round)):
            assert r.status == "analyzed" and r.z_prime["tumour_count"] is not None
            wells = s.exec(select(Well).where(Well.round_id == r.id)).all()
            # 6 experiments x 2 replicates, 4 + 4 controls, each drug of each combination
            # alone (single-agent wells, default on with two doses)
            assert len([w for w in wells if w.role != "single_agent"]) == 6 * 2 + 4 + 4
            assert len([w for w in wells if w.role == "single_agent"]) == 2 * 6
            assert {st.status for st in s.exec(select(Step).where(Step.round_id == r.id))} == {
                "done"
            }
            raws = s.exec(select(RawData).where(RawData.round_id == r.id)).all()
            assert {w.well for w in wells} == {raw.well for raw in raws}
            for raw in raws:
                assert sha256_file(Path(raw.path)) == raw.sha256
                with tifffile.TiffFile(raw.path) as tif:
                    assert tif.is_ome and tif.series[0].shape[0] == 2  # DAPI, GFP
                    ome = tif.ome_metadata
                    assert 'Channel ID="Channel:0:0" Name="DAPI"' in ome or 'Name="DAPI"' in ome
                    x, y = raw.meta["fields"][0]["position_um"]
                    assert f'PositionX="{float(x)}"' in ome and "DeltaT=" in ome
        per_well = s.exec(select(Measurement).where(Measurement.well_id.is_not(None))).all()
        assert {m.metric for m in per_well} >= {"cell_count", "tumour_count", "tumour_viability"}
        per_exp = s.exec(select(Measurement).where(Measurement.well_id.is_(None))).all()
        assert len({m.experiment_id for m in per_exp}) == 18
        assert verify_chain(s, camp.id)[0]
    for kind in (
        EventKind.ROUND_PROPOSED,
        EventKind.ROUND_COMPILED,
        EventKind.STEP_DONE,
        EventKind.IMAGE_ACQUIRED,
        EventKind.ROUND_ANALYZED,
        EventKind.CAMPAIGN_COMPLETED,
    ):
        assert kind in seen

    status = run_cli("status", "--campaign", "small", "--json", "--ledger", spec.ledger.url)
    data = json.loads(status.stdout)
    assert data["status"] == "completed" and data["valid_experiments"] == 18
    assert [r["status"] for r in data["round_details"]] == ["analyzed"] * 3

    page = write_report(spec.ledger.url, "small", tmp_path / "report")
    text = page.read_text()
    assert "Random search with the same 18 experiments" in text and "Model's recommendation" in text
    for png in ("convergence.png", "z_prime.png", "plate_01.png", "plate_03.png"):
        assert (tmp_path / "report" / png).stat().st_size > 1000

    # running the finished campaign again changes nothing
    again = CampaignRunner(spec, dry_run=True).run()
    assert again.status == "completed" and again.valid_experiments == 18
