"""Running policies and fixed schedules on simulated cultures, for benchmarks and tests.

- :func:`cultures` draws cultures from a named stream (``train``, ``dev``, ``test``) so that
  training, choosing settings and reporting never see the same draws.
- :func:`run_policy` runs a trained policy closed-loop (it sees noisy images, decides every
  ``interval_h``) on each culture; :func:`run_schedule` runs a fixed (open-loop) schedule.
  Both return ground-truth outcomes (:meth:`DosingObjective.evaluate`) and the viabilities a
  plate would have *measured* at the end (unit counts over the negative controls' counts).
"""

from __future__ import annotations

from typing import Literal

import numpy as np

from planners.rl.decision import _act
from planners.rl.env import DosingEpisodes
from planners.rl.policy import RLPolicy
from planners.rl.problem import DosingProblem
from simulators.timecourse import Beta, CultureParams, CulturePrior, LogNormal

#: seeds of the culture streams: training draws never meet dev or test draws
CULTURE_STREAMS: dict[str, int] = {"train": 1, "dev": 2, "test": 3}

Split = Literal["train", "dev", "test"]


def cultures(
    problem: DosingProblem,
    split: Split,
    seed: int,
    n: int,
    identical: bool = False,
    prior: CulturePrior | None = None,
) -> CultureParams:
    """``n`` cultures of stream ``split`` (``identical``: one culture repeated), from
    ``prior`` (default the problem's)."""
    rng = np.random.default_rng([CULTURE_STREAMS[split], 1000 + seed])
    prior = prior or problem.prior
    if identical:
        return prior.sample_identical(rng, n)
    return prior.sample(rng, n)


def _finish(episodes: DosingEpisodes) -> dict[str, np.ndarray]:
    out = episodes.outcome()
    end = episodes.k
    measured = (episodes.unit[:, end] + 1e-9) / np.maximum(episodes.control[:, end], 1e-9)
    out["measured_tumour_viability"] = measured[:, 0]
    out["measured_normal_viability"] = measured[:, 1]
    out["doses_um"] = episodes.doses.copy()
    out["exchange"] = episodes.exchange.copy()
    return out


def run_policy(policy: RLPolicy, params: CultureParams, seed: int = 0) -> dict[str, np.ndarray]:
    """Closed loop: the policy decides each unit's actions from its simulated images."""
    rng = np.random.default_rng([7, seed])
    episodes = DosingEpisodes(policy.problem)
    obs = episodes.start(params, rng)
    while not episodes.done:
        idx, _ = _act(policy, obs)
        doses, exchange = episodes.actions_to_doses(idx)
        episodes.apply(doses, exchange, rng)
        obs = episodes.observation()
    return _finish(episodes)


def run_schedule(
    problem: DosingProblem,
    doses_um: np.ndarray,
    exchange: np.ndarray,
    params: CultureParams,
    seed: int = 0,
) -> dict[str, np.ndarray]:
    """Open loop: every unit gets ``doses_um`` (``(decisions, drugs)``, or
    ``(n, decisions, drugs)`` per unit) and ``exchange`` (``(decisions,)`` or
    ``(n, decisions)``), whatever its images show."""
    rng = np.random.default_rng([8, seed])
    episodes = DosingEpisodes(problem)
    episodes.start(params, rng)
    n, k_max = params.n, problem.protocol.decisions
    d = np.broadcast_to(np.asarray(doses_um, float), (n, k_max, len(problem.drugs)))
    e = np.broadcast_to(np.asarray(exchange, float), (n, k_max))
    for k in range(k_max):
        episodes.apply(d[:, k], e[:, k] > 0, rng)
    return _finish(episodes)


def summarise(outcome: dict[str, np.ndarray]) -> dict[str, float]:
    """Means of an outcome's scalar fields, the violation rate and the worst culture."""
    out = {k: float(np.mean(v)) for k, v in outcome.items() if np.ndim(v) == 1}
    out["violations"] = float(np.mean(~outcome["feasible"].astype(bool)))
    out["worst_penalised"] = float(np.min(outcome["penalised"]))
    return out


def shifted_prior(prior: CulturePrior) -> CulturePrior:
    """A harder population than ``prior``, for testing outside the training distribution:
    normal cells 1.4x as sensitive and tumour cells 0.7x, both spread wider (sd 0.6 of log),
    tumours doubling in 20 h, and a resistant share of 20 % on average (``Beta(2, 8)``)."""
    return prior.model_copy(
        update={
            "normal_sensitivity": LogNormal(median=1.4, sd=0.6, low=0.2, high=5.0),
            "tumour_sensitivity": LogNormal(median=0.7, sd=0.6, low=0.2, high=5.0),
            "tumour_doubling_h": LogNormal(median=20.0, sd=0.2, low=10.0, high=60.0),
            "resistant_fraction": Beta(a=2.0, b=8.0),
        }
    )
