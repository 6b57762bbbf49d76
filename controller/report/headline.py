"""The headline: the model's recommended condition with its interval, and the best measured
condition labelled as what it is (one noisy measurement, the luckiest of many).

The best of N noisy measurements overstates its condition's value (the winner's curse), so
it is never shown as the expected value: the recommendation is the posterior-mean optimum of
a model fitted to every result (:meth:`planners.bayesian.BayesianPlanner.recommend`; the
campaign's planner when it has ``recommend``, else a Gaussian-process model fitted here).
"""

from __future__ import annotations

import html
from typing import Any

from controller.ledger.models import Experiment
from controller.report.data import ReportData, kept_wells, params_text, replicate_sd
from planners import Observation, get_planner


def feasible(data: ReportData, e: Experiment) -> bool:
    return all(
        c.satisfied(e.outcomes.get(c.metric, float("nan"))) for c in data.spec.outcome_constraints
    )


def best_and_worst(data: ReportData) -> tuple[Experiment | None, Experiment | None]:
    """Best measured feasible experiment and worst measured experiment by the first objective."""
    obj = data.spec.objectives[0]
    scored = [e for e in data.measured if obj.metric in e.outcomes]
    if not scored:
        return None, None
    ok = [e for e in scored if feasible(data, e)] or scored
    best = max(ok, key=lambda e: obj.sign * e.outcomes[obj.metric])
    worst = min(scored, key=lambda e: obj.sign * e.outcomes[obj.metric])
    return best, worst


def recommendation(data: ReportData) -> tuple[Any | None, str]:
    """(the model's recommended proposal or None, which model / why none)."""
    spec = data.spec
    history = [Observation(params=e.params, outcomes=e.outcomes) for e in data.measured]
    if len(history) < 2:
        return None, f"{len(history)} usable experiments: too few for a model"
    planner = get_planner(spec.planner.name, **spec.planner.settings)
    source = f"the campaign's {spec.planner.name} model"
    if not hasattr(planner, "recommend"):
        planner = get_planner("bayesian", profile="fast")
        source = (
            f"a Gaussian-process model fitted to the results here (the campaign's planner, "
            f"{spec.planner.name}, has no model)"
        )
    try:
        kwargs = {"preference": spec.planner.preference} if len(spec.objectives) > 1 else {}
        rec = planner.recommend(
            spec.space,
            spec.objectives,
            history,
            outcome_constraints=spec.outcome_constraints,
            **kwargs,
        )
    except Exception as err:  # a report must still be written
        return None, f"no model recommendation: {err}"
    return rec, source


def headline_section(data: ReportData, assay: Any | None) -> list[str]:
    """The recommended condition first, then the best measured one with its replicates."""
    parts = ['<div class="headline">']
    rec, source = recommendation(data)
    if rec is not None:
        pred = "; ".join(
            f"{html.escape(m)} <b>{rec.predicted_mean[m]:.3f}</b> (95 % interval "
            + (
                f"{rec.predicted_interval[m][0]:.3f} to {rec.predicted_interval[m][1]:.3f})"
                if m in rec.predicted_interval
                else f"± {1.96 * rec.predicted_sd.get(m, float('nan')):.3f})"
            )
            for m in rec.predicted_mean
        )
        pf = (
            f"; probability that every constraint holds there: {rec.probability_feasible:.2f}"
            if rec.probability_feasible is not None
            else ""
        )
        truth = ""
        if assay is not None:
            t = assay.expected(rec.params)
            truth = (
                "<br><i>simulation truth there: "
                + ", ".join(f"{k} {v:.3f}" for k, v in t.items() if k in rec.predicted_mean)
                + "</i>"
            )
        parts.append(
            f"<p class='recommended'><b>Model's recommendation</b> — the recommended condition: "
            f"<b>{params_text(rec.params)}</b>. Expected (posterior mean of the condition's value, "
            f"from {html.escape(source)}): {pred}{pf}.{truth}</p>"
        )
    else:
        parts.append(f"<p class='recommended'>No recommended condition: {html.escape(source)}.</p>")
    best, _ = best_and_worst(data)
    if best is not None:
        parts.append(_best_measured(data, best, assay))
    parts.append("</div>")
    return parts


def _best_measured(data: ReportData, best: Experiment, assay: Any | None) -> str:
    obj = data.spec.objectives[0]
    metric = obj.metric
    by_name = {w.well: w.id for w in data.wells.get(best.round_id, [])}
    vals = data.well_values(metric)
    reps = [
        (n, vals[i]) for n in kept_wells(best) if (i := by_name.get(n)) is not None and i in vals
    ]
    sd = replicate_sd(best, metric)
    rep_txt = ", ".join(f"{n} {v:.3f}" for n, v in reps)
    prop = data.proposals.get(best.proposal_id)
    predicted = ""
    if prop is not None and metric in (prop.predicted_mean or {}):
        predicted = (
            f" The model predicted {prop.predicted_mean[metric]:.3f} ± "
            f"{(prop.predicted_sd or {}).get(metric, float('nan')):.3f} when it was proposed."
        )
    truth = ""
    if assay is not None:
        truth = f" <i>Simulation truth there: {assay.expected(best.params)[metric]:.3f}.</i>"
    n_meas = len(data.measured)
    others = "; ".join(
        f"{html.escape(m)} {best.outcomes[m]:.3f}"
        for m in sorted(best.outcomes)
        if m != metric and m.endswith(("viability", "_gr"))
    )
    return (
        f"<p class='best-measured'><b>Best measured condition</b> (labelled as measured: the highest "
        f"of {n_meas} noisy measurements, which overstates its condition's value on average; not the "
        f"expected value): {params_text(best.params)} — {html.escape(metric)} "
        f"{best.outcomes[metric]:.3f}"
        + (f" ± {sd:.3f} SD" if sd is not None else "")
        + f" over {best.n_valid_replicates} replicate wells ({rep_txt or 'per-well values not recorded'})"
        + (f"; {others}" if others else "")
        + f", plate {html.escape(data.round_of(best).plate_id)}."
        + predicted
        + truth
        + "</p>"
    )
