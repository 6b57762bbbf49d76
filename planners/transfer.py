"""Transfer learning from earlier campaigns, with a guard against negative transfer.

Prior campaigns enter ``history`` as observations whose ``task`` names the campaign. For a
metric that prior campaigns measured, two models of the current campaign are fitted:

- *cold*: a ``SingleTaskGP`` on the current campaign's observations only;
- *transfer*: a ``MultiTaskGP`` (ICM kernel: a kernel over the parameters times a learned
  task covariance) on the current and the prior observations, predicting the current task.

**Guard (the rule).** The transfer model is used only when it predicts the current
campaign's own observations better than the cold model does by more than a margin
(:data:`GUARD_MARGIN_NATS` + :data:`GUARD_MARGIN_PER_POINT` per current observation),
measured by the exact
leave-one-out (LOO) log predictive density of the current campaign's observations in raw
metric units, summed (each model with its fitted hyperparameters; closed form from the
inverse of the training covariance, Rasmussen & Williams eq. 5.12). Unrelated prior data
give the task covariance a small correlation and no LOO gain, so the cold model is kept,
and the planner does exactly what it would do without prior data. The guard needs
:data:`MIN_CURRENT` current observations; with fewer, the cold model (and the initial
design) is used. Beyond :data:`MAX_CURRENT` current observations the campaign's own data
dominate and the cold model is used without fitting the multi-task one (latency).

Scales differ between campaigns (another cell line, another lot), so each prior task's
values are first mapped onto the current campaign's mean and standard deviation; the model
then learns how strongly (and with which sign) the tasks correlate.

Layout: the task index is column 0 of the model's training inputs (0 = current campaign,
1.. = prior campaigns in sorted name order), followed by the encoded parameters. The
acquisition passes encoded parameters only; ``MultiTaskGP.posterior`` then inserts the
current task itself (``output_tasks=[0]``).
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import torch
from botorch.models import MultiTaskGP
from botorch.models.model import Model
from torch import Tensor

from planners.encoding import SpaceEncoder
from planners.models import CodesToOneHot, MetricData, _fit_cached, fit_gp

#: marginal-likelihood iterations for the multi-task fit (100 left the task correlation
#: under-fitted: LOO gain of a related prior 3.9 nats instead of 11 at 200)
MULTITASK_FIT_MAXITER = 200
#: current-campaign observations of a metric needed before the guard (and transfer) runs
MIN_CURRENT = 3
#: beyond this many current observations of a metric the cold model is used without fitting
#: the multi-task model: prior data help most early, and at 100 current (+40 prior)
#: observations the two multi-task fits took ~1 s of a 2.4 s batch
MAX_CURRENT = 48
#: LOO log-density gain (nats, summed over the current observations) the transfer model
#: needs over the cold one: ``GUARD_MARGIN_NATS + GUARD_MARGIN_PER_POINT * n_current``. On a
#: 2-parameter test family a related prior gained 4-16 nats at 4-8 current points, an
#: unrelated one -8 to +3.5 (one chance win of 3.5 at 8 points), hence 2 + 0.25 n.
GUARD_MARGIN_NATS = 2.0
GUARD_MARGIN_PER_POINT = 0.25


@dataclass(frozen=True)
class TransferChoice:
    """The model chosen for one metric and why.

    Attributes:
        metric: the metric.
        model: the fitted model of the current campaign (single output).
        transfer: whether the multi-task model was chosen.
        loo_cold: LOO log predictive density (sum, raw units) of the cold model.
        loo_transfer: the same for the multi-task model (``nan`` when not fitted).
    """

    metric: str
    model: Model
    transfer: bool
    loo_cold: float
    loo_transfer: float


def fit_multitask(encoder: SpaceEncoder, current: MetricData, priors: list[MetricData]) -> Model:
    """A ``MultiTaskGP`` for the current task (index 0) given prior tasks' data.

    Args:
        encoder: the space's encoder (categorical codes are one-hot inside the model).
        current: the current campaign's data of the metric (``n x d``, ``n x 1``).
        priors: each prior campaign's data of the same metric.

    Returns:
        A model whose ``posterior(X)`` (``X``: ``... x d`` encoded) is the current task's.
    """
    mu, sd = _mean_sd(current.Y)
    Xs, Ys = [_with_task(current.X, 0)], [current.Y]
    for t, prior in enumerate(priors, start=1):
        pmu, psd = _mean_sd(prior.Y)
        Xs.append(_with_task(prior.X, t))
        Ys.append((prior.Y - pmu) / psd * sd + mu)
    X, Y = torch.cat(Xs), torch.cat(Ys)

    def build() -> Model:
        transform = None
        if encoder.cat_dims:
            levels = {i + 1: len(v) for i, v in encoder.cat_values().items()}
            transform = CodesToOneHot(encoder.dim + 1, levels)
        return MultiTaskGP(X, Y, task_feature=0, output_tasks=[0], input_transform=transform)

    kind = ("multitask", encoder.dim, tuple(encoder.cat_dims))
    return _fit_cached(kind, X, Y, build, maxiter=MULTITASK_FIT_MAXITER)


def choose_model(
    encoder: SpaceEncoder, current: MetricData, priors: list[MetricData]
) -> TransferChoice:
    """Fit the cold model and, if there are prior data, the transfer model; apply the guard."""
    cold = fit_gp(encoder, current.X, current.Y)
    priors = [p for p in priors if p.X.shape[0] > 0]
    if not priors or not MIN_CURRENT <= current.X.shape[0] <= MAX_CURRENT:
        return TransferChoice(current.metric, cold, False, math.nan, math.nan)
    n = current.X.shape[0]
    loo_cold = loo_log_density(cold, n)
    try:
        with torch.random.fork_rng():  # the decision depends on the data only
            torch.manual_seed(0)
            multi = fit_multitask(encoder, current, priors)
        loo_multi = loo_log_density(multi, n)
    except (RuntimeError, ValueError):  # numerical failure: never worse than cold
        return TransferChoice(current.metric, cold, False, loo_cold, math.nan)
    if loo_multi > loo_cold + GUARD_MARGIN_NATS + GUARD_MARGIN_PER_POINT * n:
        return TransferChoice(current.metric, multi, True, loo_cold, loo_multi)
    return TransferChoice(current.metric, cold, False, loo_cold, loo_multi)


def loo_log_density(model: Model, n_current: int) -> float:
    """Sum of exact LOO log predictive densities of the first ``n_current`` training points.

    Works for a single-output ``SingleTaskGP`` and for :func:`fit_multitask` models (the
    current task's points come first). Densities are in raw metric units: the standardised
    density minus ``log`` of the outcome transform's standard deviation.
    """
    was_training = model.training
    model.train()
    try:
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            inputs = model.train_inputs
            marginal = model.likelihood(model(*inputs), *inputs)  # type: ignore[operator,misc]  # gpytorch
            K = marginal.covariance_matrix
            resid = (model.train_targets - marginal.mean).reshape(-1)
            L = torch.linalg.cholesky(K + 1e-8 * torch.eye(K.shape[-1], dtype=K.dtype))
            Kinv = torch.cholesky_inverse(L)
            alpha = Kinv @ resid
            diag = Kinv.diagonal()[:n_current]
            var = 1.0 / diag
            err = alpha[:n_current] / diag
            logp = -0.5 * torch.log(2 * math.pi * var) - 0.5 * err**2 / var
            std = model.outcome_transform.stdvs.reshape(-1)[0]  # type: ignore[union-attr,operator]
            return float(logp.sum() - n_current * torch.log(std))
    finally:
        model.train(was_training)
        if not was_training:
            model.eval()


def _with_task(X: Tensor, task: int) -> Tensor:
    return torch.cat([torch.full((X.shape[0], 1), float(task), dtype=X.dtype), X], dim=-1)


def _mean_sd(Y: Tensor) -> tuple[float, float]:
    mu = float(Y.mean())
    sd = float(Y.std()) if Y.shape[0] > 1 else 1.0
    return mu, sd if sd > 1e-9 else 1.0
