"""Time-course plates in the report: each condition group's live counts over time, with the
agent's actions at every decision point and the policy that took them.

For every time-course plate (a round with decision points): one small panel per condition group
with each replicate well's tumour and normal counts (nuclei per field, thin lines) and the
group's mean (thick), the vehicle wells' mean for comparison (dashed), and the actions marked at
their decision times (``x`` = medium exchange, then the drug increments in µM); a table of the
actions per group with the policy's forecast at the first and the last decision.
"""

from __future__ import annotations

import html
import math
from pathlib import Path
from typing import Any

from matplotlib.figure import Figure
from sqlmodel import Session, col, select

from controller.ledger.models import DecisionPoint, Measurement, Proposal, Round
from controller.report.data import ReportData, fmt, save

COUNTS = ("tumour_count", "normal_count")
COLOURS = {"tumour_count": "tab:green", "normal_count": "tab:purple"}
MAX_PANELS = 24


def action_text(a: dict[str, Any] | None) -> str:
    """``x A0.5 B0.25`` (exchange, then increments), ``-`` for nothing."""
    if not a:
        return "-"
    doses = " ".join(
        f"{k.replace('drug_', '').upper()}{v:g}" for k, v in (a.get("doses_um") or {}).items() if v
    )
    return (("x " if a.get("exchange") else "") + doses).strip() or "-"


def _load(
    data: ReportData, rnd: Round
) -> tuple[
    dict[int, dict[str, dict[str, float]]], list[DecisionPoint], dict[tuple[int, str], Proposal]
]:
    with Session(data.db) as s:
        names = {w.id: w.well for w in data.wells.get(rnd.id, [])}
        counts: dict[int, dict[str, dict[str, float]]] = {}
        for m in s.exec(
            select(Measurement).where(
                Measurement.round_id == rnd.id,
                col(Measurement.well_id).is_not(None),
                col(Measurement.metric).in_(COUNTS),
                col(Measurement.time_point).is_not(None),
            )
        ):
            if m.value is not None and m.well_id in names:
                counts.setdefault(m.time_point, {}).setdefault(names[m.well_id], {})[m.metric] = (
                    m.value
                )
        points = list(
            s.exec(
                select(DecisionPoint)
                .where(DecisionPoint.round_id == rnd.id)
                .order_by(col(DecisionPoint.index))
            )
        )
        props: dict[tuple[int, str], Proposal] = {
            (p.decision_point_id or 0, p.unit or ""): p
            for p in s.exec(
                select(Proposal).where(col(Proposal.decision_point_id).in_([d.id for d in points]))
            )
        }
    return counts, points, props


def timecourse_section(data: ReportData, out: Path) -> list[str]:
    """The time-course section ([] when no plate of the campaign is a time-course plate)."""
    html_out: list[str] = []
    for rnd in data.rounds:
        counts, points, props = _load(data, rnd)
        if not points:
            continue
        if not html_out:
            html_out.append("<h2>Time-courses and the agent's actions</h2>")
        html_out += _plate(data, rnd, counts, points, props, out)
    return html_out


def _plate(
    data: ReportData, rnd: Round, counts, points: list[DecisionPoint], props, out: Path
) -> list[str]:
    settings = data.spec.protocol.settings
    interval = float(settings.get("interval_h", 12.0))
    wells = data.wells.get(rnd.id, [])
    exps = {e.id: e for e in data.experiments if e.round_id == rnd.id}
    groups: dict[int, list[str]] = {}
    for w in wells:
        if w.role == "sample" and w.experiment_id in exps:
            groups.setdefault(exps[w.experiment_id].position, []).append(w.well)
    controls = [w.well for w in wells if w.role == "negative_control"]
    times = sorted(counts)
    per_unit = settings.get("decision_unit", "group") == "well"
    policies = sorted({d.policy_id for d in points if d.policy_id})
    head = (
        f"<h3>Plate {html.escape(rnd.plate_id)}</h3><p>{len(points)} decision points every "
        f"{interval:g} h by policy {', '.join(html.escape(p) for p in policies) or '?'} "
        f"(SHA-256 {html.escape(str(points[0].policy.get('sha256', ''))[:16])}…); "
        "counts are nuclei per field; x = medium exchanged, A/B = drug increments (µM).</p>"
    )
    figs = [head]
    shown = sorted(groups)[:MAX_PANELS]
    if shown and times:
        cols = min(4, len(shown))
        rows = math.ceil(len(shown) / cols)
        fig = Figure(figsize=(3.2 * cols, 2.6 * rows))
        for i, pos in enumerate(shown):
            ax = fig.add_subplot(rows, cols, i + 1)
            _panel(ax, pos, groups[pos], controls, counts, times, points, interval, per_unit)
        figs.append(save(fig, out, f"timecourse_{rnd.index + 1}.png"))
        if len(groups) > MAX_PANELS:
            figs.append(f"<p>{len(groups) - MAX_PANELS} more groups in the table below.</p>")
    figs.append(_table(rnd, groups, exps, points, props, per_unit, interval))
    return figs


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else math.nan


def _panel(
    ax,
    pos: int,
    wells: list[str],
    controls: list[str],
    counts,
    times: list[int],
    points: list[DecisionPoint],
    interval: float,
    per_unit: bool,
) -> None:
    hours = [t * interval for t in times]
    for metric in COUNTS:
        c = COLOURS[metric]
        for w in wells:
            ax.plot(
                hours,
                [counts[t].get(w, {}).get(metric, math.nan) for t in times],
                color=c,
                lw=0.6,
                alpha=0.4,
            )
        ax.plot(
            hours,
            [
                _mean([counts[t][w][metric] for w in wells if metric in counts[t].get(w, {})])
                for t in times
            ],
            color=c,
            lw=2,
            label=metric.split("_")[0],
        )
        ax.plot(
            hours,
            [
                _mean([counts[t][w][metric] for w in controls if metric in counts[t].get(w, {})])
                for t in times
            ],
            color=c,
            lw=1,
            ls="--",
        )
    top = ax.get_ylim()[1]
    for d in points:
        acts = d.actions or {}
        a = acts.get(str(pos)) if not per_unit else (acts.get(wells[0]) if wells else None)
        text = action_text(a)
        ax.axvline(d.time_h, color="0.85", lw=0.8, zorder=0)
        if text != "-":
            ax.text(d.time_h, top, text, rotation=90, va="top", ha="right", fontsize=6)
    ax.set_title(f"group {pos + 1}", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.set_xlabel("h", fontsize=7)
    if pos == 0:
        ax.legend(fontsize=6, loc="lower left")


def _table(
    rnd: Round, groups, exps, points: list[DecisionPoint], props, per_unit: bool, interval: float
) -> str:
    cols = "".join(f"<th>{d.time_h:g} h</th>" for d in points)
    rows = [
        f"<table><tr><th>group</th>{cols}<th>forecast at first decision</th>"
        "<th>forecast at last decision</th><th>measured at the end</th></tr>"
    ]
    by_pos = {e.position: e for e in exps.values()}
    for pos in sorted(groups):
        units = groups[pos] if per_unit else [str(pos)]
        for unit in units:
            cells = "".join(f"<td>{html.escape(_cell(d, unit, props))}</td>" for d in points)
            first = _forecast(points[0], unit)
            last = _forecast(points[-1], unit)
            e = by_pos.get(pos)
            end = ", ".join(
                f"{k.split('_')[0]} {fmt(v, 3)}"
                for k, v in (e.outcomes if e else {}).items()
                if k in ("tumour_viability", "normal_viability")
            )
            label = f"{pos + 1}" + (f" {unit}" if per_unit else "")
            rows.append(
                f"<tr><td>{html.escape(label)}</td>{cells}<td>{first}</td><td>{last}</td>"
                f"<td>{html.escape(end)}</td></tr>"
            )
    rows.append(
        "</table><p>Forecast: the policy's expected tumour / normal viability at the end "
        "(mean ± sd over prior cultures that reproduce the group's images) and the "
        "probability that normal viability stays above its bound. An action marked * was "
        "edited or rejected at the gate (the applied action is shown).</p>"
    )
    return "".join(rows)


def _cell(d: DecisionPoint, unit: str, props) -> str:
    applied = action_text((d.actions or {}).get(unit))
    p = props.get((d.id, unit))
    changed = p is not None and p.status in ("edited", "rejected")
    return applied + ("*" if changed else "")


def _forecast(d: DecisionPoint, unit: str) -> str:
    f = (d.forecasts or {}).get(unit) or {}
    if "tumour_viability" not in f:
        return html.escape(str(f.get("skipped", "")))
    return (
        f"{f['tumour_viability']:.2f}±{f['tumour_viability_sd']:.2f} / "
        f"{f['normal_viability']:.2f}±{f['normal_viability_sd']:.2f}, "
        f"P(ok) {f['probability_feasible']:.2f}"
    )
