"""Per-plate QC: Z' per line, vehicle CVs, flagged wells, solvent share, the QC gate's verdicts.

Z' is the analyzer's, as recorded on the round. Vehicle CVs are recomputed from the
per-well counts of the vehicle wells that carry no flag (the wells the analyzer's reference
used). Flagged wells are those whose measurements carry QC flags (controls left out, field
QC) and the replicate outliers recorded on each experiment. Held, excluded and re-run
plates come from the experiments' QC notes and the plate events.
"""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

import matplotlib.pyplot as plt
import numpy as np

from controller.ledger.models import ExperimentStatus, Round
from controller.report.data import ReportData, save

LINES = ("tumour_count", "normal_count")
DECISION_EVENTS = {
    "plate_held": "held for an operator",
    "plate_accepted": "accepted by an operator",
    "plate_excluded": "excluded",
    "plate_rerun": "re-run",
}


def vehicle_stats(data: ReportData, rnd: Round) -> dict[str, tuple[float, int]]:
    """count metric -> (CV, number) of the plate's unflagged vehicle wells."""
    flags = data.well_flags()
    ids = [
        w.id
        for w in data.wells.get(rnd.id, [])
        if w.role == "negative_control" and w.id not in flags
    ]
    out = {}
    for m in LINES:
        vals = data.well_values(m)
        x = np.array([vals[i] for i in ids if i in vals])
        if x.size >= 2 and x.mean() > 0:
            out[m] = (float(x.std(ddof=1) / x.mean()), int(x.size))
    return out


def vehicle_cv(data: ReportData, rnd: Round) -> dict[str, float]:
    """count metric -> CV of the plate's unflagged vehicle wells."""
    return {m: cv for m, (cv, _) in vehicle_stats(data, rnd).items()}


def flagged_wells(data: ReportData, rnd: Round) -> list[dict[str, Any]]:
    """Every flagged well of a plate: well, role, experiment, why."""
    flags = data.well_flags()
    out: dict[str, dict[str, Any]] = {}
    for w in data.wells.get(rnd.id, []):
        if w.id in flags:
            out[w.well] = {
                "well": w.well,
                "role": w.role,
                "experiment": w.experiment_id,
                "why": "; ".join(flags[w.id]),
            }
        if w.status == "quarantined":
            out[w.well] = {
                "well": w.well,
                "role": w.role,
                "experiment": w.experiment_id,
                "why": f"quarantined: {w.quarantine_reason or ''}",
            }
    for e in data.experiments:
        if e.round_id != rnd.id:
            continue
        for o in (e.outcome_details or {}).get("outliers") or []:
            well = o.get("well") if isinstance(o, dict) else None
            if well:
                why = o.get("reason") or "replicate outlier"
                prev = out.get(well, {}).get("why")
                out[well] = {
                    "well": well,
                    "role": "sample",
                    "experiment": e.id,
                    "why": why if not prev or prev == why else f"{prev}; {why}",
                }
    return [out[k] for k in sorted(out)]


def plate_verdict(data: ReportData, rnd: Round) -> tuple[list[str], str]:
    """(QC failures, what happened to the plate)."""
    failures: list[str] = []
    decided = []
    for ev in data.events:
        p = ev.payload or {}
        if p.get("round") != rnd.index + 1 and p.get("plate") != rnd.plate_id:
            continue
        if ev.kind == "plate_qc_failed":
            failures = list(p.get("failures") or ([p["reason"]] if p.get("reason") else []))
            if p.get("action") in ("exclude", "requeue"):
                decided.append(
                    {"exclude": "excluded", "requeue": "re-queued"}[p["action"]]
                    + " (campaign rule)"
                )
        elif ev.kind in DECISION_EVENTS:
            who = f" ({ev.actor})" if ev.kind != "plate_held" else ""
            decided.append(DECISION_EVENTS[ev.kind] + who)
    exps = [e for e in data.experiments if e.round_id == rnd.id]
    if not failures:
        for e in exps:
            failures = list(((e.outcome_details or {}).get("qc") or {}).get("failures") or failures)
    statuses = [e.status for e in exps]
    if rnd.status == "held":
        verdict = "HELD: waiting for an operator"
    elif ExperimentStatus.EXCLUDED.value in statuses:
        verdict = "EXCLUDED from planning"
    elif rnd.status == "failed":
        verdict = "FAILED: not analysable"
    else:
        verdict = rnd.status
    if decided:
        verdict += " — " + ", then ".join(decided)
    return failures, verdict


def qc_section(data: ReportData, out: Path) -> list[str]:
    """Z' per line (figure) and the per-plate QC table, then every flagged well."""
    rounds = data.rounds
    parts = ["<h2>Plate QC</h2>"]
    metrics = [m for m in LINES if any(m in (r.z_prime or {}) for r in rounds)] or list(LINES)
    fig, ax = plt.subplots(figsize=(7, 2.8))
    width = 0.8 / max(len(metrics), 1)
    for i, m in enumerate(metrics):
        zs = [(r.z_prime or {}).get(m) for r in rounds]
        ax.bar(
            [r.index + 1 + (i - (len(metrics) - 1) / 2) * width for r in rounds],
            [z if z is not None else 0 for z in zs],
            width=width,
            label=f"Z' {m.replace('_count', '')}",
            color=f"C{i}",
            edgecolor=["k" if (z or 0) < 0.5 else "none" for z in zs],
        )
    ax.axhline(0.5, color="k", lw=0.8, ls="--")
    ax.set_xlabel("plate (round)")
    ax.set_ylabel("Z'")
    ax.legend(fontsize=7)
    parts.append(save(fig, out, "z_prime.png"))
    head = [
        "round",
        "plate",
        "verdict",
        *[f"Z' {m.replace('_count', '')}" for m in metrics],
        *[f"vehicle CV {m.replace('_count', '')}" for m in LINES],
        "flagged control wells",
        "sample wells flagged / left out",
        "solvent (every dosed well)",
        "QC failures",
    ]
    rows = []
    all_flagged = []
    for r in rounds:
        zp = r.z_prime or {}
        cv = vehicle_cv(data, r)
        fl = flagged_wells(data, r)
        all_flagged += [(r, f) for f in fl]
        samples = [w for w in data.wells.get(r.id, []) if w.role == "sample"]
        ctrl = [f["well"] for f in fl if f["role"] not in ("sample", "single_agent")]
        n_flag = sum(f["role"] == "sample" for f in fl)
        n_out = sum(
            len((e.outcome_details or {}).get("outliers") or [])
            for e in data.experiments
            if e.round_id == r.id
        )
        lay = r.layout or {}
        solvent = (
            f"{lay.get('solvent_percent', 0):.3g} % v/v {lay['solvent']}"
            if lay.get("solvent")
            else "none"
        )
        failures, verdict = plate_verdict(data, r)
        cells = [
            str(r.index + 1),
            html.escape(r.plate_id),
            html.escape(verdict),
            *[_z(zp.get(m)) for m in metrics],
            *[f"{cv[m]:.1%}" if m in cv else "" for m in LINES],
            html.escape(", ".join(ctrl)) or "none",
            f"{n_flag} / {n_out} of {len(samples)}" if samples else "",
            html.escape(solvent),
            html.escape("; ".join(failures)) or "none",
        ]
        cls = ' class="bad"' if failures else ""
        rows.append(f"<tr{cls}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    parts.append(
        '<table class="qc"><tr>'
        + "".join(f"<th>{h}</th>" for h in head)
        + "</tr>"
        + "".join(rows)
        + "</table>"
    )
    parts.append(
        "<p>Z' from the kept positive and vehicle controls (≥ 0.5: an excellent assay window); "
        "vehicle CV over the vehicle wells not flagged. A plate that fails QC does not feed the "
        "planner: it is held for an operator, excluded or re-queued as the campaign's "
        "<code>qc.on_fail</code> says.</p>"
    )
    if all_flagged:
        body = "".join(
            f"<tr><td>{html.escape(r.plate_id)}</td><td>{html.escape(f['well'])}</td>"
            f"<td>{html.escape(f['role'].replace('_', ' '))}</td><td>{f['experiment'] or ''}</td>"
            f"<td>{html.escape(f['why'])}</td></tr>"
            for r, f in all_flagged
        )
        parts.append(
            f"<details><summary>{len(all_flagged)} flagged wells</summary><table class='flagged'>"
            "<tr><th>plate</th><th>well</th><th>role</th><th>experiment</th><th>why</th></tr>"
            f"{body}</table></details>"
        )
    return parts


def _z(v: float | None) -> str:
    if v is None:
        return "undefined"
    return f"<b>{v:.2f}</b>" if v < 0.5 else f"{v:.2f}"
