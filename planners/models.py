"""Gaussian-process surrogates for one metric at a time, fitted on encoded inputs.

Inputs are the :class:`~planners.encoding.SpaceEncoder` columns (unit cube, categorical
codes); outcomes are standardised by BoTorch's ``Standardize`` transform, so posteriors are
in raw metric units. The model is a ``SingleTaskGP``; categorical columns (integer codes)
are expanded to one-hot inside the model by :class:`CodesToOneHot`, so optimisers search
the codes (``optimize_acqf_mixed_alternating``) while the kernel sees one-hot vectors.

Measured on one thread, 60 observations, 4 numeric + one 4-level categorical parameter:
fitting ``MixedSingleTaskGP`` (categorical kernel) took 1.3-1.6 s, the one-hot
``SingleTaskGP`` 0.16 s, which is why the latter is used.
"""

from __future__ import annotations

import math
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import torch
from botorch.fit import fit_gpytorch_mll
from botorch.models import SingleTaskGP
from botorch.models.model import Model
from botorch.models.transforms.input import InputTransform
from botorch.models.transforms.outcome import Standardize
from botorch.posteriors.gpytorch import GPyTorchPosterior
from gpytorch.mlls import ExactMarginalLogLikelihood
from torch import Tensor

from planners.base import Observation
from planners.encoding import DTYPE, SpaceEncoder


class CodesToOneHot(InputTransform, torch.nn.Module):
    """Replace integer-coded categorical columns by one-hot blocks (appended at the end).

    ``... x d`` (codes in ``cat_dims``) -> ``... x (d - len(cat_dims) + sum(n_levels))``.
    """

    def __init__(self, dim: int, cat_levels: dict[int, int]) -> None:
        super().__init__()
        self.transform_on_train = True
        self.transform_on_eval = True
        self.transform_on_fantasize = True
        self.cat_levels = dict(cat_levels)
        self.keep = [i for i in range(dim) if i not in self.cat_levels]

    def transform(self, X: Tensor) -> Tensor:
        parts = [X[..., self.keep]]
        for i, k in self.cat_levels.items():
            code = X[..., i].round().clamp(0, k - 1).long()
            parts.append(torch.nn.functional.one_hot(code, k).to(X))
        return torch.cat(parts, dim=-1)

    def equals(self, other: InputTransform) -> bool:
        return isinstance(other, CodesToOneHot) and other.cat_levels == self.cat_levels


@dataclass(frozen=True)
class MetricData:
    """Training data of one metric: encoded inputs ``n x d`` and values ``n x 1`` (raw units)."""

    metric: str
    X: Tensor
    Y: Tensor


def metric_data(
    encoder: SpaceEncoder, history: Sequence[Observation], metric: str, task: str | None = None
) -> MetricData:
    """Observations of ``task`` (``None``: the current campaign) where ``metric`` was measured
    (finite), encoded."""
    rows = [
        o
        for o in history
        if o.task == task and metric in o.outcomes and math.isfinite(float(o.outcomes[metric]))
    ]
    X = encoder.encode([o.params for o in rows])
    Y = torch.tensor([[float(o.outcomes[metric])] for o in rows], dtype=DTYPE).reshape(-1, 1)
    return MetricData(metric, X, Y)


def fit_gp(encoder: SpaceEncoder, X: Tensor, Y: Tensor) -> Model:
    """Fit a GP to ``X`` (``n x d`` encoded) and ``Y`` (``n x m``; ``m`` independent outputs).

    Hyperparameters maximise the marginal likelihood. Fitted hyperparameters are cached by
    the exact training data (see :func:`_fit_cached`), so a retry, or ``recommend`` after
    ``propose`` on the same history, skips the fit; same data, same model: still pure.

    Raises nothing on a failed fit: BoTorch's ``fit_gpytorch_mll`` retries and otherwise
    leaves the prior hyperparameters, which still give a usable (if vague) model.
    """

    def build() -> Model:
        transform = None
        if encoder.cat_dims:
            levels = {i: len(v) for i, v in encoder.cat_values().items()}
            transform = CodesToOneHot(encoder.dim, levels)
        return SingleTaskGP(
            X, Y, outcome_transform=Standardize(m=Y.shape[-1]), input_transform=transform
        )

    return _fit_cached(("single", encoder.dim, tuple(encoder.cat_dims)), X, Y, build)


#: Fitted hyperparameters by (model kind, training data); bounded, oldest dropped first.
_FIT_CACHE: OrderedDict[tuple[object, ...], dict[str, Tensor]] = OrderedDict()
_FIT_CACHE_SIZE = 64
_FIT_CACHE_LOCK = threading.Lock()
#: default cap on marginal-likelihood optimiser iterations
FIT_MAXITER = 100


def _fit_cached(
    kind: tuple[object, ...],
    X: Tensor,
    Y: Tensor,
    build: Callable[[], Model],
    maxiter: int | None = None,
) -> Model:
    """Build a model and fit it, or load the hyperparameters fitted on identical data.

    ``maxiter`` caps L-BFGS-B iterations of the marginal-likelihood fit (default
    :data:`FIT_MAXITER`): an uncapped ``MultiTaskGP`` fit on ~50 points ran ~800 likelihood
    evaluations (3.5 s CPU) for a log-likelihood close to the one reached after 200; a
    one-hot ``SingleTaskGP`` (3 categoricals of 10 levels + 2 continuous, 100 observations)
    took 2.0 s uncapped, 0.63 s at 200 and 0.32 s at 100 iterations for a marginal
    log-likelihood per point of -2.15, -2.16 and -2.17.
    """
    maxiter = maxiter or FIT_MAXITER
    key = (kind, maxiter, tuple(X.shape), tuple(Y.shape), X.numpy().tobytes(), Y.numpy().tobytes())
    with _FIT_CACHE_LOCK:
        state = _FIT_CACHE.get(key)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # input-range and optimisation warnings
        if state is None:
            state = _fit_state(build(), maxiter)
            with _FIT_CACHE_LOCK:
                _FIT_CACHE[key] = state
                while len(_FIT_CACHE) > _FIT_CACHE_SIZE:
                    _FIT_CACHE.popitem(last=False)
        # Always a fresh model loaded with the state, cache hit or miss: the model that did
        # the fitting predicted up to ~1e-15 differently (parameter tensors left with other
        # memory layouts by the optimiser), enough to steer the acquisition optimiser.
        model = build()
        model.load_state_dict(state)
    model.eval()
    return model


def _fit_state(model: Model, maxiter: int) -> dict[str, Tensor]:
    """Fit ``model``'s hyperparameters; return its state (copied).

    The fit runs on its own torch RNG stream seeded with a constant: when L-BFGS-B stops on
    a warning (e.g. the iteration cap), BoTorch retries from hyperparameters drawn from
    their priors with the global torch RNG, so the fit would otherwise depend on whatever
    the process drew before, and the cache would hand that history to later calls.
    """
    with torch.random.fork_rng():
        torch.manual_seed(0)
        mll = ExactMarginalLogLikelihood(model.likelihood, model)
        fit_gpytorch_mll(mll, optimizer_kwargs={"options": {"maxiter": maxiter}})
    return {k: v.detach().clone() for k, v in model.state_dict().items()}


def predict(model: Model, X: Tensor) -> tuple[Tensor, Tensor]:
    """Posterior mean and sd of the latent functions at ``X`` (``n x d``): two ``n x m`` tensors."""
    with torch.no_grad(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        post = cast(GPyTorchPosterior, model.posterior(X))
        mean = post.mean.reshape(X.shape[0], -1)
        sd = post.variance.clamp_min(0.0).sqrt().reshape(X.shape[0], -1)
    return mean, sd
