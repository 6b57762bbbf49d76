"""Search spaces, objectives and constraints: frozen pydantic models with no behaviour beyond checks.

These are the lowest-level shared types of a campaign: planners, protocols and the controller
all read them. Values of one experiment are a plain ``dict[str, float | int | str]``.
"""

from __future__ import annotations

import math
import re
from typing import Annotated, Literal, Union

from pydantic import BaseModel, ConfigDict, Field, model_validator

from planners.exceptions import PointOutsideSpace

ParamValue = Union[float, int, str]  # noqa: UP007 (runtime alias)
Params = dict[str, ParamValue]

_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class ContinuousParameter(_Frozen):
    """A real-valued parameter in ``[low, high]``; ``log_scale`` models it in log10 space."""

    type: Literal["continuous"] = "continuous"
    name: str = Field(pattern=_NAME)
    low: float
    high: float
    log_scale: bool = False
    unit: str | None = Field(default=None, description="e.g. 'uM', 'h', 'percent'")

    @model_validator(mode="after")
    def _check(self) -> ContinuousParameter:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        if self.log_scale and self.low <= 0:
            raise ValueError(f"log_scale needs low > 0 (got {self.low})")
        return self


class IntegerParameter(_Frozen):
    """An integer parameter in ``[low, high]`` (both inclusive)."""

    type: Literal["integer"] = "integer"
    name: str = Field(pattern=_NAME)
    low: int
    high: int
    unit: str | None = None

    @model_validator(mode="after")
    def _check(self) -> IntegerParameter:
        if not self.low < self.high:
            raise ValueError(f"low ({self.low}) must be below high ({self.high})")
        return self


class CategoricalParameter(_Frozen):
    """A choice among named levels (e.g. basal medium, transfection reagent)."""

    type: Literal["categorical"] = "categorical"
    name: str = Field(pattern=_NAME)
    levels: list[str] = Field(min_length=2)

    @model_validator(mode="after")
    def _check(self) -> CategoricalParameter:
        if len(set(self.levels)) != len(self.levels):
            raise ValueError("levels must be unique")
        return self


Parameter = Annotated[
    ContinuousParameter | IntegerParameter | CategoricalParameter,
    Field(discriminator="type"),
]


class LinearConstraint(_Frozen):
    """``sum(coefficients[name] * value[name]) <op> rhs`` over numeric parameters (raw units)."""

    coefficients: dict[str, float] = Field(min_length=1)
    op: Literal["<=", ">="]
    rhs: float

    def satisfied(self, params: Params, tol: float = 1e-9) -> bool:
        lhs = sum(c * float(params[n]) for n, c in self.coefficients.items())
        return lhs <= self.rhs + tol if self.op == "<=" else lhs >= self.rhs - tol


class SearchSpace(_Frozen):
    """The parameters a campaign varies, and linear constraints among them."""

    parameters: list[Parameter] = Field(min_length=1)
    linear_constraints: list[LinearConstraint] = Field(default_factory=list)

    @model_validator(mode="after")
    def _check(self) -> SearchSpace:
        names = [p.name for p in self.parameters]
        dup = {n for n in names if names.count(n) > 1}
        if dup:
            raise ValueError(f"duplicate parameter names: {sorted(dup)}")
        numeric = {p.name for p in self.parameters if p.type != "categorical"}
        for i, c in enumerate(self.linear_constraints):
            bad = set(c.coefficients) - numeric
            if bad:
                raise ValueError(
                    f"linear_constraints[{i}] names {sorted(bad)}, which are not numeric parameters"
                )
        return self

    @property
    def names(self) -> list[str]:
        return [p.name for p in self.parameters]

    def parameter(self, name: str) -> ContinuousParameter | IntegerParameter | CategoricalParameter:
        for p in self.parameters:
            if p.name == name:
                return p
        raise KeyError(name)

    def validate_point(self, params: Params) -> Params:
        """Return ``params`` coerced to each parameter's type, or raise :class:`PointOutsideSpace`."""
        missing = set(self.names) - set(params)
        extra = set(params) - set(self.names)
        if missing or extra:
            raise PointOutsideSpace(
                f"parameters missing: {sorted(missing)}, unknown: {sorted(extra)}"
            )
        out: Params = {}
        for p in self.parameters:
            v = params[p.name]
            if isinstance(p, CategoricalParameter):
                if str(v) not in p.levels:
                    raise PointOutsideSpace(f"{p.name}={v!r} is not one of {p.levels}")
                out[p.name] = str(v)
                continue
            try:
                x = float(v)
            except (TypeError, ValueError):
                raise PointOutsideSpace(f"{p.name}={v!r} is not a number") from None
            if not math.isfinite(x):
                raise PointOutsideSpace(f"{p.name}={v!r} is not finite")
            if isinstance(p, IntegerParameter):
                if x != round(x):
                    raise PointOutsideSpace(f"{p.name}={v!r} is not an integer")
                x = int(round(x))
            rel = 1e-9 * max(1.0, abs(p.high))
            if x < p.low - rel or x > p.high + rel:
                raise PointOutsideSpace(f"{p.name}={v!r} is outside [{p.low}, {p.high}]")
            out[p.name] = min(max(x, p.low), p.high)
        for i, c in enumerate(self.linear_constraints):
            if not c.satisfied(out):
                raise PointOutsideSpace(f"linear constraint {i} is violated by {out}")
        return out


class Objective(_Frozen):
    """A metric to optimise, as the analyzer names it (e.g. ``selectivity``)."""

    metric: str = Field(pattern=_NAME)
    direction: Literal["maximize", "minimize"] = "maximize"

    @property
    def sign(self) -> float:
        """+1 for maximise, -1 for minimise: ``sign * value`` is always to be maximised."""
        return 1.0 if self.direction == "maximize" else -1.0


_CONSTRAINT_RE = re.compile(r"^\s*([A-Za-z_][A-Za-z0-9_]*)\s*(<=|>=)\s*([-+0-9.eE]+)\s*$")


class OutcomeConstraint(_Frozen):
    """A bound on a measured metric, e.g. ``normal_viability >= 0.6``.

    Campaign files may write it as that string; it is parsed into ``metric``, ``op``, ``bound``.
    """

    metric: str = Field(pattern=_NAME)
    op: Literal["<=", ">="]
    bound: float

    @model_validator(mode="before")
    @classmethod
    def _parse(cls, data: object) -> object:
        if isinstance(data, str):
            m = _CONSTRAINT_RE.match(data)
            if not m:
                raise ValueError(
                    f"cannot parse outcome constraint {data!r}; write it as 'metric >= 0.6'"
                )
            return {"metric": m.group(1), "op": m.group(2), "bound": float(m.group(3))}
        return data

    def satisfied(self, value: float) -> bool:
        return value >= self.bound if self.op == ">=" else value <= self.bound

    def __str__(self) -> str:
        return f"{self.metric} {self.op} {self.bound:g}"
