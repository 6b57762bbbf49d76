"""Data of time-course protocols: a decision per unit, the liquid in a well, a plate's state.

Pure data and arithmetic, no hardware: :mod:`protocols.adaptive_dosing` plans transfers with
them, the runner journals them, simulators and agents replay them.

- :class:`UnitAction`: what one decision unit (a condition group of replicate wells, or one
  well) gets at one decision point: dose increments of each drug (µM, one of the protocol's
  dose steps, 0 = none) and whether its medium is exchanged first.
- :class:`Transfer`: one liquid operation in lab units (withdraw to waste, or add a volume of
  a stock); :class:`WellLiquid` tracks a well's volume, drug amounts (pmol = µM x µL, nominal:
  decay in the medium is biology, not liquid handling) and solvent volume through them.
- :class:`PlateState`: every used well's liquid and the index of the next decision point.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from planners.space import Params

EXCHANGE_PARAMETER = "exchange"


def dose_parameter(drug: str) -> str:
    """The action parameter that holds ``drug``'s dose increment (``drug_a`` → ``drug_a_um``)."""
    return f"{drug}_um"


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


class UnitAction(_Frozen):
    """One decision for one unit: exchange the medium (first), then add drug increments.

    ``doses_um[drug]`` raises ``drug``'s concentration by that many µM at the well's volume
    before the addition (the addition's own volume dilutes it by well under 1 %).
    """

    doses_um: dict[str, float] = Field(default_factory=dict, description="drug -> +µM")
    exchange: bool = Field(default=False, description="exchange the medium before dosing")

    @property
    def is_nothing(self) -> bool:
        """True when the decision changes nothing in the well."""
        return not self.exchange and not any(v > 0 for v in self.doses_um.values())

    def total_dose_um(self) -> float:
        """Sum of the dose increments over drugs, µM."""
        return float(sum(self.doses_um.values()))

    def to_params(self, drugs: Sequence[str]) -> Params:
        """As a parameter set (``{"drug_a_um": 0.5, "drug_b_um": 0.0, "exchange": 1}``), the
        form proposals, approvals and the ledger use."""
        out: Params = {dose_parameter(d): float(self.doses_um.get(d, 0.0)) for d in drugs}
        out[EXCHANGE_PARAMETER] = int(self.exchange)
        return out

    @classmethod
    def from_params(
        cls, params: Mapping[str, float | int | str], drugs: Sequence[str]
    ) -> UnitAction:
        """Inverse of :meth:`to_params`; missing doses are 0, a missing exchange is no.

        Raises:
            ValueError: an unknown parameter, or a value that is not a number.
        """
        known = {dose_parameter(d): d for d in drugs}
        unknown = set(params) - set(known) - {EXCHANGE_PARAMETER}
        if unknown:
            raise ValueError(
                f"unknown action parameters {sorted(unknown)}; known: "
                f"{sorted(known) + [EXCHANGE_PARAMETER]}"
            )
        doses = {d: float(params.get(p, 0.0)) for p, d in known.items()}
        exchange = params.get(EXCHANGE_PARAMETER, 0)
        if isinstance(exchange, str):
            raise ValueError(f"exchange must be 0 or 1, not {exchange!r}")
        return cls(doses_um={d: v for d, v in doses.items() if v != 0}, exchange=bool(exchange))


class Transfer(_Frozen):
    """One liquid operation on one well.

    ``withdraw``: remove ``volume_ul`` of the well's (well-mixed) liquid to waste.
    ``add``: add ``volume_ul`` of ``reagent`` at ``stock_concentration_um`` (0 for medium),
    whose liquid is ``solvent_fraction`` solvent (v/v).
    """

    kind: Literal["withdraw", "add"]
    volume_ul: float = Field(gt=0)
    reagent: str = ""
    stock_concentration_um: float = Field(default=0.0, ge=0)
    solvent_fraction: float = Field(default=0.0, ge=0, le=1)

    @property
    def source(self) -> str:
        """Deck reservoir name of an addition (``drug_a@300uM``, or the medium's name)."""
        if self.stock_concentration_um > 0:
            return f"{self.reagent}@{self.stock_concentration_um:g}uM"
        return self.reagent


class WellLiquid(_Frozen):
    """The liquid in one well: volume (µL), nominal drug amounts (pmol), solvent (µL)."""

    volume_ul: float = Field(ge=0)
    amounts_pmol: dict[str, float] = Field(default_factory=dict)
    solvent_ul: float = Field(default=0.0, ge=0)

    def concentrations_um(self) -> dict[str, float]:
        """Nominal concentrations (no decay), µM."""
        if self.volume_ul <= 0:
            return {}
        return {r: a / self.volume_ul for r, a in self.amounts_pmol.items() if a > 0}

    @property
    def solvent_percent(self) -> float:
        """Solvent in the well, % v/v."""
        return 100.0 * self.solvent_ul / self.volume_ul if self.volume_ul > 0 else 0.0

    def apply(self, transfer: Transfer) -> WellLiquid:
        """The well after ``transfer``."""
        if transfer.kind == "withdraw":
            keep = max(self.volume_ul - transfer.volume_ul, 0.0) / self.volume_ul
            return WellLiquid(
                volume_ul=self.volume_ul * keep,
                amounts_pmol={r: a * keep for r, a in self.amounts_pmol.items()},
                solvent_ul=self.solvent_ul * keep,
            )
        amounts = dict(self.amounts_pmol)
        if transfer.stock_concentration_um > 0:
            added = transfer.stock_concentration_um * transfer.volume_ul
            amounts[transfer.reagent] = amounts.get(transfer.reagent, 0.0) + added
        return WellLiquid(
            volume_ul=self.volume_ul + transfer.volume_ul,
            amounts_pmol=amounts,
            solvent_ul=self.solvent_ul + transfer.volume_ul * transfer.solvent_fraction,
        )

    def apply_all(self, transfers: Sequence[Transfer]) -> WellLiquid:
        """The well after every transfer, in order."""
        out = self
        for t in transfers:
            out = out.apply(t)
        return out


class PlateState(_Frozen):
    """A time-course plate between decisions: the liquid of every used well (as planned) and
    the index of the next decision point (0 before the first; ``decisions`` when done)."""

    plate_id: str
    next_decision: int = Field(default=0, ge=0)
    wells: dict[str, WellLiquid]
