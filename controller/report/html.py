"""The campaign report: one HTML page with PNG plots, built from the ledger alone.

Shows the convergence (best value vs experiments) against a random baseline, a heat map of
every plate, Z' per plate, the best conditions with the model's predictions, and a table of
every experiment. For dry-runs whose simulation names a ground-truth assay, the true values
and the expectation of random search (Monte Carlo over the same number of experiments,
measured with the same noise) are shown too.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from controller.ledger.db import open_ledger_engine  # noqa: E402
from controller.ledger.models import (  # noqa: E402
    Experiment,
    ExperimentStatus,
    Measurement,
    Round,
    Well,
)
from controller.ledger.queries import campaign_schedule, campaign_timeline, find_campaign  # noqa: E402
from controller.ledger.secrets import mask_url  # noqa: E402
from controller.report.timeline import timeline_figure  # noqa: E402
from controller.spec import CampaignSpec  # noqa: E402
from planners import Observation, get_planner  # noqa: E402
from protocols.labware import get_plate_type  # noqa: E402


def _fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.4g}"
    return html.escape(str(v))


def random_baseline(assay, spec: CampaignSpec, n: int, repeats: int = 200, seed: int = 0) -> dict[str, float]:
    """Expected best (measured and true) of ``n`` uniformly random experiments on ``assay``."""
    from planners.baselines import RandomPlanner

    obj = spec.objectives[0]
    rng = np.random.default_rng(seed)
    measured, true = [], []
    planner = RandomPlanner()
    for r in range(repeats):
        pts = [p.params for p in planner.propose(spec.space, spec.objectives, [], [], n, seed=seed + r)]
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
    return {"measured_median": float(np.median(measured)), "true_median": float(np.median(true)),
            "repeats": len(measured)}


def best_so_far(spec: CampaignSpec, exps: list[Experiment]) -> tuple[list[float], list[Experiment]]:
    obj = spec.objectives[0]
    best, curve, which = None, [], []
    for e in exps:
        v = e.outcomes.get(obj.metric)
        feasible = all(c.satisfied(e.outcomes.get(c.metric, np.nan)) for c in spec.outcome_constraints)
        if v is not None and feasible and (best is None or obj.sign * v > obj.sign * best.outcomes[obj.metric]):
            best = e
        curve.append(best.outcomes[obj.metric] if best else np.nan)
        which.append(best)
    return curve, which


def write_report(ledger_url: str, campaign: str | None, out: str | Path) -> Path:
    """Write ``out/index.html`` (and PNGs) for a campaign; return the HTML path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    db = open_ledger_engine(ledger_url)
    with Session(db) as s:
        camp = find_campaign(s, campaign)
        if camp is None:
            shown = mask_url(ledger_url)
            raise LookupError(f"no campaign {campaign!r} in {shown}" if campaign else f"no campaign in {shown}")
        spec = CampaignSpec.model_validate(camp.spec)
        rounds = list(s.exec(select(Round).where(Round.campaign_id == camp.id).order_by(col(Round.index))))
        exps = list(s.exec(select(Experiment).where(Experiment.campaign_id == camp.id).order_by(col(Experiment.id))))
        wells = {r.id: list(s.exec(select(Well).where(Well.round_id == r.id))) for r in rounds}
        meas = list(s.exec(select(Measurement).where(Measurement.campaign_id == camp.id,
                                                      col(Measurement.well_id).is_not(None))))
    obj = spec.objectives[0]
    measured = [e for e in exps if e.status == ExperimentStatus.MEASURED.value]
    sections = [f"<h1>Campaign {html.escape(camp.name)}</h1>",
                f"<p>{html.escape(spec.description)}</p>",
                f"<p>status <b>{camp.status}</b>; {len(rounds)} plates; {len(measured)} valid experiments; "
                f"objective: {obj.direction} <b>{obj.metric}</b>"
                + (f" subject to {', '.join(str(c) for c in spec.outcome_constraints)}" if spec.outcome_constraints else "")
                + (" (dry-run)" if camp.dry_run else "") + "</p>"]

    assay = None
    if spec.simulation.assay and camp.dry_run:
        from simulators.assays import get_assay

        assay = get_assay(spec.simulation.assay)

    # convergence
    curve, best_rows = best_so_far(spec, measured)
    fig, ax = plt.subplots(figsize=(7, 4))
    x = np.arange(1, len(curve) + 1)
    ax.plot(x, curve, label=f"cellpilot ({spec.planner.name}), best measured")
    baseline_txt = ""
    if assay is not None and measured:
        true_curve = [assay.expected(b.params)[obj.metric] if b else np.nan for b in best_rows]
        ax.plot(x, true_curve, "--", label="true value of that condition")
        rb = random_baseline(assay, spec, len(measured))
        ax.axhline(rb["measured_median"], color="grey", ls=":", label=f"random, best of {len(measured)} (median, measured)")
        ax.axhline(rb["true_median"], color="grey", ls="-.", label="random, true value of its best")
        opt_params, opt = assay.optimum()
        ax.axhline(opt, color="green", lw=0.8, label="true optimum")
        found_true = true_curve[-1]
        best_truth = assay.expected(best_rows[-1].params) if best_rows[-1] else {}
        broken = [f"{c.metric} {best_truth[c.metric]:.3f}" for c in spec.outcome_constraints
                  if c.metric in best_truth and not c.satisfied(best_truth[c.metric])]
        feas = f" (truly violates: {', '.join(broken)})" if broken else " (truly feasible)"
        baseline_txt = (
            f"<p>Best found: measured {curve[-1]:.3f}, true {found_true:.3f}{feas}. Random search with the same "
            f"{len(measured)} experiments (median of {rb['repeats']} simulated repeats): measured "
            f"{rb['measured_median']:.3f}, true {rb['true_median']:.3f}. True optimum {opt:.3f} at "
            + ", ".join(f"{k}={_fmt(v)}" for k, v in opt_params.items()) + ".</p>")
    ax.set_xlabel("experiments")
    ax.set_ylabel(obj.metric)
    ax.legend(fontsize=7)
    ax.set_title("convergence")
    fig.tight_layout()
    fig.savefig(out / "convergence.png", dpi=110)
    plt.close(fig)
    sections += ["<h2>Convergence</h2>", '<img src="convergence.png">', baseline_txt]

    if len(spec.objectives) >= 2:
        sections += _pareto_section(spec, measured, out)

    # Z' per plate
    fig, ax = plt.subplots(figsize=(7, 2.8))
    zs = [(r.index + 1, (r.z_prime or {}).get("tumour_count")) for r in rounds]
    ax.bar([z[0] for z in zs], [z[1] if z[1] is not None else 0 for z in zs],
           color=["tab:green" if (z[1] or 0) >= 0.5 else "tab:red" for z in zs])
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel("plate (round)")
    ax.set_ylabel("Z' (tumour count)")
    fig.tight_layout()
    fig.savefig(out / "z_prime.png", dpi=110)
    plt.close(fig)
    sections += ["<h2>Plate quality (Z')</h2>", '<img src="z_prime.png">']
    sections += _timeline_section(db, camp.name, out)

    # heat maps
    sections.append("<h2>Plates: tumour viability per well</h2><div>")
    by_well = {}
    for m in meas:
        if m.metric == "tumour_viability":
            by_well[m.well_id] = m.value
    for r in rounds:
        pt = get_plate_type((r.layout or {}).get("plate_type", "96"))
        grid = np.full((pt.rows, pt.columns), np.nan)
        for w in wells[r.id]:
            row, colno = pt.parse_well(w.well)
            if w.id in by_well:
                grid[row, colno] = by_well[w.id]
        fig, ax = plt.subplots(figsize=(4.2, 3))
        im = ax.imshow(grid, cmap="viridis", vmin=0, vmax=1.2)
        for w in wells[r.id]:
            row, colno = pt.parse_well(w.well)
            mark = {"negative_control": "N", "positive_control": "P"}.get(w.role, "")
            if w.status == "quarantined":
                mark = "Q"
            if mark:
                ax.text(colno, row, mark, ha="center", va="center", fontsize=6, color="white")
        ax.set_xticks(range(pt.columns), [str(i + 1) for i in range(pt.columns)], fontsize=6)
        ax.set_yticks(range(pt.rows), [chr(65 + i) for i in range(pt.rows)], fontsize=6)
        ax.set_title(f"{r.plate_id}", fontsize=8)
        fig.colorbar(im, ax=ax, shrink=0.8)
        fig.tight_layout()
        fig.savefig(out / f"plate_{r.index + 1:02d}.png", dpi=100)
        plt.close(fig)
        sections.append(f'<img src="plate_{r.index + 1:02d}.png">')
    sections.append("</div><p>N: negative control, P: positive control, Q: quarantined well.</p>")

    # best conditions with model predictions
    sections.append("<h2>Best conditions</h2>")
    history = [Observation(params=e.params, outcomes=e.outcomes) for e in measured]
    planner = get_planner(spec.planner.name, **spec.planner.settings)
    rec = None
    if hasattr(planner, "recommend") and len(history) >= 2:
        try:
            kwargs = {"preference": spec.planner.preference} if len(spec.objectives) > 1 else {}
            rec = planner.recommend(spec.space, spec.objectives, history,
                                    outcome_constraints=spec.outcome_constraints, **kwargs)
        except Exception as err:  # a report must still be written
            sections.append(f"<p>no model recommendation: {html.escape(str(err))}</p>")
    if rec is not None:
        pred = ", ".join(f"{m} {rec.predicted_mean[m]:.3f} ± {rec.predicted_sd.get(m, float('nan')):.3f}"
                         for m in rec.predicted_mean)
        truth = ""
        if assay is not None:
            t = assay.expected(rec.params)
            truth = "; true " + ", ".join(f"{k} {v:.3f}" for k, v in t.items() if k in rec.predicted_mean)
        sections.append("<p><b>Model's recommendation</b>: "
                        + ", ".join(f"{k}={_fmt(v)}" for k, v in rec.params.items())
                        + f" — predicted {pred}{truth}</p>")
    top = sorted([e for e in measured if obj.metric in e.outcomes],
                 key=lambda e: -obj.sign * e.outcomes[obj.metric])[:5]
    sections.append(_table(spec, top, "Top measured experiments"))
    sections.append("<h2>All experiments</h2>")
    sections.append(_table(spec, exps, None))

    page = ("<!doctype html><html><head><meta charset='utf-8'><title>cellpilot report</title>"
            "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}table{border-collapse:collapse;"
            "font-size:12px}td,th{border:1px solid #ccc;padding:2px 6px}</style></head><body>"
            + "\n".join(sections) + "</body></html>")
    path = out / "index.html"
    path.write_text(page)
    return path


def _timeline_section(db, campaign: str, out: Path) -> list[str]:
    """The workcell timeline (Gantt) and the time plates in flight saved."""
    with Session(db) as s:
        camp = find_campaign(s, campaign)
        timeline = campaign_timeline(s, camp)
        sched = campaign_schedule(s, camp)
    if not timeline:
        return []
    fig = timeline_figure(timeline)
    fig.savefig(out / "timeline.png", dpi=110)
    text = ""
    if sched and sched["plates"] > 1:
        text = (f"<p>{sched['plates']} plates took {sched['elapsed_h'] / 24:.1f} days of campaign clock; one "
                f"plate at a time they would have taken {sched['one_plate_at_a_time_h'] / 24:.1f} days "
                f"(saved {sched['saved_days']:.1f} days).</p>")
    return ["<h2>Workcell timeline</h2>", '<img src="timeline.png">', text]


def _table(spec: CampaignSpec, exps: list[Experiment], title: str | None) -> str:
    names = spec.space.names
    metrics = sorted({m for e in exps for m in e.outcomes})
    head = "".join(f"<th>{html.escape(h)}</th>" for h in ["id", "round", "status", *names, *metrics, "replicates"])
    rows = []
    for e in exps:
        cells = [e.id, e.round_id, e.status, *[e.params.get(n) for n in names],
                 *[e.outcomes.get(m, "") for m in metrics], e.n_valid_replicates]
        rows.append("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in cells) + "</tr>")
    cap = f"<h3>{html.escape(title)}</h3>" if title else ""
    return f"{cap}<table><tr>{head}</tr>{''.join(rows)}</table>"


def _pareto_section(spec: CampaignSpec, measured: list[Experiment], out: Path) -> list[str]:
    """Two objectives: every measured experiment and the feasible Pareto front."""
    from planners.multiobjective import pareto_front

    a, b = spec.objectives[0], spec.objectives[1]
    obs = [Observation(params=e.params, outcomes=e.outcomes) for e in measured]
    front = pareto_front(obs, spec.objectives, spec.outcome_constraints)
    fig, ax = plt.subplots(figsize=(5.5, 4))
    pts = [(o.outcomes[a.metric], o.outcomes[b.metric]) for o in obs if a.metric in o.outcomes and b.metric in o.outcomes]
    if pts:
        ax.scatter(*zip(*pts, strict=True), s=10, color="lightgrey", label="measured")
    fr = sorted((o.outcomes[a.metric], o.outcomes[b.metric]) for o in front)
    if fr:
        ax.plot(*zip(*fr, strict=True), "o-", color="tab:red", label="Pareto front (feasible)")
    ax.set_xlabel(f"{a.metric} ({a.direction})")
    ax.set_ylabel(f"{b.metric} ({b.direction})")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(out / "pareto.png", dpi=110)
    plt.close(fig)
    rule = ("weights " + ", ".join(f"{k}={v:g}" for k, v in spec.planner.preference.items())
            if spec.planner.preference else "the knee of the predicted front")
    return ["<h2>Pareto front</h2>", '<img src="pareto.png">',
            f"<p>{len(front)} non-dominated feasible experiments. The recommended point below is "
            f"chosen by {html.escape(rule)}.</p>"]
