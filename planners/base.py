"""The planner interface, its data types, and the registry of planners by name.

A planner is pure: ``propose`` reads only its arguments. ``history`` is every measured
experiment of the campaign (as the ledger holds it); ``pending`` are parameter sets already
approved or running but not yet measured, which a batch must not duplicate.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol, Union, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from planners.space import Objective, OutcomeConstraint, Params, ParamValue, SearchSpace

#: Names of parameters shared by a whole batch (the planner picks the value), or a mapping
#: name -> value when the value is already fixed (topping up a partly proposed plate).
PlateParameters = Union[Sequence[str], Mapping[str, ParamValue]]  # noqa: UP007 (runtime alias)


class Observation(BaseModel):
    """One measured experiment: its parameters and the metrics the analyzer scored.

    ``outcomes`` maps metric name to value; a metric that could not be measured is absent.
    ``task`` names the campaign the observation came from when prior campaigns are used.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: Params
    outcomes: dict[str, float]
    task: str | None = None


class Proposal(BaseModel):
    """A suggested experiment with the model's view of it at proposal time.

    ``predicted_mean`` / ``predicted_sd`` map metric name to the model's posterior mean and
    standard deviation (raw metric units); empty for model-free planners.
    ``predicted_interval`` maps metric name to a 95 % credible interval of the mean
    (``recommend`` fills it); ``probability_feasible`` is the model's probability that every
    outcome constraint holds there (``None`` without constraints or model).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    params: Params
    predicted_mean: dict[str, float] = Field(default_factory=dict)
    predicted_sd: dict[str, float] = Field(default_factory=dict)
    predicted_interval: dict[str, tuple[float, float]] = Field(default_factory=dict)
    probability_feasible: float | None = None
    acquisition_value: float | None = None
    planner: str


@runtime_checkable
class Planner(Protocol):
    """What the controller calls. Implementations are found by name in
    :mod:`planners.registry` (entry points of the group ``cellpilot.planners``).

    ``history`` may hold observations of earlier campaigns (``task`` = their name) that the
    campaign names as prior data; planners that cannot use them ignore them (model-free
    planners) and never count them as the current campaign's.
    """

    name: str

    def propose(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        history: Sequence[Observation],
        pending: Sequence[Params],
        n: int,
        seed: int,
        *,
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        plate_parameters: PlateParameters = (),
    ) -> list[Proposal]:
        """Return ``n`` proposals inside ``space`` (validated with ``space.validate_point``).

        Parameters named in ``plate_parameters`` take one value across the whole batch (the
        given value, when ``plate_parameters`` maps names to values). No
        two proposals of a batch are equal, and none equals a ``pending`` point (except in a
        discrete space with fewer free points than ``n``).
        """
        ...

    def check(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        plate_parameters: PlateParameters = (),
    ) -> None:
        """Raise :class:`~planners.exceptions.UnsupportedPlanningFeature` for a combination
        this planner does not support; the controller calls it before a campaign starts."""
        ...


def __getattr__(name: str) -> object:
    # The registry moved to planners.registry; old imports from planners.base keep working.
    if name in ("available_planners", "get_planner", "register_planner"):
        from planners import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
