"""Gymnasium environments over the time-course simulator.

:class:`DosingEpisodes` steps ``n`` simulated units (each a culture in a group of wells, with
the plate's negative controls) through one time-course in lockstep: it images them (counts
with :class:`~simulators.timecourse.ImagingNoise`), applies decisions with the protocol's
liquid arithmetic (exchange to the residual volume and refill, then each drug's increment from
the stock the protocol would choose), and advances the biology by ``interval_h``.

- :class:`AdaptiveDosingEnv` is the single-culture ``gymnasium.Env`` (a new culture from the
  prior at every ``reset``).
- :class:`DosingVecEnv` is a Stable-Baselines3 ``VecEnv`` over one :class:`DosingEpisodes` of
  ``n_envs`` cultures: the simulation is vectorised, so training costs one numpy step per
  decision for all environments. Episodes have a fixed length, so all environments finish
  together and are reset together.

Actions are ``MultiDiscrete([levels of drug 1, levels of drug 2, …, 2])``: an index into
``[0, *dose steps]`` per drug and exchange no/yes. The reward of a step is minus the drug cost
of its doses; the last step adds ``(1 - tumour viability) - penalty * shortfall`` of normal
viability (see :mod:`planners.rl.problem`), so an episode's return is the penalised score.
"""

from __future__ import annotations

from typing import Any

import gymnasium as gym
import numpy as np
from gymnasium import spaces
from stable_baselines3.common.vec_env import VecEnv

from planners.rl.history import OBS_LIMIT, encode_observation, observation_size
from planners.rl.problem import DosingProblem
from protocols.base import VOLUME_EPS_UL
from simulators.timecourse import CultureParams, CultureState


def action_space(problem: DosingProblem) -> spaces.MultiDiscrete:
    """Dose level index per drug, then exchange (0/1)."""
    return spaces.MultiDiscrete([len(lv) for lv in problem.dose_levels()] + [2])


def observation_space(problem: DosingProblem) -> spaces.Box:
    """The encoded history (see :mod:`planners.rl.history`), clipped to ±``OBS_LIMIT``."""
    return spaces.Box(-OBS_LIMIT, OBS_LIMIT, shape=(observation_size(problem),), dtype=np.float32)


def addition_volumes(
    dose_um: np.ndarray, volume_ul: np.ndarray, stocks_um: list[float], min_volume_ul: float
) -> np.ndarray:
    """Volume (µL) that raises a well of ``volume_ul`` by ``dose_um``: from the most
    concentrated stock that still needs at least ``min_volume_ul`` (the protocol's rule, see
    :func:`protocols.base.choose_stock`); 0 where the dose is 0."""
    stocks = np.sort(np.asarray(stocks_um, float))
    need = dose_um[:, None] * volume_ul[:, None] / stocks[None, :]
    usable = need >= min_volume_ul - VOLUME_EPS_UL
    # the most concentrated usable stock is the last usable column (stocks ascending)
    idx = np.where(usable.any(axis=1), usable.shape[1] - 1 - np.argmax(usable[:, ::-1], axis=1), 0)
    return np.where(dose_um > 0, need[np.arange(len(dose_um)), idx], 0.0)


class DosingEpisodes:
    """``n`` units stepping through one time-course together (see the module docstring)."""

    def __init__(self, problem: DosingProblem) -> None:
        self.problem = problem
        self.model = problem.model()
        self.noise = problem.noise()
        self.levels = problem.dose_levels()
        self.k_max = problem.protocol.decisions
        self.params: CultureParams | None = None
        self.state: CultureState | None = None
        self.k = 0

    def start(self, params: CultureParams, rng: np.random.Generator) -> np.ndarray:
        """Seed the wells of ``params.n`` units, take the baseline images; the first
        observation, shape ``(n, obs)``."""
        p = self.problem.protocol
        n = params.n
        self.params = params
        self.state = self.model.initial_state(params, p.seeded_volume_ul)
        self.seeding = self.noise.seeding_factors(rng, (n, self.problem.wells_per_unit))
        self.control_seeding = self.noise.seeding_factors(rng, (n, p.negative_controls))
        self.unit = np.zeros((n, self.k_max + 1, 2))
        self.control = np.zeros((n, self.k_max + 1, 2))
        self.doses = np.zeros((n, self.k_max, len(self.levels)))
        self.exchange = np.zeros((n, self.k_max))
        self.k = 0
        self._image(rng)
        return self.observation()

    def _image(self, rng: np.random.Generator) -> None:
        assert self.state is not None
        counts = self.noise.count(rng, self.state.line_counts(), self.seeding)
        controls = self.noise.count(rng, self.state.line_counts(control=True), self.control_seeding)
        self.unit[:, self.k] = counts.mean(axis=1)
        self.control[:, self.k] = controls.mean(axis=1)

    def observation(self) -> np.ndarray:
        """The units' encoded histories at the current decision, shape ``(n, obs)``."""
        return encode_observation(
            self.problem, self.unit, self.control, self.doses, self.exchange, self.k
        )

    @property
    def done(self) -> bool:
        """True once the last decision's images were taken."""
        return self.k >= self.k_max

    def actions_to_doses(self, action_idx: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """MultiDiscrete actions ``(n, drugs + 1)`` → dose increments (µM) and exchange flags."""
        a = np.asarray(action_idx, dtype=int)
        doses = np.stack([lv[a[:, j]] for j, lv in enumerate(self.levels)], axis=1)
        return doses, a[:, -1].astype(bool)

    def liquid(
        self, state: CultureState, doses_um: np.ndarray, exchange: np.ndarray
    ) -> CultureState:
        """``state`` after one decision's liquid handling (the order and volumes of
        :meth:`protocols.adaptive_dosing.AdaptiveDosing.plan_action`)."""
        p = self.problem.protocol
        state = self.model.exchange(
            state,
            np.asarray(exchange, bool),
            p.residual_volume_ul,
            p.seeded_volume_ul - p.residual_volume_ul,
        )
        volume = state.volume_ul
        for j, drug in enumerate(self.problem.drugs):
            v = addition_volumes(doses_um[:, j], volume, p.stocks[drug], p.min_volume_ul)
            state = self.model.add(state, drug, doses_um[:, j] * volume, v)
        return state

    def resume(
        self,
        params: CultureParams,
        state: CultureState,
        unit: np.ndarray,
        control: np.ndarray,
        doses: np.ndarray,
        exchange: np.ndarray,
        k: int,
        rng: np.random.Generator,
    ) -> np.ndarray:
        """Continue ``params.n`` units from decision ``k`` with the given images and actions
        so far (arrays as :func:`~planners.rl.history.encode_observation` takes) and the
        cultures' current ``state``; the observation at ``k``. Future images get fresh
        seeding factors."""
        p = self.problem.protocol
        self.params, self.state, self.k = params, state, k
        self.unit, self.control = unit.copy(), control.copy()
        self.doses, self.exchange = doses.copy(), exchange.copy()
        self.seeding = self.noise.seeding_factors(rng, (params.n, self.problem.wells_per_unit))
        self.control_seeding = self.noise.seeding_factors(rng, (params.n, p.negative_controls))
        return self.observation()

    def apply(
        self, doses_um: np.ndarray, exchange: np.ndarray, rng: np.random.Generator
    ) -> np.ndarray:
        """Apply one decision to every unit, incubate, image; the step's rewards ``(n,)``."""
        if self.done or self.state is None or self.params is None:
            raise RuntimeError("the time-course is over (or not started): call start()")
        p = self.problem.protocol
        self.doses[:, self.k] = doses_um
        self.exchange[:, self.k] = exchange
        state = self.liquid(self.state, doses_um, exchange)
        self.state = self.model.advance(self.params, state, p.interval_h)
        self.k += 1
        self._image(rng)
        reward = -self.problem.objective.drug_cost_per_um * doses_um.sum(axis=1)
        if self.done:
            out = self.outcome()
            shortfall = out["penalised"] - out["score"]  # -penalty * max(0, bound - normal)
            reward = reward + (1.0 - out["tumour_viability"]) + shortfall
        return np.asarray(reward)

    def outcome(self) -> dict[str, np.ndarray]:
        """Ground-truth outcome so far (see :meth:`DosingObjective.evaluate`)."""
        assert self.state is not None
        via = self.state.viability()
        return self.problem.objective.evaluate(via[:, 0], via[:, 1], self.doses.sum(axis=(1, 2)))


class DosingVecEnv(VecEnv):
    """``n_envs`` cultures from ``problem.prior`` (or ``sampler``), vectorised for SB3.

    Args:
        problem: the dosing problem.
        n_envs: cultures per batch.
        seed: seeds cultures, seeding and imaging noise.
        sampler: ``(rng, n) -> CultureParams``; default ``problem.prior.sample``.
    """

    def __init__(
        self, problem: DosingProblem, n_envs: int, seed: int = 0, sampler: Any = None
    ) -> None:
        self.render_mode = None  # SB3 warns when a VecEnv lacks it
        super().__init__(n_envs, observation_space(problem), action_space(problem))
        self.episodes = DosingEpisodes(problem)
        self.rng = np.random.default_rng(seed)
        self.sampler = sampler or problem.prior.sample
        self._actions: np.ndarray | None = None

    def reset(self) -> np.ndarray:
        return self.episodes.start(self.sampler(self.rng, self.num_envs), self.rng)

    def step_async(self, actions: np.ndarray) -> None:
        self._actions = np.asarray(actions).reshape(self.num_envs, -1)

    def step_wait(self) -> tuple[np.ndarray, np.ndarray, np.ndarray, list[dict[str, Any]]]:
        assert self._actions is not None
        doses, exchange = self.episodes.actions_to_doses(self._actions)
        reward = self.episodes.apply(doses, exchange, self.rng)
        obs = self.episodes.observation()
        done = np.full(self.num_envs, self.episodes.done)
        infos: list[dict[str, Any]] = [{} for _ in range(self.num_envs)]
        if self.episodes.done:
            out = self.episodes.outcome()
            for i, info in enumerate(infos):
                info["terminal_observation"] = obs[i]
                info["TimeLimit.truncated"] = False
                info["outcome"] = {k: float(v[i]) for k, v in out.items()}
            obs = self.reset()
        return obs, reward.astype(np.float32), done, infos

    def close(self) -> None:
        pass

    def get_attr(self, attr_name: str, indices: Any = None) -> list[Any]:
        return [getattr(self, attr_name)] * len(self._indices(indices))

    def set_attr(self, attr_name: str, value: Any, indices: Any = None) -> None:
        setattr(self, attr_name, value)

    def env_method(self, method_name: str, *args: Any, indices: Any = None, **kw: Any) -> list[Any]:
        return [getattr(self, method_name)(*args, **kw) for _ in self._indices(indices)]

    def env_is_wrapped(self, wrapper_class: type[gym.Wrapper], indices: Any = None) -> list[bool]:
        return [False] * len(self._indices(indices))

    def _indices(self, indices: Any) -> list[int]:
        if indices is None:
            return list(range(self.num_envs))
        return [indices] if isinstance(indices, int) else list(indices)


class AdaptiveDosingEnv(gym.Env[np.ndarray, np.ndarray]):
    """One culture per episode, drawn from ``problem.prior`` at each ``reset``.

    ``info`` of the last step carries ``outcome`` (ground truth, see
    :meth:`DosingEpisodes.outcome`); ``reset(options={"culture": CultureParams})`` runs a given
    culture (``n == 1``) instead of a draw.
    """

    metadata: dict[str, Any] = {"render_modes": []}

    def __init__(self, problem: DosingProblem | None = None) -> None:
        self.problem = problem or DosingProblem()
        self.episodes = DosingEpisodes(self.problem)
        self.action_space = action_space(self.problem)
        self.observation_space = observation_space(self.problem)

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        culture = (options or {}).get("culture")
        if culture is None:
            culture = self.problem.prior.sample(self.np_random, 1)
        return self.episodes.start(culture, self.np_random)[0], {}

    def step(self, action: np.ndarray) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        doses, exchange = self.episodes.actions_to_doses(np.asarray(action).reshape(1, -1))
        reward = float(self.episodes.apply(doses, exchange, self.np_random)[0])
        info: dict[str, Any] = {}
        if self.episodes.done:
            info["outcome"] = {k: float(v[0]) for k, v in self.episodes.outcome().items()}
        return self.episodes.observation()[0], reward, self.episodes.done, False, info
