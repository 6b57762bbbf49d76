"""The noisy problems of the planner suite (``suite.py``): a development and a held-out half.

Each :class:`Problem` looks like a :class:`simulators.assays.Assay` to the peer adapters
(``space``, ``objectives``, ``outcome_constraints``, ``expected``, ``sample``, ``feasible``,
``optimum``, ``name``). ``expected`` is noise-free; ``sample`` adds the problem's noise. The
functions are written with numpy so that :meth:`Problem.optimum` can evaluate many
continuous points at once (a categorical or integer value is a scalar there).

The noise of a test function is additive Gaussian with sd ``noise`` times ``f* - f_med``
(the regret scale), so "5 %" means the same on every function; the assay-like simulators
carry their own noise (multiplicative on yields, additive on fractions).

The split (see ``benchmarks/README.md``): :data:`DEV` chose methods and settings;
:data:`HELDOUT` is only reported.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from functools import cached_property
from typing import Any

import numpy as np
from scipy.optimize import minimize

from planners.baselines import random_points
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)

Metrics = dict[str, Any]
#: metric -> ("add", sd) additive, ("mul", cv) multiplicative, ("rel", frac) additive with sd
#: frac * (f* - f_med) of the objective
Noise = dict[str, tuple[str, float]]


def cont(name: str, low: float, high: float, log: bool = False) -> ContinuousParameter:
    return ContinuousParameter(name=name, low=low, high=high, log_scale=log)


def integer(name: str, low: int, high: int) -> IntegerParameter:
    return IntegerParameter(name=name, low=low, high=high)


def cat(name: str, levels: list[str]) -> CategoricalParameter:
    return CategoricalParameter(name=name, levels=levels)


class Problem:
    """One benchmark problem (single objective, maximised or minimised, maybe constrained)."""

    def __init__(
        self,
        name: str,
        split: str,
        character: str,
        parameters: list[Any],
        f: Callable[[Mapping[str, Any]], Metrics],
        objective: str = "y",
        noise: Noise | None = None,
        constraints: list[str] | None = None,
        known_optimum: float | None = None,
        derive: Callable[[Metrics], Metrics] | None = None,
    ) -> None:
        self.name, self.split, self.character = name, split, character
        self.space = SearchSpace(parameters=parameters)
        self.objectives = [Objective(metric=objective)]
        self.outcome_constraints = [OutcomeConstraint.model_validate(c) for c in constraints or []]
        self.f = f
        self.noise = noise or {objective: ("rel", 0.05)}
        self.known_optimum = known_optimum
        #: recomputes derived metrics (e.g. selectivity) from noisy measured ones
        self.derive = derive

    def __repr__(self) -> str:
        return f"Problem({self.name!r})"

    def expected(self, params: Mapping[str, Any]) -> dict[str, float]:
        return {k: float(v) for k, v in self.f(params).items()}

    def sample(self, params: Mapping[str, Any], rng: np.random.Generator) -> dict[str, float]:
        out = self.expected(params)
        for m, (kind, s) in self.noise.items():
            z = float(rng.standard_normal())
            if kind == "mul":
                out[m] *= math.exp(s * z - 0.5 * s * s)
            elif kind == "rel":
                f_star, f_med = self.scale
                out[m] += s * (f_star - f_med) * z
            else:
                out[m] += s * z
        if self.derive is not None:
            out.update({k: float(v) for k, v in self.derive(out).items()})
        return out

    def feasible(self, metrics: Mapping[str, float]) -> bool:
        return all(c.satisfied(float(metrics[c.metric])) for c in self.outcome_constraints)

    def score(self, params: Mapping[str, Any]) -> float:
        """True objective (larger is better) when truly feasible, else ``-inf``."""
        m = self.expected(params)
        if not self.feasible(m):
            return -math.inf
        return self.objectives[0].sign * m[self.objectives[0].metric]

    def optimum(self) -> tuple[Params, float]:
        """Best feasible expected objective (raw units) and where; see :func:`_search`."""
        return self._optimum

    @cached_property
    def _optimum(self) -> tuple[Params, float]:
        p, v = _search(self)
        if self.known_optimum is not None and self.known_optimum * self.objectives[0].sign > v:
            v = self.known_optimum * self.objectives[0].sign
        return p, self.objectives[0].sign * v

    @cached_property
    def scale(self) -> tuple[float, float]:
        """``(f*, f_med)`` larger-is-better: optimum and median of 4096 random conditions."""
        sign = self.objectives[0].sign
        f_star = sign * self.optimum()[1]
        pts = random_points(self.space, 4096, 12345)
        vals = [sign * self.f(p)[self.objectives[0].metric] for p in pts]
        return f_star, float(np.median(vals))

    def regret(self, best: float) -> float:
        f_star, f_med = self.scale
        return 1.0 if not math.isfinite(best) else (f_star - best) / (f_star - f_med)


def _search(pb: Problem, n_random: int = 3000, n_local: int = 3) -> tuple[Params, float]:
    """Dense random search per combination of categorical (and integer) values, then
    L-BFGS-B from the best few points over the continuous parameters (feasible only)."""
    ps = pb.space.parameters
    conts = [p for p in ps if isinstance(p, ContinuousParameter)]
    discrete = [p for p in ps if not isinstance(p, ContinuousParameter)]
    choices = [
        p.levels if isinstance(p, CategoricalParameter) else list(range(p.low, p.high + 1))
        for p in discrete
    ]
    combos: list[tuple[Any, ...]] = list(itertools.product(*choices))
    rng = np.random.default_rng(0)
    if len(combos) > 1000:
        combos = [combos[i] for i in rng.choice(len(combos), 1000, replace=False)]
    obj, sign = pb.objectives[0].metric, pb.objectives[0].sign

    def decode(u: np.ndarray) -> dict[str, Any]:
        out = {}
        for j, p in enumerate(conts):
            if p.log_scale:
                lo, hi = math.log10(p.low), math.log10(p.high)
                out[p.name] = 10.0 ** (lo + u[..., j] * (hi - lo))
            else:
                out[p.name] = p.low + u[..., j] * (p.high - p.low)
        return out

    def value(u: np.ndarray, fixed: dict[str, Any]) -> np.ndarray:
        m = pb.f({**fixed, **decode(u)})
        ok = np.ones(np.shape(m[obj]), dtype=bool)
        for c in pb.outcome_constraints:
            v = np.asarray(m[c.metric])
            ok &= v >= c.bound if c.op == ">=" else v <= c.bound
        return np.where(ok, sign * np.asarray(m[obj]), -np.inf)

    best_p: Params = {}
    best_v = -math.inf
    n = max(200, n_random // max(1, len(combos) // 10))
    for combo in combos:
        fixed = dict(zip([p.name for p in discrete], combo, strict=True))
        if not conts:
            v = float(value(np.zeros((1, 0)), fixed)[0])
            if v > best_v:
                best_p, best_v = fixed, v
            continue
        U = rng.random((n, len(conts)))
        vals = value(U, fixed)
        for i in np.argsort(-vals)[:n_local]:
            if not math.isfinite(vals[i]):
                continue
            res = minimize(
                lambda u, fixed=fixed: -float(value(u[None, :], fixed)[0]),
                U[i],
                method="L-BFGS-B",
                bounds=[(0.0, 1.0)] * len(conts),
            )
            u = res.x if -res.fun >= vals[i] and math.isfinite(res.fun) else U[i]
            v = float(value(u[None, :], fixed)[0])
            if v > best_v:
                d = decode(u)
                best_p = {**fixed, **{k: float(x) for k, x in d.items()}}
                best_v = v
    return best_p, best_v


def problems() -> dict[str, Problem]:
    """Every suite problem by name (built on each call; cheap)."""
    from suite_functions import ORDER, makers

    made = {p.name: p for p in (make() for make in makers())}
    return {name: made[name] for name in ORDER}


def split_names(split: str) -> list[str]:
    """Problem names of ``"dev"`` or ``"heldout"`` (``"all"``: both)."""
    return [n for n, p in problems().items() if split in ("all", p.split)]
