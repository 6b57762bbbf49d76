"""Virtual biology: the ground truth behind every simulated read-out.

A co-culture of a GFP-labelled tumour line and a GFP-negative "normal" line. Each drug acts on
each line through a Hill curve (fractional inhibition ``emax * c^h / (c^h + IC50^h)``);
independent drugs combine by Bliss independence (surviving fractions multiply) and some pairs
interact beyond Bliss through a term ``exp(-gamma * f_i * f_j)`` on the surviving fraction,
where ``f`` are the pair's fractional inhibitions. ``gamma > 0`` is synergy; drug_a + drug_b is
strongly synergistic on the tumour line and barely on the normal line, so the most selective
dose is an interior combination.

Solvents: organic solvents are toxic too. Each acts on each line through a Hill curve in
% v/v (:func:`default_solvents`: DMSO costs a few percent of cells at 0.5 %, ~10–15 % at 1 %
and half of them at 2–2.5 % over 48 h, the normal line being the more sensitive, as primary
cells are), independently of the drugs (Bliss). So a plate whose wells are not
vehicle-matched reads solvent toxicity as drug toxicity.

Time: cells grow exponentially (``2 ** (growth_s / doubling_s)``); the drug effect grows with
exposure: the surviving fraction after ``exposure_s`` is ``S ** (exposure_s / REFERENCE_EXPOSURE_S)``
where ``S`` is the fraction the Hill curves give at the 48 h reference exposure.

Plates: outer wells evaporate (lower growth, higher effective concentration). Each well has
lognormal biological/seeding noise and, rarely, an artefact (bubble, debris, no cells). All
randomness is a pure function of ``(seed, plate, well)``.
"""

from __future__ import annotations

import math
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import NamedTuple

import numpy as np

CELL_LINES: tuple[str, str] = ("tumour", "normal")
REFERENCE_EXPOSURE_S = 48 * 3600.0
ARTEFACTS: tuple[str, ...] = ("bubble", "debris", "no_cells")


@dataclass(frozen=True)
class HillCurve:
    """Dose response of one cell line to one drug (at the 48 h reference exposure)."""

    ic50_um: float
    hill: float = 1.0
    emax: float = 1.0

    def inhibition(self, concentration_um: float) -> float:
        """Fractional inhibition in ``[0, emax]`` at ``concentration_um`` (µM)."""
        if concentration_um <= 0.0:
            return 0.0
        x = (concentration_um / self.ic50_um) ** self.hill
        return self.emax * x / (1.0 + x)

    def inhibition_array(self, concentration_um: np.ndarray) -> np.ndarray:
        """Vectorised :meth:`inhibition` for an array of concentrations (any shape)."""
        c = np.maximum(np.asarray(concentration_um, dtype=float), 0.0)
        x = (c / self.ic50_um) ** self.hill
        return self.emax * x / (1.0 + x)


@dataclass(frozen=True)
class Drug:
    """A reagent with one Hill curve per cell line."""

    name: str
    tumour: HillCurve
    normal: HillCurve

    def curve(self, cell_line: str) -> HillCurve:
        return self.tumour if cell_line == "tumour" else self.normal


@dataclass(frozen=True)
class Interaction:
    """Excess over Bliss for a drug pair: surviving fraction ``*= exp(-gamma * f_i * f_j)``."""

    drugs: tuple[str, str]
    gamma_tumour: float
    gamma_normal: float

    def gamma(self, cell_line: str) -> float:
        return self.gamma_tumour if cell_line == "tumour" else self.gamma_normal


def default_drugs() -> dict[str, Drug]:
    """The reference drug library (IC50 in µM, 48 h exposure)."""
    drugs = [
        # mildly tumour-selective on its own
        Drug("drug_a", HillCurve(1.5, 1.2, 0.90), HillCurve(2.5, 1.0, 0.85)),
        # non-selective alone; its value is the synergy with drug_a
        Drug("drug_b", HillCurve(1.0, 1.2, 0.60), HillCurve(1.0, 1.2, 0.55)),
        # potent and toxic to both lines
        Drug("drug_c", HillCurve(0.5, 1.0, 0.95), HillCurve(0.6, 1.0, 0.95)),
        # weak, somewhat selective
        Drug("drug_d", HillCurve(4.0, 1.5, 0.60), HillCurve(6.0, 1.5, 0.55)),
        # positive control: kills everything
        Drug("staurosporine", HillCurve(0.02, 2.0, 0.999), HillCurve(0.02, 2.0, 0.999)),
    ]
    return {d.name: d for d in drugs}


def default_solvents() -> dict[str, Drug]:
    """Toxicity of organic solvents at the 48 h reference exposure (IC50 in % v/v, not µM).

    DMSO: ~2 % (normal) and ~2.5 % (tumour) halve the cells; ≤ 0.1 % is harmless and 0.5 %
    costs 2–3 %, in line with the usual advice to stay at or below 0.5 %. Ethanol is somewhat
    better tolerated.
    """
    return {
        "dmso": Drug("dmso", HillCurve(2.5, 2.5, 1.0), HillCurve(2.0, 2.5, 1.0)),
        "ethanol": Drug("ethanol", HillCurve(4.0, 2.5, 1.0), HillCurve(3.0, 2.5, 1.0)),
    }


def default_interactions() -> dict[frozenset[str], Interaction]:
    """Pairwise interactions beyond Bliss (unlisted pairs are Bliss-independent)."""
    pairs = [
        Interaction(("drug_a", "drug_b"), gamma_tumour=10.0, gamma_normal=0.3),
        Interaction(("drug_a", "drug_c"), gamma_tumour=0.5, gamma_normal=0.5),
        Interaction(("drug_a", "drug_d"), gamma_tumour=4.0, gamma_normal=0.5),
        Interaction(("drug_b", "drug_c"), gamma_tumour=-0.5, gamma_normal=-0.3),
        Interaction(("drug_b", "drug_d"), gamma_tumour=1.5, gamma_normal=0.2),
    ]
    return {frozenset(p.drugs): p for p in pairs}


class WellCounts(NamedTuple):
    """Cells in one well: ``tumour``, ``normal`` and the artefact type (None for a good well)."""

    tumour: int
    normal: int
    artefact: str | None


def stable_hash(text: str) -> int:
    """A process-independent 32-bit hash (Python's ``hash`` is salted per process)."""
    return zlib.crc32(text.encode("utf-8"))


def is_edge_well(well: str, rows: int = 8, cols: int = 12) -> bool:
    """True for wells in the outer ring of a ``rows`` x ``cols`` plate (``"A01"``, ``"H07"``)."""
    row = ord(well[0].upper()) - ord("A")
    col = int(well[1:]) - 1
    return row in (0, rows - 1) or col in (0, cols - 1)


@dataclass
class VirtualBiology:
    """Ground truth for the co-culture. Seeded; deterministic per ``(seed, plate, well)``.

    Attributes:
        seed: seed of all per-well randomness.
        drugs: drug library by reagent name; reagents not in it (vehicle, medium) are inert.
        interactions: pair interactions by ``frozenset({drug_i, drug_j})``.
        solvents: solvent toxicity by solvent name (curves in % v/v).
        doubling_s: doubling time per cell line (s).
        well_noise_sd: lognormal sd of the per-well factor shared by both lines (seeding).
        line_noise_sd: lognormal sd of each line's own per-well factor.
        failure_rate: probability that a well carries an artefact.
        edge_growth_factor: growth-rate multiplier in edge wells (evaporation).
        edge_concentration_factor: concentration multiplier in edge wells (evaporation).
    """

    seed: int = 0
    drugs: dict[str, Drug] = field(default_factory=default_drugs)
    interactions: dict[frozenset[str], Interaction] = field(default_factory=default_interactions)
    solvents: dict[str, Drug] = field(default_factory=default_solvents)
    doubling_s: dict[str, float] = field(
        default_factory=lambda: {"tumour": 24 * 3600.0, "normal": 36 * 3600.0}
    )
    well_noise_sd: float = 0.07
    line_noise_sd: float = 0.05
    failure_rate: float = 0.015
    edge_growth_factor: float = 0.90
    edge_concentration_factor: float = 1.15

    def solvent_survival(
        self, solvent_percent: Mapping[str, float] | None, cell_line: str
    ) -> float:
        """Fraction of ``cell_line`` surviving 48 h in ``solvent_percent`` (solvent -> % v/v)."""
        survival = 1.0
        for name, pct in (solvent_percent or {}).items():
            if name in self.solvents and pct > 0:
                survival *= 1.0 - self.solvents[name].curve(cell_line).inhibition(float(pct))
        return survival

    def surviving_fraction(self, concentrations_um: Mapping[str, float], cell_line: str) -> float:
        """Fraction of ``cell_line`` surviving the 48 h reference exposure to the drugs (Bliss +
        interactions; solvents: :meth:`solvent_survival`)."""
        inhibition = {
            name: self.drugs[name].curve(cell_line).inhibition(float(c))
            for name, c in concentrations_um.items()
            if name in self.drugs and c > 0
        }
        survival = 1.0
        for f in inhibition.values():
            survival *= 1.0 - f
        if len(inhibition) > 1:
            names = sorted(inhibition)
            excess = 0.0
            for i, a in enumerate(names):
                for b in names[i + 1 :]:
                    pair = self.interactions.get(frozenset((a, b)))
                    if pair is not None:
                        excess += pair.gamma(cell_line) * inhibition[a] * inhibition[b]
            survival *= math.exp(-excess)
        return min(max(survival, 0.0), 1.0)

    def surviving_fraction_array(
        self, concentrations_um: Mapping[str, np.ndarray | float], cell_line: str
    ) -> np.ndarray:
        """Vectorised :meth:`surviving_fraction`: concentration arrays broadcast together."""
        inhibition = {
            name: self.drugs[name].curve(cell_line).inhibition_array(np.asarray(c, dtype=float))
            for name, c in concentrations_um.items()
            if name in self.drugs
        }
        survival: np.ndarray = np.ones(())
        for f in inhibition.values():
            survival = survival * (1.0 - f)
        names = sorted(inhibition)
        excess: np.ndarray = np.zeros(())
        for i, a in enumerate(names):
            for b in names[i + 1 :]:
                pair = self.interactions.get(frozenset((a, b)))
                if pair is not None:
                    excess = excess + pair.gamma(cell_line) * inhibition[a] * inhibition[b]
        return np.clip(survival * np.exp(-excess), 0.0, 1.0)

    def growth_factor(self, cell_line: str, growth_s: float, edge: bool = False) -> float:
        """Fold change of an untreated population over ``growth_s`` seconds."""
        rate = math.log(2.0) / self.doubling_s[cell_line]
        if edge:
            rate *= self.edge_growth_factor
        return math.exp(rate * max(growth_s, 0.0))

    def expected_counts(
        self,
        concentrations_um: Mapping[str, float],
        exposure_s: float,
        *,
        seeded_cells: tuple[float, float] = (2000.0, 2000.0),
        growth_s: float | None = None,
        edge: bool = False,
        solvent_percent: Mapping[str, float] | None = None,
    ) -> tuple[float, float]:
        """Noise-free ``(tumour, normal)`` cells in a well.

        Args:
            concentrations_um: final concentration of each reagent in the well (µM).
            exposure_s: time since the drugs were added (s).
            seeded_cells: ``(tumour, normal)`` cells seeded into the well.
            growth_s: time since seeding (s); defaults to ``exposure_s``.
            edge: the well is on the plate's edge (evaporation).
            solvent_percent: organic solvent -> % v/v in the well.
        """
        growth_s = exposure_s if growth_s is None else growth_s
        conc = concentrations_um
        solvents = dict(solvent_percent or {})
        if edge:
            conc = {k: v * self.edge_concentration_factor for k, v in concentrations_um.items()}
            solvents = {k: v * self.edge_concentration_factor for k, v in solvents.items()}
        power = max(exposure_s, 0.0) / REFERENCE_EXPOSURE_S
        out = []
        for line, seeded in zip(CELL_LINES, seeded_cells, strict=True):
            fraction = self.surviving_fraction(conc, line) * self.solvent_survival(solvents, line)
            survival = fraction**power
            out.append(seeded * self.growth_factor(line, growth_s, edge) * survival)
        return out[0], out[1]

    def well_rng(self, plate: str, well: str) -> np.random.Generator:
        """The generator behind one well's noise (same stream for the same seed, plate, well)."""
        return np.random.default_rng([self.seed, stable_hash(plate), stable_hash(well)])

    def well_factors(self, plate: str, well: str) -> tuple[float, float, str | None, float]:
        """Per-well ``(tumour factor, normal factor, artefact, artefact draw)``; time-invariant."""
        rng = self.well_rng(plate, well)
        z = rng.standard_normal(3)
        shared = self.well_noise_sd * z[0]
        ft = math.exp(shared + self.line_noise_sd * z[1])
        fn = math.exp(shared + self.line_noise_sd * z[2])
        u, v = rng.random(2)
        artefact = None
        if u < self.failure_rate:
            artefact = ARTEFACTS[min(int(v * len(ARTEFACTS)), len(ARTEFACTS) - 1)]
        return ft, fn, artefact, float(v)

    def well_counts(
        self,
        plate: str,
        well: str,
        concentrations_um: Mapping[str, float],
        exposure_s: float,
        *,
        seeded_cells: tuple[float, float] = (2000.0, 2000.0),
        growth_s: float | None = None,
        edge: bool | None = None,
        solvent_percent: Mapping[str, float] | None = None,
    ) -> WellCounts:
        """Noisy cell numbers in one well, deterministic per ``(seed, plate, well)`` and inputs.

        Args:
            plate, well: identify the well (``"B03"``); they seed its noise.
            concentrations_um, exposure_s, seeded_cells, growth_s, solvent_percent: as
                :meth:`expected_counts`.
            edge: edge well; None infers it from the name assuming a 96-well plate.

        Returns:
            :class:`WellCounts` ``(tumour, normal, artefact)``; a ``"no_cells"`` well holds
            almost no cells, ``"bubble"``/``"debris"`` wells hold normal numbers of cells but
            image badly.
        """
        if edge is None:
            edge = is_edge_well(well)
        mean_t, mean_n = self.expected_counts(
            concentrations_um, exposure_s, seeded_cells=seeded_cells, growth_s=growth_s,
            edge=edge, solvent_percent=solvent_percent,
        )  # fmt: skip
        ft, fn, artefact, _ = self.well_factors(plate, well)
        if artefact == "no_cells":
            ft = fn = 0.01
        # Poisson draw seeded by the well and the (rounded) means so it is reproducible.
        rng = np.random.default_rng(
            [self.seed, stable_hash(plate), stable_hash(well), int(mean_t), int(mean_n)]
        )
        tumour, normal = rng.poisson([mean_t * ft, mean_n * fn])
        return WellCounts(int(tumour), int(normal), artefact)
