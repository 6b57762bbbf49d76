"""Encoding round-trips and constraint translation (planners/encoding.py)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from planners.encoding import SpaceEncoder
from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    IntegerParameter,
    LinearConstraint,
    SearchSpace,
)
from tests.planners.planner_strategies import spaces


def _close(a: object, b: object, p: object) -> bool:
    if isinstance(p, ContinuousParameter):
        return math.isclose(float(a), float(b), rel_tol=1e-9, abs_tol=1e-9 * (p.high - p.low))
    return a == b


@settings(max_examples=60, deadline=None)
@given(space=spaces(), data=st.data())
def test_decode_encode_round_trip_from_unit_cube(space: SearchSpace, data: st.DataObject) -> None:
    enc = SpaceEncoder(space)
    u = data.draw(st.lists(st.floats(0, 1), min_size=enc.dim, max_size=enc.dim))
    X = enc.unit_to_encoded(torch.tensor([u], dtype=torch.double))
    (point,) = enc.decode(X)
    assert space.validate_point(point) == point
    (again,) = enc.decode(enc.encode([point]))
    assert all(_close(point[p.name], again[p.name], p) for p in space.parameters)


@settings(max_examples=60, deadline=None)
@given(space=spaces(), data=st.data())
def test_encode_is_inside_bounds_and_inverts(space: SearchSpace, data: st.DataObject) -> None:
    enc = SpaceEncoder(space)
    point = {}
    for p in space.parameters:
        if isinstance(p, CategoricalParameter):
            point[p.name] = data.draw(st.sampled_from(p.levels))
        elif isinstance(p, IntegerParameter):
            point[p.name] = data.draw(st.integers(p.low, p.high))
        else:
            point[p.name] = data.draw(st.floats(p.low, p.high))
    X = enc.encode([point])
    assert X.shape == (1, enc.dim)
    assert torch.all(X >= enc.bounds[0] - 1e-12) and torch.all(X <= enc.bounds[1] + 1e-12)
    (back,) = enc.decode(X)
    assert all(_close(point[p.name], back[p.name], p) for p in space.parameters)


def test_log_scale_is_uniform_in_log10() -> None:
    space = SearchSpace(
        parameters=[ContinuousParameter(name="c_um", low=0.01, high=100, log_scale=True)]
    )
    enc = SpaceEncoder(space)
    assert enc.encode([{"c_um": 1.0}]).item() == pytest.approx(0.5)
    (pt,) = enc.decode(torch.tensor([[0.25]], dtype=torch.double))
    assert pt["c_um"] == pytest.approx(0.1)


def test_categorical_codes_and_bounds() -> None:
    space = SearchSpace(
        parameters=[
            ContinuousParameter(name="x", low=0, high=2),
            CategoricalParameter(name="medium", levels=["DMEM", "RPMI", "MEM"]),
        ]
    )
    enc = SpaceEncoder(space)
    assert enc.cat_dims == [1]
    assert enc.bounds.tolist() == [[0.0, 0.0], [1.0, 2.0]]
    assert enc.encode([{"x": 1.0, "medium": "MEM"}]).tolist() == [[0.5, 2.0]]


@settings(max_examples=40, deadline=None)
@given(
    u=st.lists(st.floats(0, 1), min_size=3, max_size=3),
    a=st.floats(-3, 3),
    b=st.floats(-3, 3),
    rhs=st.floats(-20, 20),
    op=st.sampled_from(["<=", ">="]),
)
def test_inequality_constraints_match_raw_constraint(
    u: list[float], a: float, b: float, rhs: float, op: str
) -> None:
    space = SearchSpace(
        parameters=[
            ContinuousParameter(name="x", low=-2, high=5),
            IntegerParameter(name="k", low=0, high=10),
            ContinuousParameter(name="y", low=1, high=3),
        ],
        linear_constraints=[LinearConstraint(coefficients={"x": a, "y": b}, op=op, rhs=rhs)],
    )
    enc = SpaceEncoder(space)
    (idx, coef, r) = enc.inequality_constraints()[0]
    X = torch.tensor([u], dtype=torch.double)
    encoded_lhs = float((X[0, idx] * coef).sum()) - r
    (pt,) = enc.decode(X)
    raw_lhs = a * pt["x"] + b * pt["y"] - rhs
    raw_lhs = raw_lhs if op == ">=" else -raw_lhs
    assert encoded_lhs == pytest.approx(raw_lhs, abs=1e-7)


def test_log_constraints_are_flagged() -> None:
    space = SearchSpace(
        parameters=[
            ContinuousParameter(name="a", low=0.1, high=10, log_scale=True),
            ContinuousParameter(name="b", low=0, high=1),
        ],
        linear_constraints=[LinearConstraint(coefficients={"a": 1, "b": 1}, op="<=", rhs=5)],
    )
    enc = SpaceEncoder(space)
    assert enc.has_log_constraints
    with pytest.raises(ValueError, match="log-scaled"):
        enc.inequality_constraints()


@settings(max_examples=30, deadline=None)
@given(
    rows=st.lists(st.lists(st.floats(0, 1), min_size=3, max_size=3), min_size=1, max_size=20),
    rhs=st.floats(0, 20),
)
def test_vectorised_feasibility_matches_decoded_points(rows: list[list[float]], rhs: float) -> None:
    space = SearchSpace(
        parameters=[
            ContinuousParameter(name="a", low=0.1, high=10, log_scale=True),
            IntegerParameter(name="k", low=0, high=10),
            CategoricalParameter(name="m", levels=["p", "q"]),
        ],
        linear_constraints=[LinearConstraint(coefficients={"a": 1.0, "k": 1.0}, op="<=", rhs=rhs)],
    )
    enc = SpaceEncoder(space)
    X = enc.unit_to_encoded(torch.tensor(rows, dtype=torch.double))
    assert enc.feasible_mask(X).tolist() == enc.feasible(enc.decode(X))
