"""GP fitting and the fit cache keyed by the training data (planners/models.py)."""

from __future__ import annotations

import torch

from planners import models
from planners.encoding import SpaceEncoder
from planners.space import ContinuousParameter, SearchSpace

SPACE = SearchSpace(parameters=[ContinuousParameter(name="x", low=0, high=1)])


def test_identical_data_reuses_the_fitted_hyperparameters(monkeypatch) -> None:
    calls = []
    real = models.fit_gpytorch_mll
    monkeypatch.setattr(
        models, "fit_gpytorch_mll", lambda mll, **kw: calls.append(1) or real(mll, **kw)
    )
    encoder = SpaceEncoder(SPACE)
    X = torch.linspace(0, 1, 9, dtype=torch.double).reshape(-1, 1)
    Y = torch.sin(6 * X) + 0.3 * X
    a = models.fit_gp(encoder, X, Y)
    b = models.fit_gp(encoder, X.clone(), Y.clone())
    c = models.fit_gp(encoder, X, Y + 1.0)  # other data: a fresh fit
    assert len(calls) == 2
    for (ka, va), (kb, vb) in zip(a.state_dict().items(), b.state_dict().items(), strict=True):
        assert ka == kb and torch.equal(va, vb)
    assert a is not b and c is not a
    Xt = torch.rand(5, 1, dtype=torch.double)
    assert torch.allclose(models.predict(a, Xt)[0], models.predict(b, Xt)[0])


def test_the_cache_is_bounded(monkeypatch) -> None:
    monkeypatch.setattr(models, "_FIT_CACHE_SIZE", 2)
    encoder = SpaceEncoder(SPACE)
    X = torch.linspace(0, 1, 5, dtype=torch.double).reshape(-1, 1)
    for k in range(4):
        models.fit_gp(encoder, X, X * (k + 1))
    assert len(models._FIT_CACHE) <= 2


def test_a_cached_fit_predicts_bit_for_bit_like_a_fresh_one() -> None:
    """A cache hit must not change results. The model that ran the (batched, two-output)
    fit used to predict up to ~1e-14 off a model loaded with its state, enough to steer the
    acquisition optimiser to another batch."""
    from torch.quasirandom import SobolEngine

    encoder = SpaceEncoder(
        SearchSpace(parameters=[ContinuousParameter(name=n, low=0, high=1) for n in "ab"])
    )
    gen = torch.Generator().manual_seed(3)
    X = SobolEngine(2, scramble=True, seed=3).draw(24, dtype=torch.double)
    Y = torch.stack(
        [
            torch.sigmoid(8 * (X[:, 0] - 0.5)) - torch.sigmoid(6 * (X[:, 1] - 0.4)),
            1 - 0.8 * torch.sigmoid(10 * (X.sum(-1) - 1)),
        ],
        dim=-1,
    )
    Y = Y + 0.03 * torch.randn(Y.shape, generator=gen, dtype=torch.double)
    models._FIT_CACHE.clear()
    torch.manual_seed(1)
    fresh = models.fit_gp(encoder, X, Y)
    torch.manual_seed(2)  # the global RNG must not matter either
    cached = models.fit_gp(encoder, X, Y)
    models._FIT_CACHE.clear()
    refit = models.fit_gp(encoder, X, Y)
    Xt = torch.rand(64, 2, generator=gen, dtype=torch.double)
    for m in (cached, refit):
        for u, v in zip(models.predict(fresh, Xt), models.predict(m, Xt), strict=True):
            assert torch.equal(u, v)
