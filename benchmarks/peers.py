"""cellpilot against the general-purpose optimisers a lab would otherwise use (Ax, BayBE, Optuna).

All in one run, on the project's simulated assays, batch ``--batch`` up to ``--budget``
experiments, ``--seeds`` seeded campaigns per planner; each experiment is measured with the
assay's noisy ``sample`` (the same noise stream for every planner of a seed). Printed per
assay (medians over seeds, [25 %, 75 %] in brackets):

- normalised simple regret after each checkpoint (0 = optimum, 1 = median random condition;
  true values of the best truly feasible experiment so far; see ``peers_metrics``);
- for a two-objective assay the hypervolume of the true metrics of the experiments so far
  over that of the true Pareto front (1 = the front) instead;
- the regret of each planner's recommended condition at the end (how: ``RECOMMENDATION``);
- median seconds per batch (all batches; and model-based batches, i.e. after the first);
- with ``--transfer``: cellpilot on drug_combo with a related prior campaign (same drugs on
  a shifted biology) and an unrelated one (other drugs), experiments to reach 90 % of the
  optimum against a cold start.

Peers need the optional extra: ``pip install -e '.[peers]' -c requirements/constraints.txt
-c requirements/peers-constraints.txt``. Without it, ``--planners bayesian sobol random``.

Full run:   OMP_NUM_THREADS=1 python benchmarks/peers.py --workers 2 --transfer --json peers.json
Quick run:  OMP_NUM_THREADS=1 python benchmarks/peers.py --seeds 1 --budget 16 \
                --planners bayesian sobol --assays drug_combo
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

from peers_adapters import (  # noqa: E402
    CONSTRAINT_HANDLING,
    PEERS,
    RECOMMENDATION,
    make_session,
)
from peers_metrics import (  # noqa: E402
    hv_fraction,
    normalised_regret,
    regret_scale,
    summarise,
    true_score,
)
from peers_transfer import print_transfer, run_transfer  # noqa: E402

from simulators.assays import ASSAYS, MultiObjectiveAssay  # noqa: E402

DEFAULT_ASSAYS = ["drug_combo", "drug_combo_partner", "drug_trio", "drug_combo_mo"]
DEFAULT_PLANNERS = ["bayesian", "sobol", "random", *PEERS]
#: rough cost order, so the slow campaigns start first in the pool
_COST = {"ax": 0, "baybe": 1, "bayesian": 2, "optuna": 3, "sobol": 4, "random": 5}


def checkpoints(budget: int, batch: int) -> list[int]:
    """Experiments after which regret is reported: 16, 32, 56 for budget 56 (multiples of
    ``batch`` at about 2/7, 4/7 and all of the budget)."""
    pts = sorted(
        {min(budget, max(batch, round(budget * f / batch) * batch)) for f in (2 / 7, 4 / 7)}
    )
    return [p for p in pts if p < budget] + [budget]


def run_campaign(
    assay_name: str, planner: str, seed: int, budget: int, batch: int, profile: str
) -> dict:
    """One campaign; returns a JSON-ready record (``error`` set if the planner failed)."""
    assay = ASSAYS[assay_name]
    cps = checkpoints(budget, batch)
    rec: dict = {"assay": assay_name, "planner": planner, "seed": seed, "seconds": []}
    rng = np.random.default_rng([seed, 1])  # the same noise stream for every planner
    measured: list[dict] = []
    try:
        session = make_session(assay, planner, seed, profile=profile)
        while len(measured) < budget:
            n = min(batch, budget - len(measured))
            t0 = time.perf_counter()
            params = session.ask(n)
            rec["seconds"].append(time.perf_counter() - t0)
            outcomes = [assay.sample(p, rng) for p in params]
            session.tell(params, outcomes)
            measured += params
        _score_campaign(assay, measured, cps, rec)
        t0 = time.perf_counter()
        best = session.recommend()
        rec["recommend_seconds"] = time.perf_counter() - t0
        if best is not None:
            truth = assay.expected(best)
            rec["recommended"] = best
            rec["rec_feasible"] = assay.feasible(truth)
            rec["rec_regret"] = normalised_regret(true_score(assay, best), regret_scale(assay))
    except Exception as exc:  # a planner that fails is reported, never fatal to the run
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=6)
        if measured:
            _score_campaign(assay, measured, [c for c in cps if c <= len(measured)], rec)
    return rec


def _score_campaign(assay, measured: list[dict], cps: list[int], rec: dict) -> None:
    if isinstance(assay, MultiObjectiveAssay):
        rec["hv"] = {str(k): hv_fraction(assay, measured[:k]) for k in cps}
        return
    scale = regret_scale(assay)
    best, trace = -math.inf, []
    for p in measured:
        best = max(best, true_score(assay, p))
        trace.append(normalised_regret(best, scale))
    rec["regret"] = {str(k): trace[k - 1] for k in cps}
    rec["trace"] = trace


def _print_assay(name: str, summary: dict, cps: list[int], planners: list[str]) -> None:
    assay = ASSAYS[name]
    mo = isinstance(assay, MultiObjectiveAssay)
    kinds = ", ".join(f"{p.name}:{p.type}" for p in assay.space.parameters)
    cons = ", ".join(str(c) for c in assay.outcome_constraints) or "none"
    objs = ", ".join(f"{o.direction} {o.metric}" for o in assay.objectives)
    print(f"\n== {name}  ({kinds}; objectives: {objs}; constraints: {cons})")
    what = "hypervolume fraction (1 = true front)" if mo else "normalised regret (0 = optimum)"
    key = "hv" if mo else "regret"
    head = f"{'planner':<10}" + "".join(f"{'@' + str(k):>26}" for k in cps)
    if not mo:
        head += f"{'recommended @' + str(cps[-1]):>28}{'infeas.':>8}"
    head += f"{'s/batch':>9}{'s/model batch':>14}"
    print(f"median [IQR] {what}")
    print(head)
    for p in planners:
        s = summary.get(p)
        if s is None:
            continue
        row = f"{p:<10}"
        for k in cps:
            m = s.get(key, {}).get(str(k))
            row += f"{_fmt(m):>26}"
        if not mo:
            row += f"{_fmt(s.get('rec_regret')):>28}{s.get('rec_infeasible', '-')!s:>8}"
        row += f"{s['seconds_per_batch']:>9.2f}{s['seconds_per_model_batch']:>14.2f}"
        if s["failed"]:
            row += f"   FAILED {s['failed']}/{s['seeds']}: {'; '.join(s['errors'])[:160]}"
        print(row)
    if not mo:
        _print_ratio(summary, cps[-1], planners)


def _fmt(m) -> str:
    if not m or math.isnan(m[0]):
        return "n/a"
    return f"{m[0]:.3f} [{m[1]:.3f}, {m[2]:.3f}]"


def _print_ratio(summary: dict, last: int, planners: list[str]) -> None:
    """cellpilot's regret at the end against the best peer's (same run)."""
    peers = [p for p in planners if p in PEERS and "regret" in summary.get(p, {})]
    if "bayesian" not in planners or not peers or "regret" not in summary.get("bayesian", {}):
        return
    ours = summary["bayesian"]["regret"][str(last)][0]
    best = min(peers, key=lambda p: summary[p]["regret"][str(last)][0])
    theirs = summary[best]["regret"][str(last)][0]
    verdict = "at or below" if ours <= theirs + 1e-12 else f"ABOVE by {ours - theirs:+.3f}"
    print(f"cellpilot regret @{last} {ours:.3f} vs best peer {best} {theirs:.3f}: {verdict}")


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--assays", nargs="+", default=DEFAULT_ASSAYS, choices=sorted(ASSAYS))
    ap.add_argument("--planners", nargs="+", default=DEFAULT_PLANNERS)
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument("--budget", type=int, default=56)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--profile", default="fast", help="cellpilot bayesian profile")
    ap.add_argument("--workers", type=int, default=1, help="campaigns run in parallel processes")
    ap.add_argument("--transfer", action="store_true", help="also run the transfer benchmark")
    ap.add_argument("--transfer-prior", type=int, default=32, help="prior campaign experiments")
    ap.add_argument("--json", type=Path, help="write all records and summaries here")
    args = ap.parse_args(argv)
    cps = checkpoints(args.budget, args.batch)
    t_start = time.perf_counter()
    print(
        f"OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; seeds={args.seeds}, "
        f"budget={args.budget}, batch={args.batch}, profile={args.profile}, "
        f"workers={args.workers}; {time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    _print_versions(args.planners)
    tasks = [
        (a, p, s, args.budget, args.batch, args.profile)
        for p in sorted(args.planners, key=lambda p: _COST.get(p, 9))
        for a in args.assays
        for s in range(args.seeds)
    ]
    transfer_tasks = (
        [
            (k, s, args.budget, args.batch, args.profile, args.transfer_prior)
            for k in ("cold", "related", "unrelated")
            for s in range(args.seeds)
        ]
        if args.transfer
        else []
    )
    records, transfer_records = _run_all(tasks, transfer_tasks, args.workers)
    out: dict = {
        "args": {k: str(v) for k, v in vars(args).items()},
        "checkpoints": cps,
        "constraint_handling": CONSTRAINT_HANDLING,
        "recommendation": RECOMMENDATION,
        "assays": {},
        "records": records,
    }
    for name in args.assays:
        summary = summarise([r for r in records if r["assay"] == name], cps)
        out["assays"][name] = summary
        _print_assay(name, summary, cps, args.planners)
    _print_notes(args.planners)
    if args.transfer:
        out["transfer"] = print_transfer(transfer_records)
        out["transfer_records"] = transfer_records
    print(f"\ntotal wall time {time.perf_counter() - t_start:.0f} s")
    if args.json:
        args.json.write_text(json.dumps(out, indent=1, default=float))
        print(f"wrote {args.json}")


def _progress(done: int, total: int, what: tuple, t0: float) -> None:
    """One line per finished campaign on stderr (the tables go to stdout)."""
    label = " ".join(str(x) for x in what[:3])
    print(
        f"[{done}/{total} {time.perf_counter() - t0:6.0f} s] {label}", file=sys.stderr, flush=True
    )


def _run_all(tasks: list, transfer_tasks: list, workers: int) -> tuple[list, list]:
    jobs = [(run_campaign, t) for t in tasks] + [(run_transfer, t) for t in transfer_tasks]
    results: list = [None] * len(jobs)
    t0 = time.perf_counter()
    if workers <= 1:
        for i, (fn, t) in enumerate(jobs):
            results[i] = fn(*t)
            _progress(i + 1, len(jobs), t, t0)
    else:
        ctx = multiprocessing.get_context("spawn")
        with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
            futs = {pool.submit(fn, *t): i for i, (fn, t) in enumerate(jobs)}
            for done, f in enumerate(as_completed(futs), 1):
                results[futs[f]] = f.result()
                _progress(done, len(jobs), jobs[futs[f]][1], t0)
    return results[: len(tasks)], results[len(tasks) :]


def _print_versions(planners: list[str]) -> None:
    from importlib.metadata import PackageNotFoundError, version

    names = ["torch", "botorch", "gpytorch"]
    names += [{"ax": "ax-platform"}.get(p, p) for p in planners if p in PEERS]
    vs = []
    for n in names:
        try:
            vs.append(f"{n} {version(n)}")
        except PackageNotFoundError:
            vs.append(f"{n} (not installed)")
    print("versions: " + ", ".join(vs))
    import planners

    root = Path(planners.__file__).resolve().parents[1]
    try:
        commit = subprocess.run(
            ["git", "-C", str(root), "log", "-1", "--format=%h %cs %s"],
            capture_output=True,
            text=True,
            timeout=10,
        ).stdout.strip()[:100]
    except (OSError, subprocess.SubprocessError):
        commit = "?"
    print(f"planners from {root} (commit {commit})")


def _print_notes(planners: list[str]) -> None:
    print("\nHow each planner got the outcome constraints / chose its recommendation:")
    for p in planners:
        key = "cellpilot" if p == "bayesian" else p
        print(f"  {p:<9} constraints: {CONSTRAINT_HANDLING.get(key, '-')}")
        print(f"  {'':<9} recommended: {RECOMMENDATION.get(p, '-')}")


if __name__ == "__main__":
    main()
