"""Typed, serialisable instrument steps: what a protocol compiles experiments into.

Steps are data (Bluesky's plans): the controller's engine journals and interprets them against
whatever instruments the campaign configures. Volumes are in µL, durations in seconds,
concentrations in µM. ``Step`` is a union told apart by ``type``.
"""

from __future__ import annotations

from typing import Annotated, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter


class _Step(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    plate: str = Field(description="plate barcode the step acts on")

    @property
    def physical(self) -> bool:
        """True when repeating the step blindly could ruin a well (liquid was moved)."""
        return False

    @property
    def wells(self) -> tuple[str, ...]:
        """Wells this step touches (empty for plate-level steps)."""
        return ()


class Aspirate(_Step):
    """Draw ``volume_ul`` of a stock or working solution into the tip/syringe.

    ``source`` is the reservoir's label (:mod:`protocols.liquids`), which names its organic
    solvent too (``drug_a@200uM+2%dmso``); ``solvent`` and ``solvent_percent`` say the same as
    data, for tools that replay the steps.
    """

    type: Literal["aspirate"] = "aspirate"
    source: str = Field(description="reservoir label on the deck, e.g. 'drug_a@200uM+2%dmso'")
    reagent: str
    stock_concentration_um: float = Field(ge=0, description="0 for vehicle / medium")
    volume_ul: float = Field(gt=0)
    solvent: str | None = Field(
        default=None, description="organic solvent in the aspirated liquid (None: aqueous)"
    )
    solvent_percent: float = Field(
        default=0.0, ge=0, le=100, description="its share of the liquid, % v/v"
    )

    @property
    def physical(self) -> bool:
        return True


class Dispense(_Step):
    """Dispense ``volume_ul`` of what the tip holds into ``well``."""

    type: Literal["dispense"] = "dispense"
    well: str
    reagent: str
    volume_ul: float = Field(gt=0)

    @property
    def physical(self) -> bool:
        return True

    @property
    def wells(self) -> tuple[str, ...]:
        return (self.well,)


class Mix(_Step):
    """Pipette ``volume_ul`` up and down ``cycles`` times in ``well``."""

    type: Literal["mix"] = "mix"
    well: str
    volume_ul: float = Field(gt=0)
    cycles: int = Field(ge=1, default=3)

    @property
    def wells(self) -> tuple[str, ...]:
        return (self.well,)


class Withdraw(_Step):
    """Remove ``volume_ul`` of medium from ``well`` to waste, leaving the adherent cells and a
    residual volume (the first half of a medium exchange; what was in the liquid leaves with it).

    Like a dispense it cannot be repeated blindly (a second withdrawal could dry the well);
    a handler that tracks volumes can confirm it after a crash.
    """

    type: Literal["withdraw"] = "withdraw"
    well: str
    volume_ul: float = Field(gt=0)

    @property
    def physical(self) -> bool:
        return True

    @property
    def wells(self) -> tuple[str, ...]:
        return (self.well,)


class Incubate(_Step):
    """Hold the plate in the incubator for ``duration_s``."""

    type: Literal["incubate"] = "incubate"
    duration_s: float = Field(ge=0)
    temperature_c: float = 37.0
    co2_percent: float = 5.0


class Acquire(_Step):
    """Image ``fields`` fields of ``well`` in each channel (non-destructive; safe to repeat)."""

    type: Literal["acquire"] = "acquire"
    well: str
    channels: list[str] = Field(min_length=1)
    fields: int = Field(ge=1, default=1)
    exposure_ms: float = Field(gt=0, default=20.0)

    @property
    def wells(self) -> tuple[str, ...]:
        return (self.well,)


Step = Annotated[
    Aspirate | Dispense | Mix | Withdraw | Incubate | Acquire, Field(discriminator="type")
]

STEP_ADAPTER: TypeAdapter[Step] = TypeAdapter(Step)


def step_from_json(data: str | bytes) -> Step:
    """Parse one step serialised with ``step.model_dump_json()``."""
    return STEP_ADAPTER.validate_json(data)
