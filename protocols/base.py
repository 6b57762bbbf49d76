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
from collections.abc import Iterable, Mapping, Sequence
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
    """What one well holds: total volume (µL), final concentration of each reagent (µM) and the
    share of each organic solvent (% v/v).

    Reagents at zero concentration (vehicle, medium) and absent solvents are not listed.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    well: str
    volume_ul: float = Field(ge=0)
    concentrations_um: dict[str, float] = Field(default_factory=dict)
    solvent_percent: dict[str, float] = Field(
        default_factory=dict, description="organic solvent -> % v/v in the well"
    )

    def matches(self, other: WellContents, rel_tol: float = 1e-6, abs_tol: float = 1e-9) -> bool:
        """True when volumes, every concentration and every solvent share agree within tolerance."""
        if not _close(self.volume_ul, other.volume_ul, rel_tol, abs_tol):
            return False
        return _close_maps(
            self.concentrations_um, other.concentrations_um, rel_tol, abs_tol
        ) and _close_maps(self.solvent_percent, other.solvent_percent, rel_tol, abs_tol)


def _close_maps(
    a: Mapping[str, float], b: Mapping[str, float], rel_tol: float, abs_tol: float
) -> bool:
    return all(_close(a.get(n, 0.0), b.get(n, 0.0), rel_tol, abs_tol) for n in set(a) | set(b))


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

    def preparation_usage_ul(self) -> dict[str, float]:
        """µL of each stock, medium and solvent that preparing the layout's intermediates
        takes (source label → µL): what leaves the freezer for this plate."""
        made = {i.label for i in self.layout.intermediates}
        usage: dict[str, float] = {}
        for i in self.layout.intermediates:
            for part in i.recipe:
                if part.source not in made:
                    usage[part.source] = usage.get(part.source, 0.0) + part.volume_ul
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

    Every Aspirate fills the tip with one liquid (a reagent at its stock concentration, in
    ``solvent_percent`` of its solvent); the following Dispenses empty it into wells. Wells in
    ``wells`` (and every well dispensed into) start at ``initial_volume_ul`` of reagent-free,
    solvent-free liquid (the seeded cells). Useful to compare a protocol's intent with a
    simulated handler's state, or with the steps journalled as done before a crash.

    Returns:
        well → contents, for every well that was touched or listed.
    """
    volume: dict[str, float] = {w: initial_volume_ul for w in wells}
    amount: dict[str, dict[str, float]] = {w: {} for w in wells}  # µM·µL per reagent
    solvent_ul: dict[str, dict[str, float]] = {w: {} for w in wells}
    tip = Aspirate(plate="", source="", reagent="", stock_concentration_um=0.0, volume_ul=1.0)
    for s in steps:
        if isinstance(s, Aspirate):
            tip = s
        elif isinstance(s, Dispense):
            volume.setdefault(s.well, initial_volume_ul)
            volume[s.well] += s.volume_ul
            _add(
                amount.setdefault(s.well, {}), tip.reagent, tip.stock_concentration_um * s.volume_ul
            )
            if tip.solvent is not None:
                _add(
                    solvent_ul.setdefault(s.well, {}),
                    tip.solvent,
                    tip.solvent_percent / 100.0 * s.volume_ul,
                )
    out: dict[str, WellContents] = {}
    for w, v in volume.items():
        conc = {r: m / v for r, m in amount.get(w, {}).items() if v > 0 and m / v > _CONC_EPS_UM}
        pct = {n: 100.0 * u / v for n, u in solvent_ul.get(w, {}).items() if v > 0 and u > 0}
        out[w] = WellContents(well=w, volume_ul=v, concentrations_um=conc, solvent_percent=pct)
    return out


def _add(totals: dict[str, float], key: str, value: float) -> None:
    if value > 0:
        totals[key] = totals.get(key, 0.0) + value


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
