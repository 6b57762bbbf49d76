"""A simulated lab whose wells live through a time-course: doses, exchanges, decay, regrowth.

:class:`TimecourseLab` is a :class:`~simulators.world.SimulatedLab` (same plates, tip,
persistence and crash safety) in which

- every dispense is recorded with its time and what it carried, and wells can be emptied
  down to a residual volume (:meth:`TimecourseLab.withdraw_from_well`, the first half of a
  medium exchange; journaled like every other mutation);
- :meth:`cells_in_well` replays a well's recorded liquid events through
  :class:`~simulators.timecourse.TimecourseModel` from the plate's seeding time, for the
  plate's own culture: one lot per plate, drawn from a :class:`CulturePrior` with a seed
  derived from ``(culture_seed, plate)`` (``identical_cultures``: one lot for every plate).

So the simulated microscope (:mod:`simulators.microscope`), which asks
``cells_in_well(plate, well, now)``, images adaptive-dosing plates as they evolve, and the
nuclei analyzer counts them as it counts any plate. Per-well seeding noise and artefacts come
from the lab's :class:`~simulators.biology.VirtualBiology` exactly as in the end-point lab.

Reagents other than the prior's drugs that the biology knows (a positive control such as
staurosporine) act with their Hill curves and do not decay; others (medium, vehicle) are inert.
"""

from __future__ import annotations

import os
from dataclasses import replace
from typing import Any

import numpy as np

from simulators.biology import VirtualBiology, WellCounts, stable_hash
from simulators.timecourse import CultureParams, CulturePrior, TimecourseModel
from simulators.world import SimulatedLab

_NO_DECAY_H = 1e12


class TimecourseLab(SimulatedLab):
    """A :class:`SimulatedLab` for time-course plates (see the module docstring).

    Args:
        state_path, biology, and the keyword arguments: as :class:`SimulatedLab`.
        prior: the lot-to-lot distribution of cultures.
        culture_seed: seeds each plate's lot.
        identical_cultures: every plate holds the same lot (drawn with ``culture_seed``).
        dt_h: integration step of the replay (h).
    """

    def __init__(
        self,
        state_path: str | os.PathLike[str] | None = None,
        biology: VirtualBiology | None = None,
        *,
        prior: CulturePrior | None = None,
        culture_seed: int = 0,
        identical_cultures: bool = False,
        dt_h: float = 1.0,
        **kwargs: Any,
    ) -> None:
        self.prior = prior or CulturePrior()
        self.culture_seed = int(culture_seed)
        self.identical_cultures = identical_cultures
        biology = biology if biology is not None else VirtualBiology()
        extra = tuple(
            d for d in ("staurosporine",) if d in biology.drugs and d not in self.prior.drugs
        )
        self.model = TimecourseModel(drugs=self.prior.drugs + extra, biology=biology, dt_h=dt_h)
        super().__init__(state_path, biology, **kwargs)

    # -- cultures ---------------------------------------------------------------------------

    def culture(self, plate: str) -> CultureParams:
        """The lot on ``plate`` (one culture), with non-decaying extra reagents appended."""
        key = 0 if self.identical_cultures else stable_hash(plate)
        params = self.prior.sample(np.random.default_rng([self.culture_seed, key]), 1)
        extra = len(self.model.drugs) - len(self.prior.drugs)
        half = np.concatenate([params.half_life_h, np.full((1, extra), _NO_DECAY_H)], axis=1)
        return CultureParams(**{**params.as_dict(), "half_life_h": half})

    # -- liquid events ----------------------------------------------------------------------

    def withdraw_from_well(self, plate: str, well: str, volume_ul: float, now_s: float) -> None:
        """Remove ``volume_ul`` of a well's (well-mixed) liquid to waste. No limit checks: the
        liquid handler checks before calling."""
        self.ensure_plate(plate, now_s)
        well = self.canonical_well(plate, well)
        self._mutate(
            {
                "op": "withdraw",
                "plate": plate,
                "well": well,
                "volume_ul": float(volume_ul),
                "now_s": float(now_s),
            }
        )

    def _apply(self, op: dict[str, Any]) -> None:
        if op["op"] == "withdraw":
            self._apply_withdraw(op["plate"], op["well"], op["volume_ul"], op["now_s"])
            return
        if op["op"] == "dispense":
            self._record_dispense(op["plate"], op["well"], op["volume_ul"], op["now_s"])
        super()._apply(op)

    def _events(self, plate: str, well: str) -> list[dict[str, Any]]:
        return self._plates[plate].setdefault("events", {}).setdefault(well, [])

    def _record_dispense(self, plate: str, well: str, volume_ul: float, now_s: float) -> None:
        tip = self._tip
        fraction = min(volume_ul / tip.volume_ul, 1.0) if tip.volume_ul > 0 else 0.0
        self._events(plate, well).append(
            {
                "t": now_s,
                "add_ul": volume_ul,
                "pmol": {r: a * fraction for r, a in tip.amounts_pmol.items() if a > 0},
            }
        )

    def _apply_withdraw(self, plate: str, well: str, volume_ul: float, now_s: float) -> None:
        state = self.well_state(plate, well)
        keep = max(state.volume_ul - volume_ul, 0.0) / state.volume_ul if state.volume_ul else 0.0
        self._plates[plate]["wells"][well] = {
            "volume_ul": state.volume_ul * keep,
            "amounts_pmol": {r: a * keep for r, a in state.amounts_pmol.items()},
            "dose_time_s": state.dose_time_s,
        }
        self._events(plate, well).append({"t": now_s, "withdraw_ul": volume_ul})

    # -- biology ----------------------------------------------------------------------------

    def expected_cells(self, plate: str, well: str, now_s: float) -> tuple[float, float]:
        """Noise-free ``(tumour, normal)`` cells of a well at ``now_s``, by replaying its
        liquid events from the plate's seeding."""
        well = self.canonical_well(plate, well)
        rec = self._plates.get(plate)
        seeded_at = rec["seeded_at_s"] if rec else float(now_s) - self.seeding_lead_s
        volume = rec["seeded_volume_ul"] if rec else self.seeded_volume_ul
        events = (rec or {}).get("events", {}).get(well, [])
        params = self.culture(plate)
        seeded = rec["seeded_cells"] if rec else self.seeded_cells
        model = replace(self.model, seeded_cells=(float(seeded[0]), float(seeded[1])))
        state = model.initial_state(params, volume)
        t = seeded_at
        for ev in sorted(events, key=lambda e: e["t"]):
            if ev["t"] > now_s:
                break
            state = model.advance(params, state, max(ev["t"] - t, 0.0) / 3600.0)
            t = max(t, ev["t"])
            if "withdraw_ul" in ev:
                keep = max(float(state.volume_ul[0]) - ev["withdraw_ul"], 0.0)
                state = model.exchange(state, np.array([True]), keep, 0.0)
                continue
            # the added liquid's volume first (0 pmol of anything), then what it carried
            state = model.add(state, model.drugs[0], np.zeros(1), np.array([ev["add_ul"]]))
            for reagent, pmol in ev["pmol"].items():
                if reagent in model.drugs:
                    state = model.add(state, reagent, np.array([pmol]), np.zeros(1))
        state = model.advance(params, state, max(now_s - t, 0.0) / 3600.0)
        tumour, normal = state.line_counts()[0]
        return float(tumour), float(normal)

    def cells_in_well(self, plate: str, well: str, now_s: float) -> WellCounts:
        """The cells in a well at ``now_s`` (s): the replayed culture with the biology's
        per-well seeding noise, artefacts and a Poisson draw (as the end-point lab)."""
        well = self.canonical_well(plate, well)
        mean_t, mean_n = self.expected_cells(plate, well, now_s)
        ft, fn, artefact, _ = self.biology.well_factors(plate, well)
        if artefact == "no_cells":
            ft = fn = 0.01
        rng = np.random.default_rng(
            [self.biology.seed, stable_hash(plate), stable_hash(well), int(mean_t), int(mean_n)]
        )
        tumour, normal = rng.poisson([mean_t * ft, mean_n * fn])
        return WellCounts(int(tumour), int(normal), artefact)
