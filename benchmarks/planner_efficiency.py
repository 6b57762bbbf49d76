"""Sample efficiency and latency of cellpilot's planners on the simulated assays, in one run.

For each assay and planner, several seeded campaigns run in rounds of ``--batch`` experiments
up to ``--budget``; each experiment is measured with the assay's noisy ``sample``. Printed:

- the median (over seeds) best *true* objective among experiments run so far whose true
  metrics meet the outcome constraints (noise-free ``expected``), per number of experiments;
  for a two-objective assay, the median fraction of the true front's hypervolume instead;
- the median number of experiments to reach 90 % of the assay's optimum, and its ratio to
  the first planner's (one objective);
- for ``bayesian`` planners, the true value of ``recommend()`` at the end (feasible or not);
- the median seconds per proposal call.

Planners are given as ``name[:profile][+setting=value...]``, e.g. ``bayesian:thorough`` or
``bayesian+mc_samples=64+num_restarts=4``: the ``fast`` profile against ``thorough`` in the
same run shows what the speed tuning costs in sample efficiency.

``--transfer`` adds the transfer section: ``drug_combo`` campaigns with a related prior
campaign (the same drugs on a shifted biology) and with an unrelated one (other drugs), each
``--transfer-prior`` Sobol experiments, against a cold start (experiments to 90 %).

``--latency-obs`` adds one bayesian batch of ``--batch`` at that many observations, per
case: each assay with and without outcome constraints, three 10-level categoricals plus two
continuous parameters, two objectives, and transfer with 40 prior observations.

Quick run:  OMP_NUM_THREADS=1 python benchmarks/planner_efficiency.py --seeds 2 --budget 24
Latency only:  OMP_NUM_THREADS=1 python benchmarks/planner_efficiency.py --seeds 0 --latency-obs 60
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planners.base import Observation, Planner, get_planner  # noqa: E402
from planners.space import (  # noqa: E402
    CategoricalParameter,
    ContinuousParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)
from simulators import assays as assays_module  # noqa: E402
from simulators.assays import ASSAYS, Assay  # noqa: E402

MultiObjectiveAssay = getattr(assays_module, "MultiObjectiveAssay", None)


def make_planner(spec: str) -> Planner:
    """``name[:profile][+key=value...]`` -> a planner (values parsed as int, float or str)."""
    head, *pairs = spec.split("+")
    name, _, profile = head.partition(":")
    settings: dict[str, Any] = {"profile": profile} if profile else {}
    for pair in pairs:
        key, _, raw = pair.partition("=")
        value: Any = raw
        for cast in (int, float):
            try:
                value = cast(raw)
                break
            except ValueError:
                continue
        settings[key] = value
    return get_planner(name, **settings)


def _true_score(assay: Assay, params: Params) -> float:
    """Noise-free first objective (maximisation sign) if truly feasible, else -inf."""
    truth = assay.expected(params)
    if not all(c.satisfied(truth[c.metric]) for c in assay.outcome_constraints):
        return -math.inf
    obj = assay.objectives[0]
    return obj.sign * truth[obj.metric]


def _is_mo(assay: Assay) -> bool:
    return MultiObjectiveAssay is not None and isinstance(assay, MultiObjectiveAssay)


def run_campaign(
    assay: Assay,
    spec: str,
    seed: int,
    budget: int,
    batch: int,
    prior: list[Observation] | None = None,
) -> tuple[list[float], list[tuple[float, float]], float]:
    """One campaign: quality after each experiment (best true value, or hypervolume fraction
    for two objectives), (wall, CPU) s per proposal, and the true value of the planner's
    recommendation at the end (nan when the planner cannot recommend)."""
    planner = make_planner(spec)
    rng = np.random.default_rng(seed)  # same measurement noise stream for every planner
    history: list[Observation] = list(prior or [])
    best, trace, seconds, truths = -math.inf, [], [], []
    ref_hv = assay.reference_hypervolume() if _is_mo(assay) else 1.0
    while sum(o.task is None for o in history) < budget:
        n = min(batch, budget - sum(o.task is None for o in history))
        t0, c0 = time.perf_counter(), time.process_time()
        proposals = planner.propose(
            assay.space,
            assay.objectives,
            history,
            [],
            n,
            seed=seed,
            outcome_constraints=assay.outcome_constraints,
        )
        seconds.append((time.perf_counter() - t0, time.process_time() - c0))
        for p in proposals:
            history.append(Observation(params=p.params, outcomes=assay.sample(p.params, rng)))
            if _is_mo(assay):
                truths.append(assay.expected(p.params))
                trace.append(assay.hypervolume(truths) / ref_hv)
            else:
                best = max(best, _true_score(assay, p.params))
                trace.append(best)
    recommended = math.nan
    if hasattr(planner, "recommend") and not _is_mo(assay):
        rec = planner.recommend(
            assay.space, assay.objectives, history, outcome_constraints=assay.outcome_constraints
        )
        recommended = _true_score(assay, rec.params)
    return trace, seconds, recommended


def _median(values: list[float]) -> float:
    finite = [v for v in values if math.isfinite(v)]
    if len(finite) * 2 <= len(values):  # most runs found nothing feasible
        return -math.inf
    return statistics.median(values)


def _to_reach(trace: list[float], target: float) -> float:
    for i, v in enumerate(trace):
        if v >= target:
            return float(i + 1)
    return math.inf


def _target(assay: Assay) -> float:
    _, opt = assay.optimum()
    opt_score = assay.objectives[0].sign * opt
    return 0.9 * opt_score if opt_score > 0 else opt_score - 0.1 * abs(opt_score)


def benchmark_assay(assay: Assay, args: argparse.Namespace) -> None:
    mo = _is_mo(assay)
    _, opt = assay.optimum()
    print(
        f"\n== {assay.name}: parameters {assay.space.names}; optimum "
        f"{assay.objectives[0].sign * opt:.4f}" + (" (two objectives)" if mo else "")
    )
    traces: dict[str, list[list[float]]] = {}
    secs: dict[str, list[tuple[float, float]]] = {}
    recs: dict[str, list[float]] = {}
    for spec in args.planners:
        traces[spec], secs[spec], recs[spec] = [], [], []
        for seed in range(args.seeds):
            trace, seconds, rec = run_campaign(assay, spec, seed, args.budget, args.batch)
            traces[spec].append(trace)
            secs[spec] += seconds
            recs[spec].append(rec)
    what = (
        "hypervolume fraction of the true front"
        if mo
        else (f"best true {assay.objectives[0].metric} (feasible experiments only)")
    )
    print(f"median {what}")
    print("experiments " + "".join(f"{n[:22]:>24}" for n in args.planners))
    for k in range(args.batch, args.budget + 1, args.batch):
        row = [_median([t[k - 1] for t in traces[n]]) for n in args.planners]
        print(f"{k:>11} " + "".join(f"{v:>24.4f}" for v in row))
    first = args.planners[0]
    if not mo:
        target = _target(assay)
        reach = {
            n: statistics.median([_to_reach(t, target) for t in traces[n]]) for n in args.planners
        }
        print(f"experiments to reach {target:.4f} (median; inf = not within budget)")
        for n in args.planners:
            ratio = reach[n] / reach[first] if math.isfinite(reach[first]) else math.nan
            print(f"  {n:>24}: {reach[n]:>6.1f}   ratio to {first} {ratio:.2f}")
        print("true value of the recommendation at the end (median; -inf: infeasible)")
        for n in args.planners:
            if not all(math.isnan(v) for v in recs[n]):
                print(f"  {n:>24}: {_median(recs[n]):.4f}")
    print("seconds per proposal call: median wall (CPU), max wall (CPU)")
    for n in args.planners:
        wall, cpu = [w for w, _ in secs[n]], [c for _, c in secs[n]]
        print(
            f"  {n:>24}: {statistics.median(wall):.4f} ({statistics.median(cpu):.4f}), "
            f"max {max(wall):.4f} ({max(cpu):.4f})"
        )


# ----------------------------------------------------------------------------- transfer


def _sobol_prior(assay: Assay, n: int, seed: int) -> list[Observation]:
    rng = np.random.default_rng([seed, 2])
    pts = get_planner("sobol").propose(assay.space, assay.objectives, [], [], n, seed=100 + seed)
    return [
        Observation(params=p.params, outcomes=assay.sample(p.params, rng), task="prior")
        for p in pts
    ]


def benchmark_transfer(args: argparse.Namespace) -> None:
    variant = getattr(assays_module, "assay_variant", None)
    if variant is None:
        print("\n== transfer: simulators.assays has no assay_variant; skipped")
        return
    target_assay = ASSAYS["drug_combo"]
    target = _target(target_assay)
    spec = args.planners[0]
    print(
        f"\n== transfer on drug_combo ({spec}): experiments to reach {target:.4f}, "
        f"prior campaigns of {args.transfer_prior} Sobol experiments"
    )
    rows: dict[str, list[float]] = {}
    finals: dict[str, list[float]] = {}
    for kind in ("cold", "related", "unrelated"):
        rows[kind], finals[kind] = [], []
        for seed in range(args.seeds):
            prior = (
                []
                if kind == "cold"
                else _sobol_prior(variant("drug_combo", kind, seed=seed), args.transfer_prior, seed)
            )
            trace, _, _ = run_campaign(target_assay, spec, seed, args.budget, args.batch, prior)
            rows[kind].append(_to_reach(trace, target))
            finals[kind].append(trace[-1])
    base = statistics.median(rows["cold"])
    for kind in rows:
        med = statistics.median(rows[kind])
        ratio = med / base if math.isfinite(base) and base > 0 else math.nan
        print(
            f"  {kind:>10}: {med:>6.1f} experiments (ratio to cold {ratio:.2f}); "
            f"best true at {args.budget}: {_median(finals[kind]):.4f}"
        )


# ------------------------------------------------------------------------------ latency

_BIG_CAT = SearchSpace(
    parameters=[
        *[
            CategoricalParameter(name=f"factor_{i}", levels=[f"L{k}" for k in range(10)])
            for i in range(3)
        ],
        ContinuousParameter(name="x", low=0, high=1),
        ContinuousParameter(name="z", low=0, high=1),
    ]
)


def _big_cat(p: Params, rng: np.random.Generator) -> dict[str, float]:
    x, z = float(p["x"]), float(p["z"])
    lev = [int(str(p[f"factor_{i}"])[1:]) for i in range(3)]
    y = -((x - 0.3) ** 2) - (z - 0.6) ** 2 + 0.1 * lev[0] / 9 - 0.05 * (lev[1] % 3)
    return {"y": y + 0.02 * rng.normal(), "v": 1 - x + 0.05 * rng.normal()}


LatencyCase = tuple[str, SearchSpace, list, list, Callable, Callable | None]


def latency_cases(names: list[str]) -> list[LatencyCase]:
    cases: list[LatencyCase] = []
    for name in names:
        a = ASSAYS[name]
        cons = a.outcome_constraints or [OutcomeConstraint.model_validate("cell_count >= 10")]
        cases.append((name, a.space, a.objectives, cons, a.sample, None))
    cases.append(
        (
            "3 categoricals x 10 levels + 2 continuous",
            _BIG_CAT,
            [Objective(metric="y")],
            [OutcomeConstraint.model_validate("v >= 0.5")],
            _big_cat,
            None,
        )
    )
    variant = getattr(assays_module, "assay_variant", None)
    if variant is not None:
        a, rel = ASSAYS["drug_combo"], variant("drug_combo", "related", seed=1)
        cases.append(
            (
                "drug_combo + 40 related prior",
                a.space,
                a.objectives,
                a.outcome_constraints,
                a.sample,
                rel.sample,
            )
        )
    return cases


def latency(
    case: LatencyCase, n_obs: int, batch: int, spec: str, constrained: bool, repeats: int = 3
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds for one batch at ``n_obs`` Sobol-design observations; each repeat
    uses another seed and starts without cached model fits."""
    from planners import models

    _, space, objectives, cons, sample, prior_sample = case
    rng = np.random.default_rng(0)
    design = get_planner("sobol").propose(space, objectives, [], [], n_obs, seed=0)
    history = [Observation(params=p.params, outcomes=sample(p.params, rng)) for p in design]
    if prior_sample is not None:
        prior = get_planner("sobol").propose(space, objectives, [], [], 40, seed=5)
        history = [
            Observation(params=p.params, outcomes=prior_sample(p.params, rng), task="prior")
            for p in prior
        ] + history
    planner = make_planner(spec)
    out = []
    for r in range(repeats):
        models._FIT_CACHE.clear()
        t0, c0 = time.perf_counter(), time.process_time()
        planner.propose(
            space,
            objectives,
            history,
            [],
            batch,
            seed=r,
            outcome_constraints=cons if constrained else (),
        )
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--assays", nargs="*", default=sorted(ASSAYS), choices=sorted(ASSAYS))
    ap.add_argument(
        "--planners", nargs="+", default=["bayesian", "bayesian:thorough", "sobol", "random"]
    )
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=48, help="experiments per campaign")
    ap.add_argument("--batch", type=int, default=8, help="experiments per round")
    ap.add_argument(
        "--profile",
        default=None,
        help="profile for a plain 'bayesian' planner spec (default: fast)",
    )
    ap.add_argument(
        "--latency-obs",
        type=int,
        nargs="*",
        default=[60, 100],
        help="observation counts for the latency check; 0 or none skips it",
    )
    ap.add_argument("--transfer", action="store_true", help="run the transfer section")
    ap.add_argument("--transfer-prior", type=int, default=24)
    args = ap.parse_args(argv)
    if args.profile:
        args.planners = [
            f"bayesian:{args.profile}" if p == "bayesian" else p for p in args.planners
        ]
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; seeds={args.seeds}, "
        f"budget={args.budget}, batch={args.batch}, planners={args.planners}"
    )
    for name in args.assays if args.seeds > 0 else ():  # --seeds 0: the latency check only
        benchmark_assay(ASSAYS[name], args)
    if args.transfer:
        benchmark_transfer(args)
    spec = next((p for p in args.planners if p.startswith("bayesian")), "bayesian")
    for n_obs in [n for n in (args.latency_obs or []) if n > 0]:
        print(
            f"\n== latency: one {spec} batch of {args.batch} at {n_obs} observations, "
            "wall (CPU) s, fresh model fits"
        )
        for case in latency_cases(args.assays):
            for constrained in (True, False):
                s = latency(case, n_obs, args.batch, spec, constrained)
                times = ", ".join(f"{w:.2f} ({c:.2f})" for w, c in s)
                what = "with" if constrained else "without"
                print(f"  {case[0]:>42} ({what} outcome constraints): {times}")


if __name__ == "__main__":
    main()
