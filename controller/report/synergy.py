"""Combinations: the measured response surface and synergy scores per drug pair and line.

Scores come from :func:`analyzers.synergy.synergy_scores`: Bliss and HSA against the single
agents *measured* on the combination's plate at its doses (single-agent wells) where there are
some, else against the single-agent fits of :mod:`controller.report.dose`; Loewe against the
fits. Each is reference − observed viability (> 0: synergy); the reference model of each, and
which single-agent responses each row used, are written beside the tables. Points are replicate means, with
their replicate SD.
"""

from __future__ import annotations

import html
import itertools
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from analyzers.figures import plot_synergy
from analyzers.synergy import REFERENCE_MODELS, SynergyPoint, synergy_scores, zip_scores
from controller.ledger.models import Experiment
from controller.report.data import (
    ReportData,
    SingleAgentWell,
    dose_mappings,
    doses_um,
    fmt,
    replicate_sd,
    save,
    single_agent_wells,
)
from controller.report.dose import DrugCurve, _safe, absent_cuts

SHOWN_ROWS = 12  # rows per table shown before the rest fold away


def synergy_section(
    data: ReportData, curves: dict[tuple[str, str], DrugCurve], out: Path
) -> list[str]:
    """Per pair of drugs: surface and score maps per line, a summary and a table per line."""
    mappings = dose_mappings(data.spec)
    exps = data.measured
    doses = {e.id: doses_um(mappings, e.params) for e in exps}
    reagents = sorted({r for r, _ in curves})
    lines = sorted({ln for _, ln in curves})
    pairs = list(itertools.combinations(reagents, 2))
    if not pairs:
        return []
    cuts = absent_cuts(data)
    singles = single_agent_wells(data)
    parts = [
        "<h2>Combinations: response surface and synergy</h2>",
        "<p>Scores are <b>reference − observed viability</b> (> 0: synergy, the combination left "
        "fewer cells than the reference model predicts; < 0: antagonism). "
        + _reference_text(singles)
        + " Reference models:</p><ul>"
        + "".join(f"<li><b>{k}</b>: {html.escape(v)}</li>" for k, v in REFERENCE_MODELS.items())
        + "</ul><p>Loewe is left blank where a drug alone cannot reach the observed effect (its "
        "curve flattens above it); CI is Loewe's combination index at the observed effect (< 1: "
        "synergy). ZIP is computed where a pair's measured combinations form a full dose matrix "
        "(≥ 3 × 3 doses, every pair measured); scattered Bayesian-optimisation doses rarely do, "
        "and the page says so.</p>",
    ]
    for a, b in pairs:
        others = {r: c for r, c in cuts.items() if r not in (a, b)}
        combo = [
            e
            for e in exps
            if doses[e.id].get(a, 0) > 0
            and doses[e.id].get(b, 0) > 0
            and all(doses[e.id].get(r, 0) <= c for r, c in others.items())
        ]
        parts.append(f"<h3>{html.escape(a)} + {html.escape(b)}</h3>")
        if not combo:
            parts.append("<p>No measured experiment holds both drugs.</p>")
            continue
        scored: dict[str, list[tuple[Experiment, SynergyPoint]]] = {}
        for line in lines:
            metric = f"{line}_viability"
            pts = [e for e in combo if metric in e.outcomes]
            measured = [
                (
                    _measured(singles, e.round_id, a, doses[e.id][a], metric),
                    _measured(singles, e.round_id, b, doses[e.id][b], metric),
                )
                for e in pts
            ]
            try:
                scores = synergy_scores(
                    [(doses[e.id][a], doses[e.id][b], e.outcomes[metric]) for e in pts],
                    curves[(a, line)].fit,
                    curves[(b, line)].fit,
                    measured=measured,
                )
            except ValueError as err:
                parts.append(
                    f"<p>{html.escape(line)}: no synergy scores: {html.escape(str(err))}</p>"
                )
                continue
            scored[line] = list(zip(pts, scores, strict=True))
        parts.append(_figure(a, b, lines, combo, doses, scored, out))
        if scored:
            parts.append(_summary(scored))
        parts.append(_zip(a, b, lines, combo, doses, curves))
        for line, rows in scored.items():
            parts.append(_table(a, b, line, rows, doses))
    return parts


def _zip(
    a: str,
    b: str,
    lines: list[str],
    combo: list[Experiment],
    doses: dict,
    curves: dict[tuple[str, str], DrugCurve],
) -> str:
    """ZIP scores when the combinations form a full dose matrix, else why not."""
    da = sorted({doses[e.id][a] for e in combo})
    db = sorted({doses[e.id][b] for e in combo})
    cells: dict[tuple[float, float], list[Experiment]] = {}
    for e in combo:
        cells.setdefault((doses[e.id][a], doses[e.id][b]), []).append(e)
    if len(da) < 3 or len(db) < 3 or len(cells) < len(da) * len(db):
        return (
            f"<p>ZIP: not computed: the {len(combo)} combinations hold {len(da)} doses of "
            f"{html.escape(a)} and {len(db)} of {html.escape(b)} in {len(cells)} pairs, not a "
            "full matrix of at least 3 × 3 doses.</p>"
        )
    rows = []
    for line in lines:
        metric = f"{line}_viability"
        try:
            matrix = [
                [float(np.mean([e.outcomes[metric] for e in cells[(x, y)]])) for y in db]
                for x in da
            ]
            z = zip_scores(da, db, matrix, curves[(a, line)].fit, curves[(b, line)].fit)
        except (KeyError, ValueError) as err:
            rows.append(f"<li>{html.escape(line)}: no ZIP score ({html.escape(str(err))})</li>")
            continue
        rows.append(f"<li>{html.escape(line)}: ZIP mean delta {fmt(z.mean_delta, 3)}</li>")
    return f"<p>ZIP ({len(da)} × {len(db)} dose matrix):</p><ul>{''.join(rows)}</ul>"


def _reference_text(singles: list[SingleAgentWell]) -> str:
    if singles:
        return (
            "Bliss and HSA use the single agents <b>measured on the same plate at the same "
            f"doses</b> ({len(singles)} single-agent wells), the fitted single-agent curves "
            "above only where a dose was not measured (the <i>reference</i> column says which); "
            "Loewe and CI use the fitted curves."
        )
    return (
        "No plate holds single-agent wells (<code>single_agent_wells</code> was off), so every "
        "score uses the fitted single-agent curves above, which approximate a drug alone by "
        "wells where its partner is low; those wells are the single-agent data themselves, so "
        "their scores are near 0 by construction."
    )


def _measured(
    singles: list[SingleAgentWell], round_id: int, reagent: str, dose: float, metric: str
) -> float | None:
    """Mean ``metric`` of the plate's single-agent wells of ``reagent`` at ``dose`` (None: none)."""
    vals = [
        w.values[metric]
        for w in singles
        if w.round_id == round_id
        and w.reagent == reagent
        and metric in w.values
        and abs(w.dose_um - dose) <= 1e-9 * max(abs(dose), 1.0)
    ]
    return float(np.mean(vals)) if vals else None


def _figure(
    a: str, b: str, lines: list[str], combo: list[Experiment], doses: dict, scored: dict, out: Path
) -> str:
    fig, axes = plt.subplots(len(lines), 3, figsize=(13, 3.6 * len(lines)), squeeze=False)
    for row, line in zip(axes, lines, strict=True):
        metric = f"{line}_viability"
        pts = [e for e in combo if metric in e.outcomes]
        x = np.log10([doses[e.id][a] for e in pts])
        y = np.log10([doses[e.id][b] for e in pts])
        z = np.array([e.outcomes[metric] for e in pts])
        ax = row[0]
        try:  # the surface interpolates between the measured points (a Delaunay mesh)
            cs = ax.tricontourf(
                x, y, z, levels=np.linspace(0, 1.2, 13), cmap="viridis", extend="both"
            )
            fig.colorbar(cs, ax=ax, label=f"{line} viability")
        except (ValueError, RuntimeError):
            pass  # fewer than three points, or all on a line: the points alone are shown
        ax.scatter(
            x, y, c=z, cmap="viridis", vmin=0, vmax=1.2, edgecolors="k", linewidths=0.4, s=25
        )
        ax.set_xlabel(f"log10 {a} (µM)")
        ax.set_ylabel(f"log10 {b} (µM)")
        ax.set_title(f"{line}: measured viability (surface interpolated)", fontsize=8)
        for ax, score in zip(row[1:], ("bliss", "hsa"), strict=True):
            if line in scored:
                plot_synergy(ax, [p for _, p in scored[line]], score)
                ax.set_xlabel(f"{a} (µM)")
                ax.set_ylabel(f"{b} (µM)")
                ax.set_title(f"{line}: {score} — {REFERENCE_MODELS[score]}", fontsize=7)
            else:
                ax.axis("off")
    return save(fig, out, f"synergy_{_safe(a)}_{_safe(b)}.png", dpi=100)


def _summary(scored: dict[str, list[tuple[Experiment, SynergyPoint]]]) -> str:
    head = [
        "line",
        "combinations",
        "Bliss mean (max)",
        "HSA mean (max)",
        "Loewe mean (defined)",
        "CI median",
        "Bliss > 0.1",
        "single agents measured",
    ]
    rows = []
    for line, pts in scored.items():
        sp = [p for _, p in pts]
        bl = np.array([p.bliss for p in sp if p.bliss is not None])
        hs = np.array([p.hsa for p in sp if p.hsa is not None])
        lo = np.array([p.loewe for p in sp if p.loewe is not None])
        ci = np.array([p.combination_index for p in sp if p.combination_index is not None])
        cells = [
            html.escape(line),
            str(len(sp)),
            f"{bl.mean():.3f} ({bl.max():.3f})" if bl.size else "",
            f"{hs.mean():.3f} ({hs.max():.3f})" if hs.size else "",
            f"{lo.mean():.3f} ({lo.size})" if lo.size else f"undefined (0 of {len(sp)})",
            f"{np.median(ci):.3g}" if ci.size else "",
            str(int((bl > 0.1).sum())),
            f"{sum(p.reference == 'measured' for p in sp)} of {len(sp)}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        '<table class="synergy-summary"><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _table(
    a: str, b: str, line: str, rows: list[tuple[Experiment, SynergyPoint]], doses: dict
) -> str:
    metric = f"{line}_viability"
    head = [
        "experiment",
        f"{html.escape(a)} µM",
        f"{html.escape(b)} µM",
        "observed ± SD (n)",
        "Bliss",
        "HSA",
        "Loewe",
        "CI",
        "reference",
    ]
    ordered = sorted(rows, key=lambda t: -(t[1].bliss or 0.0))
    body = []
    for e, p in ordered:
        sd = replicate_sd(e, metric)
        obs = (
            f"{p.observed:.3f}"
            + (f" ± {sd:.3f}" if sd is not None else "")
            + f" ({e.n_valid_replicates})"
        )
        cells = [
            str(e.id),
            fmt(p.dose_a_um),
            fmt(p.dose_b_um),
            obs,
            fmt(p.bliss, 3),
            fmt(p.hsa, 3),
            fmt(p.loewe, 3),
            fmt(p.combination_index, 3),
            html.escape(p.reference),
        ]
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    header = "<tr>" + "".join(f"<th>{h}</th>" for h in head) + "</tr>"
    shown, rest = body[:SHOWN_ROWS], body[SHOWN_ROWS:]
    table = f'<table class="synergy">{header}{"".join(shown)}</table>'
    if rest:
        table += (
            f"<details><summary>{len(rest)} more combinations</summary>"
            f'<table class="synergy">{header}{"".join(rest)}</table></details>'
        )
    return f"<h4>{html.escape(line)} line, by Bliss score</h4>{table}"
