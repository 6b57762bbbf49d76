"""``planner: {name: rl, policy: PATH}``: the RL agent as a planner of time-course plates.

The agent does not propose one-shot experiments: it decides, at each decision point of an
``adaptive_dosing`` plate, the action of every decision unit from that unit's images so far.
What the controller calls::

    planner = RLPlanner(policy="policies/adaptive_dosing.zip")   # checksum checked
    planner.check(space, objectives, outcome_constraints)        # the space of one decision
    planner.check_protocol(protocol_settings)                    # trained for this protocol?
    decisions = planner.decide_units({unit: history, ...}, seed)  # unit -> Decision
    decisions[unit].to_proposal()                                # for the approval gate
    planner.ledger_record()                                      # journal with each decision

``propose`` raises :class:`UnsupportedPlanningFeature`: the plate's condition groups carry no
parameters (``AdaptiveDosing.compile`` takes labels), and every dose is a decision.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from planners.base import Observation, PlateParameters, Proposal
from planners.exceptions import PlannerError, UnsupportedPlanningFeature
from planners.rl.decision import PLANNER_NAME, Decision, decide
from planners.rl.exceptions import IncompatiblePolicy
from planners.rl.history import ObservationHistory
from planners.rl.policy import RLPolicy, load_policy
from planners.space import Objective, OutcomeConstraint, Params, SearchSpace
from protocols.adaptive_dosing import AdaptiveDosing, AdaptiveDosingSettings

#: protocol settings a policy's observations and actions depend on
PROTOCOL_FIELDS = (
    "dose_steps_um",
    "interval_h",
    "decisions",
    "decision_unit",
    "replicates",
    "negative_controls",
    "seeded_volume_ul",
    "residual_volume_ul",
)


class RLPlanner:
    """A trained adaptive-dosing policy behind the planner interface.

    Args:
        policy: path of the policy zip (its ``.json`` sidecar must sit beside it).
        particles: cultures in each decision's forecast of the outcome.
    """

    name = PLANNER_NAME

    def __init__(self, policy: str | None = None, particles: int = 512, **unknown: Any) -> None:
        if unknown:
            raise PlannerError(
                f"unknown setting(s) {sorted(unknown)} for planner 'rl'; "
                "known: ['particles', 'policy']"
            )
        if not policy:
            raise PlannerError(
                "planner 'rl' needs a policy file: planner: {name: rl, policy: "
                "PATH} (train one with python -m planners.rl.train)"
            )
        self.policy: RLPolicy = load_policy(policy)
        self.particles = int(particles)

    def check(
        self,
        space: SearchSpace,
        objectives: Sequence[Objective],
        outcome_constraints: Sequence[OutcomeConstraint] = (),
        plate_parameters: PlateParameters = (),
    ) -> None:
        """Refuse a decision space that is not the policy's action space.

        Raises:
            UnsupportedPlanningFeature: other parameters, or plate parameters.
        """
        if plate_parameters:
            raise UnsupportedPlanningFeature(self.name, "plate parameters")
        actions = AdaptiveDosing(self.policy.problem.protocol).action_space()
        if sorted(space.names) != sorted(actions.names):
            raise UnsupportedPlanningFeature(
                self.name,
                f"the space {space.names}",
                hint=f"its space is the action of one decision: {actions.names}",
            )

    def check_protocol(self, settings: AdaptiveDosingSettings | Mapping[str, Any]) -> None:
        """Raise :class:`IncompatiblePolicy` unless the campaign's ``adaptive_dosing``
        settings match the policy's training protocol where it matters."""
        given = (
            settings
            if isinstance(settings, AdaptiveDosingSettings)
            else AdaptiveDosingSettings.model_validate(dict(settings))
        )
        trained = self.policy.problem.protocol
        for field in PROTOCOL_FIELDS:
            a, b = getattr(trained, field), getattr(given, field)
            if field == "replicates" and trained.decision_unit == "well":
                continue
            if a != b:
                raise IncompatiblePolicy(field, a, b)
        if trained.imaging.fields_per_well != given.imaging.fields_per_well:
            raise IncompatiblePolicy(
                "imaging.fields_per_well",
                trained.imaging.fields_per_well,
                given.imaging.fields_per_well,
            )

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
        """Not supported: the RL agent decides inside time-course plates (:meth:`decide_units`)."""
        raise UnsupportedPlanningFeature(
            self.name,
            "one-shot proposals",
            hint="it decides each unit's action at the decision points of an adaptive_dosing "
            "plate (decide_units)",
        )

    def decide_units(
        self, histories: Mapping[str, ObservationHistory], seed: int
    ) -> dict[str, Decision]:
        """One decision per unit. Pure: the same histories and seed give the same decisions
        (each unit's forecast is seeded by ``seed`` and its own history)."""
        return {
            unit: decide(self.policy, h, seed=seed, particles=self.particles)
            for unit, h in histories.items()
        }

    def ledger_record(self) -> dict[str, Any]:
        """Policy identity to journal with every decision (id, sha256, path, versions)."""
        return self.policy.ledger_record()
