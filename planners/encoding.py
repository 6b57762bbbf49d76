"""Map parameter sets to and from unit-cube tensors that BoTorch models and optimisers read.

One column per parameter, in ``space.parameters`` order:

- continuous: ``(x - low) / (high - low)`` in ``[0, 1]``; log10 of ``x``, ``low``, ``high`` first
  when ``log_scale``;
- integer: normalised the same way; decoding rounds to the nearest integer;
- categorical: the level's index ``0 .. k-1`` (an integer code, not one-hot), so that
  ``MixedSingleTaskGP(cat_dims=...)`` and ``optimize_acqf_mixed_alternating(cat_dims=...)``
  search levels by local moves and never enumerate every combination of levels.

Linear constraints over non-log parameters become BoTorch ``inequality_constraints``
``(indices, coefficients, rhs)`` meaning ``sum(coefficients * X[..., indices]) >= rhs`` in the
encoded space. A constraint over a log-scaled parameter is not linear there; callers either
reject such points (samplers) or refuse the space (model-based planners).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from torch import Tensor

from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    LinearConstraint,
    Params,
    SearchSpace,
)

DTYPE = torch.double


class SpaceEncoder:
    """Encoder/decoder for one :class:`SearchSpace`.

    Attributes:
        space: the search space.
        dim: number of encoded columns (one per parameter).
        cat_dims: column indices of categorical parameters (integer codes).
        int_dims: column indices of integer parameters (normalised, rounded on decode).
        cont_dims: column indices of continuous parameters.
    """

    def __init__(self, space: SearchSpace) -> None:
        self.space = space
        self.dim = len(space.parameters)
        self.cat_dims = [i for i, p in enumerate(space.parameters) if p.type == "categorical"]
        self.int_dims = [i for i, p in enumerate(space.parameters) if p.type == "integer"]
        self.cont_dims = [i for i, p in enumerate(space.parameters) if p.type == "continuous"]
        self._index = {p.name: i for i, p in enumerate(space.parameters)}

    # ----------------------------------------------------------------- bounds

    @property
    def bounds(self) -> Tensor:
        """``2 x dim`` tensor: ``[0, 1]`` for numeric columns, ``[0, k-1]`` for categoricals."""
        upper = [
            float(len(p.levels) - 1) if isinstance(p, CategoricalParameter) else 1.0
            for p in self.space.parameters
        ]
        return torch.tensor([[0.0] * self.dim, upper], dtype=DTYPE)

    def cat_values(self) -> dict[int, list[float]]:
        """Allowed codes per categorical column (for ``optimize_acqf_mixed_alternating``)."""
        out: dict[int, list[float]] = {}
        for i in self.cat_dims:
            p = self.space.parameters[i]
            assert isinstance(p, CategoricalParameter)
            out[i] = [float(k) for k in range(len(p.levels))]
        return out

    def int_values(self) -> dict[int, list[float]]:
        """Allowed normalised values per integer column."""
        out: dict[int, list[float]] = {}
        for i in self.int_dims:
            p = self.space.parameters[i]
            assert isinstance(p, IntegerParameter)
            span = p.high - p.low
            out[i] = [k / span for k in range(span + 1)]
        return out

    @property
    def has_log_constraints(self) -> bool:
        """True if a linear constraint names a log-scaled parameter."""
        return any(
            getattr(self.space.parameter(n), "log_scale", False)
            for c in self.space.linear_constraints
            for n in c.coefficients
        )

    def inequality_constraints(self) -> list[tuple[Tensor, Tensor, float]]:
        """Linear constraints in BoTorch form over encoded columns (``>=`` convention).

        Raises:
            ValueError: if a constraint names a log-scaled parameter.
        """
        if self.has_log_constraints:
            raise ValueError("linear constraints over log-scaled parameters are not linear")
        return [self._encode_constraint(c) for c in self.space.linear_constraints]

    def _encode_constraint(self, c: LinearConstraint) -> tuple[Tensor, Tensor, float]:
        # raw = low + span * u, so sum(c * raw) = sum(c * low) + sum(c * span * u).
        sign = 1.0 if c.op == ">=" else -1.0
        idx, coef, offset = [], [], 0.0
        for name, a in c.coefficients.items():
            p = self.space.parameter(name)
            assert not isinstance(p, CategoricalParameter)
            idx.append(self._index[name])
            coef.append(sign * a * (p.high - p.low))
            offset += a * p.low
        rhs = sign * (c.rhs - offset)
        return (torch.tensor(idx, dtype=torch.long), torch.tensor(coef, dtype=DTYPE), rhs)

    # ------------------------------------------------------------ encode/decode

    def encode(self, points: Sequence[Params]) -> Tensor:
        """Encode parameter sets: ``len(points) x dim`` double tensor."""
        rows = [[self._encode_value(p, pt[p.name]) for p in self.space.parameters] for pt in points]
        return torch.tensor(rows, dtype=DTYPE).reshape(len(points), self.dim)

    def decode(self, X: Tensor) -> list[Params]:
        """Decode an ``n x dim`` tensor to parameter sets (integers rounded, codes to levels).

        Values are clipped to the bounds first. Linear constraints are not enforced here;
        rounding an integer may move a point across one (see :meth:`feasible`).
        """
        arr = X.detach().cpu().numpy().reshape(-1, self.dim)
        return [
            {
                p.name: self._decode_value(p, float(v))
                for p, v in zip(self.space.parameters, row, strict=True)
            }
            for row in arr
        ]

    def feasible(self, points: Sequence[Params]) -> list[bool]:
        """Whether each decoded point satisfies every linear constraint."""
        cons = self.space.linear_constraints
        return [all(c.satisfied(pt) for c in cons) for pt in points]

    def feasible_mask(self, X: Tensor, tol: float = 1e-9) -> np.ndarray:
        """Linear-constraint feasibility of encoded points (``n x dim`` -> bool array ``n``).

        Vectorised; agrees with :meth:`feasible` on the decoded points (integers rounded).
        """
        arr = X.detach().cpu().numpy().reshape(-1, self.dim)
        mask = np.ones(arr.shape[0], dtype=bool)
        for c in self.space.linear_constraints:
            lhs = np.zeros(arr.shape[0])
            for name, a in c.coefficients.items():
                lhs += a * self._raw_column(self.space.parameter(name), arr[:, self._index[name]])
            mask &= lhs <= c.rhs + tol if c.op == "<=" else lhs >= c.rhs - tol
        return mask

    @staticmethod
    def _raw_column(p: object, u: np.ndarray) -> np.ndarray:
        u = np.clip(u, 0.0, 1.0)
        if isinstance(p, IntegerParameter):
            return np.round(p.low + u * (p.high - p.low))
        assert isinstance(p, ContinuousParameter)
        if p.log_scale:
            lo, hi = math.log10(p.low), math.log10(p.high)
            return np.clip(10.0 ** (lo + u * (hi - lo)), p.low, p.high)
        return np.clip(p.low + u * (p.high - p.low), p.low, p.high)

    @staticmethod
    def _encode_value(p: object, v: object) -> float:
        if isinstance(p, CategoricalParameter):
            return float(p.levels.index(str(v)))
        assert isinstance(p, (ContinuousParameter, IntegerParameter))
        x, lo, hi = float(v), float(p.low), float(p.high)  # type: ignore[arg-type]
        if isinstance(p, ContinuousParameter) and p.log_scale:
            x, lo, hi = math.log10(x), math.log10(lo), math.log10(hi)
        return (x - lo) / (hi - lo)

    @staticmethod
    def _decode_value(p: object, u: float) -> float | int | str:
        if isinstance(p, CategoricalParameter):
            k = int(round(min(max(u, 0.0), len(p.levels) - 1)))
            return p.levels[k]
        u = min(max(u, 0.0), 1.0)
        if isinstance(p, IntegerParameter):
            return int(round(p.low + u * (p.high - p.low)))
        assert isinstance(p, ContinuousParameter)
        if p.log_scale:
            lo, hi = math.log10(p.low), math.log10(p.high)
            x = 10.0 ** (lo + u * (hi - lo))
        else:
            x = p.low + u * (p.high - p.low)
        return float(min(max(x, p.low), p.high))

    def fixed_columns(self, fixed: Params) -> dict[int, float]:
        """Encoded column index -> encoded value for some parameters (name -> raw value)."""
        return {
            self._index[name]: self._encode_value(self.space.parameter(name), v)
            for name, v in fixed.items()
        }

    def unit_to_encoded(self, U: Tensor) -> Tensor:
        """Map uniform ``[0, 1)`` samples (``n x dim``) to encoded points with uniform levels."""
        X = U.clone()
        for i in self.cat_dims:
            k = len(self.space.parameters[i].levels)  # type: ignore[union-attr]
            X[:, i] = torch.clamp(torch.floor(U[:, i] * k), max=k - 1)
        return X

    def key(self, params: Params) -> tuple[object, ...]:
        """A hashable identity for a parameter set, tolerant to float round-off."""
        out: list[object] = []
        for p in self.space.parameters:
            v = params[p.name]
            out.append(str(v) if isinstance(p, CategoricalParameter) else round(float(v), 9))
        return tuple(out)
