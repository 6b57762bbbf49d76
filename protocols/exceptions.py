"""Errors raised by protocols. Each carries the data a user or the controller needs to act on it.

They are raised when a campaign is loaded (:func:`protocols.base.get_protocol`), when its search
space is checked (``check_space``) and when a plate is compiled: never at the robot.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any


class ProtocolError(Exception):
    """Base class of every protocol error."""


class InvalidSettings(ProtocolError):
    """A protocol's settings (the campaign file's ``protocol`` section) failed validation.

    Attributes:
        protocol: the protocol's registered name.
        fields: dotted paths of the offending fields, e.g. ``["doses.0.parameter"]``.
        errors: pydantic's error dicts, for tools that want the details.
    """

    def __init__(self, protocol: str, errors: Sequence[dict[str, Any]]) -> None:
        self.protocol = protocol
        self.errors = list(errors)
        self.fields = [".".join(str(p) for p in e.get("loc", ())) or "<root>" for e in errors]
        lines = [
            f"  {f}: {e.get('msg', '')}" for f, e in zip(self.fields, self.errors, strict=True)
        ]
        super().__init__(f"invalid settings for protocol {protocol!r}:\n" + "\n".join(lines))


class UnknownProtocol(ProtocolError):
    """No protocol is registered under ``name``."""

    def __init__(self, name: str, known: Iterable[str]) -> None:
        self.name = name
        self.known = sorted(known)
        super().__init__(f"no protocol named {name!r}; known: {self.known}")


class DuplicateProtocolName(ProtocolError):
    """Two protocols were registered under the same name."""


class UnknownPlateType(ProtocolError):
    """A plate type that the labware table does not list."""

    def __init__(self, plate_type: str, known: Iterable[str]) -> None:
        self.plate_type = plate_type
        self.known = sorted(known)
        super().__init__(f"unknown plate type {plate_type!r}; known: {self.known}")


class InvalidWell(ProtocolError):
    """A well name that does not exist on the plate type (e.g. 'M01' on a 96-well plate)."""

    def __init__(self, well: str, plate_type: str) -> None:
        self.well = well
        self.plate_type = plate_type
        super().__init__(f"well {well!r} does not exist on a {plate_type}-well plate")


class ImpossibleVolume(ProtocolError):
    """A dose cannot be pipetted: it needs a volume below the handler's minimum, more than fits
    in the well, or it is negative.

    Attributes:
        reagent: the reagent (e.g. ``drug_a``).
        dose_um: the requested final concentration, µM (None when several doses together fail).
        reason: why, in the lab's words (volumes and stocks included).
    """

    def __init__(self, reagent: str, dose_um: float | None, reason: str) -> None:
        self.reagent = reagent
        self.dose_um = dose_um
        self.reason = reason
        at = f" at {dose_um:g} uM" if dose_um is not None else ""
        super().__init__(f"cannot dose {reagent}{at}: {reason}")


class PlateFull(ProtocolError):
    """The experiments, their replicates and the controls need more wells than the plate offers.

    Attributes:
        needed: wells the round needs.
        available: usable wells (after edge exclusion).
    """

    def __init__(self, needed: int, available: int, detail: str = "") -> None:
        self.needed = needed
        self.available = available
        msg = f"plate full: {needed} wells needed but only {available} available"
        super().__init__(msg + (f" ({detail})" if detail else ""))


class UnknownReagent(ProtocolError):
    """A reagent with no stock solution in the protocol's ``stocks``.

    Attributes:
        reagent: the unknown name.
        known: reagents that do have stocks.
        where: where the name came from (a setting or a parameter).
    """

    def __init__(self, reagent: str, known: Iterable[str], where: str = "") -> None:
        self.reagent = reagent
        self.known = sorted(known)
        self.where = where
        at = f" (from {where})" if where else ""
        super().__init__(f"no stock for reagent {reagent!r}{at}; stocks exist for {self.known}")


class UnmappedParameter(ProtocolError):
    """A parameter the protocol cannot realise: the search space or an experiment has it but no
    dose mapping uses it, a mapping names a parameter the space lacks, or its type is wrong.

    Attributes:
        parameter: the parameter's name.
        reason: what is wrong.
    """

    def __init__(self, parameter: str, reason: str) -> None:
        self.parameter = parameter
        self.reason = reason
        super().__init__(f"parameter {parameter!r}: {reason}")


class MissingParameter(ProtocolError):
    """An experiment lacks a parameter that a dose mapping needs.

    Attributes:
        parameter: the missing name.
        experiment: index of the experiment in the compiled round.
    """

    def __init__(self, parameter: str, experiment: int) -> None:
        self.parameter = parameter
        self.experiment = experiment
        super().__init__(f"experiment {experiment} has no value for parameter {parameter!r}")


class MixedPlateParameter(ProtocolError):
    """Experiments on one plate disagree on a parameter the whole plate shares (e.g. the
    incubation time): batch proposals must give every experiment of a plate the same value.

    Attributes:
        parameter: the plate-level parameter.
        values: the distinct values found, sorted.
    """

    def __init__(self, parameter: str, values: Iterable[float]) -> None:
        self.parameter = parameter
        self.values = sorted(values)
        super().__init__(
            f"plate-level parameter {parameter!r} differs between experiments of one plate: "
            f"{self.values}"
        )


class InvalidDecision(ProtocolError):
    """A time-course decision the protocol cannot apply: an unknown unit, a dose that is not
    one of the configured dose steps, a decision after the last decision point, or one that
    would overfill a well or exceed the solvent limit. Raised when compiling, before any step
    of the decision runs.

    Attributes:
        unit: the decision unit (an experiment index or a well name; None for the plate).
        reason: what is wrong, in the lab's words.
    """

    def __init__(self, unit: int | str | None, reason: str) -> None:
        self.unit = unit
        self.reason = reason
        where = f"unit {unit!r}: " if unit is not None else ""
        super().__init__(f"invalid decision: {where}{reason}")
