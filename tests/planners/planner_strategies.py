"""Hypothesis strategies for search spaces, shared by the planner tests."""

from __future__ import annotations

from hypothesis import strategies as st

from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    SearchSpace,
)


@st.composite
def parameters(draw: st.DrawFn, name: str) -> object:
    kind = draw(st.sampled_from(["continuous", "log", "integer", "categorical"]))
    if kind == "categorical":
        n = draw(st.integers(2, 6))
        return CategoricalParameter(name=name, levels=[f"L{i}" for i in range(n)])
    if kind == "integer":
        low = draw(st.integers(-50, 50))
        return IntegerParameter(name=name, low=low, high=low + draw(st.integers(1, 100)))
    if kind == "log":
        low = 10 ** draw(st.floats(-6, 2))
        return ContinuousParameter(
            name=name, low=low, high=low * 10 ** draw(st.floats(0.1, 5)), log_scale=True
        )
    low = draw(st.floats(-1e3, 1e3))
    return ContinuousParameter(name=name, low=low, high=low + draw(st.floats(1e-3, 1e3)))


@st.composite
def spaces(draw: st.DrawFn) -> SearchSpace:
    n = draw(st.integers(1, 5))
    return SearchSpace(parameters=[draw(parameters(f"p{i}")) for i in range(n)])
