"""Errors of the RL agent (subclasses of :class:`planners.exceptions.PlannerError`)."""

from __future__ import annotations

from planners.exceptions import PlannerError


class PolicyFileError(PlannerError):
    """A policy file is missing, unreadable, or does not match its sidecar's checksum.

    Attributes:
        path: the policy file.
        reason: what is wrong.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"policy {path}: {reason}")


class IncompatiblePolicy(PlannerError):
    """A policy trained for another problem than the one it is asked to decide (other dose
    steps, interval, number of decisions or wells per unit).

    Attributes:
        field: the setting that differs.
    """

    def __init__(self, field: str, trained: object, given: object) -> None:
        self.field = field
        super().__init__(
            f"the policy was trained with {field}={trained!r} but the campaign has {given!r}; "
            "train a policy for this protocol (python -m planners.rl.train)"
        )


class InvalidHistory(PlannerError):
    """An observation history the agent cannot read (e.g. more actions than time points).

    Attributes:
        field: the offending field of the history.
    """

    def __init__(self, field: str, reason: str) -> None:
        self.field = field
        super().__init__(f"observation history: {field}: {reason}")
