"""The functions behind the suite's problems (see ``suite_problems.py``).

Standard test functions (maximised as ``y``; known optima from the literature) and small
assay-like simulators whose shapes follow the lab's usual ones: a basal medium or supplement
whose advantage only shows once its own concentrations are tuned, transfection reagents with
efficiency against toxicity, Hill dose-response with exposure time, cell passaging and a
fed-batch bioreactor with integer schedules. Numbers are plausible, not fitted to data.

Simulators are in ``suite_assays.py``.

Development half (``dev``): branin, hartmann3, ackley6, styblinski8, media7_cat3,
catalyst_cat4, dose3_constrained, passaging_int, hartmann3_in16, branin_in12,
styblinski6_in18 (the last three added after the held-out half showed high dimension as a
weak spot).
Held-out half (``heldout``): hartmann6, rosenbrock4, hartmann6_in20, media6_cat5,
transfection, dose_time_constrained, bioreactor_int.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from suite_problems import Metrics, Problem, cont

Fn = Callable[[Mapping[str, Any]], Metrics]


def _xs(p: Mapping[str, Any], d: int) -> list[Any]:
    return [np.asarray(p[f"x{i}"], dtype=float) for i in range(d)]


def _box(d: int, low: float, high: float) -> list[Any]:
    return [cont(f"x{i}", low, high) for i in range(d)]


def _u(x: Any, low: float, high: float, log: bool = False) -> Any:
    """Unit coordinate of a raw value (log10 first when ``log``)."""
    if log:
        return (np.log10(x) - np.log10(low)) / (np.log10(high) - np.log10(low))
    return (np.asarray(x, dtype=float) - low) / (high - low)


def _bump(u: list[Any], c: list[float], w: list[float] | float) -> Any:
    ws = w if isinstance(w, list) else [w] * len(c)
    return np.exp(-0.5 * sum(((ui - ci) / wi) ** 2 for ui, ci, wi in zip(u, c, ws, strict=True)))


def _hill(c: Any, ic50: float, h: float) -> Any:
    return 1.0 / (1.0 + (ic50 / np.maximum(c, 1e-12)) ** h)


# ----------------------------------------------------------------------- test functions


def branin() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x1, x2 = _xs(p, 2)
        b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
        v = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10
        return {"y": -np.log(v)}  # log: otherwise any point near a basin has ~0 regret

    space = [cont("x0", -5, 10), cont("x1", 0, 15)]
    return Problem(
        "branin",
        "dev",
        "continuous 2-D, 3 global optima (-log Branin)",
        space,
        f,
        known_optimum=-float(np.log(0.397887)),
    )


_H3_A = np.array([[3.0, 10, 30], [0.1, 10, 35], [3.0, 10, 30], [0.1, 10, 35]])
_H3_P = 1e-4 * np.array(
    [[3689, 1170, 2673], [4699, 4387, 7470], [1091, 8732, 5547], [381, 5743, 8828]]
)
_H6_A = np.array(
    [
        [10, 3, 17, 3.5, 1.7, 8],
        [0.05, 10, 17, 0.1, 8, 14],
        [3, 3.5, 1.7, 10, 17, 8],
        [17, 8, 0.05, 10, 0.1, 14],
    ]
)
_H6_P = 1e-4 * np.array(
    [
        [1312, 1696, 5569, 124, 8283, 5886],
        [2329, 4135, 8307, 3736, 1004, 9991],
        [2348, 1451, 3522, 2883, 3047, 6650],
        [4047, 8828, 8732, 5743, 1091, 381],
    ]
)
_ALPHA = np.array([1.0, 1.2, 3.0, 3.2])


def _hartmann(x: list[Any], A: np.ndarray, P: np.ndarray) -> Any:
    out = 0.0
    for i in range(4):
        out = out + _ALPHA[i] * np.exp(-sum(A[i, j] * (x[j] - P[i, j]) ** 2 for j in range(len(x))))
    return out


def hartmann3() -> Problem:
    return Problem(
        "hartmann3",
        "dev",
        "continuous 3-D, 4 local optima",
        _box(3, 0, 1),
        lambda p: {"y": _hartmann(_xs(p, 3), _H3_A, _H3_P)},
        known_optimum=3.86278,
    )


def hartmann6() -> Problem:
    return Problem(
        "hartmann6",
        "heldout",
        "continuous 6-D, 4 local optima",
        _box(6, 0, 1),
        lambda p: {"y": _hartmann(_xs(p, 6), _H6_A, _H6_P)},
        known_optimum=3.32237,
    )


_SPARSE = [3, 7, 8, 12, 15, 18]


def hartmann6_in20() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 20)
        return {"y": _hartmann([x[i] for i in _SPARSE], _H6_A, _H6_P)}

    return Problem(
        "hartmann6_in20",
        "heldout",
        "continuous 20-D, 6 of them matter",
        _box(20, 0, 1),
        f,
        known_optimum=3.32237,
    )


_SPARSE3 = [2, 9, 13]


def hartmann3_in16() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 16)
        return {"y": _hartmann([x[i] for i in _SPARSE3], _H3_A, _H3_P)}

    return Problem(
        "hartmann3_in16",
        "dev",
        "continuous 16-D, 3 of them matter",
        _box(16, 0, 1),
        f,
        known_optimum=3.86278,
    )


def branin_in12() -> Problem:
    """Branin on two of 12 unit coordinates (x1 = -5 + 15 u4, x2 = 15 u10)."""

    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 12)
        x1, x2 = -5 + 15 * x[4], 15 * x[10]
        b, c, t = 5.1 / (4 * np.pi**2), 5 / np.pi, 1 / (8 * np.pi)
        v = (x2 - b * x1**2 + c * x1 - 6) ** 2 + 10 * (1 - t) * np.cos(x1) + 10
        return {"y": -np.log(v)}

    return Problem(
        "branin_in12",
        "dev",
        "continuous 12-D, 2 of them matter (-log Branin)",
        _box(12, 0, 1),
        f,
        known_optimum=-float(np.log(0.397887)),
    )


_SPARSE6 = [0, 4, 5, 11, 14, 17]


def styblinski6_in18() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 18)
        return {"y": -sum(x[i] ** 4 - 16 * x[i] ** 2 + 5 * x[i] for i in _SPARSE6) / 16}

    return Problem(
        "styblinski6_in18",
        "dev",
        "continuous 18-D, 6 of them matter, 2^6 local optima",
        _box(18, -5, 5),
        f,
        known_optimum=39.16617 * 6 / 8,
    )


def ackley6() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 6)
        s1 = sum(xi**2 for xi in x) / 6
        s2 = sum(np.cos(2 * np.pi * xi) for xi in x) / 6
        return {"y": 20 * np.exp(-0.2 * np.sqrt(s1)) + np.exp(s2) - 20 - np.e}

    return Problem(
        "ackley6",
        "dev",
        "continuous 6-D, many local optima, off-centre",
        _box(6, -3, 4),
        f,
        known_optimum=0.0,
    )


def styblinski8() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 8)
        return {"y": -sum(xi**4 - 16 * xi**2 + 5 * xi for xi in x) / 16}

    return Problem(
        "styblinski8",
        "dev",
        "continuous 8-D, 2^8 local optima",
        _box(8, -5, 5),
        f,
        known_optimum=39.16617,
    )


def rosenbrock4() -> Problem:
    def f(p: Mapping[str, Any]) -> Metrics:
        x = _xs(p, 4)
        v = sum(100 * (x[i + 1] - x[i] ** 2) ** 2 + (1 - x[i]) ** 2 for i in range(3))
        return {"y": -np.log1p(v)}

    return Problem(
        "rosenbrock4",
        "heldout",
        "continuous 4-D, curved valley",
        _box(4, -2, 2),
        f,
        known_optimum=0.0,
    )


#: dev half first, then the held-out half (the order the tables are printed in)
ORDER = [
    "branin",
    "hartmann3",
    "ackley6",
    "styblinski8",
    "media7_cat3",
    "catalyst_cat4",
    "dose3_constrained",
    "passaging_int",
    "hartmann3_in16",
    "branin_in12",
    "styblinski6_in18",
    "hartmann6",
    "rosenbrock4",
    "hartmann6_in20",
    "media6_cat5",
    "transfection",
    "dose_time_constrained",
    "bioreactor_int",
]


def makers() -> list[Callable[[], Problem]]:
    """Every problem's constructor (test functions here, simulators in ``suite_assays``)."""
    from suite_assays import ASSAYS

    return [
        branin,
        hartmann3,
        ackley6,
        styblinski8,
        hartmann6,
        rosenbrock4,
        hartmann6_in20,
        hartmann3_in16,
        branin_in12,
        styblinski6_in18,
        *ASSAYS,
    ]
