"""The campaign report: one HTML page with PNG plots, built from the ledger alone.

For a screening scientist: the headline is the model's recommended condition with its
interval (the best measured condition is labelled as measured, with its replicates); then the
convergence against a random baseline, dose-response fits per drug and line
(:mod:`~controller.report.dose`), response surfaces and synergy scores
(:mod:`~controller.report.synergy`), predicted vs measured with calibration per round
(:mod:`~controller.report.calibration`), well thumbnails from the raw images
(:mod:`~controller.report.thumbs`), per-plate QC (:mod:`~controller.report.qc`), the workcell
timeline, a heat map of every plate and a table of every experiment (mean ± replicate SD).
Plots are PNG files beside ``index.html``; thumbnails are embedded. For dry-runs whose simulation names a ground-truth assay, the true values
and the expectation of random search (Monte Carlo over the same number of experiments,
measured with the same noise) are shown too.
"""

from __future__ import annotations

import html
import json
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sqlmodel import Session  # noqa: E402

from controller.ledger.db import open_ledger_engine  # noqa: E402
from controller.ledger.models import Experiment  # noqa: E402
from controller.ledger.queries import campaign_schedule, campaign_timeline, find_campaign  # noqa: E402
from controller.report.calibration import calibration_section  # noqa: E402
from controller.report.data import ReportData, load, replicate_sd, save  # noqa: E402
from controller.report.data import fmt as _fmt  # noqa: E402
from controller.report.dose import dose_section, single_agent_curves  # noqa: E402
from controller.report.headline import best_and_worst, headline_section  # noqa: E402
from controller.report.qc import qc_section  # noqa: E402
from controller.report.synergy import synergy_section  # noqa: E402
from controller.report.thumbs import thumbs_section  # noqa: E402
from controller.report.timecourse import timecourse_section  # noqa: E402
from controller.report.timeline import timeline_figure  # noqa: E402
from controller.spec import CampaignSpec  # noqa: E402
from planners import Observation  # noqa: E402
from protocols.labware import get_plate_type  # noqa: E402

CSS = (
    "body{font-family:sans-serif;max-width:1200px;margin:auto;padding:0 1em}"
    "table{border-collapse:collapse;font-size:12px;margin:.5em 0}td,th{border:1px solid #ccc;padding:2px 6px}"
    "th{background:#f3f3f3}tr.bad td{background:#fde8e8}.headline{border:2px solid #2b6cb0;padding:.3em 1em;"
    "margin:1em 0;background:#f5f9ff}.best-measured{color:#444}.thumbs{display:flex;flex-wrap:wrap;gap:8px}"
    "figure{margin:0;width:140px;font-size:10px}img.thumb{width:128px;height:128px;image-rendering:pixelated}"
    "nav a{margin-right:1em}img{max-width:100%}"
)
NAV = (
    "<nav>"
    + "".join(
        f'<a href="#{a}">{t}</a>'
        for a, t in (
            ("timecourse", "time-courses"),
            ("convergence", "convergence"),
            ("dose", "dose-response"),
            ("synergy", "synergy"),
            ("calibration", "predicted vs measured"),
            ("images", "well images"),
            ("qc", "plate QC"),
            ("plates", "plate maps"),
            ("tables", "tables"),
        )
    )
    + "</nav>"
)


def random_baseline(
    assay, spec: CampaignSpec, n: int, repeats: int = 200, seed: int = 0
) -> dict[str, float]:
    """Expected best (measured and true) of ``n`` uniformly random experiments on ``assay``."""
    from planners.baselines import RandomPlanner

    obj = spec.objectives[0]
    rng = np.random.default_rng(seed)
    measured, true = [], []
    planner = RandomPlanner()
    for r in range(repeats):
        pts = [
            p.params for p in planner.propose(spec.space, spec.objectives, [], [], n, seed=seed + r)
        ]
        feas = []
        for p in pts:
            m = assay.sample(p, rng)
            if all(c.satisfied(m[c.metric]) for c in spec.outcome_constraints):
                feas.append((obj.sign * m[obj.metric], p))
        if not feas:
            continue
        v, p = max(feas, key=lambda t: t[0])
        measured.append(obj.sign * v)
        true.append(assay.expected(p)[obj.metric])
    return {
        "measured_median": float(np.median(measured)),
        "true_median": float(np.median(true)),
        "repeats": len(measured),
    }


def best_so_far(
    spec: CampaignSpec, exps: list[Experiment]
) -> tuple[list[float], list[Experiment | None]]:
    obj = spec.objectives[0]
    best: Experiment | None = None
    curve: list[float] = []
    which: list[Experiment | None] = []
    for e in exps:
        v = e.outcomes.get(obj.metric)
        feasible = all(
            c.satisfied(e.outcomes.get(c.metric, np.nan)) for c in spec.outcome_constraints
        )
        if (
            v is not None
            and feasible
            and (best is None or obj.sign * v > obj.sign * best.outcomes[obj.metric])
        ):
            best = e
        curve.append(best.outcomes[obj.metric] if best else np.nan)
        which.append(best)
    return curve, which


def write_report(ledger_url: str, campaign: str | None, out: str | Path) -> Path:
    """Write ``out/index.html`` (and PNGs beside it) for a campaign; return the HTML path.

    Raises:
        LookupError: no such campaign in the ledger.
    """
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = open_ledger_engine(ledger_url)
    data = load(db, ledger_url, campaign)
    camp, spec, rounds, exps = data.campaign, data.spec, data.rounds, data.experiments
    obj = spec.objectives[0]
    measured = data.measured
    sections = [
        f"<h1>Campaign {html.escape(camp.name)}</h1>",
        f"<p>{html.escape(spec.description)}</p>",
        f"<p>status <b>{camp.status}</b>; {len(rounds)} plates; {len(measured)} valid experiments; "
        f"objective: {obj.direction} <b>{obj.metric}</b>"
        + (
            f" subject to {', '.join(str(c) for c in spec.outcome_constraints)}"
            if spec.outcome_constraints
            else ""
        )
        + (" (dry-run)" if camp.dry_run else "")
        + "</p>",
        _analysis_line(data),
        NAV,
    ]

    assay = None
    if spec.simulation.assay and camp.dry_run:
        from simulators.assays import get_assay

        assay = get_assay(spec.simulation.assay)
    sections += headline_section(data, assay)
    sections += ['<a id="timecourse"></a>', *timecourse_section(data, out)]
    sections += _convergence_section(spec, measured, assay, out)
    if len(spec.objectives) >= 2:
        sections += _pareto_section(spec, measured, out)
    curves = single_agent_curves(data)
    sections += ['<a id="dose"></a>', *dose_section(data, curves, out)]
    sections += ['<a id="synergy"></a>', *synergy_section(data, curves, out)]
    sections += ['<a id="calibration"></a>', *calibration_section(data, out)]
    best, worst = best_and_worst(data)
    sections += ['<a id="images"></a>', *thumbs_section(data, best, worst, out)]
    sections += ['<a id="qc"></a>', *qc_section(data, out)]
    sections += _timeline_section(db, camp.name, out)
    sections += ['<a id="plates"></a>', *_heat_maps(data, out)]

    top = sorted(
        [e for e in measured if obj.metric in e.outcomes],
        key=lambda e: -obj.sign * e.outcomes[obj.metric],
    )[:5]
    sections.append(
        '<a id="tables"></a><h2>Best measured conditions</h2><p>Measured values, mean ± '
        "replicate SD (n wells kept); the best of many noisy measurements overstates its "
        "condition's value: see the recommendation above.</p>"
    )
    sections.append(_table(spec, top, "Top measured experiments"))
    sections.append("<h2>All experiments</h2>")
    sections.append(_table(spec, exps, None))

    page = (
        "<!doctype html><html><head><meta charset='utf-8'><title>cellpilot report: "
        + html.escape(camp.name)
        + "</title><style>"
        + CSS
        + "</style></head><body>"
        + "\n".join(sections)
        + "</body></html>"
    )
    path = out / "index.html"
    path.write_text(page, encoding="utf-8")
    return path


def _analysis_line(data: ReportData) -> str:
    """Which analysis version every outcome on this page comes from, and the others."""

    def describe(v: dict) -> str:
        code = v.get("code_version") or {}
        where = " ".join(x for x in (code.get("package"), (code.get("commit") or "")[:10]) if x)
        return (
            f"version {v['number']}: {html.escape(v['analyzer'])} {html.escape(json.dumps(v['settings']))}"
            + (f", code {html.escape(where)}" if where else "")
            + f", by {html.escape(str(v['created_by']))}"
            + (f" ({html.escape(v['note'])})" if v.get("note") else "")
        )

    adopted = [v for v in data.analysis_versions if v["adopted"]]
    others = [v for v in data.analysis_versions if not v["adopted"]]
    text = (
        "<p class='small'>Outcomes from analysis "
        + (describe(adopted[0]) if adopted else "version 1")
        + "."
    )
    if others:
        text += " Not used for planning: " + "; ".join(describe(v) for v in others) + "."
    return text + "</p>"


def _convergence_section(
    spec: CampaignSpec, measured: list[Experiment], assay, out: Path
) -> list[str]:
    """Best measured value vs experiments; in dry-runs the truth and random search beside it."""
    obj = spec.objectives[0]
    curve, best_rows = best_so_far(spec, measured)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(curve) + 1)
    ax.plot(x, curve, label=f"cellpilot ({spec.planner.name}), best measured")
    baseline_txt = ""
    if assay is not None and measured:
        true_curve = [assay.expected(b.params)[obj.metric] if b else np.nan for b in best_rows]
        ax.plot(x, true_curve, "--", label="true value of that condition")
        rb = random_baseline(assay, spec, len(measured))
        ax.axhline(
            rb["measured_median"],
            color="grey",
            ls=":",
            label=f"random, best of {len(measured)} (median, measured)",
        )
        ax.axhline(rb["true_median"], color="grey", ls="-.", label="random, true value of its best")
        opt_params, opt = assay.optimum()
        ax.axhline(opt, color="green", lw=0.8, label="true optimum")
        found_true = true_curve[-1]
        best_truth = assay.expected(best_rows[-1].params) if best_rows[-1] else {}
        broken = [
            f"{c.metric} {best_truth[c.metric]:.3f}"
            for c in spec.outcome_constraints
            if c.metric in best_truth and not c.satisfied(best_truth[c.metric])
        ]
        feas = f" (truly violates: {', '.join(broken)})" if broken else " (truly feasible)"
        baseline_txt = (
            f"<p>Best found: measured {curve[-1]:.3f}, true {found_true:.3f}{feas}. Random search with the same "
            f"{len(measured)} experiments (median of {rb['repeats']} simulated repeats): measured "
            f"{rb['measured_median']:.3f}, true {rb['true_median']:.3f}. True optimum {opt:.3f} at "
            + ", ".join(f"{k}={_fmt(v)}" for k, v in opt_params.items())
            + ".</p>"
        )
    ax.set_xlabel("experiments")
    ax.set_ylabel(obj.metric)
    ax.legend(fontsize=7)
    ax.set_title("convergence")
    return [
        '<a id="convergence"></a><h2>Convergence</h2>',
        save(fig, out, "convergence.png"),
        baseline_txt,
    ]


def _heat_maps(data: ReportData, out: Path) -> list[str]:
    """Tumour viability per well of every plate, controls and quarantined wells marked."""
    parts = ["<h2>Plates: tumour viability per well</h2><div>"]
    by_well = data.well_values("tumour_viability")
    for r in data.rounds:
        pt = get_plate_type((r.layout or {}).get("plate_type", "96"))
        grid = np.full((pt.rows, pt.columns), np.nan)
        wells = data.wells.get(r.id, [])
        for w in wells:
            row, colno = pt.parse_well(w.well)
            if w.id in by_well:
                grid[row, colno] = by_well[w.id]
        fig, ax = plt.subplots(figsize=(4.2, 3))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1.2)
        for w in wells:
            row, colno = pt.parse_well(w.well)
            mark = {
                "negative_control": "N",
                "positive_control": "P",
                "time_zero": "T",
                "single_agent": "S",
            }.get(w.role, "")
            if w.status == "quarantined":
                mark = "Q"
            if mark:
                ax.text(colno, row, mark, ha="center", va="center", fontsize=6, color="white")
        ax.set_xticks(range(pt.columns), [str(i + 1) for i in range(pt.columns)], fontsize=6)
        ax.set_yticks(range(pt.rows), [chr(65 + i) for i in range(pt.rows)], fontsize=6)
        ax.set_title(f"{r.plate_id}", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8)
        parts.append(save(fig, out, f"plate_{r.index + 1:02d}.png", dpi=100))
    parts.append(
        "</div><p>N: vehicle control, P: positive control, T: time zero, S: a single agent, "
        "Q: quarantined well.</p>"
    )
    return parts


def _timeline_section(db, campaign: str, out: Path) -> list[str]:
    """The workcell timeline (Gantt) and the time plates in flight saved."""
    with Session(db) as s:
        camp = find_campaign(s, campaign)
        timeline = campaign_timeline(s, camp)
        sched = campaign_schedule(s, camp)
    if not timeline:
        return []
    fig = timeline_figure(timeline)
    fig.savefig(out / "timeline.png", dpi=110)  # a Figure, not pyplot: nothing to close
    text = ""
    if sched and sched["plates"] > 1:
        text = (
            f"<p>{sched['plates']} plates took {sched['elapsed_h'] / 24:.1f} days of campaign clock; one "
            f"plate at a time they would have taken {sched['one_plate_at_a_time_h'] / 24:.1f} days "
            f"(saved {sched['saved_days']:.1f} days).</p>"
        )
    return ["<h2>Workcell timeline</h2>", '<img src="timeline.png">', text]


def _table(spec: CampaignSpec, exps: list[Experiment], title: str | None) -> str:
    """One row per experiment: its parameters and each metric as mean ± replicate SD."""
    names = spec.space.names
    metrics = sorted({m for e in exps for m in e.outcomes})
    head = "".join(
        f"<th>{html.escape(h)}</th>"
        for h in ["id", "round", "status", *names, *metrics, "replicates"]
    )
    rows = []
    for e in exps:
        vals = []
        for m in metrics:
            v, sd = e.outcomes.get(m), replicate_sd(e, m)
            vals.append(
                "" if v is None else f"{v:.4g}" + (f" ± {sd:.2g}" if sd is not None else "")
            )
        cells = [_fmt(c) for c in (e.id, e.round_id, e.status, *[e.params.get(n) for n in names])]
        cells += vals + [_fmt(e.n_valid_replicates)]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    cap = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f"{cap}<p>metrics: mean ± replicate SD</p><table><tr>{head}</tr>{''.join(rows)}</table>"


def _pareto_section(spec: CampaignSpec, measured: list[Experiment], out: Path) -> list[str]:
    """Two objectives: every measured experiment and the feasible Pareto front."""
    from planners.multiobjective import pareto_front

    a, b = spec.objectives[0], spec.objectives[1]
    obs = [Observation(params=e.params, outcomes=e.outcomes) for e in measured]
    front = pareto_front(obs, spec.objectives, spec.outcome_constraints)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    pts = [
        (o.outcomes[a.metric], o.outcomes[b.metric])
        for o in obs
        if a.metric in o.outcomes and b.metric in o.outcomes
    ]
    if pts:
        xs, ys = zip(*pts, strict=True)
        ax.scatter(xs, ys, s=10, color="lightgrey", label="measured")
    fr = sorted((o.outcomes[a.metric], o.outcomes[b.metric]) for o in front)
    if fr:
        ax.plot(*zip(*fr, strict=True), "o-", color="tab:red", label="Pareto front (feasible)")
    ax.set_xlabel(f"{a.metric} ({a.direction})")
    ax.set_ylabel(f"{b.metric} ({b.direction})")
    ax.legend(fontsize=7)
    img = save(fig, out, "pareto.png")
    rule = (
        "weights " + ", ".join(f"{k}={v:g}" for k, v in spec.planner.preference.items())
        if spec.planner.preference
        else "the knee of the predicted front"
    )
    return [
        "<h2>Pareto front</h2>",
        img,
        f"<p>{len(front)} non-dominated feasible experiments. The recommended point below is "
        f"chosen by {html.escape(rule)}.</p>",
    ]
