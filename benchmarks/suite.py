"""cellpilot against Ax, BayBE, Optuna TPE and random on the suite of noisy problems.

The problems (``suite_functions.py``) come in two halves: ``dev`` (used to choose the
planner's methods and settings) and ``heldout`` (only reported). Batch ``--batch`` (8) up to
``--budget`` (56) experiments, ``--seeds`` seeded campaigns per planner and problem; every
experiment is measured with the problem's noisy ``sample`` (the noise stream depends only on
the seed). Printed per problem, all from one run:

- normalised simple regret of the best truly feasible experiment at the full budget
  (0 = optimum, 1 = median random condition): median, 90th percentile and worst seed;
- evaluations until that regret is <= 5 % (median over seeds; ``>B`` = not within budget;
  with how many seeds got there);
- the regret of the planner's recommended condition at the end (median and 90th pct.);
- median seconds per model-based batch (batches after the first).

Then a verdict per problem: cellpilot's median against the best peer's, and its
90th-percentile regret against every peer's.

Examples (``OMP_NUM_THREADS=1`` is set here when unset):

  python benchmarks/suite.py --split dev --peers none --seeds 5 --workers 2
  python benchmarks/suite.py --split heldout --seeds 10 --workers 2 --json heldout.json
  python benchmarks/suite.py --problems media7_cat3 --seeds 3 --peers random \\
      --variant base='{"level_reserve": 0}' --variant new='{}'
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import json  # noqa: E402
import math  # noqa: E402
import multiprocessing  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import traceback  # noqa: E402
from concurrent.futures import ProcessPoolExecutor, as_completed  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402

_HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(_HERE.parent))
sys.path.insert(0, str(_HERE))

from peers_adapters import CellpilotSession, make_session  # noqa: E402
from suite_problems import Problem, problems, split_names  # noqa: E402

PEER_NAMES = ["ax", "baybe", "optuna", "random"]
_COST = {"ax": 0, "baybe": 1, "optuna": 3, "random": 5}
TARGET = 0.05
_CACHE: dict[str, Problem] = {}


def _problem(name: str) -> Problem:
    if not _CACHE:
        _CACHE.update(problems())
    return _CACHE[name]


def run_campaign(
    problem: str, planner: str, settings: dict | None, seed: int, budget: int, batch: int
) -> dict:
    """One campaign; returns a JSON-ready record (``error`` set if the planner failed).

    ``planner`` is a label: a peer name, or a cellpilot label run as ``bayesian`` with
    ``settings`` (``profile`` and any :class:`planners.bayesian.BayesianPlanner` override).
    """
    pb = _problem(problem)
    rec: dict = {"problem": problem, "planner": planner, "seed": seed, "seconds": []}
    rng = np.random.default_rng([seed, 1])  # the same noise stream for every planner
    trace: list[float] = []
    best = -math.inf
    try:
        if settings is not None:
            session = CellpilotSession(pb, "bayesian", seed, settings)  # type: ignore[arg-type]
        else:
            session = make_session(pb, planner, seed)  # type: ignore[arg-type]
        while len(trace) < budget:
            n = min(batch, budget - len(trace))
            t0 = time.perf_counter()
            params = session.ask(n)
            rec["seconds"].append(time.perf_counter() - t0)
            session.tell(params, [pb.sample(p, rng) for p in params])
            for p in params:
                best = max(best, pb.score(p))
                trace.append(pb.regret(best))
        rec["trace"] = trace
        rec_params = session.recommend()
        rec["rec_regret"] = pb.regret(pb.score(rec_params)) if rec_params else 1.0
    except Exception as exc:  # a planner that fails is reported, never fatal to the run
        rec["error"] = f"{type(exc).__name__}: {exc}"
        rec["traceback"] = traceback.format_exc(limit=6)
        rec["trace"] = trace
    return rec


def _q(values: list[float], q: float) -> float:
    return float(np.quantile(np.array(values, dtype=float), q)) if values else math.nan


def summarise(records: list[dict], budget: int) -> dict:
    """Per planner: the figures printed for one problem (JSON-ready)."""
    out: dict = {}
    for planner in dict.fromkeys(r["planner"] for r in records):
        rs = [r for r in records if r["planner"] == planner]
        ok = [r for r in rs if not r.get("error") and len(r["trace"]) == budget]
        finals = [r["trace"][-1] for r in ok]
        to5 = [next((i + 1 for i, v in enumerate(r["trace"]) if v <= TARGET), math.inf) for r in ok]
        recs = [r["rec_regret"] for r in ok]
        secs = [x for r in ok for x in r["seconds"][1:]]
        out[planner] = {
            "seeds": len(rs),
            "failed": len(rs) - len(ok),
            "errors": sorted({str(r["error"])[:120] for r in rs if r.get("error")}),
            "median": _q(finals, 0.5),
            "p90": _q(finals, 0.9),
            "worst": max(finals) if finals else math.nan,
            "to5_median": float(np.median(to5)) if to5 else math.nan,
            "to5_reached": sum(math.isfinite(x) for x in to5),
            "rec_median": _q(recs, 0.5),
            "rec_p90": _q(recs, 0.9),
            "s_per_batch": float(np.median(secs)) if secs else math.nan,
            "finals": finals,
        }
    return out


def _print_problem(pb: Problem, summary: dict, budget: int) -> None:
    kinds = ", ".join(f"{p.name}:{p.type[:4]}" for p in pb.space.parameters)
    if len(kinds) > 90:
        kinds = f"{len(pb.space.parameters)} parameters"
    cons = ", ".join(str(c) for c in pb.outcome_constraints) or "none"
    print(f"\n== {pb.name} [{pb.split}] {pb.character}  ({kinds}; constraints: {cons})")
    print(
        f"{'planner':<12}{'median':>8}{'p90':>8}{'worst':>8}{'evals to 5%':>14}"
        f"{'rec median':>12}{'rec p90':>9}{'s/batch':>9}"
    )
    for planner, s in summary.items():
        to5 = s["to5_median"]
        t = f"{to5:.0f}" if math.isfinite(to5) else f">{budget}"
        t += f" ({s['to5_reached']}/{s['seeds'] - s['failed']})"
        row = (
            f"{planner:<12}{s['median']:>8.3f}{s['p90']:>8.3f}{s['worst']:>8.3f}{t:>14}"
            f"{s['rec_median']:>12.3f}{s['rec_p90']:>9.3f}{s['s_per_batch']:>9.2f}"
        )
        if s["failed"]:
            row += f"  FAILED {s['failed']}: {'; '.join(s['errors'])[:100]}"
        print(row)


def verdicts(all_summaries: dict[str, dict], ours: str) -> list[str]:
    """Per problem: cellpilot (``ours``) median vs the best peer's, p90 vs every peer's."""
    lines, n_med, n_p90, n = [], 0, 0, 0
    for name, summ in all_summaries.items():
        peers = {p: s for p, s in summ.items() if p in PEER_NAMES and not math.isnan(s["median"])}
        if ours not in summ or not peers:
            continue
        n += 1
        me = summ[ours]
        best = min(peers, key=lambda p: peers[p]["median"])
        med_ok = me["median"] <= peers[best]["median"] + 1e-12
        p90_ok = all(me["p90"] < s["p90"] for s in peers.values())
        n_med += med_ok
        n_p90 += p90_ok
        worst_peer = min(peers, key=lambda p: peers[p]["p90"])
        lines.append(
            f"{name:<24} median {me['median']:.3f} vs best peer {best} "
            f"{peers[best]['median']:.3f} {'ok ' if med_ok else 'WORSE'}   "
            f"p90 {me['p90']:.3f} vs best peer p90 ({worst_peer}) "
            f"{peers[worst_peer]['p90']:.3f} {'ok' if p90_ok else 'NOT LOWEST'}"
        )
    lines.append(
        f"{ours}: median <= best peer on {n_med}/{n}; p90 lower than every peer on {n_p90}/{n}"
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--split", choices=["dev", "heldout", "all"], default="dev")
    ap.add_argument("--problems", nargs="+", help="problem names (default: the split's)")
    ap.add_argument("--peers", nargs="+", default=PEER_NAMES, help="peers, or 'none'")
    ap.add_argument("--seeds", type=int, default=10)
    ap.add_argument("--seed-offset", type=int, default=0)
    ap.add_argument("--budget", type=int, default=56)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--profile", default="fast", help="cellpilot bayesian profile")
    ap.add_argument(
        "--variant",
        action="append",
        default=[],
        metavar="LABEL=JSON",
        help="cellpilot settings to run under LABEL (default: cellpilot='{}'; 'none': no cellpilot)",
    )
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--json", type=Path)
    ap.add_argument("--records", type=Path, help="append each finished campaign here (JSONL)")
    ap.add_argument(
        "--merge",
        nargs="+",
        type=Path,
        help="no campaigns: print the tables from these JSONL record files",
    )
    ap.add_argument(
        "--time-batch",
        type=int,
        metavar="N_OBS",
        help="no campaigns: time one cellpilot batch of --batch at N_OBS observations",
    )
    args = ap.parse_args(argv)
    names = args.problems or split_names(args.split)
    if args.time_batch:
        time_batch(names, args.time_batch, args.batch, args.profile)
        return
    peers = [] if args.peers == ["none"] else args.peers
    variants = {"cellpilot": {}} if not args.variant else {}
    for v in args.variant:
        if v == "none":  # peers only
            continue
        label, _, js = v.partition("=")
        variants[label] = json.loads(js or "{}")
    for label in variants:
        variants[label] = {"profile": args.profile, **variants[label]}
    seeds = range(args.seed_offset, args.seed_offset + args.seeds)
    print(
        "" if not args.merge else "(merged: problems, planners and seeds are the records')\n",
        end="",
    )
    print(
        f"suite: problems={names}; seeds={list(seeds)}; budget={args.budget}, "
        f"batch={args.batch}; cellpilot variants={variants}; peers={peers}; "
        f"workers={args.workers}; OMP_NUM_THREADS={os.environ.get('OMP_NUM_THREADS')}; "
        f"{time.strftime('%Y-%m-%d %H:%M %Z')}"
    )
    tasks = [
        (n, p, variants.get(p), s, args.budget, args.batch)
        for p in sorted([*peers, *variants], key=lambda p: _COST.get(p, 2))
        for n in names
        for s in seeds
    ]
    t0 = time.perf_counter()
    if args.merge:
        records = [json.loads(line) for f in args.merge for line in f.read_text().splitlines()]
        names = list(dict.fromkeys(r["problem"] for r in records if r["problem"] in names))
        labels = list(dict.fromkeys(r["planner"] for r in records))
        variants = {k: {} for k in labels if k not in PEER_NAMES}
        peers = [k for k in PEER_NAMES if k in labels]
        print(f"merged {len(records)} campaigns from {[str(f) for f in args.merge]}")
    else:
        records = _run_all(tasks, args.workers, args.records)
    summaries = {}
    for n in names:
        rs = [r for r in records if r["problem"] == n]
        order = [*variants, *peers]
        summ = summarise(sorted(rs, key=lambda r: order.index(r["planner"])), args.budget)
        summaries[n] = summ
        _print_problem(_problem(n), summ, args.budget)
    if peers:
        for label in variants:
            print(f"\nverdict ({label}):")
            print("\n".join(verdicts(summaries, label)))
    if len(variants) > 1:
        for label in variants:
            meds = [summaries[n][label]["median"] for n in names]
            p90s = [summaries[n][label]["p90"] for n in names]
            print(
                f"variant {label:<14} mean of medians {np.nanmean(meds):.3f}, "
                f"mean of p90 {np.nanmean(p90s):.3f}"
            )
    print(f"\ntotal wall time {time.perf_counter() - t0:.0f} s")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "args": {
                        k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                    },
                    "summaries": summaries,
                    "records": records,
                },
                default=float,
            )
        )
        print(f"wrote {args.json}")


def time_batch(names: list[str], n_obs: int, batch: int, profile: str) -> None:
    """Seconds for one ``propose`` of ``batch`` after ``n_obs`` Sobol observations (3 seeds)."""
    from planners.base import Observation
    from planners.baselines import sobol_points
    from planners.bayesian import BayesianPlanner

    planner = BayesianPlanner(profile=profile)
    for name in names:
        pb = _problem(name)
        rng = np.random.default_rng(0)
        hist = [
            Observation(params=p, outcomes=pb.sample(p, rng))
            for p in sobol_points(pb.space, n_obs, 0)
        ]
        secs = []
        for seed in range(3):
            t0 = time.perf_counter()
            planner.propose(
                pb.space,
                pb.objectives,
                hist,
                [],
                batch,
                seed,
                outcome_constraints=pb.outcome_constraints,
            )
            secs.append(time.perf_counter() - t0)
        print(
            f"{name:<24} q={batch} at {n_obs} observations ({profile}): "
            f"median {np.median(secs):.2f} s, max {max(secs):.2f} s"
        )


def _run_all(tasks: list, workers: int, jsonl: Path | None = None) -> list:
    results: list = [None] * len(tasks)
    t0 = time.perf_counter()

    def done(i: int, k: int) -> None:
        r = results[i]
        if jsonl is not None:
            with jsonl.open("a") as fh:
                fh.write(json.dumps(r, default=float) + "\n")
        final = r["trace"][-1] if r.get("trace") else float("nan")
        err = " ERROR" if r.get("error") else ""
        print(
            f"[{k}/{len(tasks)} {time.perf_counter() - t0:6.0f} s] {r['problem']} "
            f"{r['planner']} seed {r['seed']}: {final:.3f}{err}",
            file=sys.stderr,
            flush=True,
        )

    if workers <= 1:
        for i, t in enumerate(tasks):
            results[i] = run_campaign(*t)
            done(i, i + 1)
        return results
    ctx = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx) as pool:
        futs = {pool.submit(run_campaign, *t): i for i, t in enumerate(tasks)}
        for k, f in enumerate(as_completed(futs), 1):
            results[futs[f]] = f.result()
            done(futs[f], k)
    return results


if __name__ == "__main__":
    main()
