"""Everything the report reads, loaded from the ledger in one session (nothing else is used).

Also the small shared helpers of the report's sections: number formatting, saving a figure
beside the page, the doses a condition puts in its wells, replicate SDs.
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
from matplotlib.figure import Figure  # noqa: E402
from sqlalchemy import Engine  # noqa: E402
from sqlmodel import Session, col, select  # noqa: E402

from controller.ledger.models import (  # noqa: E402
    Campaign,
    Event,
    Experiment,
    ExperimentStatus,
    Measurement,
    Proposal,
    RawData,
    Round,
    Well,
)
from controller.ledger.queries import analysis_versions, find_campaign  # noqa: E402
from controller.ledger.secrets import mask_url  # noqa: E402
from controller.spec import CampaignSpec  # noqa: E402

QC_EVENTS = (
    "round_analyzed",
    "plate_qc_failed",
    "plate_held",
    "plate_accepted",
    "plate_excluded",
    "plate_rerun",
)


@dataclass
class ReportData:
    """One campaign's rows, as the ledger holds them."""

    campaign: Campaign
    spec: CampaignSpec
    rounds: list[Round]
    experiments: list[Experiment]
    wells: dict[int, list[Well]]  # round id -> wells
    well_measurements: list[
        Measurement
    ]  # per-well rows (well_id set) of each round's analysis version
    proposals: dict[int, Proposal]
    raw: list[RawData]
    events: list[Event]
    db: Engine
    analysis_versions: list[dict[str, Any]] = field(
        default_factory=list
    )  # queries.analysis_versions
    round_by_id: dict[int, Round] = field(init=False)
    well_by_id: dict[int, Well] = field(init=False)

    def __post_init__(self) -> None:
        self.round_by_id = {r.id: r for r in self.rounds if r.id is not None}
        self.well_by_id = {w.id: w for ws in self.wells.values() for w in ws if w.id is not None}

    @property
    def measured(self) -> list[Experiment]:
        """Experiments whose results feed the planner (not held, excluded or quarantined)."""
        return [e for e in self.experiments if e.status == ExperimentStatus.MEASURED.value]

    def well_values(self, metric: str) -> dict[int, float]:
        """well id -> value of ``metric`` (per-well rows)."""
        return {
            m.well_id: m.value
            for m in self.well_measurements
            if m.metric == metric and m.value is not None and m.well_id is not None
        }

    def well_flags(self) -> dict[int, list[str]]:
        """well id -> its QC flags (empty lists left out)."""
        out: dict[int, list[str]] = {}
        for m in self.well_measurements:
            if m.flags and m.well_id is not None:
                out.setdefault(m.well_id, list(m.flags))
        return out

    def round_of(self, e: Experiment) -> Round:
        return self.round_by_id[e.round_id]


def load(db: Engine, ledger_url: str, campaign: str | None) -> ReportData:
    """Read one campaign's rows.

    Raises:
        LookupError: no such campaign (the URL is shown with its password masked).
    """
    with Session(db) as s:
        camp = find_campaign(s, campaign)
        if camp is None:
            shown = mask_url(ledger_url)
            raise LookupError(
                f"no campaign {campaign!r} in {shown}" if campaign else f"no campaign in {shown}"
            )
        rounds = list(
            s.exec(select(Round).where(Round.campaign_id == camp.id).order_by(col(Round.index)))
        )
        ids = [r.id for r in rounds]
        exps = list(
            s.exec(
                select(Experiment)
                .where(Experiment.campaign_id == camp.id)
                .order_by(col(Experiment.id))
            )
        )
        wells: dict[int, list[Well]] = {r.id: [] for r in rounds if r.id is not None}
        for w in s.exec(select(Well).where(col(Well.round_id).in_(ids))):
            wells[w.round_id].append(w)
        version = {r.id: r.analysis_version for r in rounds}  # other versions' rows are not shown
        meas = [
            m
            for m in s.exec(
                select(Measurement).where(
                    Measurement.campaign_id == camp.id, col(Measurement.well_id).is_not(None)
                )
            )
            if m.analysis_version == version.get(m.round_id)
        ]
        props = {p.id: p for p in s.exec(select(Proposal).where(Proposal.campaign_id == camp.id))}
        raw = list(s.exec(select(RawData).where(col(RawData.round_id).in_(ids))))
        events = list(
            s.exec(
                select(Event)
                .where(Event.campaign_id == camp.id, col(Event.kind).in_(QC_EVENTS))
                .order_by(col(Event.id))
            )
        )
        spec = CampaignSpec.model_validate(camp.spec)
        versions = analysis_versions(s, camp)
    # time-course plates: the plate-level sections read the end point (the time-course section
    # reads every time point itself)
    last: dict[int, int] = {}
    for r in raw:
        if r.time_point is not None:
            last[r.round_id] = max(last.get(r.round_id, 0), r.time_point)
    raw = [r for r in raw if r.time_point == last.get(r.round_id)]
    meas = [m for m in meas if m.time_point == last.get(m.round_id)]
    return ReportData(camp, spec, rounds, exps, wells, meas, props, raw, events, db, versions)


# ------------------------------------------------------------------------------ helpers


def fmt(v: Any, digits: int = 4) -> str:
    """A table cell: floats to ``digits`` significant digits, everything escaped."""
    if v is None:
        return ""
    if isinstance(v, float):
        return "" if math.isnan(v) else f"{v:.{digits}g}"
    return html.escape(str(v))


def fmt_ci(ci: tuple[float, float] | None, digits: int = 3) -> str:
    return f"[{ci[0]:.{digits}g}, {ci[1]:.{digits}g}]" if ci else ""


def params_text(params: dict[str, Any]) -> str:
    return ", ".join(f"{html.escape(str(k))}={fmt(v)}" for k, v in params.items())


def save(fig: Figure, out: Path, name: str, dpi: int = 110) -> str:
    """Save ``fig`` beside the page; returns the ``<img>`` tag."""
    fig.tight_layout()
    fig.savefig(out / name, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    return f'<img src="{html.escape(name)}" alt="{html.escape(name)}">'


def replicate_sd(e: Experiment, metric: str) -> float | None:
    """SD over the experiment's kept replicate wells (None with one replicate)."""
    sd = (e.outcome_details or {}).get("sd") or {}
    v = sd.get(metric)
    return float(v) if isinstance(v, (int, float)) and math.isfinite(v) else None


def mean_sd(e: Experiment, metric: str) -> str:
    """``mean ± SD (n)`` of one metric; SD left out with one replicate."""
    v = e.outcomes.get(metric)
    if v is None:
        return ""
    sd = replicate_sd(e, metric)
    return f"{v:.3f}" + (f" ± {sd:.3f}" if sd is not None else "") + f" (n={e.n_valid_replicates})"


def dose_mappings(spec: CampaignSpec) -> list[Any]:
    """The protocol's parameter → reagent mappings ([] for protocols without ``doses``)."""
    from protocols.dose_response_settings import DoseMapping

    raw = spec.protocol.settings.get("doses") or []
    try:
        return [DoseMapping.model_validate(d) for d in raw]
    except ValueError:
        return []


def doses_um(mappings: list[Any], params: dict[str, Any]) -> dict[str, float]:
    """reagent -> final concentration (µM) that ``params`` put in the wells."""
    out: dict[str, float] = {}
    for d in mappings:
        reagent = d.reagent if d.reagent is not None else params.get(d.reagent_from)
        value = params.get(d.parameter)
        if reagent is None or not isinstance(value, (int, float)):
            continue
        out[str(reagent)] = out.get(str(reagent), 0.0) + float(value)
    return out


def lines_of(exps: list[Experiment]) -> list[str]:
    """Cell lines with a viability metric (``tumour`` for ``tumour_viability``)."""
    names = sorted(
        {m[: -len("_viability")] for e in exps for m in e.outcomes if m.endswith("_viability")}
    )
    return names


def kept_wells(e: Experiment) -> list[str]:
    """The replicate wells an experiment's score used (its wells less its outliers)."""
    d = e.outcome_details or {}
    out = {o.get("well") for o in d.get("outliers") or [] if isinstance(o, dict)}
    return [w for w in d.get("wells") or [] if w not in out]


@dataclass(frozen=True)
class SingleAgentWell:
    """One measured single-agent well (a drug alone, beside its plate's combinations)."""

    round_id: int
    well: str
    reagent: str
    dose_um: float
    values: dict[str, float]  # metric -> value


def single_agent_wells(data: ReportData) -> list[SingleAgentWell]:
    """Single-agent wells without QC flags, on plates whose results feed the planner (doses
    from each round's stored layout)."""
    feeding = {e.round_id for e in data.measured}
    flagged = data.well_flags()
    values: dict[int, dict[str, float]] = {}
    for m in data.well_measurements:
        if m.well_id is not None and m.value is not None:
            values.setdefault(m.well_id, {})[m.metric] = m.value
    out = []
    for r in data.rounds:
        if r.id not in feeding:
            continue
        doses = {
            w.get("well"): w.get("doses_um") or {}
            for w in (r.layout or {}).get("wells", [])
            if w.get("role") == "single_agent"
        }
        for w in data.wells.get(r.id, []):
            d = doses.get(w.well) or {}
            if w.role != "single_agent" or len(d) != 1 or w.id in flagged or w.id not in values:
                continue
            ((reagent, dose),) = d.items()
            out.append(SingleAgentWell(r.id, w.well, str(reagent), float(dose), values[w.id]))
    return out
