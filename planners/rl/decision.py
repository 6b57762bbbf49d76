"""The agent's decision: a pure function of (policy, a unit's observation history, seed).

::

    policy = load_policy("policies/adaptive_dosing.zip")      # checksum checked
    decision = decide(policy, history, seed=17)
    decision.action            # UnitAction: doses (µM increments) and exchange
    decision.params            # {"drug_a_um": 1.0, "drug_b_um": 0.25, "exchange": 0}
    decision.expected          # ExpectedOutcome at the end of the time-course
    decision.to_proposal()     # the same, as a planners.base.Proposal for the approval gate

The action is the policy's most probable one (deterministic). The expected outcome is a
forecast: cultures drawn from the policy's training prior are weighted by how well the
simulator, replaying the unit's actions, reproduces its images so far (a particle filter on
the log fold changes, with counting and imaging noise as the likelihood), resampled, and
rolled forward to the end with this action and then the policy's own future decisions on
simulated images. It is the policy's world model talking: it says what the policy expects,
not a guarantee, and ``effective_particles`` says how many prior cultures still explain the
history (a handful means the unit looks unlike anything the policy was trained on).
"""

from __future__ import annotations

import hashlib

import numpy as np
import torch
from pydantic import BaseModel, ConfigDict, Field

from planners.base import Proposal
from planners.rl.env import DosingEpisodes
from planners.rl.history import ObservationHistory, encode_observation, history_arrays
from planners.rl.policy import RLPolicy
from planners.rl.problem import DosingProblem
from planners.space import Params
from protocols.timecourse import UnitAction
from simulators.timecourse import CultureParams, CultureState

PLANNER_NAME = "rl"
#: sd of the model error added to each log fold change in the forecast's likelihood (the
#: prior's cultures are not the only way a culture can behave); chosen on dev cultures so
#: that the forecast's intervals are calibrated (see benchmarks/README.md, rl_adaptive.py).
MODEL_SLACK = 0.15


class ExpectedOutcome(BaseModel):
    """The forecast end of the time-course (means and sds over the forecast cultures)."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    tumour_viability: float
    tumour_viability_sd: float
    normal_viability: float
    normal_viability_sd: float
    probability_feasible: float = Field(description="P(normal viability >= the bound)")
    drug_um: float = Field(description="total dose added by the end, µM (all drugs)")
    score: float = Field(description="mean of (1 - tumour viability) - drug cost")
    effective_particles: float = Field(description="prior cultures that explain the history")


class Decision(BaseModel):
    """One decision for one unit, with what the policy expects of it."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    decision: int = Field(ge=0, description="index of the decision point")
    action: UnitAction
    params: Params
    action_probability: float = Field(description="the policy's probability of this action")
    expected: ExpectedOutcome
    policy_id: str
    policy_sha256: str

    def to_proposal(self) -> Proposal:
        """As a proposal for the approval gate: the action's parameters, with the forecast as
        the prediction (``tumour_viability``, ``normal_viability``, ``drug_um``)."""
        e = self.expected
        return Proposal(
            params=self.params,
            predicted_mean={
                "tumour_viability": e.tumour_viability,
                "normal_viability": e.normal_viability,
                "drug_um": e.drug_um,
            },
            predicted_sd={
                "tumour_viability": e.tumour_viability_sd,
                "normal_viability": e.normal_viability_sd,
            },
            probability_feasible=e.probability_feasible,
            planner=PLANNER_NAME,
        )


def decide(
    policy: RLPolicy, history: ObservationHistory, *, seed: int = 0, particles: int = 512
) -> Decision:
    """The policy's action for the unit whose time-course so far is ``history``.

    Args:
        policy: a loaded policy (:func:`planners.rl.policy.load_policy`).
        history: the unit's images and past actions (the decision follows the last images).
        seed: seeds the forecast (same inputs and seed, same decision).
        particles: cultures in the forecast.

    Raises:
        InvalidHistory: the history does not fit the policy's protocol.
    """
    problem = policy.problem
    unit, ctrl, doses, exchange = history_arrays(problem, history)
    k = len(history.time_points) - 1
    obs = encode_observation(problem, unit, ctrl, doses, exchange, k)
    idx, prob = _act(policy, obs)
    levels = problem.dose_levels()
    action = UnitAction(
        doses_um={
            d: float(levels[j][idx[0, j]]) for j, d in enumerate(problem.drugs) if idx[0, j] > 0
        },
        exchange=bool(idx[0, -1]),
    )
    rng = np.random.default_rng([seed, _history_key(history)])
    expected = forecast(policy, unit, ctrl, doses, exchange, k, idx[0], rng, particles)
    return Decision(
        decision=k,
        action=action,
        params=action.to_params(problem.drugs),
        action_probability=float(prob[0]),
        expected=expected,
        policy_id=policy.policy_id,
        policy_sha256=policy.sha256,
    )


def _history_key(history: ObservationHistory) -> int:
    digest = hashlib.sha256(history.model_dump_json().encode()).digest()
    return int.from_bytes(digest[:8], "little")


def _act(policy: RLPolicy, obs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Most probable MultiDiscrete actions ``(n, dims)`` and their probabilities ``(n,)``."""
    net = policy.model.policy
    with torch.no_grad():
        dist = net.get_distribution(torch.as_tensor(obs, dtype=torch.float32))
        idx = dist.mode()
        prob = torch.exp(dist.log_prob(idx))
    return idx.numpy().astype(int).reshape(len(obs), -1), prob.numpy()


def forecast(
    policy: RLPolicy,
    unit: np.ndarray,
    ctrl: np.ndarray,
    doses: np.ndarray,
    exchange: np.ndarray,
    k: int,
    action_idx: np.ndarray,
    rng: np.random.Generator,
    particles: int = 512,
) -> ExpectedOutcome:
    """Particle forecast of the end of a unit's time-course (see the module docstring).

    ``unit``, ``ctrl``, ``doses``, ``exchange`` are one unit's arrays (batch of 1) as
    :func:`~planners.rl.history.history_arrays` returns them; ``action_idx`` is the action
    about to be taken at decision ``k``.
    """
    problem = policy.problem
    cultures = problem.prior.sample(rng, particles)
    episodes = DosingEpisodes(problem)
    state, predicted = _replay(problem, episodes, cultures, doses[0], exchange[0], k)
    logw = _log_likelihood(problem, unit[0], ctrl[0], predicted, k)
    w = np.exp(logw - logw.max())
    w /= w.sum()
    ess = float(1.0 / np.sum(w**2))
    pick = rng.choice(particles, size=particles, p=w)
    episodes.resume(
        cultures.take(pick),
        state.take(pick),
        *(  # type: ignore[arg-type,call-arg]  # 4 arrays
            np.repeat(a, particles, axis=0) for a in (unit, ctrl, doses, exchange)
        ),
        k,
        rng,
    )
    act = np.tile(action_idx, (particles, 1))
    while True:
        d, ex = episodes.actions_to_doses(act)
        episodes.apply(d, ex, rng)
        if episodes.done:
            break
        act, _ = _act(policy, episodes.observation())
    out = episodes.outcome()
    tv, nv = out["tumour_viability"], out["normal_viability"]
    return ExpectedOutcome(
        tumour_viability=float(tv.mean()),
        tumour_viability_sd=float(tv.std()),
        normal_viability=float(nv.mean()),
        normal_viability_sd=float(nv.std()),
        probability_feasible=float(out["feasible"].mean()),
        drug_um=float(out["drug_um"].mean()),
        score=float(out["score"].mean()),
        effective_particles=ess,
    )


def _replay(
    problem: DosingProblem,
    episodes: DosingEpisodes,
    cultures: CultureParams,
    doses: np.ndarray,
    exchange: np.ndarray,
    k: int,
) -> tuple[CultureState, np.ndarray]:
    """Noise-free ``(unit, control)`` line counts of each culture at time points ``0..k``
    under the recorded actions, shape ``(n, k + 1, 4)``, and the state at ``k``."""
    model, p = episodes.model, problem.protocol
    state = model.initial_state(cultures, p.seeded_volume_ul)
    seen = [np.concatenate([state.line_counts(), state.line_counts(control=True)], axis=1)]
    n = cultures.n
    for j in range(k):
        state = episodes.liquid(state, np.tile(doses[j], (n, 1)), np.full(n, exchange[j] > 0))
        state = model.advance(cultures, state, p.interval_h)
        seen.append(np.concatenate([state.line_counts(), state.line_counts(control=True)], 1))
    return state, np.stack(seen, axis=1)


def _log_likelihood(
    problem: DosingProblem, unit: np.ndarray, ctrl: np.ndarray, predicted: np.ndarray, k: int
) -> np.ndarray:
    """Gaussian log-likelihood of the observed log fold changes since baseline, per culture.

    Variance per feature: Poisson counting of the observed nuclei (at baseline and at the
    time point, over all fields and wells), the per-image error, and ``MODEL_SLACK``².
    """
    if k == 0:
        return np.zeros(predicted.shape[0])
    noise = problem.noise()
    m = noise.misclassified
    seen_pred = np.concatenate(
        [_mislabel(predicted[..., :2], m), _mislabel(predicted[..., 2:], m)], axis=-1
    )
    obs = np.concatenate([unit[: k + 1], ctrl[: k + 1]], axis=-1)  # (k+1, 4) per field
    wells = np.array([problem.wells_per_unit] * 2 + [problem.protocol.negative_controls] * 2)
    total = obs * noise.fields_per_well * wells  # nuclei counted
    var = (
        1.0 / (total[1:] + 1.0)
        + 1.0 / (total[:1] + 1.0)
        + 2 * noise.image_sd**2 / wells
        + MODEL_SLACK**2
    )
    lo = np.log((obs[1:] + 1e-3) / (obs[:1] + 1e-3))
    lp = np.log(seen_pred[:, 1:] / seen_pred[:, :1])
    return np.asarray(-0.5 * np.sum((lp - lo) ** 2 / var, axis=(1, 2)))


def _mislabel(lines: np.ndarray, m: float) -> np.ndarray:
    return np.stack(
        [lines[..., 0] * (1 - m) + lines[..., 1] * m, lines[..., 1] * (1 - m) + lines[..., 0] * m],
        axis=-1,
    )
