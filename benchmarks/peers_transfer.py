"""Transfer-learning part of the peer benchmark: cellpilot with a prior campaign's data.

Target: ``drug_combo``. Prior campaigns (``--transfer-prior`` experiments, run by cellpilot's
``bayesian`` planner on the prior assay with its own seed and noise):

- ``related``: the same drugs on a shifted biology (each IC50 x exp(N(0, 0.15)), each
  interaction x exp(N(0, 0.1)); ``simulators.assays.assay_variant(..., "related", seed)``);
- ``unrelated``: the same parameters dosing other drugs (``assay_variant(..., "unrelated")``),
  whose best condition lies elsewhere.

The prior observations enter the target campaign's history as ``Observation(task="prior")``;
only the target's own experiments count. Reported: experiments until the best truly feasible
experiment reaches 90 % of the optimum (median over seeds; ``inf``: not within budget) and
the normalised regret at the end, against a cold start with the same seeds and noise.
"""

from __future__ import annotations

import math
import statistics
import time
import traceback

import numpy as np
from peers_adapters import CellpilotSession
from peers_metrics import fmt_iqr, normalised_regret, regret_scale, true_score

from planners.base import Observation
from simulators.assays import assay_variant, get_assay

TARGET = "drug_combo"
FRACTION = 0.9


def _prior_observations(kind: str, seed: int, n: int, batch: int, profile: str) -> list:
    prior_assay = assay_variant(TARGET, kind, seed=seed)
    session = CellpilotSession(prior_assay, "bayesian", 1000 + seed, {"profile": profile})
    rng = np.random.default_rng([seed, 2])
    while len(session.history) < n:
        params = session.ask(min(batch, n - len(session.history)))
        session.tell(params, [prior_assay.sample(p, rng) for p in params])
    return [
        Observation(params=o.params, outcomes=o.outcomes, task="prior") for o in session.history
    ]


def run_transfer(kind: str, seed: int, budget: int, batch: int, profile: str, n_prior: int) -> dict:
    """One target campaign with a ``kind`` prior (``"cold"``: none)."""
    assay = get_assay(TARGET)
    rec: dict = {"kind": kind, "seed": seed, "seconds": []}
    scale = regret_scale(assay)
    target = FRACTION * scale[0]
    try:
        prior = [] if kind == "cold" else _prior_observations(kind, seed, n_prior, batch, profile)
        session = CellpilotSession(assay, "bayesian", seed, {"profile": profile}, prior)
        rng = np.random.default_rng([seed, 1])
        best, reached, trace = -math.inf, math.inf, []
        while len(session.history) < budget:
            t0 = time.perf_counter()
            params = session.ask(min(batch, budget - len(session.history)))
            rec["seconds"].append(time.perf_counter() - t0)
            session.tell(params, [assay.sample(p, rng) for p in params])
            for p in params:
                best = max(best, true_score(assay, p))
                trace.append(normalised_regret(best, scale))
                if best >= target and not math.isfinite(reached):
                    reached = float(len(trace))
        rec.update(to_target=reached, final_regret=trace[-1], trace=trace)
    except Exception as exc:
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=6)
    return rec


def print_transfer(records: list[dict]) -> dict:
    """Print the transfer table; return its JSON summary."""
    print(
        f"\n== transfer on {TARGET}: experiments to reach {FRACTION:.0%} of the optimum "
        f"(median over seeds; inf = not within budget)"
    )
    print(
        f"{'prior':<10}{'to target (median)':>20}{'per seed':>28}{'regret at end':>28}"
        f"{'s/batch':>9}"
    )
    out: dict = {}
    for kind in ("cold", "related", "unrelated"):
        rs = [r for r in records if r["kind"] == kind]
        if not rs:
            continue
        ok = [r for r in rs if "error" not in r]
        reach = [r["to_target"] for r in ok]
        med = statistics.median(reach) if reach else math.nan
        secs = [s for r in ok for s in r["seconds"]]
        sec = statistics.median(secs) if secs else math.nan
        per_seed = ",".join("inf" if math.isinf(x) else str(int(x)) for x in reach)
        row = (
            f"{kind:<10}{med:>20}{per_seed:>28}"
            f"{fmt_iqr([r['final_regret'] for r in ok]):>28}{sec:>9.2f}"
        )
        errors = sorted({r["error"] for r in rs if "error" in r})
        if errors:
            row += f"   FAILED {len(errors)}/{len(rs)}: {'; '.join(errors)[:200]}"
        print(row)
        out[kind] = {
            "to_target_median": med,
            "to_target": reach,
            "seconds_per_batch": sec,
            "failed": len(rs) - len(ok),
            "errors": errors,
        }
    return out
