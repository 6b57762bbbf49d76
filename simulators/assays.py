"""Assay-level simulation: campaign search spaces on top of the virtual biology, without images.

An :class:`Assay` maps a parameter set to the metrics an analyzer would report for it:

- ``tumour_viability`` / ``normal_viability``: a line's cell count relative to the mean of
  the plate's negative (vehicle) controls, as ``analyzers.plate`` normalises (staurosporine,
  the positive control, leaves ~0.1 %);
- ``selectivity = normal_viability - tumour_viability``;
- ``cell_count``: mean nuclei (both lines) per imaged field (256 x 256 px at 2.6 µm/px in a
  96-well plate, see :data:`FIELD_FRACTION`).

``expected`` is noise-free; ``sample`` simulates replicate wells and control wells with
lognormal well noise, Poisson counting noise over ``fields_per_well`` fields and rare
artefacts, and normalises to the simulated controls like a measurement. Both are fast
(tens of µs), for planner benchmarks. ``optimum`` finds the best feasible expected value of
the first objective by a dense grid plus Nelder-Mead refinement, cached per assay.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Callable, Mapping
from typing import Any

import numpy as np
from scipy.optimize import minimize

from planners.space import (
    CategoricalParameter,
    ContinuousParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)
from simulators.biology import (
    CELL_LINES,
    REFERENCE_EXPOSURE_S,
    Drug,
    HillCurve,
    Interaction,
    VirtualBiology,
    default_drugs,
    default_interactions,
)

#: fraction of a 96-well bottom (32.2 mm²) one default microscope field covers
FIELD_FRACTION = (256 * 2.6e-3) ** 2 / 32.2
METRICS: tuple[str, ...] = ("tumour_viability", "normal_viability", "selectivity", "cell_count")
#: the positive control a plate carries (not needed for normalisation: it leaves ~0.1 %)
POSITIVE_CONTROL: dict[str, float] = {"staurosporine": 1.0}

ConcentrationMap = Callable[[Mapping[str, Any]], dict[str, Any]]


class Assay:
    """A simulated campaign target: search space, objectives, constraints and ground truth.

    Args:
        name: registry name (``"drug_combo"``).
        space: the parameters a campaign varies.
        objectives: metrics to optimise; the first is the one :meth:`optimum` reports.
        outcome_constraints: bounds on metrics a good experiment must meet.
        concentrations: maps parameters to final well concentrations (µM) by reagent; must
            work with numpy arrays in place of the numeric values.
        biology: ground truth (``VirtualBiology(seed=0)`` by default).
        exposure_s: drug exposure before imaging (s).
        seeding_lead_s: time between seeding and dosing (s).
        seeded_cells: ``(tumour, normal)`` cells seeded per well.
        n_controls: negative-control wells simulated per :meth:`sample`.
        fields_per_well: fields the analyzer counts per well (sets counting noise).
    """

    def __init__(
        self,
        name: str,
        space: SearchSpace,
        objectives: list[Objective],
        outcome_constraints: list[OutcomeConstraint],
        concentrations: ConcentrationMap,
        *,
        biology: VirtualBiology | None = None,
        exposure_s: float = REFERENCE_EXPOSURE_S,
        seeding_lead_s: float = 24 * 3600.0,
        seeded_cells: tuple[float, float] = (2000.0, 2000.0),
        n_controls: int = 4,
        fields_per_well: int = 4,
        description: str = "",
    ) -> None:
        self.name = name
        self.space = space
        self.objectives = list(objectives)
        self.outcome_constraints = list(outcome_constraints)
        self.concentrations = concentrations
        self.biology = biology if biology is not None else VirtualBiology()
        self.exposure_s = float(exposure_s)
        self.seeding_lead_s = float(seeding_lead_s)
        self.seeded_cells = seeded_cells
        self.n_controls = int(n_controls)
        self.fields_per_well = int(fields_per_well)
        self.description = description
        self._optimum: tuple[Params, float] | None = None
        growth_s = self.exposure_s + self.seeding_lead_s
        self._untreated = np.array(
            [
                s * self.biology.growth_factor(line, growth_s)
                for line, s in zip(CELL_LINES, seeded_cells, strict=True)
            ]
        )
        self._power = self.exposure_s / REFERENCE_EXPOSURE_S

    def __repr__(self) -> str:
        return f"Assay({self.name!r}, parameters={self.space.names})"

    # ----------------------------------------------------------------------- noise-free

    def expected_survival(self, params: Mapping[str, Any]) -> tuple[float, float]:
        """Noise-free ``(tumour, normal)`` count relative to vehicle (no control correction)."""
        conc = self.concentrations(params)
        b = self.biology
        return (
            b.surviving_fraction(conc, "tumour") ** self._power,
            b.surviving_fraction(conc, "normal") ** self._power,
        )

    def _metrics(self, surv_t: Any, surv_n: Any) -> dict[str, Any]:
        tv, nv = surv_t, surv_n  # relative to vehicle, whose survival is 1
        count = (surv_t * self._untreated[0] + surv_n * self._untreated[1]) * FIELD_FRACTION
        return {
            "tumour_viability": tv,
            "normal_viability": nv,
            "selectivity": nv - tv,
            "cell_count": count,
        }

    def expected(self, params: Mapping[str, Any]) -> dict[str, float]:
        """Noise-free metrics (the analyzer's well metrics, averaged) of one parameter set."""
        surv_t, surv_n = self.expected_survival(params)
        return {k: float(v) for k, v in self._metrics(surv_t, surv_n).items()}

    def expected_array(self, params: Mapping[str, Any]) -> dict[str, np.ndarray]:
        """:meth:`expected` with numpy arrays (broadcast together) for the numeric parameters."""
        conc = self.concentrations(params)
        b = self.biology
        surv_t = b.surviving_fraction_array(conc, "tumour") ** self._power
        surv_n = b.surviving_fraction_array(conc, "normal") ** self._power
        return self._metrics(surv_t, surv_n)

    # ---------------------------------------------------------------------------- noisy

    def sample(
        self, params: Mapping[str, Any], rng: np.random.Generator, replicates: int = 3
    ) -> dict[str, float]:
        """Metrics as measured: ``replicates`` noisy wells normalised to noisy vehicle wells.

        Returns:
            replicate-averaged metrics; a rare failed well (bubble, debris, no cells) is
            included, as it would be before outlier review.
        """
        surv_t, surv_n = self.expected_survival(params)
        k = self.n_controls
        m = replicates + k
        surv = np.ones((m, 2))
        surv[:replicates] = (surv_t, surv_n)
        b = self.biology
        z = rng.standard_normal((m, 3))
        factor = np.exp(b.well_noise_sd * z[:, :1] + b.line_noise_sd * z[:, 1:])
        failed = rng.random(m) < b.failure_rate
        if failed.any():
            factor[failed] *= rng.choice([0.01, 0.75, 1.3], size=(int(failed.sum()), 1))
        fields = self.fields_per_well * FIELD_FRACTION
        counted = rng.poisson(surv * self._untreated * factor * fields).astype(float)
        neg = np.maximum(counted[replicates:].mean(axis=0), 1.0)
        via = counted[:replicates] / neg
        tv, nv = float(via[:, 0].mean()), float(via[:, 1].mean())
        count = float(counted[:replicates].sum(axis=1).mean() / self.fields_per_well)
        return {
            "tumour_viability": tv,
            "normal_viability": nv,
            "selectivity": nv - tv,
            "cell_count": count,
        }

    # -------------------------------------------------------------------------- optimum

    def feasible(self, metrics: Mapping[str, float]) -> bool:
        """True when every outcome constraint holds for ``metrics``."""
        return all(c.satisfied(float(metrics[c.metric])) for c in self.outcome_constraints)

    def optimum(self) -> tuple[Params, float]:
        """Best feasible expected value of the first objective, and where it is (cached)."""
        if self._optimum is None:
            self._optimum = _find_optimum(self)
        return self._optimum


# ------------------------------------------------------------------------- optimisation


def _encode(p: ContinuousParameter, x: np.ndarray | float) -> Any:
    return np.log10(x) if p.log_scale else x


def _decode(p: ContinuousParameter, u: np.ndarray | float) -> Any:
    return 10.0**u if p.log_scale else u


def _penalised(assay: Assay, metrics: Mapping[str, Any]) -> Any:
    """``sign * objective`` minus a steep penalty for each violated outcome constraint."""
    obj = assay.objectives[0]
    value = obj.sign * np.asarray(metrics[obj.metric], dtype=float)
    for c in assay.outcome_constraints:
        m = np.asarray(metrics[c.metric], dtype=float)
        gap = c.bound - m if c.op == ">=" else m - c.bound
        value = value - 100.0 * np.maximum(gap, 0.0)
    return value


def _feasible_towards(
    assay: Assay,
    cont: list[ContinuousParameter],
    fixed: dict[str, str],
    start: np.ndarray,
    target: np.ndarray,
) -> tuple[Params, dict[str, float]]:
    """The point nearest ``target`` on the segment from ``start`` (encoded coordinates) that
    is feasible, by bisection; ``target`` itself when feasible. ``start`` is assumed feasible
    (the caller checks the result)."""

    def at(t: float) -> tuple[Params, dict[str, float]]:
        u = start + t * (target - start)
        point: Params = {p.name: float(_decode(p, x)) for p, x in zip(cont, u, strict=True)}
        point.update(fixed)
        return point, assay.expected(point)

    point, metrics = at(1.0)
    if assay.feasible(metrics):
        return point, metrics
    lo, hi = 0.0, 1.0  # feasible at lo, infeasible at hi
    for _ in range(40):
        mid = 0.5 * (lo + hi)
        if assay.feasible(at(mid)[1]):
            lo = mid
        else:
            hi = mid
    return at(lo)


def _find_optimum(assay: Assay) -> tuple[Params, float]:
    space = assay.space
    cont = [p for p in space.parameters if isinstance(p, ContinuousParameter)]
    cats = [p for p in space.parameters if isinstance(p, CategoricalParameter)]
    if len(cont) + len(cats) != len(space.parameters):
        raise NotImplementedError("optimum() supports continuous and categorical parameters only")
    per_dim = max(5, min(161, int(round(2e5 ** (1 / max(len(cont), 1))))))
    lows = np.array([_encode(p, p.low) for p in cont], dtype=float)
    highs = np.array([_encode(p, p.high) for p in cont], dtype=float)
    best: tuple[float, Params] = (-math.inf, {})
    for levels in itertools.product(*[c.levels for c in cats]):
        fixed = {c.name: lev for c, lev in zip(cats, levels, strict=True)}
        axes = [np.linspace(lo, hi, per_dim) for lo, hi in zip(lows, highs, strict=True)]
        mesh = np.meshgrid(*axes, indexing="ij")
        grid = {p.name: _decode(p, m) for p, m in zip(cont, mesh, strict=True)}
        score = np.asarray(_penalised(assay, assay.expected_array({**grid, **fixed})))
        i = np.unravel_index(int(np.argmax(score)), score.shape)
        u0 = np.array([m[i] for m in mesh])

        def neg_score(u: np.ndarray, fixed: dict[str, str] = fixed) -> float:
            u = np.clip(u, lows, highs)
            point = {p.name: float(_decode(p, x)) for p, x in zip(cont, u, strict=True)}
            return -float(_penalised(assay, assay.expected({**point, **fixed})))

        res = minimize(neg_score, u0, method="Nelder-Mead", options={"xatol": 1e-5, "fatol": 1e-9})
        u = np.clip(res.x if res.fun < neg_score(u0) else u0, lows, highs)
        point, metrics = _feasible_towards(assay, cont, fixed, u0, u)
        value = metrics[assay.objectives[0].metric]
        if assay.feasible(metrics) and assay.objectives[0].sign * value > best[0]:
            best = (assay.objectives[0].sign * value, point)
    if not best[1]:
        raise ValueError(f"assay {assay.name!r} has no feasible point on the search grid")
    ordered = {name: best[1][name] for name in space.names}
    return ordered, float(assay.objectives[0].sign * best[0])


# ----------------------------------------------------------------------------- registry


def _log_um(name: str) -> ContinuousParameter:
    return ContinuousParameter(name=name, low=0.01, high=10.0, log_scale=True, unit="uM")


_SELECTIVITY = [Objective(metric="selectivity", direction="maximize")]
_NORMAL_OK = [OutcomeConstraint(metric="normal_viability", op=">=", bound=0.6)]


def _make_assays() -> dict[str, Assay]:
    assays = [
        Assay(
            "drug_combo",
            SearchSpace(parameters=[_log_um("drug_a_um"), _log_um("drug_b_um")]),
            _SELECTIVITY,
            _NORMAL_OK,
            lambda p: {"drug_a": p["drug_a_um"], "drug_b": p["drug_b_um"]},
            description="drug_a + drug_b (synergistic on the tumour line); interior optimum",
        ),
        Assay(
            "drug_combo_partner",
            SearchSpace(
                parameters=[
                    _log_um("drug_a_um"),
                    CategoricalParameter(name="partner", levels=["drug_b", "drug_c", "drug_d"]),
                    _log_um("partner_um"),
                ]
            ),
            _SELECTIVITY,
            _NORMAL_OK,
            lambda p: {"drug_a": p["drug_a_um"], str(p["partner"]): p["partner_um"]},
            description="drug_a with one partner drug chosen among drug_b, drug_c, drug_d",
        ),
        Assay(
            "drug_trio",
            SearchSpace(
                parameters=[_log_um("drug_a_um"), _log_um("drug_b_um"), _log_um("drug_d_um")]
            ),
            _SELECTIVITY,
            _NORMAL_OK,
            lambda p: {
                "drug_a": p["drug_a_um"],
                "drug_b": p["drug_b_um"],
                "drug_d": p["drug_d_um"],
            },
            description="three drugs, pairwise interactions",
        ),
    ]
    return {a.name: a for a in assays}


ASSAYS: dict[str, Assay] = _make_assays()


def get_assay(name: str) -> Assay:
    """The registered assay called ``name``.

    Raises:
        KeyError: no such assay (the message lists the known ones).
    """
    try:
        return ASSAYS[name]
    except KeyError:
        raise KeyError(f"unknown assay {name!r}; known: {sorted(ASSAYS)}") from None


# ------------------------------------------------------- several objectives and variants
# Added for the peer benchmark (benchmarks/peers.py): a two-objective assay with its true
# Pareto front, and related / unrelated variants of an assay for transfer-learning runs.


def hypervolume_2d(values: np.ndarray, reference: np.ndarray) -> float:
    """Area dominated by the rows of ``values`` (n x 2, both maximised) above ``reference``."""
    pts = np.asarray(values, dtype=float).reshape(-1, 2)
    pts = pts[np.all(pts > reference, axis=1)]
    if len(pts) == 0:
        return 0.0
    pts = pts[np.argsort(-pts[:, 0])]
    area, best_y = 0.0, float(reference[1])
    for x, y in pts:
        if y > best_y:
            area += (x - reference[0]) * (y - best_y)
            best_y = float(y)
    return float(area)


class MultiObjectiveAssay(Assay):
    """An assay with several objectives, its true Pareto front and a fixed reference point.

    ``optimum()`` still reports the best (feasible) value of the first objective.
    ``reference_point`` maps each objective's metric to the worst value that still counts
    (raw units); the hypervolume is computed on ``sign * metric`` (every objective maximised).
    Only two objectives are supported by :meth:`hypervolume`.
    """

    def __init__(self, *args: Any, reference_point: Mapping[str, float], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        if len(self.objectives) != 2:
            raise ValueError("MultiObjectiveAssay supports exactly two objectives")
        self.reference_point = dict(reference_point)
        self._front: np.ndarray | None = None

    def signed(self, metrics: Mapping[str, float]) -> np.ndarray:
        """``sign * metric`` per objective, in objective order."""
        return np.array([o.sign * float(metrics[o.metric]) for o in self.objectives])

    def signed_reference(self) -> np.ndarray:
        return np.array([o.sign * self.reference_point[o.metric] for o in self.objectives])

    def hypervolume(self, metrics: list[Mapping[str, float]]) -> float:
        """Hypervolume of the feasible rows of ``metrics`` above the reference point."""
        rows = [self.signed(m) for m in metrics if self.feasible(m)]
        if not rows:
            return 0.0
        return hypervolume_2d(np.array(rows), self.signed_reference())

    def pareto_front_true(self, per_dim: int | None = None) -> np.ndarray:
        """The noise-free Pareto front (signed objective values, k x 2) on a dense grid."""
        if self._front is None:
            self._front = self._grid_front(per_dim)
        return self._front

    def reference_hypervolume(self) -> float:
        """Hypervolume of the true Pareto front: the normaliser of a campaign's hypervolume."""
        return hypervolume_2d(self.pareto_front_true(), self.signed_reference())

    def _grid_front(self, per_dim: int | None) -> np.ndarray:
        cont = [p for p in self.space.parameters if isinstance(p, ContinuousParameter)]
        cats = [p for p in self.space.parameters if isinstance(p, CategoricalParameter)]
        n = per_dim or max(5, min(401, int(round(4e5 ** (1 / max(len(cont), 1))))))
        rows = []
        for levels in itertools.product(*[c.levels for c in cats]):
            fixed = {c.name: lev for c, lev in zip(cats, levels, strict=True)}
            axes = [np.linspace(_encode(p, p.low), _encode(p, p.high), n) for p in cont]
            mesh = np.meshgrid(*axes, indexing="ij")
            grid = {p.name: _decode(p, m) for p, m in zip(cont, mesh, strict=True)}
            metrics = self.expected_array({**grid, **fixed})
            shape = np.broadcast(*[np.asarray(v) for v in metrics.values()]).shape
            arr = {
                k: np.broadcast_to(np.asarray(v, dtype=float), shape).ravel()
                for k, v in metrics.items()
            }
            ok = np.ones(arr[self.objectives[0].metric].shape, dtype=bool)
            for c in self.outcome_constraints:
                ok &= arr[c.metric] >= c.bound if c.op == ">=" else arr[c.metric] <= c.bound
            vals = np.stack([o.sign * arr[o.metric] for o in self.objectives], axis=1)[ok]
            rows.append(vals)
        values = np.concatenate(rows)
        # thin to the grid's non-dominated rows quickly: sort by objective 0, running max of 1
        values = values[np.lexsort((-values[:, 1], -values[:, 0]))]
        best = np.maximum.accumulate(values[:, 1])
        keep = np.r_[True, values[1:, 1] > best[:-1]]
        return values[keep]


def _make_mo_assays() -> dict[str, Assay]:
    mo = MultiObjectiveAssay(
        "drug_combo_mo",
        SearchSpace(parameters=[_log_um("drug_a_um"), _log_um("drug_b_um")]),
        [
            Objective(metric="selectivity", direction="maximize"),
            Objective(metric="normal_viability", direction="maximize"),
        ],
        [],
        lambda p: {"drug_a": p["drug_a_um"], "drug_b": p["drug_b_um"]},
        reference_point={"selectivity": 0.0, "normal_viability": 0.3},
        description="drug_a + drug_b, two objectives: selectivity and normal-line viability",
    )
    return {mo.name: mo}


ASSAYS.update(_make_mo_assays())


def shifted_biology(seed: int, ic50_sd: float = 0.15, gamma_sd: float = 0.1) -> VirtualBiology:
    """The reference drugs on a slightly different biology (another cell line or lot).

    Each IC50 is multiplied by ``exp(N(0, ic50_sd))`` and each interaction strength by
    ``exp(N(0, gamma_sd))``, drawn from ``seed``; Hill slopes and maximal effects are kept.
    """
    rng = np.random.default_rng([seed, 7919])
    drugs = {}
    for name, d in default_drugs().items():
        t, n = d.tumour, d.normal
        ft, fn = np.exp(ic50_sd * rng.standard_normal(2))
        drugs[name] = Drug(
            name,
            HillCurve(t.ic50_um * float(ft), t.hill, t.emax),
            HillCurve(n.ic50_um * float(fn), n.hill, n.emax),
        )
    inter = {}
    for key, it in default_interactions().items():
        gt, gn = np.exp(gamma_sd * rng.standard_normal(2))
        inter[key] = Interaction(it.drugs, it.gamma_tumour * float(gt), it.gamma_normal * float(gn))
    return VirtualBiology(drugs=drugs, interactions=inter)


def assay_variant(name: str, kind: str, seed: int = 0) -> Assay:
    """A variant of the registered assay ``name`` with the same space and objectives.

    Args:
        name: a registered two-drug assay (``"drug_combo"`` or ``"drug_trio"``).
        kind: ``"related"``: the same drugs on :func:`shifted_biology` (another cell line or
            lot); ``"unrelated"``: the parameters dose other drugs (``drug_a_um`` doses
            drug_d, ``drug_b_um`` drug_c, ``drug_d_um`` drug_b), so the landscape differs.
        seed: draws the shifted biology (``"related"`` only).
    """
    base = get_assay(name)
    if kind == "related":
        return Assay(
            f"{name}@{kind}{seed}",
            base.space,
            base.objectives,
            base.outcome_constraints,
            base.concentrations,
            biology=shifted_biology(seed),
            description=f"{base.name} on a shifted biology (seed {seed})",
        )
    if kind == "unrelated":
        swap = {"drug_a": "drug_d", "drug_b": "drug_c", "drug_d": "drug_b"}

        def conc(p: Mapping[str, Any]) -> dict[str, Any]:
            return {swap.get(k, k): v for k, v in base.concentrations(p).items()}

        return Assay(
            f"{name}@{kind}",
            base.space,
            base.objectives,
            base.outcome_constraints,
            conc,
            description=f"{base.name}'s parameters dosing other drugs",
        )
    raise ValueError(f"kind must be 'related' or 'unrelated', not {kind!r}")
