from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from planners.exceptions import UnsupportedPlanningFeature
from planners.rl.decision import decide
from planners.rl.env import DosingEpisodes
from planners.rl.exceptions import IncompatiblePolicy, PolicyFileError
from planners.rl.history import ObservationHistory, TimePoint
from planners.rl.planner import RLPlanner
from planners.rl.policy import RLPolicy, TrainConfig, load_policy
from planners.rl.problem import default_protocol_settings
from planners.rl.train import main as train_main
from planners.rl.train import train
from planners.space import ContinuousParameter, Objective, SearchSpace
from protocols.adaptive_dosing import AdaptiveDosing
from protocols.timecourse import UnitAction


@pytest.fixture(scope="module")
def tiny(tmp_path_factory: pytest.TempPathFactory) -> RLPolicy:
    return train(TrainConfig.tiny(), tmp_path_factory.mktemp("rl") / "tiny.zip")


def history(policy: RLPolicy, normal_factor: float, k: int = 2) -> ObservationHistory:
    """A unit whose normal cells change by ``normal_factor`` per interval, controls grow."""
    tps = [
        TimePoint(
            time_h=12.0 * i,
            unit_counts=[(100.0 * 1.3**i, 100.0 * normal_factor**i)] * 3,
            control_counts=[(100.0 * 1.3**i, 100.0 * 1.2**i)] * 6,
        )
        for i in range(k + 1)
    ]
    return ObservationHistory(time_points=tps, actions=[UnitAction(doses_um={"drug_a": 1.0})] * k)


def test_policy_file_is_versioned_and_checked(tiny: RLPolicy, tmp_path: Path):
    meta = json.loads(Path(f"{tiny.path}.json").read_text())
    assert meta["policy_id"] == f"rl-{meta['sha256'][:12]}"
    assert meta["versions"]["stable-baselines3"] and meta["versions"]["torch"].startswith("2.13")
    assert TrainConfig.model_validate(meta["config"]) == tiny.config
    assert meta["timesteps"] >= tiny.config.total_timesteps
    loaded = load_policy(tiny.path)
    assert loaded.policy_id == tiny.policy_id
    assert loaded.ledger_record()["sha256"] == meta["sha256"]
    tampered = tmp_path / "t.zip"
    tampered.write_bytes(tiny.path.read_bytes() + b"x")
    Path(f"{tampered}.json").write_text(Path(f"{tiny.path}.json").read_text())
    with pytest.raises(PolicyFileError, match="does not match the sidecar"):
        load_policy(tampered)
    lonely = tmp_path / "lonely.zip"
    lonely.write_bytes(tiny.path.read_bytes())
    with pytest.raises(PolicyFileError, match="sidecar lonely.zip.json is missing"):
        load_policy(lonely)


def test_decide_is_pure_and_in_the_protocols_vocabulary(tiny: RLPolicy):
    h = history(tiny, 1.2)
    a, b = decide(tiny, h, seed=3, particles=64), decide(tiny, h, seed=3, particles=64)
    assert a == b
    assert a.decision == 2 and a.policy_id == tiny.policy_id
    AdaptiveDosing(tiny.problem.protocol).to_action(a.params)  # a valid action
    assert 0 < a.action_probability <= 1
    e = a.expected
    assert 0 <= e.probability_feasible <= 1 and e.drug_um >= 2.0  # 2 x 1 µM already added
    proposal = a.to_proposal()
    assert proposal.planner == "rl" and proposal.params == a.params
    assert proposal.predicted_mean["normal_viability"] == e.normal_viability


def test_forecast_reads_the_culture_in_front_of_it(tiny: RLPolicy):
    dying = decide(tiny, history(tiny, 0.6, k=3), seed=0, particles=256).expected
    thriving = decide(tiny, history(tiny, 1.2, k=3), seed=0, particles=256).expected
    assert dying.normal_viability < thriving.normal_viability - 0.2
    assert dying.probability_feasible < thriving.probability_feasible
    assert thriving.effective_particles > 1


def test_closed_loop_on_simulated_images(tiny: RLPolicy):
    # the decision API driven by the simulator's images for a whole time-course
    rng = np.random.default_rng(0)
    episodes = DosingEpisodes(tiny.problem)
    episodes.start(tiny.problem.prior.sample(rng, 1), rng)
    actions: list[UnitAction] = []
    while not episodes.done:
        h = ObservationHistory(
            time_points=[
                TimePoint(
                    time_h=12.0 * k,
                    unit_counts=[tuple(episodes.unit[0, k])],
                    control_counts=[tuple(episodes.control[0, k])],
                )
                for k in range(episodes.k + 1)
            ],
            actions=actions,
        )
        d = decide(tiny, h, seed=1, particles=16)
        actions.append(d.action)
        episodes.apply(
            np.array([[d.action.doses_um.get(x, 0.0) for x in tiny.problem.drugs]]),
            np.array([d.action.exchange]),
            rng,
        )
    assert len(actions) == tiny.problem.protocol.decisions


def test_rl_planner_checks_the_campaign(tiny: RLPolicy):
    planner = RLPlanner(policy=str(tiny.path), particles=16)
    space = AdaptiveDosing(tiny.problem.protocol).action_space()
    planner.check(space, [Objective(metric="score")])
    with pytest.raises(UnsupportedPlanningFeature, match="the space"):
        planner.check(SearchSpace(parameters=[ContinuousParameter(name="x", low=0, high=1)]), [])
    planner.check_protocol(tiny.problem.protocol)
    with pytest.raises(IncompatiblePolicy, match="interval_h=12.0 but the campaign has 24"):
        planner.check_protocol(default_protocol_settings(interval_h=24))
    with pytest.raises(UnsupportedPlanningFeature, match="one-shot proposals"):
        planner.propose(space, [], [], [], 4, 0)
    out = planner.decide_units({"0": history(tiny, 1.2), "1": history(tiny, 0.6)}, seed=0)
    assert set(out) == {"0", "1"}
    assert planner.ledger_record()["policy_id"] == tiny.policy_id


def test_train_command(tmp_path: Path, capsys: pytest.CaptureFixture[str]):
    out = tmp_path / "p.zip"
    assert train_main(["--tiny", "--quiet", "--timesteps", "256", "--out", str(out)]) == 0
    assert out.exists() and Path(f"{out}.json").exists()
    assert "rl-" in capsys.readouterr().out
    bad = tmp_path / "bad.yaml"
    bad.write_text("n_envs: 0\n")
    assert train_main(["--config", str(bad), "--out", str(tmp_path / "q.zip")]) == 2
    assert "n_envs" in capsys.readouterr().err


def test_example_training_file_states_the_defaults():
    from planners.rl.train import load_config

    example = Path(__file__).resolve().parents[2] / "examples" / "adaptive_dosing_train.yaml"
    assert load_config(example) == TrainConfig()


def test_the_shipped_policy_loads_and_fits_the_example_campaign() -> None:
    """``policies/adaptive_dosing.zip`` (what ``make demo-rl`` and the example use): its checksum
    matches the sidecar, it was trained for the example's protocol, and it decides."""
    from pathlib import Path

    import yaml

    from planners.rl.planner import RLPlanner

    root = Path(__file__).resolve().parents[2]
    example = yaml.safe_load((root / "examples" / "adaptive_dosing.yaml").read_text())
    policy = root / example["planner"]["settings"]["policy"]
    planner = RLPlanner(policy=str(policy), particles=16)
    planner.check_protocol(example["protocol"]["settings"])
    record = planner.ledger_record()
    assert record["policy_id"].startswith("rl-") and len(record["sha256"]) == 64
