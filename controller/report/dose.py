"""Dose-response per drug and cell line: replicate wells and a four-parameter logistic fit.

A Bayesian-optimisation campaign doses drugs together, rarely one alone. Where plates hold
single-agent wells (``protocols.single_agent``), a drug's single-agent curve is fitted to them
(and to experiments where every other drug is absent). Otherwise it is fitted to the wells
where every other drug sits in the lowest quarter of its range (log scale) or is absent: that
partner dose is treated as none, and the page says up to which dose. Every other well of the campaign is drawn too, coloured by the
partner's dose, so the shift of the curve with the partner is seen. Only experiments whose
results feed the planner are used (not held, excluded or quarantined plates).
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analyzers.dose_response import LogisticFit, fit_logistic
from analyzers.figures import plot_dose_response
from analyzers.growth import GRFit, fit_gr
from controller.ledger.models import Experiment
from controller.report.data import (
    ReportData,
    SingleAgentWell,
    dose_mappings,
    doses_um,
    fmt,
    fmt_ci,
    kept_wells,
    lines_of,
    replicate_sd,
    save,
    single_agent_wells,
)

ABSENT_FRACTION = 0.25  # of a partner's (log) range: below it the partner counts as absent
FREE_TOP_DOSES = 5  # distinct doses needed before the top is fitted instead of fixed at 1
TOP_HALF_WIDTH = 0.3  # a fitted top whose 95 % interval is wider than ±this is not kept


@dataclass
class DrugCurve:
    """One drug on one line: the single-agent wells and their fit."""

    reagent: str
    line: str
    fit: LogisticFit
    doses: list[float]  # per kept replicate well
    values: list[float]
    experiments: list[Experiment]
    partner_cut_um: dict[str, float]  # partner reagent -> highest dose counted as absent
    top_fixed: bool
    single_agent_wells: int = 0  # measured single-agent wells among the points
    gr: GRFit | None = None  # GR curve of the same wells (plates with time-zero wells)

    @property
    def reference(self) -> str:
        """Where the single-agent points come from, in words."""
        if self.single_agent_wells:
            return f"measured single-agent wells ({self.single_agent_wells})"
        cuts = ", ".join(f"{p} ≤ {c:.3g} µM" for p, c in sorted(self.partner_cut_um.items()))
        return f"approximated: partner counted as absent ({cuts})"


def absent_cuts(data: ReportData) -> dict[str, float]:
    """reagent -> the dose (µM) at or below which it counts as absent next to another drug."""
    out: dict[str, float] = {}
    space = {p.name: p for p in data.spec.space.parameters}
    for d in dose_mappings(data.spec):
        p = space.get(d.parameter)
        lo, hi = getattr(p, "low", None), getattr(p, "high", None)
        if lo is None or hi is None:
            continue
        if getattr(p, "log_scale", False) and lo > 0:
            cut = lo * (hi / lo) ** ABSENT_FRACTION
        else:
            cut = lo + (hi - lo) * ABSENT_FRACTION
        reagents = (
            [d.reagent] if d.reagent else list(getattr(space.get(d.reagent_from), "levels", []))
        )
        for r in reagents:
            out[str(r)] = max(out.get(str(r), 0.0), float(cut))
    return out


def replicate_points(data: ReportData, e: Experiment, metric: str) -> list[float]:
    """The metric in each kept replicate well of ``e`` (its mean when wells were not recorded)."""
    names = kept_wells(e)
    by_name = {w.well: w.id for w in data.wells.get(e.round_id, [])}
    values = data.well_values(metric)
    out = [values[i] for n in names if (i := by_name.get(n)) is not None and i in values]
    if not out and metric in e.outcomes:
        out = [e.outcomes[metric]]
    return out


def single_agent_curves(data: ReportData) -> dict[tuple[str, str], DrugCurve]:
    """(reagent, line) -> its single-agent fit, for every dosed reagent and viability line."""
    mappings = dose_mappings(data.spec)
    if not mappings:
        return {}
    cuts = absent_cuts(data)
    exps = [e for e in data.measured]
    doses = {e.id: doses_um(mappings, e.params) for e in exps}
    reagents = sorted({r for d in doses.values() for r in d})
    singles = single_agent_wells(data)
    out = {}
    for r in reagents:
        measured = [w for w in singles if w.reagent == r]
        # measured single agents: only experiments with every partner truly absent join them
        partners = {p: (0.0 if measured else c) for p, c in cuts.items() if p != r}
        alone = [
            e
            for e in exps
            if doses[e.id].get(r, 0.0) > 0
            and all(doses[e.id].get(p, 0.0) <= c for p, c in partners.items())
        ]
        for line in lines_of(exps):
            metric = f"{line}_viability"
            sa = [w for w in measured if metric in w.values]
            xs, ys = [w.dose_um for w in sa], [w.values[metric] for w in sa]
            for e in alone:
                vals = replicate_points(data, e, metric)
                xs += [doses[e.id][r]] * len(vals)
                ys += vals
            fit, top_fixed = _fit(xs, ys)
            out[(r, line)] = DrugCurve(
                r, line, fit, xs, ys, alone, partners, top_fixed, single_agent_wells=len(sa),
                gr=_gr(data, r, f"{line}_gr", measured, alone, doses),
            )  # fmt: skip
    return out


def _gr(
    data: ReportData,
    reagent: str,
    metric: str,
    measured: list[SingleAgentWell],
    alone: list[Experiment],
    doses: dict[int | None, dict[str, float]],
) -> GRFit | None:
    """The GR curve of the same single-agent wells (None without GR values)."""
    xs = [w.dose_um for w in measured if metric in w.values]
    ys = [w.values[metric] for w in measured if metric in w.values]
    for e in alone:
        vals = replicate_points(data, e, metric) if metric in e.outcomes else []
        xs += [doses[e.id][reagent]] * len(vals)
        ys += vals
    return fit_gr(xs, ys) if ys else None


def _fit(xs: list[float], ys: list[float]) -> tuple[LogisticFit, bool]:
    """A free 4PL where the doses pin the top down, else the top fixed at 1: viabilities are
    normalised to the vehicle wells, so 1 is the top a drug starts from."""
    if len(set(xs)) >= FREE_TOP_DOSES:
        free = fit_logistic(xs, ys)
        lo, hi = free.ci95.get("top", (-math.inf, math.inf))
        if free.ok and hi - lo <= 2 * TOP_HALF_WIDTH and 0.5 <= (free.top or 0) <= 1.5:
            return free, False
    return fit_logistic(xs, ys, top=1.0), True


def identified(c: DrugCurve) -> bool:
    """True when the IC50's interval stays within a decade of the doses measured."""
    ci = c.fit.ci95.get("ic50_um")
    if not c.fit.ok or ci is None or not c.doses:
        return False
    return ci[0] >= min(c.doses) / 10 and ci[1] <= max(c.doses) * 10


def dose_section(
    data: ReportData, curves: dict[tuple[str, str], DrugCurve], out: Path
) -> list[str]:
    """Figures (one per drug, a panel per line) and the fit table."""
    if not curves:
        return [
            "<h2>Dose-response</h2><p>This campaign's protocol doses no drugs by parameter: "
            "no dose-response curves.</p>"
        ]
    mappings = dose_mappings(data.spec)
    exps = data.measured
    doses = {e.id: doses_um(mappings, e.params) for e in exps}
    reagents = sorted({r for r, _ in curves})
    lines = sorted({ln for _, ln in curves})
    parts = ["<h2>Dose-response per drug and cell line</h2>"]
    cut_txt = "; ".join(
        f"{html.escape(p)} ≤ {c:.3g} µM" for p, c in sorted(absent_cuts(data).items())
    )
    parts.append(
        "<p>Four-parameter logistic fits, y = bottom + (top − bottom) / (1 + (d / IC50)<sup>Hill</sup>), "
        "least squares on every kept replicate well; 95 % intervals from the parameter covariance "
        "(Student t). A drug's single-agent curve uses the plates' single-agent wells (each drug "
        "alone at the doses of that plate's combinations) where they were measured; otherwise "
        "the wells where each other drug is absent or at the bottom of its range "
        f"({cut_txt}: treated as none). The table's <i>single agent</i> column says which. "
        "Grey-to-yellow points are the "
        "other wells, coloured by the partner's dose: a curve moving left as the partner rises is "
        "potentiation. The top is fitted when at least "
        f"{FREE_TOP_DOSES} doses pin it down (95 % interval within ±{TOP_HALF_WIDTH:g}), else fixed at 1 "
        "(the vehicle wells). Relative IC50: halfway "
        "between top and bottom; absolute IC50: viability 0.5.</p>"
    )
    for r in reagents:
        fig, axes = plt.subplots(1, len(lines), figsize=(4.6 * len(lines), 3.6), squeeze=False)
        for ax, line in zip(axes[0], lines, strict=True):
            c = curves[(r, line)]
            metric = f"{line}_viability"
            others = [
                e
                for e in exps
                if e not in c.experiments and doses[e.id].get(r, 0) > 0 and metric in e.outcomes
            ]
            if others:
                partner = [
                    max((v for k, v in doses[e.id].items() if k != r), default=0.0) for e in others
                ]
                sc = ax.scatter(
                    [doses[e.id][r] for e in others],
                    [e.outcomes[metric] for e in others],
                    c=np.log10(np.maximum(partner, 1e-6)),
                    cmap="cividis",
                    s=10,
                    alpha=0.5,
                    marker="s",
                )
                fig.colorbar(sc, ax=ax, label="log10 partner dose (µM)", shrink=0.8)
            if c.doses:
                plot_dose_response(
                    ax,
                    c.doses,
                    c.values,
                    c.fit,
                    label=f"{r} alone",
                    color="C3",
                    ylabel=f"{line} viability",
                )
            else:
                ax.set_xscale("log")
                ax.set_xlabel("dose (µM)")
            ax.set_title(
                f"{r} on {line}" + ("" if c.fit.ok else f" (no fit: {c.fit.message})"), fontsize=8
            )
            ax.axhline(1.0, color="grey", lw=0.5)
            ax.set_ylim(-0.1, 1.4)
        parts.append(save(fig, out, f"dose_{_safe(r)}.png"))
    parts.append(fit_table(curves))
    parts += gr_table(curves)
    return parts


def gr_table(curves: dict[tuple[str, str], DrugCurve]) -> list[str]:
    """GR50, GRmax, GEC50 and GRinf with intervals, beside the IC50 (plates with time zero)."""
    rows = []
    for (r, line), c in sorted(curves.items()):
        g = c.gr
        if g is None:
            continue
        ci = g.ci95
        cells = [html.escape(r), html.escape(line), str(g.fit.n)]
        cells.append(f"{fmt(c.fit.ic50_um)} {fmt_ci(c.fit.ci95.get('ic50_um'))}")
        if g.ok:
            gr50 = fmt(g.gr50_um) if g.gr50_um is not None else "not reached"
            cells += [
                f"<b>{gr50}</b> {fmt_ci(ci.get('gr50_um'))}",
                f"{fmt(g.gr_max, 3)} {fmt_ci(ci.get('gr_max'))}",
                f"{fmt(g.gec50_um)} {fmt_ci(ci.get('gec50_um'))}",
                f"{fmt(g.gr_inf, 3)} {fmt_ci(ci.get('gr_inf'))}",
                fmt(g.max_dose_um),
                "cytotoxic" if (g.gr_max or 0.0) < 0 else "cytostatic or partial",
            ]
        else:
            cells += ["", "", "", "", "", html.escape(g.fit.message)]
        rows.append("<tr>" + "".join(f"<td>{x}</td>" for x in cells) + "</tr>")
    if not rows:
        return []
    head = ["drug", "line", "wells", "IC50 µM [95 % CI]", "GR50 µM [95 % CI]",
            "GRmax [95 % CI]", "GEC50 µM [95 % CI]", "GRinf [95 % CI]", "highest dose µM",
            "at the highest dose"]  # fmt: skip
    return [
        "<h3>Growth-rate inhibition (GR) metrics</h3><p>GR values (Hafner et al. 2016) compare "
        "growth rates against the time-zero wells, so lines that divide at different speeds "
        "compare fairly: 1 no effect, 0 cells stopped dividing, < 0 cells died. Fit: GR(d) = "
        "GRinf + (1 − GRinf) / (1 + (d / GEC50)<sup>h</sup>) on the same single-agent wells as "
        "the IC50; GR50 is the dose where GR = 0.5, GRmax the fitted GR at the highest dose "
        "measured. Intervals: 95 % residual bootstrap (100 refits).</p>",
        '<table class="gr"><tr>' + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
        + "".join(rows) + "</table>",
    ]  # fmt: skip


def fit_table(curves: dict[tuple[str, str], DrugCurve]) -> str:
    head = [
        "drug",
        "line",
        "wells (experiments)",
        "doses µM",
        "top [95 % CI]",
        "bottom [95 % CI]",
        "IC50 µM [95 % CI]",
        "absolute IC50 µM",
        "Hill [95 % CI]",
        "R²",
        "replicate SD (median)",
        "single agent",
        "note",
    ]
    rows = []
    for (r, line), c in sorted(curves.items()):
        f = c.fit
        sds = [s for e in c.experiments if (s := replicate_sd(e, f"{line}_viability")) is not None]
        rng = f"{min(c.doses):.3g}–{max(c.doses):.3g}" if c.doses else ""
        top = "1 (fixed)" if c.top_fixed and f.ok else f"{fmt(f.top)} {fmt_ci(f.ci95.get('top'))}"
        cells = [
            html.escape(r),
            html.escape(line),
            f"{len(c.doses)} ({len(c.experiments)})",
            rng,
            top,
            f"{fmt(f.bottom)} {fmt_ci(f.ci95.get('bottom'))}",
            f"<b>{fmt(f.ic50_um)}</b> {fmt_ci(f.ci95.get('ic50_um'))}",
            fmt(f.absolute_ic50_um),
            f"{fmt(f.hill)} {fmt_ci(f.ci95.get('hill'))}",
            fmt(f.r2),
            fmt(float(np.median(sds))) if sds else "",
            html.escape(c.reference),
            _note(c),
        ]
        rows.append(
            "<tr>" + "".join(f"<td>{c_}</td>" for c_ in cells) + "</tr>"
        )  # cells are escaped
    return (
        '<table class="fits"><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _note(c: DrugCurve) -> str:
    if not c.fit.ok:
        return html.escape(c.fit.message)
    notes = []
    if c.top_fixed:
        notes.append("top fixed at 1 (too few doses, or not pinned down by them)")
    if not identified(c):
        notes.append("IC50 not identified: its interval runs a decade past the doses measured")
    return "; ".join(notes)


def _safe(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def curve_value(c: DrugCurve, dose: float) -> float:
    """The fitted single-agent viability at ``dose`` (nan without a fit)."""
    return float(c.fit.predict(dose)) if c.fit.ok else math.nan
