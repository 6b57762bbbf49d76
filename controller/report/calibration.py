"""Predicted vs measured: the model's forecast at proposal time against what the plate gave.

Each proposal stores the model's posterior mean and SD per metric when it was made
(``Proposal.predicted_mean`` / ``predicted_sd``). That SD is of the condition's expected
value; a measurement also carries well noise, so the interval a measurement is judged against
combines them: ``z = (measured − predicted) / sqrt(sd_model² + se² + se_ref²)`` with ``se``
the replicate SD / √n and ``se_ref`` the error the plate's vehicle reference puts into every
viability on that plate (viability × the vehicle wells' CV / √their number, per line; both
lines for selectivity). ``se_ref`` is shared by a whole plate, so without it a plate whose few
vehicle wells read high or low shifts all its measurements together and looks like a wrong
model. Both come from the plate's own wells, never from the predictions. A calibrated model
has about 95 % of measurements inside ±1.96 and z's SD near 1; a mean z far from 0 is a
biased model, |z| > 3 a surprise worth a look.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from pathlib import Path

import matplotlib.pyplot as plt
import numpy as np

from controller.ledger.models import Experiment
from controller.report.data import ReportData, fmt, params_text, replicate_sd, save
from controller.report.qc import vehicle_stats


@dataclass
class Forecast:
    experiment: Experiment
    round_no: int
    metric: str
    predicted: float
    sd_model: float
    measured: float
    se: float
    se_ref: float = 0.0

    @property
    def z(self) -> float:
        scale = math.sqrt(self.sd_model**2 + self.se**2 + self.se_ref**2)
        return (self.measured - self.predicted) / scale if scale > 0 else math.nan

    @property
    def z_wells(self) -> float:
        """z without the plate reference's error (model and replicate error only)."""
        scale = math.hypot(self.sd_model, self.se)
        return (self.measured - self.predicted) / scale if scale > 0 else math.nan

    @property
    def z_model(self) -> float:
        return (self.measured - self.predicted) / self.sd_model if self.sd_model > 0 else math.nan


#: viability metric -> the vehicle count metric it is normalised to
_REFERENCE_OF = {"tumour_viability": "tumour_count", "normal_viability": "normal_count"}


def reference_se(
    outcomes: dict[str, float], vehicle: dict[str, tuple[float, int]], metric: str
) -> float:
    """SD the plate's vehicle reference adds to ``metric`` (0 where it does not apply)."""

    def one(viability: str) -> float:
        ref = vehicle.get(_REFERENCE_OF[viability])
        if ref is None or viability not in outcomes:
            return 0.0
        cv, n = ref
        return abs(outcomes[viability]) * cv / math.sqrt(n)

    if metric in _REFERENCE_OF:
        return one(metric)
    if metric == "selectivity":
        return math.hypot(one("tumour_viability"), one("normal_viability"))
    return 0.0


def forecasts(data: ReportData) -> list[Forecast]:
    """Every measured experiment (held and excluded plates too) whose proposal had a prediction."""
    vehicle: dict[int | None, dict[str, tuple[float, int]]] = {}
    out = []
    for e in data.experiments:
        p = data.proposals.get(e.proposal_id)
        if p is None or not e.outcomes:
            continue
        for metric, mean in (p.predicted_mean or {}).items():
            if metric not in e.outcomes or mean is None:
                continue
            sd = float((p.predicted_sd or {}).get(metric, math.nan))
            rep = replicate_sd(e, metric)
            se = (
                rep / math.sqrt(e.n_valid_replicates)
                if rep is not None and e.n_valid_replicates
                else 0.0
            )
            rnd = data.round_of(e)
            if rnd.id not in vehicle:
                vehicle[rnd.id] = vehicle_stats(data, rnd)
            se_ref = reference_se(e.outcomes, vehicle[rnd.id], metric)
            out.append(
                Forecast(e, rnd.index + 1, metric, float(mean), sd, e.outcomes[metric], se, se_ref)
            )
    return out


def calibration_section(data: ReportData, out: Path) -> list[str]:
    """Scatter per metric, the calibration table per round and metric, the biggest surprises."""
    fc = [f for f in forecasts(data) if math.isfinite(f.sd_model)]
    parts = ["<h2>Predicted vs measured (the model's surprise)</h2>"]
    with_outcome = [e for e in data.experiments if e.outcomes]
    if not fc:
        planners = sorted({p.planner for p in data.proposals.values()})
        parts.append(
            f"<p>None of the {len(with_outcome)} measured experiments was proposed with a model "
            f"prediction (planners: {html.escape(', '.join(planners))}; a model-free planner, or "
            "plates proposed before any result came in).</p>"
        )
        return parts
    predicted_ids = {f.experiment.id for f in fc}
    parts.append(
        "<p>The prediction is the one stored when the experiment was proposed. Interval of a "
        "measurement: model SD combined with the replicate standard error and the error of the "
        "plate's vehicle reference (shared by every well of the plate), "
        "z = (measured − predicted) / √(sd<sub>model</sub>² + se² + se<sub>ref</sub>²); "
        "calibrated: about 95 % inside ±1.96, SD of z near 1, mean z near 0. 'wells only' leaves "
        "the reference's error out, 'model only' judges against the model's SD alone. "
        f"{len(predicted_ids)} of {len(with_outcome)} measured experiments had a prediction.</p>"
    )
    metrics = sorted({f.metric for f in fc})
    fig, axes = plt.subplots(1, len(metrics), figsize=(4.4 * len(metrics), 4), squeeze=False)
    rounds = sorted({f.round_no for f in fc})
    cmap = plt.get_cmap("viridis", max(len(rounds), 2))
    for ax, metric in zip(axes[0], metrics, strict=True):
        pts = [f for f in fc if f.metric == metric]
        for i, r in enumerate(rounds):
            sel = [f for f in pts if f.round_no == r]
            if sel:
                ax.errorbar(
                    [f.predicted for f in sel],
                    [f.measured for f in sel],
                    xerr=[1.96 * f.sd_model for f in sel],
                    yerr=[math.hypot(f.se, f.se_ref) for f in sel],
                    fmt="o",
                    ms=3,
                    lw=0.6,
                    color=cmap(i),
                    label=f"round {r}",
                )
        lo = min(min(f.predicted for f in pts), min(f.measured for f in pts))
        hi = max(max(f.predicted for f in pts), max(f.measured for f in pts))
        ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"predicted {metric} (±1.96 model SD)")
        ax.set_ylabel(f"measured {metric} (± SE, replicates and reference)")
        ax.legend(fontsize=6)
    parts.append(save(fig, out, "predicted_vs_measured.png"))
    parts.append(_round_table(fc))
    parts.append(_surprises(fc))
    return parts


def _round_table(fc: list[Forecast]) -> str:
    head = [
        "round",
        "metric",
        "experiments",
        "inside 95 %",
        "inside 95 % (wells only)",
        "inside 95 % (model only)",
        "mean z",
        "SD of z",
        "RMSE",
        "replicate SD (median)",
    ]
    rows = []
    for key in sorted({(f.round_no, f.metric) for f in fc}):
        sel = [f for f in fc if (f.round_no, f.metric) == key]
        z = np.array([f.z for f in sel])
        zw = np.array([f.z_wells for f in sel])
        zm = np.array([f.z_model for f in sel])
        err = np.array([f.measured - f.predicted for f in sel])
        sds = [s for f in sel if (s := replicate_sd(f.experiment, f.metric)) is not None]
        cells = [
            str(key[0]),
            html.escape(key[1]),
            str(len(sel)),
            f"{np.mean(np.abs(z) <= 1.96):.0%}",
            f"{np.mean(np.abs(zw) <= 1.96):.0%}",
            f"{np.mean(np.abs(zm) <= 1.96):.0%}",
            f"{np.mean(z):+.2f}",
            f"{np.std(z, ddof=1):.2f}" if z.size > 1 else "",
            f"{math.sqrt(float(np.mean(err**2))):.3f}",
            fmt(float(np.median(sds))) if sds else "",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        '<h3>Calibration per round</h3><table class="calibration"><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )


def _surprises(fc: list[Forecast], k: int = 5) -> str:
    worst = sorted((f for f in fc if math.isfinite(f.z)), key=lambda f: -abs(f.z))[:k]
    head = [
        "experiment",
        "round",
        "condition",
        "metric",
        "predicted ± SD",
        "measured ± SD (n)",
        "z",
    ]
    rows = []
    for f in worst:
        sd = replicate_sd(f.experiment, f.metric)
        cells = [
            str(f.experiment.id),
            str(f.round_no),
            params_text(f.experiment.params),
            html.escape(f.metric),
            f"{f.predicted:.3f} ± {f.sd_model:.3f}",
            f"{f.measured:.3f}"
            + (f" ± {sd:.3f}" if sd is not None else "")
            + f" ({f.experiment.n_valid_replicates})",
            f"{f.z:+.2f}",
        ]
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return (
        f"<h3>Largest surprises (|z|, top {len(worst)})</h3><table><tr>"
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )
