"""The fitted model of one planning round: objectives and outcome-constrained metrics.

Outputs, in order: each objective times its sign (so every objective is maximised), then each
metric that only an outcome constraint names (raw units). Only the current campaign's
observations (``task is None``) are modelled directly; prior campaigns' observations enter
through :mod:`planners.transfer` (multi-task GP, guarded against negative transfer).

When every metric was measured wherever the first objective was and no metric uses prior
data (the usual case), one multi-output ``SingleTaskGP`` models them all (independent GPs
batched together, which qLogNEI evaluates about 3x faster than a ``ModelListGP``);
otherwise each metric gets its own model on its own observations, in a ``ModelListGP``.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from functools import partial

import torch
from botorch.acquisition.multi_objective.objective import IdentityMCMultiOutputObjective
from botorch.acquisition.objective import GenericMCObjective, ScalarizedPosteriorTransform
from botorch.models import ModelListGP
from botorch.models.model import Model
from torch import Tensor

from planners.base import Observation
from planners.encoding import SpaceEncoder
from planners.models import MetricData, fit_gp, metric_data, predict
from planners.space import Objective, OutcomeConstraint
from planners.transfer import TransferChoice, choose_model

#: constrained metrics need this many observations to be modelled; fewer: ignored this round
MIN_CONSTRAINT_OBS = 3


def _at_least(Z: Tensor, i: int, bound: float, sign: float) -> Tensor:
    return bound - sign * Z[..., i]  # feasible (<= 0) where sign * Z_i >= bound


def _at_most(Z: Tensor, i: int, bound: float, sign: float) -> Tensor:
    return sign * Z[..., i] - bound


def current_rows(history: Sequence[Observation], metrics: Sequence[str]) -> list[Observation]:
    """Current-campaign observations where every metric in ``metrics`` is measured (finite)."""
    return [
        o
        for o in history
        if o.task is None
        and all(m in o.outcomes and math.isfinite(float(o.outcomes[m])) for m in metrics)
    ]


class Surrogate:
    """Models of the objectives and constrained metrics, fitted on ``history``.

    Attributes:
        objectives: the campaign's objectives (outputs ``0 .. n_objectives-1``).
        metrics: metric name of each output.
        signs: ``+1``/``-1`` per output (objective direction; ``+1`` for constraint-only).
        constraints: the outcome constraints that are modelled this round.
        X_baseline: ``n x d`` encoded current-campaign points with every objective measured.
        transfer: per metric with prior data, the guard's decision (:class:`TransferChoice`).
        model: the fitted model; ``posterior(X)`` has one output per metric.
    """

    def __init__(
        self,
        encoder: SpaceEncoder,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        *,
        use_prior_data: bool = True,
    ) -> None:
        self.objectives = list(objectives)
        self.n_objectives = len(self.objectives)
        self.metrics = [o.metric for o in self.objectives]
        self.signs = [o.sign for o in self.objectives]
        rows = current_rows(history, self.metrics)
        self.X_baseline = encoder.encode([o.params for o in rows])
        per_metric: dict[str, MetricData] = {
            m: metric_data(encoder, history, m) for m in self.metrics
        }
        self.constraints: list[OutcomeConstraint] = []
        for c in outcome_constraints:
            data = per_metric.get(c.metric) or metric_data(encoder, history, c.metric)
            if data.X.shape[0] < MIN_CONSTRAINT_OBS:
                continue
            per_metric[c.metric] = data
            if c.metric not in self.metrics:
                self.metrics.append(c.metric)
                self.signs.append(1.0)
            self.constraints.append(c)
        signed = [
            MetricData(m, per_metric[m].X, g * per_metric[m].Y)
            for m, g in zip(self.metrics, self.signs, strict=True)
        ]
        self.transfer: dict[str, TransferChoice] = {}
        tasks = sorted({o.task for o in history if o.task is not None})
        if use_prior_data and tasks:
            for d, g in zip(signed, self.signs, strict=True):
                priors = [metric_data(encoder, history, d.metric, task=t) for t in tasks]
                priors = [MetricData(p.metric, p.X, g * p.Y) for p in priors if p.X.shape[0]]
                if priors:  # own RNG stream: declining transfer leaves the round as cold
                    with torch.random.fork_rng():
                        self.transfer[d.metric] = choose_model(encoder, d, priors)
        self.model = self._build(encoder, signed)

    def _build(self, encoder: SpaceEncoder, signed: list[MetricData]) -> Model:
        chosen = {m: t.model for m, t in self.transfer.items() if t.transfer}
        same_x = all(torch.equal(d.X, signed[0].X) for d in signed)
        if not chosen and same_x:
            return fit_gp(encoder, signed[0].X, torch.cat([d.Y for d in signed], dim=-1))
        models = [
            chosen[d.metric]
            if d.metric in chosen
            else (
                self.transfer[d.metric].model
                if d.metric in self.transfer
                else fit_gp(encoder, d.X, d.Y)
            )
            for d in signed
        ]
        return models[0] if len(models) == 1 else ModelListGP(*models)  # type: ignore[arg-type]  # GP models

    @property
    def uses_transfer(self) -> bool:
        """Whether any output is modelled with prior campaigns' data."""
        return any(t.transfer for t in self.transfer.values())

    @property
    def supports_cache_root(self) -> bool:
        """Whether BoTorch may cache the baseline's Cholesky root (single-task GPs only)."""
        return not self.uses_transfer

    # ------------------------------------------------------------ acquisition pieces

    def constraint_callables(self) -> list[Callable[[Tensor], Tensor]] | None:
        """BoTorch outcome constraints on samples ``... x m`` (feasible where ``<= 0``)."""
        cons: list[Callable[[Tensor], Tensor]] = []
        for c in self.constraints:
            i = self.metrics.index(c.metric)
            sg = self.signs[i]  # undo the objective sign for a constraint on an objective
            if c.op == ">=":
                cons.append(partial(_at_least, i=i, bound=c.bound, sign=sg))
            else:
                cons.append(partial(_at_most, i=i, bound=c.bound, sign=sg))
        return cons or None

    def single_mc_objective(self) -> GenericMCObjective | None:
        """Objective output 0 of a multi-output model (``None`` when single-output)."""
        if len(self.metrics) == 1:
            return None
        return GenericMCObjective(lambda Z, X: Z[..., 0])

    def multi_mc_objective(self) -> IdentityMCMultiOutputObjective | None:
        """The objective outputs when constraint-only outputs follow them."""
        if len(self.metrics) == self.n_objectives:
            return None
        return IdentityMCMultiOutputObjective(outcomes=list(range(self.n_objectives)))

    def objective_transform(
        self, weights: Sequence[float] | None = None
    ) -> ScalarizedPosteriorTransform | None:
        """Weighted sum of the (signed) objective outputs; output 0 alone by default."""
        if len(self.metrics) == 1:
            return None
        w = torch.zeros(len(self.metrics), dtype=self.X_baseline.dtype)
        w[: self.n_objectives] = torch.tensor(
            list(weights) if weights is not None else [1.0] + [0.0] * (self.n_objectives - 1),
            dtype=w.dtype,
        )
        return ScalarizedPosteriorTransform(weights=w)

    # ------------------------------------------------------------------ predictions

    def signed_moments(self, X: Tensor) -> tuple[Tensor, Tensor]:
        """Posterior mean and sd per output (objectives signed): two ``n x m`` tensors."""
        return predict(self.model, X)

    def log_feasibility(self, mean: Tensor, sd: Tensor) -> Tensor:
        """Log probability that every modelled constraint holds, from per-output moments.

        Outputs are modelled independently, so the probability is a product of normal CDFs.

        Args:
            mean, sd: ``... x m`` signed posterior moments (as :meth:`signed_moments`).

        Returns:
            ``...``: log probability of feasibility (``0`` without constraints).
        """
        out = torch.zeros(mean.shape[:-1], dtype=mean.dtype)
        for c in self.constraints:
            i = self.metrics.index(c.metric)
            mu, s = self.signs[i] * mean[..., i], sd[..., i].clamp_min(1e-9)
            z = (mu - c.bound) / s if c.op == ">=" else (c.bound - mu) / s
            out = out + torch.special.log_ndtr(z)
        return out

    def predictions(self, X: Tensor) -> list[tuple[dict[str, float], dict[str, float]]]:
        """Per row of ``X``: (mean, sd) per metric in raw units (the metric's own sign)."""
        mean, sd = self.signed_moments(X)
        return [
            (
                {
                    m: float(g * mean[k, j])
                    for j, (m, g) in enumerate(zip(self.metrics, self.signs, strict=True))
                },
                {m: float(sd[k, j]) for j, m in enumerate(self.metrics)},
            )
            for k in range(X.shape[0])
        ]
