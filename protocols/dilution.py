"""Working solutions and intermediate dilutions: how a dose gets from a stock into a well so
that every well ends at the same solvent share.

Compound stocks are concentrated solutions in an organic solvent (10 mM in DMSO is usual), and
cells tolerate only a few tenths of a percent of it. A dose from such a stock cannot be added
as is: the volume would be below what the handler pipettes, and wells would end at different
solvent shares (vehicle controls at none), so solvent toxicity would read as drug toxicity.

The scheme (the lab's "intermediate plate" practice, made exact): every liquid added to a
dosed well, whatever it carries, holds the same solvent share

    φ_w = solvent_percent × final_volume / added_volume       (2 % for 0.5 % × 200 / 50 µL)

so a well ends at ``solvent_percent`` whatever mix of liquids filled it:

- a stock in the solvent becomes a *working solution* by diluting it 1/φ_w-fold in medium
  (10 mM DMSO stock → 200 µM in medium with 2 % DMSO);
- an aqueous stock becomes one by adding φ_w of pure solvent;
- doses too low to pipette from a working solution come from *serial dilutions* of it in
  vehicle, ``dilution_factor``-fold each (200 → 20 → 2 µM), up to ``max_serial_dilutions``;
- the *vehicle* (medium with φ_w solvent) tops every well up to the final volume.

A dose therefore needs ``dose / stock`` of the well's volume in solvent from the most
concentrated stock; doses that together need more than ``solvent_percent`` cannot be given.
On an aqueous plate (``solvent: water``) φ_w is 0: stocks are used as they are and serial
dilutions are made in plain medium.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cached_property

from protocols.base import VOLUME_EPS_UL
from protocols.dose_response_settings import DoseResponseSettings
from protocols.exceptions import ImpossibleVolume
from protocols.layout import Intermediate, RecipePart
from protocols.liquids import is_organic, with_solvent

__all__ = ["Solution", "SolutionPlan", "check_together", "overfill_error"]


@dataclass(frozen=True)
class Solution:
    """A liquid the dosing steps can aspirate.

    Attributes:
        reagent: the reagent it carries (None for the vehicle).
        concentration_um: its concentration of ``reagent``, µM.
        label: the reservoir label steps aspirate it by.
        solvent, solvent_percent: its organic solvent and share (% v/v); None / 0 if aqueous.
        depth: preparation steps from a stock (0: a stock used as it is, 1: made from a stock).
        parent: the solution it is a serial dilution of (None when made from a stock).
        stock_um: the stock it comes from, µM (0 for the vehicle).
        dilution: fold dilution of ``parent`` (or of the stock).
        stock_solvent: the solvent of that stock.
    """

    reagent: str | None
    concentration_um: float
    label: str
    solvent: str | None
    solvent_percent: float
    depth: int
    parent: Solution | None
    stock_um: float
    dilution: float
    stock_solvent: str

    @property
    def stock_label(self) -> str:
        return f"{self.reagent}@{self.stock_um:g}uM"


class SolutionPlan:
    """The solutions a ``dose_response`` plate doses from, and how to prepare them.

    Args:
        settings: the protocol's settings.
    """

    def __init__(self, settings: DoseResponseSettings) -> None:
        self.settings = settings
        self.phi = settings.working_solvent_fraction
        self.solvent = settings.matched_solvent
        self.percent = 100.0 * self.phi
        self.vehicle = Solution(
            reagent=None,
            concentration_um=0.0,
            label=with_solvent(settings.vehicle, self.solvent, self.percent),
            solvent=self.solvent,
            solvent_percent=self.percent,
            depth=1 if self.phi > 0 else 0,
            parent=None,
            stock_um=0.0,
            dilution=1.0,
            stock_solvent=settings.vehicle,
        )

    # -- the ladder of each reagent ------------------------------------------------------------

    def ladder(self, reagent: str) -> list[Solution]:
        """Every solution of ``reagent`` (working solutions and their serial dilutions), by
        ascending concentration; at equal labels the one with fewer preparation steps."""
        return self._ladders[reagent] if reagent in self._ladders else self._build(reagent)

    @cached_property
    def _ladders(self) -> dict[str, list[Solution]]:
        return {r: self._build(r) for r in self.settings.stocks}

    def _build(self, reagent: str) -> list[Solution]:
        s = self.settings
        best: dict[str, Solution] = {}
        for stock in s.stocks[reagent]:
            top = self._working(reagent, stock)
            chain = [top]
            for _ in range(s.max_serial_dilutions):
                parent = chain[-1]
                conc = parent.concentration_um / s.dilution_factor
                chain.append(
                    Solution(
                        reagent,
                        conc,
                        self._label(reagent, conc),
                        self.solvent,
                        self.percent,
                        parent.depth + 1,
                        parent,
                        stock,
                        s.dilution_factor,
                        top.stock_solvent,
                    )  # fmt: skip
                )
            for sol in chain:
                if sol.label not in best or sol.depth < best[sol.label].depth:
                    best[sol.label] = sol
        return sorted(best.values(), key=lambda x: x.concentration_um)

    def _working(self, reagent: str, stock: float) -> Solution:
        """The stock itself (aqueous plate) or its working solution at the plate's solvent share."""
        solvent = self.settings.stock_solvent(reagent)
        if self.phi == 0:
            return Solution(
                reagent, stock, f"{reagent}@{stock:g}uM", None, 0.0, 0, None, stock, 1.0, solvent
            )
        # an organic stock is diluted to the working share; an aqueous one receives that share
        share = self.phi if is_organic(solvent) else 1.0 - self.phi
        conc = stock * share
        return Solution(
            reagent, conc, self._label(reagent, conc), self.solvent, self.percent, 1, None,
            stock, 1.0 / share, solvent,
        )  # fmt: skip

    def _label(self, reagent: str, conc: float) -> str:
        return with_solvent(f"{reagent}@{conc:g}uM", self.solvent, self.percent)

    # -- doses -------------------------------------------------------------------------------

    def choose(self, reagent: str, dose_um: float) -> tuple[Solution, float]:
        """The solution and volume (µL) that give ``dose_um`` in the final volume: the most
        concentrated solution whose volume is still at least the handler's minimum.

        Raises:
            ImpossibleVolume: the dose is negative, or below what the most dilute solution
                can give.
        """
        s = self.settings
        if dose_um < 0 or not math.isfinite(dose_um):
            raise ImpossibleVolume(reagent, dose_um, "doses must be finite and ≥ 0")
        ladder = self.ladder(reagent)
        for sol in reversed(ladder):
            volume = dose_um * s.final_volume_ul / sol.concentration_um
            if volume >= s.min_volume_ul - VOLUME_EPS_UL:
                return sol, volume
        weakest = ladder[0]
        lowest = s.min_volume_ul * weakest.concentration_um / s.final_volume_ul
        more = "raise max_serial_dilutions or add" if s.max_serial_dilutions < 6 else "add"
        raise ImpossibleVolume(
            reagent,
            dose_um,
            f"needs {dose_um * s.final_volume_ul / weakest.concentration_um:.3g} uL of the most "
            f"dilute solution ({weakest.label}), below the handler's minimum of "
            f"{s.min_volume_ul:g} uL; the lowest dose possible is {lowest:.3g} uM ({more} a "
            "more dilute stock)",
        )

    def solvent_need_percent(self, reagent: str, dose_um: float) -> float | None:
        """% v/v of the plate's solvent that ``dose_um`` brings from the reagent's most
        concentrated stock (None for aqueous stocks or an aqueous plate)."""
        if self.solvent is None or not is_organic(self.settings.stock_solvent(reagent)):
            return None
        return 100.0 * dose_um / max(self.settings.stocks[reagent])

    # -- preparation -------------------------------------------------------------------------

    def preparation(self, drawn_ul: Mapping[str, float]) -> list[Intermediate]:
        """What to prepare before dosing, given the µL the dosing steps draw of each label.

        Volumes include what deeper dilutions take and ``intermediate_dead_volume_ul``; every
        part of a recipe is at least the handler's minimum volume.

        Returns:
            the vehicle first (when it is prepared), then each reagent's solutions from the
            most concentrated down (parents before the dilutions made from them).
        """
        solutions = {sol.label: sol for r in self.settings.stocks for sol in self.ladder(r)}
        need = {label: v for label, v in drawn_ul.items() if v > 0}
        made: list[tuple[Solution, float, float, list[RecipePart]]] = []
        pending = sorted((x for x in solutions.values() if x.depth > 0), key=lambda x: -x.depth)
        for sol in pending:  # deepest first: parents learn what their dilutions take
            used = need.get(sol.label, 0.0)
            if used <= 0:
                continue
            volume, recipe = self._recipe(sol, used)
            made.append((sol, used, volume, recipe))
            for part in recipe:
                need[part.source] = need.get(part.source, 0.0) + part.volume_ul
        out: list[Intermediate] = []
        if self.vehicle.depth and need.get(self.vehicle.label, 0.0) > 0:
            used = need[self.vehicle.label]
            volume, recipe = self._recipe(self.vehicle, used)
            out.append(self._intermediate(self.vehicle, used, volume, recipe))
        made.sort(key=lambda m: (m[0].reagent or "", m[0].depth, -m[0].concentration_um))
        out += [self._intermediate(*m) for m in made]
        return out

    def _recipe(self, sol: Solution, used_ul: float) -> tuple[float, list[RecipePart]]:
        """Volume to prepare and its recipe ``[(source, µL)]``, every part ≥ the minimum."""
        s = self.settings
        medium = s.vehicle
        if sol.reagent is None:  # the vehicle: solvent into medium
            parts = [(self.solvent or medium, self.phi), (medium, 1.0 - self.phi)]
        elif sol.parent is not None:  # a serial dilution in vehicle
            diluent = self.vehicle.label
            parts = [(sol.parent.label, 1.0 / sol.dilution), (diluent, 1.0 - 1.0 / sol.dilution)]
        elif is_organic(sol.stock_solvent):  # an organic stock diluted to the working share
            parts = [(sol.stock_label, self.phi), (medium, 1.0 - self.phi)]
        else:  # an aqueous stock given the working share of solvent
            parts = [(sol.stock_label, 1.0 - self.phi), (self.solvent or medium, self.phi)]
        parts = [(src, f) for src, f in parts if f > 1e-12]
        volume = used_ul + s.intermediate_dead_volume_ul
        volume = max([volume] + [s.min_volume_ul / f for _, f in parts])
        return volume, [RecipePart(source=src, volume_ul=volume * f) for src, f in parts]

    @staticmethod
    def _intermediate(
        sol: Solution, used: float, volume: float, recipe: list[RecipePart]
    ) -> Intermediate:
        return Intermediate(
            label=sol.label,
            reagent=sol.reagent,
            concentration_um=sol.concentration_um,
            solvent=sol.solvent,
            solvent_percent=sol.solvent_percent,
            made_from=recipe[0].source,
            dilution=sol.dilution,
            depth=sol.depth if sol.reagent is not None else 0,
            volume_ul=volume,
            used_ul=used,
            recipe=recipe,
        )


# -- refusals ------------------------------------------------------------------------------


def overfill_error(
    s: DoseResponseSettings,
    plan: SolutionPlan,
    doses_um: Mapping[str, float],
    volumes: Sequence[tuple[str, float, str | None]],
    prefix: str = "",
) -> ImpossibleVolume:
    """The error for one well's doses that together overfill it (or the solvent allowance).

    Args:
        volumes: ``(label, µL, reagent)`` of each dosing solution the well would need.
    """
    total = sum(v for _, v, _ in volumes)
    reagent = max(volumes, key=lambda x: x[1])[2] or s.vehicle
    parts = ", ".join(f"{v:.3g} uL of {label}" for label, v, _ in volumes)
    needs = {r: plan.solvent_need_percent(r, d) for r, d in doses_um.items() if d > 0}
    known = {r: n for r, n in needs.items() if n is not None}
    solvent = "; use more concentrated stocks"
    if s.matched_solvent and known:
        each = ", ".join(f"{r} {doses_um[r]:g} uM: {n:.3g} %" for r, n in sorted(known.items()))
        solvent = (
            f"; these doses need {sum(known.values()):.3g} % v/v {s.matched_solvent} from "
            f"the most concentrated stocks ({each}) and every well is matched at "
            f"{s.solvent_percent:g} %: lower the doses, use more concentrated stocks or "
            "raise solvent_percent"
        )
    return ImpossibleVolume(
        reagent,
        doses_um.get(reagent),
        f"{prefix}doses need {total:.3g} uL ({parts}) but {s.addable_volume_ul:g} uL fit "
        f"above the {s.seeded_volume_ul:g} uL of cells (and any vehicle top-up must be 0 or "
        f"≥ {s.min_volume_ul:g} uL){solvent}",
    )


def check_together(
    s: DoseResponseSettings, plan: SolutionPlan, worst: Sequence[tuple[str, str, float, float]]
) -> None:
    """Refuse dose ranges whose largest volumes (or solvent needs) together overfill a well.

    Args:
        worst: per dose mapping ``(parameter, reagent, highest dose µM, largest µL)``.

    Raises:
        ImpossibleVolume: naming the parameters, and with an organic solvent each one's need.
    """
    total = sum(v for *_, v in worst)
    room = s.addable_volume_ul
    # Totals vary continuously up to the worst case, so any worst case above room − min
    # passes through top-ups that are positive but below the handler's minimum.
    if total <= room - s.min_volume_ul + VOLUME_EPS_UL:
        return
    needs = [(p, r, h, plan.solvent_need_percent(r, h)) for p, r, h, _ in worst]
    solvent = ""
    if s.matched_solvent and any(n is not None for *_, n in needs):
        each = ", ".join(
            f"{p} = {h:g} uM of {r}: {n:.3g} %" for p, r, h, n in needs if n is not None
        )
        solvent = (
            f"; at the highest doses they need {s.matched_solvent} ({each}) and every well "
            f"is matched at {s.solvent_percent:g} % v/v"
        )
    raise ImpossibleVolume(
        "+".join(sorted({r for _, r, _, _ in worst})),
        None,
        f"parameters {', '.join(p for p, *_ in worst)} together can need {total:.3g} uL of "
        f"dosing solutions but {room:g} uL fit (a vehicle top-up must be 0 or ≥ "
        f"{s.min_volume_ul:g} uL){solvent}; narrow the ranges or use more concentrated stocks",
    )
