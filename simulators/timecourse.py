"""Virtual biology for adaptive time-courses: a tumour/normal co-culture dosed again and again.

A well holds three populations: drug-sensitive tumour cells, a drug_a-resistant tumour
sub-population, and normal cells. Between liquid operations the model integrates, in steps of
``dt_h`` (exponential Euler, concentrations taken at each step's midpoint)::

    dN_p/dt = N_p * (r_p * max(0, 1 - (T + N) / K) - kill_p(c(t)))

- ``r_p = ln 2 / doubling_p``; resistant cells grow ``(1 - resistance_cost)`` as fast as the
  sensitive ones (the usual fitness cost of resistance), so they expand only under pressure.
- ``K`` is the well's carrying capacity (confluence), shared by both lines: killing tumour
  cells frees room for the normal ones.
- ``kill_p(c) = -ln S_p(c) / 48 h`` where ``S_p`` is :class:`simulators.biology.VirtualBiology`'s
  48 h surviving fraction (Hill curves, Bliss independence, the drug_a + drug_b synergy), so a
  constant concentration held for 48 h kills exactly as the end-point model says. Each culture
  sees the drugs through its own sensitivity (concentrations scaled by ``tumour_sensitivity``
  and ``normal_sensitivity``: an IC50 divided by them); resistant cells see drug_a at
  ``1 / resistance_factor`` of its concentration.
- Drugs decay in the medium with per-culture half-lives; a medium exchange withdraws all but a
  residual volume (removing drug in proportion) and refills with fresh medium; an addition
  brings an amount (pmol = µM x µL) in a volume (µL), diluting what is there.

Every well also carries an untreated twin (same culture, no drug), which gives the
plate's vehicle controls and the ground-truth viabilities: treated count / untreated count.

Cultures differ: :class:`CulturePrior` draws growth rates, sensitivities, the resistant
fraction, its resistance and cost, half-lives and confluence from lognormal / beta
distributions. Everything is vectorised over ``n`` cultures (arrays of shape ``(n,)``) so a
reinforcement-learning environment or a benchmark steps hundreds of cultures at once.

:class:`ImagingNoise` turns cells into what the microscope and the nuclei analyzer report:
per-field counts of each line, with per-well seeding factors, Poisson counting over the imaged
fields, a per-image multiplicative error (focus, segmentation) and marker misclassification.

Units: hours, µL, µM, pmol, cells per well.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from simulators.biology import REFERENCE_EXPOSURE_S, VirtualBiology

REFERENCE_EXPOSURE_H = REFERENCE_EXPOSURE_S / 3600.0
#: fraction of a 96-well bottom (32.2 mm²) one default microscope field covers (as assays.py)
FIELD_FRACTION = (256 * 2.6e-3) ** 2 / 32.2
_MIN_SURVIVAL = 1e-12


@dataclass(frozen=True)
class CultureParams:
    """Parameters of ``n`` cultures; every array has shape ``(n,)``.

    Attributes:
        tumour_doubling_h, normal_doubling_h: unconstrained doubling times (h).
        tumour_sensitivity, normal_sensitivity: drug concentrations are multiplied by these
            before the Hill curves (2 = twice as sensitive, IC50 halved).
        resistant_fraction: share of tumour cells resistant to ``resistant_to`` at seeding.
        resistance_factor: the resistant cells' IC50 multiplier for that drug (> 1).
        resistance_cost: fractional growth-rate penalty of resistant cells, in [0, 1).
        half_life_h: drug half-life in medium at 37 °C per culture, shape ``(n, n_drugs)``.
        capacity_cells: cells one well holds at confluence.
    """

    tumour_doubling_h: np.ndarray
    normal_doubling_h: np.ndarray
    tumour_sensitivity: np.ndarray
    normal_sensitivity: np.ndarray
    resistant_fraction: np.ndarray
    resistance_factor: np.ndarray
    resistance_cost: np.ndarray
    half_life_h: np.ndarray
    capacity_cells: np.ndarray

    @property
    def n(self) -> int:
        """Number of cultures."""
        return int(self.tumour_doubling_h.shape[0])

    def take(self, index: np.ndarray | list[int] | slice) -> CultureParams:
        """The cultures at ``index`` (numpy indexing along the culture axis)."""
        return CultureParams(**{k: np.asarray(v)[index] for k, v in self.as_dict().items()})

    def as_dict(self) -> dict[str, np.ndarray]:
        """Field name → array."""
        return {f: getattr(self, f) for f in self.__dataclass_fields__}

    def to_records(self) -> list[dict[str, float | list[float]]]:
        """One JSON-friendly dict per culture (for reports and benchmark logs)."""
        out = []
        for i in range(self.n):
            rec: dict[str, float | list[float]] = {}
            for k, v in self.as_dict().items():
                rec[k] = [float(x) for x in v[i]] if v.ndim > 1 else float(v[i])
            out.append(rec)
        return out

    @staticmethod
    def concat(parts: list[CultureParams]) -> CultureParams:
        """Cultures of several parameter sets, in order."""
        names = parts[0].__dataclass_fields__
        return CultureParams(**{k: np.concatenate([getattr(p, k) for p in parts]) for k in names})


class LogNormal(BaseModel):
    """``median * exp(N(0, sd))``, optionally clipped to ``[low, high]``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    median: float = Field(gt=0)
    sd: float = Field(default=0.0, ge=0, description="sd of the natural log")
    low: float = Field(default=0.0, ge=0)
    high: float | None = Field(default=None, description="None: no upper bound")

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        x = self.median * np.exp(self.sd * rng.standard_normal(n))
        return np.clip(x, self.low, self.high if self.high is not None else np.inf)


class Beta(BaseModel):
    """``scale * Beta(a, b)``."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    a: float = Field(gt=0)
    b: float = Field(gt=0)
    scale: float = Field(default=1.0, gt=0)

    def sample(self, rng: np.random.Generator, n: int) -> np.ndarray:
        return self.scale * rng.beta(self.a, self.b, n)


class CulturePrior(BaseModel):
    """Lot-to-lot variability: the distributions cultures are drawn from.

    The defaults describe a patient-derived co-culture whose lots differ about two-fold in
    drug sensitivity (sd 0.45 of log IC50), ±20 % in doubling time, and carry 0-25 % of
    tumour cells resistant to drug_a (mean ~6 %).
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    tumour_doubling_h: LogNormal = LogNormal(median=24.0, sd=0.2, low=12.0, high=60.0)
    normal_doubling_h: LogNormal = LogNormal(median=36.0, sd=0.2, low=18.0, high=90.0)
    tumour_sensitivity: LogNormal = LogNormal(median=1.0, sd=0.45, low=0.2, high=5.0)
    normal_sensitivity: LogNormal = LogNormal(median=1.0, sd=0.45, low=0.2, high=5.0)
    resistant_fraction: Beta = Beta(a=0.8, b=12.0)
    resistance_factor: LogNormal = LogNormal(median=10.0, sd=0.5, low=2.0, high=100.0)
    resistance_cost: Beta = Beta(a=2.0, b=8.0, scale=0.5)
    half_life_h: dict[str, LogNormal] = {
        "drug_a": LogNormal(median=24.0, sd=0.2, low=4.0),
        "drug_b": LogNormal(median=12.0, sd=0.2, low=2.0),
    }
    capacity_cells: LogNormal = LogNormal(median=40000.0, sd=0.15, low=10000.0)

    @property
    def drugs(self) -> tuple[str, ...]:
        """Drug names, in the order of :attr:`CultureParams.half_life_h`'s second axis."""
        return tuple(self.half_life_h)

    def sample(self, rng: np.random.Generator, n: int) -> CultureParams:
        """``n`` independent cultures."""
        scalar = {
            name: getattr(self, name).sample(rng, n)
            for name in (
                "tumour_doubling_h",
                "normal_doubling_h",
                "tumour_sensitivity",
                "normal_sensitivity",
                "resistant_fraction",
                "resistance_factor",
                "resistance_cost",
                "capacity_cells",
            )
        }
        half = np.stack([d.sample(rng, n) for d in self.half_life_h.values()], axis=1)
        return CultureParams(half_life_h=half, **scalar)

    def sample_identical(self, rng: np.random.Generator, n: int) -> CultureParams:
        """One culture drawn from the prior, repeated ``n`` times."""
        return self.sample(rng, 1).take(np.zeros(n, dtype=int))

    def nominal(self, n: int = 1) -> CultureParams:
        """The median culture (every distribution at its median; resistant share at its
        mean), repeated ``n`` times."""

        def beta_mean(b: Beta) -> float:
            return b.scale * b.a / (b.a + b.b)

        ones = np.ones(n)
        return CultureParams(
            tumour_doubling_h=ones * self.tumour_doubling_h.median,
            normal_doubling_h=ones * self.normal_doubling_h.median,
            tumour_sensitivity=ones * self.tumour_sensitivity.median,
            normal_sensitivity=ones * self.normal_sensitivity.median,
            resistant_fraction=ones * beta_mean(self.resistant_fraction),
            resistance_factor=ones * self.resistance_factor.median,
            resistance_cost=ones * beta_mean(self.resistance_cost),
            half_life_h=np.tile([d.median for d in self.half_life_h.values()], (n, 1)),
            capacity_cells=ones * self.capacity_cells.median,
        )


@dataclass(frozen=True)
class CultureState:
    """Cells and liquid in ``n`` wells at time ``time_h`` (hours since the first decision).

    ``cells`` has shape ``(n, 3)``: sensitive tumour, resistant tumour, normal cells of the
    treated well; ``control_cells`` the same for its untreated twin. ``amount_pmol`` has shape
    ``(n, n_drugs)``; ``volume_ul`` shape ``(n,)``.
    """

    time_h: float
    cells: np.ndarray
    control_cells: np.ndarray
    volume_ul: np.ndarray
    amount_pmol: np.ndarray

    @property
    def n(self) -> int:
        return int(self.cells.shape[0])

    def take(self, index: np.ndarray | list[int]) -> CultureState:
        """The wells at ``index`` (numpy indexing along the well axis)."""
        return replace(
            self,
            cells=self.cells[index],
            control_cells=self.control_cells[index],
            volume_ul=self.volume_ul[index],
            amount_pmol=self.amount_pmol[index],
        )

    def concentrations_um(self) -> np.ndarray:
        """Drug concentrations, shape ``(n, n_drugs)``, µM."""
        return self.amount_pmol / self.volume_ul[:, None]

    def line_counts(self, control: bool = False) -> np.ndarray:
        """Cells per line, shape ``(n, 2)``: ``[:, 0]`` tumour (both sub-populations),
        ``[:, 1]`` normal."""
        c = self.control_cells if control else self.cells
        return np.stack([c[:, 0] + c[:, 1], c[:, 2]], axis=1)

    def viability(self) -> np.ndarray:
        """Ground-truth ``(tumour, normal)`` viability, shape ``(n, 2)``: treated cells over
        the untreated twin's cells."""
        return self.line_counts() / np.maximum(self.line_counts(control=True), 1e-9)


@dataclass(frozen=True)
class TimecourseModel:
    """The dynamics (see the module docstring). Stateless: every method returns a new state.

    Attributes:
        drugs: drug names; they index the last axis of amounts and half-lives and must be in
            ``biology.drugs``.
        resistant_to: the drug the resistant sub-population resists.
        biology: the Hill curves, Bliss independence and pair interactions.
        seeded_cells: ``(tumour, normal)`` cells per well when the first decision is made.
        dt_h: integration step (h).
    """

    drugs: tuple[str, ...] = ("drug_a", "drug_b")
    resistant_to: str = "drug_a"
    biology: VirtualBiology = field(default_factory=VirtualBiology)
    seeded_cells: tuple[float, float] = (2000.0, 2000.0)
    dt_h: float = 1.0

    def __post_init__(self) -> None:
        unknown = [d for d in self.drugs if d not in self.biology.drugs]
        if unknown:
            raise ValueError(f"drugs {unknown} are not in the biology's drug library")
        if self.resistant_to not in self.drugs:
            raise ValueError(f"resistant_to {self.resistant_to!r} is not one of {self.drugs}")

    def initial_state(self, params: CultureParams, volume_ul: float) -> CultureState:
        """Seeded wells with ``volume_ul`` of drug-free medium, at time 0."""
        n = params.n
        tumour, normal = self.seeded_cells
        f = params.resistant_fraction
        cells = np.stack([tumour * (1 - f), tumour * f, np.full(n, normal)], axis=1)
        return CultureState(
            time_h=0.0,
            cells=cells,
            control_cells=cells.copy(),
            volume_ul=np.full(n, float(volume_ul)),
            amount_pmol=np.zeros((n, len(self.drugs))),
        )

    # -- liquid -----------------------------------------------------------------------------

    def exchange(
        self, state: CultureState, mask: np.ndarray, residual_ul: float, refill_ul: float
    ) -> CultureState:
        """Medium exchange in the wells where ``mask`` (shape ``(n,)``) is true: withdraw down
        to ``residual_ul`` (drug leaves with the liquid), then add ``refill_ul`` of medium.

        The untreated twin gets the same exchange (controls are handled like samples), which
        does nothing to its cells.
        """
        mask = np.asarray(mask, dtype=bool)
        keep = np.where(mask, np.minimum(residual_ul / state.volume_ul, 1.0), 1.0)
        volume = np.where(
            mask, np.minimum(state.volume_ul, residual_ul) + refill_ul, state.volume_ul
        )
        return replace(state, volume_ul=volume, amount_pmol=state.amount_pmol * keep[:, None])

    def add(
        self, state: CultureState, drug: str, amount_pmol: np.ndarray, volume_ul: np.ndarray
    ) -> CultureState:
        """Add ``amount_pmol`` of ``drug`` in ``volume_ul`` of liquid to each well (arrays of
        shape ``(n,)``; zeros where nothing is added)."""
        j = self.drugs.index(drug)
        amounts = state.amount_pmol.copy()
        amounts[:, j] += np.asarray(amount_pmol, dtype=float)
        return replace(
            state, amount_pmol=amounts, volume_ul=state.volume_ul + np.asarray(volume_ul, float)
        )

    # -- growth and kill --------------------------------------------------------------------

    def kill_rates(self, params: CultureParams, conc_um: np.ndarray) -> np.ndarray:
        """Per-hour kill rates, shape ``(n, 3)`` (sensitive tumour, resistant tumour, normal),
        at concentrations ``conc_um`` of shape ``(n, n_drugs)``."""
        b = self.biology
        st = params.tumour_sensitivity[:, None]
        sn = params.normal_sensitivity[:, None]
        tumour = {d: conc_um[:, j] * st[:, 0] for j, d in enumerate(self.drugs)}
        resistant = dict(tumour)
        resistant[self.resistant_to] = tumour[self.resistant_to] / params.resistance_factor
        normal = {d: conc_um[:, j] * sn[:, 0] for j, d in enumerate(self.drugs)}
        survival = np.stack(
            [
                b.surviving_fraction_array(tumour, "tumour"),
                b.surviving_fraction_array(resistant, "tumour"),
                b.surviving_fraction_array(normal, "normal"),
            ],
            axis=1,
        )
        return -np.log(np.maximum(survival, _MIN_SURVIVAL)) / REFERENCE_EXPOSURE_H

    def growth_rates(self, params: CultureParams) -> np.ndarray:
        """Unconstrained per-hour growth rates, shape ``(n, 3)``."""
        rt = math.log(2.0) / params.tumour_doubling_h
        rn = math.log(2.0) / params.normal_doubling_h
        return np.stack([rt, rt * (1.0 - params.resistance_cost), rn], axis=1)

    def advance(self, params: CultureParams, state: CultureState, hours: float) -> CultureState:
        """Let the wells grow, die and the drugs decay for ``hours``."""
        if hours < 0:
            raise ValueError(f"cannot advance by a negative time ({hours} h)")
        steps = max(1, math.ceil(hours / self.dt_h - 1e-9)) if hours > 0 else 0
        if steps == 0:
            return state
        dt = hours / steps
        decay = np.log(2.0) / params.half_life_h  # (n, n_drugs), per hour
        r = self.growth_rates(params)
        capacity = params.capacity_cells[:, None]
        cells, ctrl, amounts = state.cells, state.control_cells, state.amount_pmol
        for _ in range(steps):
            mid = amounts * np.exp(-decay * dt / 2) / state.volume_ul[:, None]
            kill = self.kill_rates(params, mid)
            room = np.maximum(1.0 - cells.sum(axis=1, keepdims=True) / capacity, 0.0)
            room_c = np.maximum(1.0 - ctrl.sum(axis=1, keepdims=True) / capacity, 0.0)
            cells = cells * np.exp((r * room - kill) * dt)
            ctrl = ctrl * np.exp(r * room_c * dt)
            amounts = amounts * np.exp(-decay * dt)
        return replace(
            state,
            time_h=state.time_h + hours,
            cells=cells,
            control_cells=ctrl,
            amount_pmol=amounts,
        )


class ImagingNoise(BaseModel):
    """What imaging and the nuclei analyzer make of the cells in a well.

    A well's reported count of a line per field is
    ``Poisson(cells * seeding * image_error * fields_per_well * field_fraction) / fields``,
    after ``misclassified`` of each line's nuclei are counted as the other line (marker
    threshold errors). ``seeding`` is lognormal per well and line (fixed over the time-course:
    the well was seeded with that many more or fewer cells than nominal); ``image_error`` is
    lognormal per image (focus, segmentation), shared by both lines.

    Attributes:
        fields_per_well: fields imaged per well per time point.
        field_fraction: share of the well one field covers.
        well_sd, line_sd: lognormal sds of the seeding factor (shared / per line).
        image_sd: lognormal sd of the per-image error.
        misclassified: fraction of nuclei given the other line's label.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    fields_per_well: int = Field(default=4, ge=1)
    field_fraction: float = Field(default=FIELD_FRACTION, gt=0, le=1)
    well_sd: float = Field(default=0.07, ge=0)
    line_sd: float = Field(default=0.05, ge=0)
    image_sd: float = Field(default=0.05, ge=0)
    misclassified: float = Field(default=0.02, ge=0, lt=0.5)

    def seeding_factors(self, rng: np.random.Generator, shape: tuple[int, ...]) -> np.ndarray:
        """Per-well seeding factors, shape ``shape + (2,)`` (tumour, normal)."""
        z = rng.standard_normal((*shape, 3))
        return np.exp(self.well_sd * z[..., :1] + self.line_sd * z[..., 1:])

    def count(self, rng: np.random.Generator, cells: np.ndarray, seeding: np.ndarray) -> np.ndarray:
        """Counts per field as the analyzer reports them.

        Args:
            cells: true ``(tumour, normal)`` cells of each culture, shape ``(n, 2)``.
            seeding: factors from :meth:`seeding_factors`, shape ``(n, wells, 2)``.

        Returns:
            ``(tumour_count, normal_count)`` per field of each well, shape ``(n, wells, 2)``.
        """
        image = np.exp(self.image_sd * rng.standard_normal(seeding.shape[:-1] + (1,)))
        true = cells[:, None, :] * seeding * image
        m = self.misclassified
        seen = np.stack(
            [true[..., 0] * (1 - m) + true[..., 1] * m, true[..., 1] * (1 - m) + true[..., 0] * m],
            axis=-1,
        )
        fields = self.fields_per_well * self.field_fraction
        return rng.poisson(seen * fields) / self.fields_per_well
