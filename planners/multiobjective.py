"""Several objectives: Pareto fronts, the automatic reference point, and choosing one point.

- **Search**: qLogNEHVI (BoTorch's ``qLogNoisyExpectedHypervolumeImprovement``) on the signed
  objective outputs, outcome constraints as BoTorch constraints.
- **Reference point** (automatic): BoTorch's ``infer_reference_point`` on the Pareto front of
  the model's posterior means at the observed conditions (those predicted feasible with
  probability >= 0.5; all of them if none is): ``nadir - 0.1 * range`` per objective, the
  Ishibuchi et al. (2011) rule BoTorch uses. Posterior means, not raw measurements, so one
  lucky noisy well does not move the reference point.
- **One "best" point** from a front (:func:`choose_on_front`): each objective is normalised to
  ``[0, 1]`` over the front (0 = worst, 1 = best on the front). Without a preference the
  *knee* wins: the point whose worst normalised objective is highest (max-min, the most
  balanced compromise). With an operator's ``preference`` (non-negative weight per metric)
  the point with the highest weighted sum of normalised objectives wins.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from botorch.utils.multi_objective.hypervolume import infer_reference_point
from botorch.utils.multi_objective.pareto import is_non_dominated
from torch import Tensor

from planners.base import Observation
from planners.exceptions import PlannerError
from planners.space import Objective, OutcomeConstraint


def pareto_front(
    history: Sequence[Observation],
    objectives: Sequence[Objective],
    outcome_constraints: Sequence[OutcomeConstraint] = (),
) -> list[Observation]:
    """The measured Pareto front of the current campaign (for the report).

    Observations of the current campaign (``task is None``) that measured every objective and
    whose measured values meet every outcome constraint (a constrained metric that was not
    measured counts as not met), and that no other such observation dominates. Model-free:
    measured values, in history order.
    """
    rows = []
    for o in history:
        if o.task is not None:
            continue
        vals = [o.outcomes.get(obj.metric) for obj in objectives]
        if any(v is None or not math.isfinite(float(v)) for v in vals):
            continue
        if not all(
            c.metric in o.outcomes and c.satisfied(float(o.outcomes[c.metric]))
            for c in outcome_constraints
        ):
            continue
        rows.append(o)
    if not rows:
        return []
    Y = torch.tensor(
        [[obj.sign * float(o.outcomes[obj.metric]) for obj in objectives] for o in rows],
        dtype=torch.double,
    )
    mask = is_non_dominated(Y, deduplicate=False)
    return [o for o, keep in zip(rows, mask.tolist(), strict=True) if keep]


def reference_point(signed_means: Tensor, log_feasible: Tensor) -> Tensor:
    """Automatic reference point (signed objectives, maximised), see the module docstring.

    Args:
        signed_means: ``n x k`` posterior means of the objectives at observed conditions.
        log_feasible: ``n`` log probability of feasibility of each.

    Returns:
        ``k`` reference point.
    """
    keep = log_feasible >= math.log(0.5)
    Y = signed_means[keep] if bool(keep.any()) else signed_means
    front = Y[is_non_dominated(Y)]
    return infer_reference_point(front)


def choose_on_front(
    signed_front: Tensor,
    objectives: Sequence[Objective],
    preference: Mapping[str, float] | None = None,
) -> int:
    """Index of the point chosen from a front (``n x k``, signed, maximised).

    Raises:
        PlannerError: if ``preference`` names a metric that is not an objective, or has a
            negative or all-zero weight.
    """
    lo = signed_front.min(dim=0).values
    span = (signed_front.max(dim=0).values - lo).clamp_min(1e-12)
    U = (signed_front - lo) / span
    if preference is None:
        score = U.min(dim=-1).values + 1e-6 * U.sum(dim=-1)  # ties: the larger sum
    else:
        w = preference_weights(objectives, preference).to(U)
        score = U @ w
    return int(score.argmax())


def preference_weights(objectives: Sequence[Objective], preference: Mapping[str, float]) -> Tensor:
    """Validated weights per objective (``k``), in objective order; absent metrics weigh 0."""
    names = [o.metric for o in objectives]
    unknown = set(preference) - set(names)
    if unknown:
        raise PlannerError(f"preference names {sorted(unknown)}, which are not objectives {names}")
    w = torch.tensor([float(preference.get(n, 0.0)) for n in names], dtype=torch.double)
    if bool((w < 0).any()) or float(w.sum()) <= 0:
        raise PlannerError(f"preference weights must be >= 0 and not all 0, got {dict(preference)}")
    return w / w.sum()
