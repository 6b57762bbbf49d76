"""Issue-5 planning features reached through campaign files: several objectives, a plate-wide
parameter, and prior campaigns as transfer data."""

from __future__ import annotations

from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Experiment, Proposal, Round, Step
from controller.loop.runner import CampaignRunner
from controller.report import write_report
from controller.spec import load_campaign
from planners import get_planner, register_planner
from tests.controller.conftest import run_cli


def test_two_objectives_run_and_report_a_front(write_campaign, tmp_path):
    path = write_campaign(
        objectives=[
            {"metric": "selectivity", "direction": "maximize"},
            {"metric": "normal_viability", "direction": "maximize"},
        ],
        planner={
            "name": "bayesian",
            "batch_size": 4,
            "settings": {"profile": "fast", "n_initial": 8},
        },
        budget={"rounds": 3},
    )
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    url = load_campaign(path).ledger.url
    with Session(open_ledger_engine(url)) as s:
        modelled = [p for p in s.exec(select(Proposal)) if p.predicted_mean]
        assert modelled and all(
            {"selectivity", "normal_viability"} <= set(p.predicted_mean) for p in modelled
        )
    page = write_report(url, "small", tmp_path / "rep").read_text()
    assert "Pareto front" in page and (tmp_path / "rep" / "pareto.png").exists()


def test_plate_wide_incubation_time_is_shared_by_each_batch(write_campaign):
    data_space = {
        "parameters": [
            {"name": "drug_a_um", "type": "continuous", "low": 0.01, "high": 10, "log_scale": True},
            {"name": "drug_b_um", "type": "continuous", "low": 0.01, "high": 10, "log_scale": True},
            {"name": "incubation_h", "type": "integer", "low": 24, "high": 72},
        ]
    }
    path = write_campaign(space=data_space, budget={"rounds": 2})
    import yaml

    data = yaml.safe_load(path.read_text())
    data["protocol"]["settings"]["incubation_parameter"] = "incubation_h"
    path.write_text(yaml.safe_dump(data))
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    with Session(open_ledger_engine(load_campaign(path).ledger.url)) as s:
        for r in s.exec(select(Round)):
            values = {
                e.params["incubation_h"]
                for e in s.exec(select(Experiment).where(Experiment.round_id == r.id))
            }
            assert len(values) == 1
            incubate = s.exec(
                select(Step).where(Step.round_id == r.id, Step.kind == "incubate")
            ).one()
            assert incubate.payload["duration_s"] == values.pop() * 3600


SEEN: list = []


@register_planner("history_spy")
class HistorySpy:
    """Sobol proposals; remembers the history each call received."""

    name = "history_spy"

    def propose(self, space, objectives, history, pending, n, seed, **kw):
        SEEN.append(list(history))
        return get_planner("sobol").propose(space, objectives, history, pending, n, seed, **kw)


def test_prior_campaign_feeds_the_planner(write_campaign):
    first = write_campaign("first.yaml", name="first_line", budget={"rounds": 1})
    assert run_cli("run", str(first), "--dry-run", "--quiet").returncode == 0
    second = write_campaign(
        "second.yaml",
        name="second_line",
        budget={"rounds": 2},
        planner={"name": "history_spy", "batch_size": 6},
        transfer={"prior_campaigns": ["first_line"]},
    )
    SEEN.clear()
    result = CampaignRunner(load_campaign(second), dry_run=True).run()
    assert result.status == "completed"
    assert [sum(o.task == "first_line" for o in h) for h in SEEN] == [6, 6]
    assert [sum(o.task is None for o in h) for h in SEEN] == [0, 6]
    missing = write_campaign(
        "third.yaml", name="third_line", transfer={"prior_campaigns": ["nope"]}
    )
    bad = run_cli("run", str(missing), "--dry-run", "--quiet")
    assert bad.returncode == 2 and "no campaign named 'nope'" in bad.stderr
