"""What the agent sees: a unit's images so far and the actions it took, as a fixed-size vector.

The controller builds an :class:`ObservationHistory` per decision unit from the analyzer's
per-well counts (``tumour_count``, ``normal_count``: nuclei per field) of the unit's wells and
of the plate's negative-control wells at every imaging time so far, plus the actions applied.
:func:`encode_observation` turns it (or the simulator's arrays, in training) into the policy's
input, so training and deployment read cultures identically.

Features per time point ``k`` (zeros for time points not yet imaged): the log fold change
since the baseline images of the unit's tumour and normal counts and of the controls', the
unit's log viabilities against the controls (difference of those), and a flag that it was
observed; per past decision: each dose increment over its largest step and the exchange flag;
then a nominal estimate of each drug's current concentration (decay at the prior's median
half-life, exchange leaving ``residual / seeded`` of it) over its largest step, the doses
added so far, and a one-hot of the decision index.
"""

from __future__ import annotations

import math

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from planners.rl.exceptions import InvalidHistory
from planners.rl.problem import DosingProblem
from protocols.timecourse import UnitAction

TIME_FEATURES = 7
#: features are clipped to ±OBS_LIMIT (log fold changes beyond e^10 carry no more information)
OBS_LIMIT = 10.0


class TimePoint(BaseModel):
    """Images of one unit and of the plate's negative controls at one time.

    Counts are nuclei per field as the analyzer reports them: one ``(tumour, normal)`` pair
    per well.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_h: float = Field(ge=0, description="hours after the baseline images")
    unit_counts: list[tuple[float, float]] = Field(min_length=1)
    control_counts: list[tuple[float, float]] = Field(min_length=1)


class ObservationHistory(BaseModel):
    """A unit's time-course so far: images at ``time_points[0..k]`` and the ``k`` actions
    applied after the first ``k`` of them; the agent decides the action after the last one."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    time_points: list[TimePoint] = Field(min_length=1)
    actions: list[UnitAction] = Field(default_factory=list)


def observation_size(problem: DosingProblem) -> int:
    """Length of the vector :func:`encode_observation` returns."""
    k, d = problem.protocol.decisions, len(problem.drugs)
    return (k + 1) * TIME_FEATURES + k * (d + 1) + 2 * d + k


def history_arrays(
    problem: DosingProblem, history: ObservationHistory
) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """``(unit, control, doses, exchange)`` arrays of one history, shaped for
    :func:`encode_observation` with a batch of 1.

    Raises:
        InvalidHistory: too many time points or actions, or actions that do not fit.
    """
    k_max = problem.protocol.decisions
    k = len(history.time_points) - 1
    if k >= k_max:
        raise InvalidHistory(
            "time_points",
            f"{k + 1} time points but the protocol decides "
            f"only {k_max} times (the last images end it)",
        )
    if len(history.actions) != k:
        raise InvalidHistory(
            "actions",
            f"{len(history.actions)} actions for {k + 1} time "
            f"points; expected {k} (one after each but the last)",
        )
    unit = np.zeros((1, k_max + 1, 2))
    ctrl = np.zeros((1, k_max + 1, 2))
    for i, tp in enumerate(history.time_points):
        unit[0, i] = np.mean(np.asarray(tp.unit_counts, float), axis=0)
        ctrl[0, i] = np.mean(np.asarray(tp.control_counts, float), axis=0)
    doses = np.zeros((1, k_max, len(problem.drugs)))
    exchange = np.zeros((1, k_max))
    for j, a in enumerate(history.actions):
        unknown = set(a.doses_um) - set(problem.drugs)
        if unknown:
            raise InvalidHistory(f"actions[{j}]", f"unknown drugs {sorted(unknown)}")
        doses[0, j] = [a.doses_um.get(d, 0.0) for d in problem.drugs]
        exchange[0, j] = float(a.exchange)
    return unit, ctrl, doses, exchange


def encode_observation(
    problem: DosingProblem,
    unit: np.ndarray,
    control: np.ndarray,
    doses: np.ndarray,
    exchange: np.ndarray,
    k: int,
) -> np.ndarray:
    """The policy's input for a batch of units at decision ``k``.

    Args:
        unit, control: mean ``(tumour, normal)`` counts per field of the unit's wells and of
            the control wells, shape ``(n, decisions + 1, 2)``; entries after ``k`` are ignored.
        doses: dose increments applied at each decision (µM), shape ``(n, decisions, drugs)``;
            entries from ``k`` on are ignored.
        exchange: 1 where the medium was exchanged, shape ``(n, decisions)``.
        k: decisions made so far (time points ``0..k`` are imaged).

    Returns:
        float32 array of shape ``(n, observation_size(problem))``.
    """
    p = problem.protocol
    k_max, n = p.decisions, unit.shape[0]
    levels = problem.dose_levels()
    top = np.array([lv[-1] for lv in levels])
    times = np.zeros((n, k_max + 1, TIME_FEATURES))
    seen = slice(0, k + 1)
    lu = np.log((unit[:, seen] + 1.0) / (unit[:, :1] + 1.0))
    lc = np.log((control[:, seen] + 1.0) / (control[:, :1] + 1.0))
    times[:, seen, 0:2] = lu
    times[:, seen, 2:4] = lc
    times[:, seen, 4:6] = lu - lc
    times[:, seen, 6] = 1.0
    acts = np.zeros((n, k_max, len(top) + 1))
    acts[:, :k, :-1] = doses[:, :k] / top
    acts[:, :k, -1] = exchange[:, :k]
    conc = np.zeros((n, len(top)))
    decay = np.array([math.log(2.0) / problem.prior.half_life_h[d].median for d in problem.drugs])
    keep = p.residual_volume_ul / p.seeded_volume_ul
    for j in range(k):
        conc = np.where(exchange[:, j : j + 1] > 0, conc * keep, conc) + doses[:, j]
        conc = conc * np.exp(-decay * p.interval_h)
    used = doses[:, :k].sum(axis=1) / (top * k_max)
    step = np.zeros((n, k_max))
    if k < k_max:
        step[:, k] = 1.0
    parts = [times.reshape(n, -1), acts.reshape(n, -1), conc / top, used, step]
    return np.asarray(
        np.clip(np.concatenate(parts, axis=1), -OBS_LIMIT, OBS_LIMIT), dtype=np.float32
    )
