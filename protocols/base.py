"""The protocol interface, compiled plates, well contents, and the registry of protocols by name.

A protocol turns one round of experiments (``list[Params]``) into a :class:`CompiledPlate`: a
:class:`~protocols.layout.PlateLayout` (which well holds what) and a list of typed
:mod:`protocols.steps` in execution order. Protocols never talk to hardware.

Usage (what the controller does)::

    proto = get_protocol("dose_response", campaign["protocol"])   # raises InvalidSettings
    proto.check_space(space)                                      # before anything runs
    compiled = proto.compile(experiments, plate_id="P0003", seed=3)
    expected = proto.expected_contents(compiled)                  # well -> WellContents
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from typing import ClassVar, Protocol, runtime_checkable

from pydantic import BaseModel, ConfigDict, Field

from planners.space import Params, SearchSpace
from protocols.exceptions import (
    ImpossibleVolume,
)
from protocols.layout import PlateLayout
from protocols.steps import Aspirate, Dispense, Step

_CONC_EPS_UM = 1e-12
VOLUME_EPS_UL = 1e-9  # tolerance when comparing volumes, µL


class WellContents(BaseModel):
    """What one well holds: total volume (µL) and final concentration of each reagent (µM).

    Reagents at zero concentration (vehicle, medium) are not listed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    well: str
    volume_ul: float = Field(ge=0)
    concentrations_um: dict[str, float] = Field(default_factory=dict)

    def matches(self, other: WellContents, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
        """True when volumes and every concentration agree within tolerance."""
        if not _close(self.volume_ul, other.volume_ul, rel_tol, abs_tol):
            return False
        names = set(self.concentrations_um) | set(other.concentrations_um)
        return all(
            _close(
                self.concentrations_um.get(n, 0.0),
                other.concentrations_um.get(n, 0.0),
                rel_tol,
                abs_tol,
            )
            for n in names
        )


def _close(a: float, b: float, rel_tol: float, abs_tol: float) -> bool:
    return abs(a - b) <= max(abs_tol, rel_tol * max(abs(a), abs(b)))


class CompiledPlate(BaseModel):
    """One plate, ready to run: its layout, its steps in execution order, and the experiments.

    ``experiments[i]`` is the parameter set that ``layout`` refers to as experiment ``i``.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    protocol: str = Field(description="registered name of the protocol that compiled the plate")
    layout: PlateLayout
    steps: list[Step]
    experiments: list[Params]
    seed: int

    @property
    def plate_id(self) -> str:
        return self.layout.plate_id

    def reagent_usage_ul(self) -> dict[str, float]:
        """Total µL drawn from each deck reservoir (source name → µL), to fill them before a run.

        Add the handler's dead volume per reservoir on top.
        """
        usage: dict[str, float] = {}
        for s in self.steps:
            if isinstance(s, Aspirate):
                usage[s.source] = usage.get(s.source, 0.0) + s.volume_ul
        return usage


@runtime_checkable
class PlateProtocol(Protocol):
    """What the controller calls. Implementations register with :func:`register_protocol`."""

    name: ClassVar[str]
    settings_model: ClassVar[type[BaseModel]]
    settings: BaseModel

    def capacity(self) -> int:
        """Most experiments one plate holds, after replicates, controls and edge exclusion."""
        ...

    def check_space(self, space: SearchSpace) -> None:
        """Raise a :class:`~protocols.exceptions.ProtocolError` if some point of ``space``
        cannot be realised (unmapped parameters, unknown reagents, unpipettable extremes)."""
        ...

    def compile(self, experiments: Sequence[Params], plate_id: str, seed: int) -> CompiledPlate:
        """Lay out ``experiments`` on plate ``plate_id`` (randomised with ``seed``) and return
        the steps that prepare, incubate and image it."""
        ...

    def expected_contents(self, compiled: CompiledPlate) -> dict[str, WellContents]:
        """Per used well, the volume and concentrations it should hold once the steps ran."""
        ...


def replay_steps(
    steps: Iterable[Step], initial_volume_ul: float = 0.0, wells: Iterable[str] = ()
) -> dict[str, WellContents]:
    """Track liquid through ``steps`` the way a volume-tracking handler would.

    Every Aspirate fills the tip with one stock; the following Dispenses empty it into wells.
    Wells in ``wells`` (and every well dispensed into) start at ``initial_volume_ul`` of
    reagent-free liquid (the seeded cells). Useful to compare a protocol's intent with a
    simulated handler's state, or with the steps journalled as done before a crash.

    Returns:
        well → contents, for every well that was touched or listed.
    """
    volume: dict[str, float] = {w: initial_volume_ul for w in wells}
    amount: dict[str, dict[str, float]] = {w: {} for w in wells}  # µM·µL per reagent
    tip_conc_um, tip_reagent = 0.0, ""
    for s in steps:
        if isinstance(s, Aspirate):
            tip_conc_um, tip_reagent = s.stock_concentration_um, s.reagent
        elif isinstance(s, Dispense):
            volume.setdefault(s.well, initial_volume_ul)
            amount.setdefault(s.well, {})
            volume[s.well] += s.volume_ul
            if tip_conc_um > 0:
                a = amount[s.well]
                a[tip_reagent] = a.get(tip_reagent, 0.0) + tip_conc_um * s.volume_ul
    out: dict[str, WellContents] = {}
    for w, v in volume.items():
        conc = {r: m / v for r, m in amount[w].items() if v > 0 and m / v > _CONC_EPS_UM}
        out[w] = WellContents(well=w, volume_ul=v, concentrations_um=conc)
    return out


# ---------------------------------------------------------------------------------------------
# Concentration → volume


def choose_stock(
    reagent: str,
    dose_um: float,
    stocks_um: Sequence[float],
    final_volume_ul: float,
    min_volume_ul: float,
) -> tuple[float, float]:
    """Pick the stock for a dose: the most concentrated one whose volume is still ≥ the minimum.

    Args:
        stocks_um: available stock concentrations, ascending, µM.

    Returns:
        ``(stock_concentration_um, volume_ul)`` with ``volume = dose · final / stock``.

    Raises:
        ImpossibleVolume: the dose is negative or needs less than ``min_volume_ul`` even from
            the most dilute stock.
    """
    if dose_um < 0 or not math.isfinite(dose_um):
        raise ImpossibleVolume(reagent, dose_um, "doses must be finite and ≥ 0")
    for stock in reversed(stocks_um):
        volume = dose_um * final_volume_ul / stock
        if volume >= min_volume_ul - VOLUME_EPS_UL:
            return stock, volume
    lowest = min_volume_ul * stocks_um[0] / final_volume_ul
    raise ImpossibleVolume(
        reagent,
        dose_um,
        f"needs {dose_um * final_volume_ul / stocks_um[0]:.3g} uL of the most dilute stock "
        f"({stocks_um[0]:g} uM), below the handler's minimum of {min_volume_ul:g} uL; "
        f"the lowest dose possible is {lowest:.3g} uM (add a more dilute stock)",
    )


def split_volume(volume_ul: float, max_volume_ul: float) -> list[float]:
    """Split a transfer into the fewest equal parts that each fit the tip."""
    n = max(1, math.ceil(volume_ul / max_volume_ul - 1e-9))
    return [volume_ul / n] * n


def max_volume_over_range(
    stocks_um: Sequence[float],
    low_um: float,
    high_um: float,
    final_volume_ul: float,
    min_volume_ul: float,
) -> float:
    """Largest volume :func:`choose_stock` picks for any dose in ``[low_um, high_um]`` (µL).

    Volume is a saw-tooth in dose: it grows until the next stock becomes usable, then drops.
    """
    best = (
        high_um
        * final_volume_ul
        / choose_stock("", high_um, stocks_um, final_volume_ul, min_volume_ul)[0]
    )
    for prev, stock in zip(stocks_um, stocks_um[1:], strict=False):
        threshold = min_volume_ul * stock / final_volume_ul  # from here on `stock` is used
        if low_um < threshold <= high_um:
            best = max(best, min_volume_ul * stock / prev)
    return best


def __getattr__(name: str) -> object:
    # The registry moved to protocols.registry; old imports from protocols.base keep working.
    if name in ("get_protocol", "protocol_class", "register_protocol", "registered_protocols"):
        from protocols import registry

        return getattr(registry, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
