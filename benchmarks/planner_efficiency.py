"""Sample efficiency and latency of the planners on the simulated assays, measured in one run.

For each assay and planner, several seeded campaigns run in rounds of ``--batch`` experiments
up to ``--budget``; each experiment is measured with the assay's noisy ``sample``. Printed:

- the median (over seeds) best *true* objective among experiments run so far whose true
  metrics meet the outcome constraints (noise-free ``expected``), per number of experiments;
- the median number of experiments to reach 90 % of the assay's optimum, and its ratio to
  the bayesian planner's;
- the median seconds per proposal call;
- the latency of one bayesian batch of ``--batch`` at ``--latency-obs`` observations.

Quick run:  OMP_NUM_THREADS=1 python benchmarks/planner_efficiency.py --seeds 2 --budget 24
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import math  # noqa: E402
import statistics  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planners.base import Observation, get_planner  # noqa: E402
from simulators.assays import ASSAYS, Assay  # noqa: E402


def _true_score(assay: Assay, params: dict) -> float:
    """Noise-free first objective (maximisation sign) if truly feasible, else -inf."""
    truth = assay.expected(params)
    if not all(c.satisfied(truth[c.metric]) for c in assay.outcome_constraints):
        return -math.inf
    obj = assay.objectives[0]
    return obj.sign * truth[obj.metric]


def run_campaign(
    assay: Assay, planner_name: str, seed: int, budget: int, batch: int, settings: dict
) -> tuple[list[float], list[tuple[float, float]]]:
    """One campaign: best true value after each experiment, and (wall, CPU) s per proposal."""
    planner = get_planner(planner_name, **settings)
    rng = np.random.default_rng(seed)  # same measurement noise stream for every planner
    history: list[Observation] = []
    best, trace, seconds = -math.inf, [], []
    while len(history) < budget:
        n = min(batch, budget - len(history))
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
            best = max(best, _true_score(assay, p.params))
            trace.append(best)
    return trace, seconds


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


def benchmark_assay(assay: Assay, args: argparse.Namespace) -> None:
    _, opt = assay.optimum()
    opt_score = assay.objectives[0].sign * opt
    target = 0.9 * opt_score if opt_score > 0 else opt_score - 0.1 * abs(opt_score)
    print(f"\n== {assay.name}: parameters {assay.space.names}; optimum {opt_score:.4f}")
    traces: dict[str, list[list[float]]] = {}
    secs: dict[str, list[tuple[float, float]]] = {}
    for name in args.planners:
        settings = {"profile": args.profile} if name == "bayesian" else {}
        traces[name], secs[name] = [], []
        for seed in range(args.seeds):
            trace, seconds = run_campaign(assay, name, seed, args.budget, args.batch, settings)
            traces[name].append(trace)
            secs[name] += seconds
    header = "experiments " + "".join(f"{n:>12}" for n in args.planners)
    print(f"median best true {assay.objectives[0].metric} (feasible experiments only)")
    print(header)
    for k in range(args.batch, args.budget + 1, args.batch):
        row = [_median([t[k - 1] for t in traces[n]]) for n in args.planners]
        print(f"{k:>11} " + "".join(f"{v:>12.4f}" for v in row))
    reach = {n: statistics.median([_to_reach(t, target) for t in traces[n]]) for n in args.planners}
    print(f"experiments to reach {target:.4f} (median; inf = not within budget)")
    base = reach.get("bayesian", math.nan)
    for n in args.planners:
        ratio = reach[n] / base if math.isfinite(base) else math.nan
        print(f"  {n:>10}: {reach[n]:>6.1f}   ratio to bayesian {ratio:.2f}")
    print("seconds per proposal call: median wall (CPU), max wall (CPU)")
    for n in args.planners:
        wall, cpu = [w for w, _ in secs[n]], [c for _, c in secs[n]]
        print(
            f"  {n:>10}: {statistics.median(wall):.4f} ({statistics.median(cpu):.4f}), "
            f"max {max(wall):.4f} ({max(cpu):.4f})"
        )


def latency(
    assay: Assay, n_obs: int, batch: int, profile: str, constrained: bool, repeats: int = 3
) -> list[tuple[float, float]]:
    """(wall, CPU) seconds for one bayesian batch at ``n_obs`` Sobol-design observations."""
    rng = np.random.default_rng(0)
    design = get_planner("sobol").propose(assay.space, assay.objectives, [], [], n_obs, seed=0)
    history = [Observation(params=p.params, outcomes=assay.sample(p.params, rng)) for p in design]
    planner = get_planner("bayesian", profile=profile)
    out = []
    for r in range(repeats):
        t0, c0 = time.perf_counter(), time.process_time()
        planner.propose(
            assay.space,
            assay.objectives,
            history,
            [],
            batch,
            seed=r,
            outcome_constraints=assay.outcome_constraints if constrained else (),
        )
        out.append((time.perf_counter() - t0, time.process_time() - c0))
    return out


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--assays", nargs="+", default=sorted(ASSAYS), choices=sorted(ASSAYS))
    ap.add_argument("--planners", nargs="+", default=["bayesian", "sobol", "random"])
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=48, help="experiments per campaign")
    ap.add_argument("--batch", type=int, default=8, help="experiments per round")
    ap.add_argument("--profile", default="fast", help="bayesian planner profile")
    ap.add_argument("--latency-obs", type=int, default=60, help="0 skips the latency check")
    args = ap.parse_args(argv)
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; seeds={args.seeds}, "
        f"budget={args.budget}, batch={args.batch}, profile={args.profile}"
    )
    for name in args.assays:
        benchmark_assay(ASSAYS[name], args)
    if args.latency_obs:
        print(
            f"\n== latency: one bayesian batch of {args.batch} at {args.latency_obs} observations"
        )
        for name in args.assays:
            kinds = sorted({p.type for p in ASSAYS[name].space.parameters})
            for constrained in (True, False):
                s = latency(ASSAYS[name], args.latency_obs, args.batch, args.profile, constrained)
                times = ", ".join(f"{w:.2f} ({c:.2f})" for w, c in s)
                what = "with" if constrained else "without"
                print(
                    f"  {name:>20} ({', '.join(kinds)}; {what} outcome constraints): "
                    f"{times} s wall (CPU)"
                )


if __name__ == "__main__":
    main()
