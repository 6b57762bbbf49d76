from __future__ import annotations

import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env

from planners.rl.env import AdaptiveDosingEnv, DosingEpisodes, DosingVecEnv, addition_volumes
from planners.rl.exceptions import InvalidHistory
from planners.rl.history import (
    ObservationHistory,
    TimePoint,
    encode_observation,
    history_arrays,
    observation_size,
)
from planners.rl.problem import DosingProblem, default_protocol_settings
from protocols.timecourse import UnitAction, WellLiquid

PROBLEM = DosingProblem()


def test_env_passes_gymnasium_checks_and_an_episode_returns_the_penalised_score():
    env = AdaptiveDosingEnv(PROBLEM)
    check_env(env, skip_render_check=True)
    obs, _ = env.reset(seed=4)
    assert obs.shape == (observation_size(PROBLEM),)
    total, steps, done, info = 0.0, 0, False, {}
    while not done:
        obs, reward, done, _, info = env.step(np.array([2, 1, 0]))
        total += reward
        steps += 1
    assert steps == PROBLEM.protocol.decisions
    out = info["outcome"]
    assert total == pytest.approx(out["penalised"])
    assert out["drug_um"] == pytest.approx(8 * (1.0 + 0.25))


def test_vec_env_resets_all_cultures_together_with_terminal_observations():
    env = DosingVecEnv(PROBLEM, n_envs=5, seed=1)
    env.reset()
    for _ in range(PROBLEM.protocol.decisions):
        env.step_async(np.zeros((5, 3), dtype=int))
        obs, reward, done, infos = env.step_wait()
    assert done.all() and all("terminal_observation" in i for i in infos)
    assert all(i["outcome"]["drug_um"] == 0 for i in infos)
    assert obs[:, -PROBLEM.protocol.decisions].tolist() == [1.0] * 5  # new episodes at k = 0


def test_liquid_handling_matches_the_protocol():
    proto = PROBLEM.build_protocol()
    episodes = DosingEpisodes(PROBLEM)
    rng = np.random.default_rng(0)
    episodes.start(PROBLEM.prior.nominal(1), rng)
    liquid = WellLiquid(volume_ul=PROBLEM.protocol.seeded_volume_ul)
    state = episodes.state  # liquid() only moves liquid; decay happens in advance()
    for doses, ex in [((2.0, 1.0), False), ((0.5, 0.25), False), ((1.0, 0.0), True)]:
        action = UnitAction(doses_um=dict(zip(PROBLEM.drugs, doses, strict=True)), exchange=ex)
        liquid = liquid.apply_all(proto.plan_action(liquid, action))
        state = episodes.liquid(state, np.array([doses]), np.array([ex]))
    assert state.volume_ul[0] == pytest.approx(liquid.volume_ul)
    for j, d in enumerate(PROBLEM.drugs):
        assert state.amount_pmol[0, j] == pytest.approx(liquid.amounts_pmol.get(d, 0.0))


@pytest.mark.parametrize("seed", range(3))
def test_addition_volumes_choose_stocks_like_the_protocol(seed: int):
    proto = PROBLEM.build_protocol()
    rng = np.random.default_rng(seed)
    volumes = rng.uniform(150, 250, 20)
    for drug, levels in zip(PROBLEM.drugs, PROBLEM.dose_levels(), strict=True):
        doses = rng.choice(levels, 20)
        got = addition_volumes(
            doses, volumes, PROBLEM.protocol.stocks[drug], PROBLEM.protocol.min_volume_ul
        )
        for dose, vol, v in zip(doses, volumes, got, strict=True):
            plan = proto.plan_action(WellLiquid(volume_ul=vol), UnitAction(doses_um={drug: dose}))
            assert v == pytest.approx(sum(t.volume_ul for t in plan))


def test_observation_from_a_history_equals_the_training_observation():
    episodes = DosingEpisodes(PROBLEM)
    rng = np.random.default_rng(2)
    episodes.start(PROBLEM.prior.sample(rng, 1), rng)
    actions = [
        UnitAction(doses_um={"drug_a": 1.0}),
        UnitAction(exchange=True),
        UnitAction(doses_um={"drug_a": 0.5, "drug_b": 1.0}),
    ]
    for a in actions:
        episodes.apply(
            np.array([[a.doses_um.get(d, 0.0) for d in PROBLEM.drugs]]), np.array([a.exchange]), rng
        )
    history = ObservationHistory(
        time_points=[
            TimePoint(
                time_h=12.0 * k,
                unit_counts=[tuple(episodes.unit[0, k])],
                control_counts=[tuple(episodes.control[0, k])],
            )
            for k in range(len(actions) + 1)
        ],
        actions=actions,
    )
    arrays = history_arrays(PROBLEM, history)
    assert np.allclose(encode_observation(PROBLEM, *arrays, len(actions)), episodes.observation())


def test_observation_reflects_the_unit_and_not_future_time_points():
    k_max = PROBLEM.protocol.decisions
    unit = np.ones((2, k_max + 1, 2)) * 100
    unit[1, 1] = [50, 100]  # unit 1: tumour halved by time point 1
    unit[:, 2:] = 1e6  # not yet imaged: must not leak into the observation
    control = np.ones((2, k_max + 1, 2)) * 100
    doses, ex = np.zeros((2, k_max, 2)), np.zeros((2, k_max))
    obs = encode_observation(PROBLEM, unit, control, doses, ex, 1)
    assert obs[1, 7] == pytest.approx(np.log(51 / 101))  # time point 1, tumour log fold change
    assert obs[0, 7] == 0.0 and not np.any(obs[:, 14:63])


def test_invalid_histories_are_refused():
    tp = TimePoint(time_h=0.0, unit_counts=[(10.0, 10.0)], control_counts=[(10.0, 10.0)])
    with pytest.raises(InvalidHistory, match="actions"):
        history_arrays(PROBLEM, ObservationHistory(time_points=[tp], actions=[UnitAction()]))
    with pytest.raises(InvalidHistory, match="time_points"):
        history_arrays(
            PROBLEM, ObservationHistory(time_points=[tp] * 9, actions=[UnitAction()] * 8)
        )
    with pytest.raises(InvalidHistory, match="unknown drugs"):
        history_arrays(
            PROBLEM,
            ObservationHistory(
                time_points=[tp, tp], actions=[UnitAction(doses_um={"drug_c": 1.0})]
            ),
        )


def test_problem_refuses_a_prior_for_other_drugs():
    with pytest.raises(ValueError, match="prior.half_life_h names drugs"):
        DosingProblem(
            protocol=default_protocol_settings(dose_steps_um={"drug_b": [0.5], "drug_a": [0.5]})
        )
