"""Search-space models (planners/space.py): JSON round-trips and point validation."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from planners.encoding import SpaceEncoder
from planners.exceptions import PointOutsideSpace
from planners.space import LinearConstraint, OutcomeConstraint, SearchSpace
from tests.planners.planner_strategies import spaces


@settings(max_examples=50, deadline=None)
@given(space=spaces())
def test_search_space_json_round_trip(space: SearchSpace) -> None:
    assert SearchSpace.model_validate_json(space.model_dump_json()) == space
    assert SearchSpace.model_validate(space.model_dump()) == space


@settings(max_examples=50, deadline=None)
@given(space=spaces(), u=st.floats(0, 1))
def test_validate_point_rejects_out_of_bounds(space: SearchSpace, u: float) -> None:
    enc = SpaceEncoder(space)
    (point,) = enc.decode(enc.bounds[0:1] + u * (enc.bounds[1:2] - enc.bounds[0:1]))
    assert space.validate_point(point) == point
    p = space.parameters[0]
    bad = dict(point)
    bad[p.name] = "no-such-level" if p.type == "categorical" else p.high + abs(p.high) + 1
    with pytest.raises(PointOutsideSpace):
        space.validate_point(bad)


def test_outcome_constraint_parses_campaign_strings() -> None:
    c = OutcomeConstraint.model_validate("normal_viability >= 0.6")
    assert (c.metric, c.op, c.bound) == ("normal_viability", ">=", 0.6)
    assert c.satisfied(0.61) and not c.satisfied(0.59)
    with pytest.raises(ValueError, match="cannot parse outcome constraint"):
        OutcomeConstraint.model_validate("viability > 0.6")


def test_linear_constraint_must_name_numeric_parameters() -> None:
    with pytest.raises(ValueError, match="not numeric parameters"):
        SearchSpace(
            parameters=[{"type": "categorical", "name": "m", "levels": ["a", "b"]}],
            linear_constraints=[LinearConstraint(coefficients={"m": 1.0}, op="<=", rhs=1)],
        )
