"""Adaptive dosing: the RL policy against open-loop schedules, on held-out simulated cultures.

Methods, all on the same cultures and in one process:

- ``rl``: the trained PPO policy, closed loop (it reads each unit's images every 12 h);
  trained on the ``train`` culture stream only (``python -m planners.rl.train``).
- ``bo``: cellpilot's ``bayesian`` planner optimising an *open-loop* schedule over
  ``--plates`` plates of ``capacity`` condition groups (16 on a 96-well plate: the same plates
  and wells a campaign would spend), each group measured as the plate measures it (end-point
  counts of 3 wells over 6 negative controls) on cultures of the evaluation population; its
  ``recommend()`` schedule is then deployed. The schedule family has 9 parameters: the dose
  level of each drug in each 24 h phase (given at both decisions of the phase) and whether the
  medium is exchanged before every dose; it contains every constant schedule.
- ``sim-sched``: the best open-loop schedule of the same family that the *simulator* finds
  (the information the RL policy was trained with): 1000 random schedules and the best
  constant scored on ``dev`` cultures, then coordinate ascent. This separates the value of
  reacting to images from the value of having a simulator.
- ``constant``: the best constant schedule (same dose levels and exchange at every decision),
  chosen on ``dev`` cultures from all level combinations.
- ``none``: no treatment.

Scenarios:

- ``variable``: every culture (and every BO plate) is a new lot from the ``test`` stream;
  outcomes over ``--test-cultures`` lots.
- ``identical``: ``--identical`` lots from the ``test`` stream, one at a time; BO's plates all
  hold that lot (it can tune to it) and every method is scored on it (32 units each).
- ``shifted`` (``--shifted``): as ``variable``, with lots from a harder population than the
  policy was trained on (:func:`planners.rl.evaluate.shifted_prior`): outside its training
  distribution, where BO (which learns on these lots) should gain on it.

Objective (``planners.rl.problem``): score = (1 - tumour viability) - 0.005/µM of drug,
feasible when normal viability >= 0.6, penalised = score - 10 x shortfall. Printed per
method: means, violation rate, the worst culture's penalised score, and compute (CPU s:
training once for RL, the campaign's proposals and recommendation for BO, the searches on
dev cultures for sim-sched and constant; plus CPU ms per decision for RL).

Quick run:  OMP_NUM_THREADS=1 python benchmarks/rl_adaptive.py --policy P.zip --quick
Full run:   OMP_NUM_THREADS=1 python benchmarks/rl_adaptive.py --policy P.zip
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")  # before torch is imported

import argparse  # noqa: E402
import itertools  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from planners.base import Observation, get_planner  # noqa: E402
from planners.rl.decision import decide  # noqa: E402
from planners.rl.env import DosingEpisodes  # noqa: E402
from planners.rl.evaluate import (  # noqa: E402
    cultures,
    run_policy,
    run_schedule,
    shifted_prior,
    summarise,
)
from planners.rl.history import ObservationHistory, TimePoint  # noqa: E402
from planners.rl.policy import RLPolicy, TrainConfig, load_policy  # noqa: E402
from planners.rl.problem import DosingProblem  # noqa: E402
from planners.space import (  # noqa: E402
    IntegerParameter,
    Objective,
    OutcomeConstraint,
    Params,
    SearchSpace,
)
from protocols.timecourse import UnitAction  # noqa: E402
from simulators.timecourse import CulturePrior  # noqa: E402

PHASES = 4
IDENTICAL_UNITS = 32


# ------------------------------------------------------------------------------ schedules


def schedule_space(problem: DosingProblem) -> SearchSpace:
    """Open-loop schedules: a level index per drug per phase, and exchange before dosing."""
    params = [
        IntegerParameter(name=f"{d}_phase{p + 1}", low=0, high=len(lv) - 1)
        for d, lv in zip(problem.drugs, problem.dose_levels(), strict=True)
        for p in range(PHASES)
    ]
    params.append(IntegerParameter(name="exchange", low=0, high=1))
    return SearchSpace(parameters=params)


def schedule_arrays(problem: DosingProblem, params: Params) -> tuple[np.ndarray, np.ndarray]:
    """``(doses (decisions, drugs), exchange (decisions,))`` of a schedule's parameters."""
    k_max = problem.protocol.decisions
    phase = np.minimum(np.arange(k_max) * PHASES // k_max, PHASES - 1)
    doses = np.stack(
        [
            lv[[int(params[f"{d}_phase{p + 1}"]) for p in phase]]
            for d, lv in zip(problem.drugs, problem.dose_levels(), strict=True)
        ],
        axis=1,
    )
    return doses, np.full(k_max, float(params["exchange"]))


def constant_params(problem: DosingProblem, levels: tuple[int, ...], exchange: int) -> Params:
    out: Params = {
        f"{d}_phase{p + 1}": int(i)
        for d, i in zip(problem.drugs, levels, strict=True)
        for p in range(PHASES)
    }
    out["exchange"] = int(exchange)
    return out


def best_constant(problem: DosingProblem, n_dev: int) -> tuple[Params, float]:
    """The constant schedule with the best mean penalised score on ``dev`` cultures."""
    start = time.process_time()
    dev = cultures(problem, "dev", 0, n_dev)
    best: tuple[float, Params] = (-np.inf, {})
    ranges = [range(len(lv)) for lv in problem.dose_levels()]
    for levels in itertools.product(*ranges):
        for ex in (0, 1):
            p = constant_params(problem, levels, ex)
            value = float(
                np.mean(run_schedule(problem, *schedule_arrays(problem, p), dev)["penalised"])
            )
            best = max(best, (value, p), key=lambda b: b[0])
    return best[1], time.process_time() - start


def best_open_loop(
    problem: DosingProblem, n_dev: int, start: Params, candidates: int, seed: int = 0
) -> tuple[Params, float]:
    """The best schedule of the BO family that the simulator itself can find: ``candidates``
    random schedules and ``start`` scored on ``dev`` cultures, then coordinate ascent (every
    value of every parameter in turn) from the best until no change helps."""
    cpu = time.process_time()
    dev = cultures(problem, "dev", 0, n_dev)
    space = schedule_space(problem)
    rng = np.random.default_rng(seed)
    cache: dict[tuple[int, ...], float] = {}

    def value(p: Params) -> float:
        key = tuple(int(p[n]) for n in space.names)
        if key not in cache:
            cache[key] = float(
                np.mean(run_schedule(problem, *schedule_arrays(problem, p), dev)["penalised"])
            )
        return cache[key]

    pool = [start] + [
        {q.name: int(rng.integers(q.low, q.high + 1)) for q in space.parameters}
        for _ in range(candidates)
    ]
    best = max(pool, key=value)
    improved = True
    while improved:
        improved = False
        for q in space.parameters:
            for v in range(q.low, q.high + 1):
                trial = {**best, q.name: v}
                if value(trial) > value(best) + 1e-12:
                    best, improved = trial, True
    return best, time.process_time() - cpu


# ------------------------------------------------------------------------------ BO campaign


def bo_campaign(
    problem: DosingProblem, plate_cultures: list[Any], seed: int
) -> tuple[Params, float]:
    """Open-loop BO over plates; returns the recommended schedule and CPU seconds spent in
    the planner. ``plate_cultures[i]`` is a one-culture ``CultureParams`` for plate ``i``."""
    planner = get_planner("bayesian")
    space = schedule_space(problem)
    objective = [Objective(metric="score")]
    bound = problem.objective.normal_viability_min
    constraint = [OutcomeConstraint(metric="normal_viability", op=">=", bound=bound)]
    arms = problem.build_protocol().capacity()
    history: list[Observation] = []
    cpu = 0.0
    for plate, culture in enumerate(plate_cultures):
        t = time.process_time()
        proposals = planner.propose(
            space, objective, history, [], arms, seed * 100 + plate, outcome_constraints=constraint
        )
        cpu += time.process_time() - t
        schedules = [schedule_arrays(problem, p.params) for p in proposals]
        out = run_schedule(
            problem,
            np.stack([s[0] for s in schedules]),
            np.stack([s[1] for s in schedules]),
            culture.take(np.zeros(len(proposals), dtype=int)),
            seed=plate,
        )
        for i, p in enumerate(proposals):
            tv, nv = out["measured_tumour_viability"][i], out["measured_normal_viability"][i]
            score = 1.0 - tv - problem.objective.drug_cost_per_um * out["drug_um"][i]
            history.append(
                Observation(
                    params=p.params, outcomes={"score": float(score), "normal_viability": float(nv)}
                )
            )
    t = time.process_time()
    rec = planner.recommend(space, objective, history, outcome_constraints=constraint, seed=seed)
    cpu += time.process_time() - t
    return rec.params, cpu


# ------------------------------------------------------------------------------ scenarios


def _row(
    name: str,
    outcomes: list[dict[str, np.ndarray]],
    cpu: float,
    per_unit: int = 1,
    decision_ms: float | None = None,
) -> dict[str, Any]:
    """Summary of one method: means over every unit; worst = worst culture's mean penalised
    (cultures are ``per_unit`` consecutive units)."""
    s = [summarise(o) for o in outcomes]
    row: dict[str, Any] = {k: float(np.mean([x[k] for x in s])) for k in s[0]}
    worst = [float(np.min(o["penalised"].reshape(-1, per_unit).mean(axis=1))) for o in outcomes]
    row.update(method=name, worst_culture=float(np.mean(worst)), cpu_s=cpu, decision_ms=decision_ms)
    return row


def variable_scenario(
    problem: DosingProblem,
    policy: RLPolicy,
    args: argparse.Namespace,
    prior: CulturePrior | None = None,
) -> list:
    test = cultures(problem, "test", 0, args.test_cultures, prior=prior)
    t = time.process_time()
    rl = run_policy(policy, test, seed=1)
    rl_cpu = time.process_time() - t
    decision_ms = 1000 * rl_cpu / (test.n * problem.protocol.decisions)
    bo_out, bo_cpu = [], 0.0
    for s in range(args.bo_seeds):
        lots = [
            cultures(problem, "test", 100 + s * args.plates + p, 1, prior=prior)
            for p in range(args.plates)
        ]
        rec, cpu = bo_campaign(problem, lots, seed=s)
        bo_cpu += cpu / args.bo_seeds
        bo_out.append(run_schedule(problem, *schedule_arrays(problem, rec), test, seed=2))
        print(
            f"  {'shifted' if prior else 'variable'} BO seed {s}: {rec}  ({cpu:.0f} CPU s)",
            flush=True,
        )
    rows = [
        _row("rl", [rl], policy.meta.get("train_cpu_seconds", float("nan")), 1, decision_ms),
        _row("bo", bo_out, bo_cpu),
    ]
    for name, (params, cpu) in args.fixed.items():
        rows.append(
            _row(name, [run_schedule(problem, *schedule_arrays(problem, params), test)], cpu)
        )
    return rows


def identical_scenario(problem: DosingProblem, policy: RLPolicy, args: argparse.Namespace) -> list:
    outs: dict[str, list[dict[str, np.ndarray]]] = {m: [] for m in ("rl", "bo", *args.fixed)}
    bo_cpu = 0.0
    for c in range(args.identical):
        lot = cultures(problem, "test", 500 + c, IDENTICAL_UNITS, identical=True)
        rec, cpu = bo_campaign(problem, [lot.take([0])] * args.plates, seed=c)
        bo_cpu += cpu / args.identical
        print(f"  identical lot {c}: BO {rec}  ({cpu:.0f} CPU s)", flush=True)
        outs["rl"].append(run_policy(policy, lot, seed=c))
        fixed = {"bo": rec, **{m: p for m, (p, _) in args.fixed.items()}}
        for name, params in fixed.items():
            outs[name].append(run_schedule(problem, *schedule_arrays(problem, params), lot))
    merged = {
        m: {k: np.concatenate([o[k] for o in v]) for k in v[0] if np.ndim(v[0][k]) == 1}
        for m, v in outs.items()
    }
    cpu = {
        "rl": policy.meta.get("train_cpu_seconds", float("nan")),
        "bo": bo_cpu,
        **{m: c for m, (_, c) in args.fixed.items()},
    }
    return [_row(m, [merged[m]], cpu[m], IDENTICAL_UNITS) for m in outs]


def forecast_check(policy: RLPolicy, n: int, at: int = 4, split: str = "test") -> dict[str, float]:
    """``decide()`` driving ``n`` test cultures closed-loop through their images: its CPU
    time per decision, and how the forecast made at decision ``at`` compares with the
    culture's true end (mean error, mean absolute error, share within 2 forecast sds)."""
    problem = policy.problem
    lots = cultures(problem, split, 900, n)  # type: ignore[arg-type]
    cpu, err_n, err_t, inside = [], [], [], []
    for i in range(n):
        rng = np.random.default_rng([11, i])
        episodes = DosingEpisodes(problem)
        episodes.start(lots.take([i]), rng)
        actions: list[UnitAction] = []
        while not episodes.done:
            k = episodes.k
            history = ObservationHistory(
                time_points=[
                    TimePoint(
                        time_h=problem.protocol.interval_h * j,
                        unit_counts=[tuple(episodes.unit[0, j])],
                        control_counts=[tuple(episodes.control[0, j])],
                    )
                    for j in range(k + 1)
                ],
                actions=actions,
            )
            t = time.process_time()
            d = decide(policy, history, seed=i)
            cpu.append(time.process_time() - t)
            if k == at:
                expected = d.expected
            actions.append(d.action)
            episodes.apply(
                np.array([[d.action.doses_um.get(x, 0.0) for x in problem.drugs]]),
                np.array([d.action.exchange]),
                rng,
            )
        out = episodes.outcome()
        err_n.append(expected.normal_viability - out["normal_viability"][0])
        err_t.append(expected.tumour_viability - out["tumour_viability"][0])
        inside.append(abs(err_n[-1]) <= 2 * expected.normal_viability_sd)
    return {
        "decide_cpu_ms_median": 1000 * float(np.median(cpu)),
        "decide_cpu_ms_max": 1000 * float(np.max(cpu)),
        "normal_error_mean": float(np.mean(err_n)),
        "normal_mae": float(np.mean(np.abs(err_n))),
        "tumour_mae": float(np.mean(np.abs(err_t))),
        "normal_within_2sd": float(np.mean(inside)),
    }


def print_table(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n== {title}")
    print(
        f"{'method':<9} {'penalised':>9} {'score':>7} {'tumour':>7} {'normal':>7} {'drug uM':>8} "
        f"{'viol.':>6} {'worst':>7} {'CPU s':>8} {'ms/dec':>7}"
    )
    for r in rows:
        ms = f"{r['decision_ms']:.2f}" if r.get("decision_ms") is not None else "-"
        print(
            f"{r['method']:<9} {r['penalised']:>9.3f} {r['score']:>7.3f} "
            f"{r['tumour_viability']:>7.3f} {r['normal_viability']:>7.3f} {r['drug_um']:>8.2f} "
            f"{100 * r['violations']:>5.1f}% {r['worst_culture']:>7.3f} {r['cpu_s']:>8.1f} {ms:>7}"
        )
    by = {r["method"]: r for r in rows}
    gap = by["rl"]["penalised"] - by["bo"]["penalised"]
    print(f"rl - bo penalised: {gap:+.3f} ({'RL better' if gap > 0 else 'RL WORSE'})")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--policy", help="trained policy (.zip); default: train one now")
    ap.add_argument("--plates", type=int, default=4, help="BO plates per campaign")
    ap.add_argument("--test-cultures", type=int, default=300)
    ap.add_argument("--dev-cultures", type=int, default=300)
    ap.add_argument("--identical", type=int, default=5, help="identical-culture lots")
    ap.add_argument("--bo-seeds", type=int, default=3, help="BO campaigns, variable cultures")
    ap.add_argument(
        "--candidates",
        type=int,
        default=1000,
        help="random schedules before the simulator search's coordinate ascent",
    )
    ap.add_argument("--quick", action="store_true", help="2 plates, 1 BO seed, 2 lots")
    ap.add_argument(
        "--shifted",
        action="store_true",
        help="also variable lots from a harder prior than the training one",
    )
    ap.add_argument(
        "--forecast-cultures",
        type=int,
        default=40,
        help="cultures for the decide() latency and forecast check (0: skip)",
    )
    ap.add_argument("--forecast-only", action="store_true", help="only the forecast check")
    ap.add_argument("--json", help="write the rows here")
    args = ap.parse_args(argv)
    if args.quick:
        args.plates, args.bo_seeds, args.identical = 2, 1, 2
        args.test_cultures = args.dev_cultures = 100
        args.candidates = 100
    if args.policy:
        policy = load_policy(args.policy)
    else:
        from planners.rl.train import train

        policy = train(TrainConfig(), Path("runs/bench_policy.zip"))
    problem = policy.problem
    print(
        f"policy {policy.policy_id}: {policy.meta.get('timesteps')} steps, "
        f"{policy.meta.get('train_cpu_seconds')} CPU s training; versions "
        f"{policy.meta.get('versions')}"
    )
    if args.forecast_cultures:
        f = forecast_check(policy, args.forecast_cultures)
        print(
            f"\n== decide() on {args.forecast_cultures} test cultures, forecast made at 48 h vs "
            "the true end\n" + "  ".join(f"{k} {v:.3f}" for k, v in f.items()),
            flush=True,
        )
        if args.forecast_only:
            return 0
    const, const_cpu = best_constant(problem, args.dev_cultures)
    print(f"best constant on dev: {const}")
    sched, sched_cpu = best_open_loop(problem, args.dev_cultures, const, args.candidates)
    print(f"best open-loop schedule on dev (simulator search): {sched}")
    none = constant_params(problem, (0,) * len(problem.drugs), 0)
    args.fixed = {
        "sim-sched": (sched, sched_cpu),
        "constant": (const, const_cpu),
        "none": (none, 0.0),
    }
    results = {
        "variable": variable_scenario(problem, policy, args),
        "identical": identical_scenario(problem, policy, args),
    }
    if args.shifted:
        results["shifted"] = variable_scenario(problem, policy, args, shifted_prior(problem.prior))
    for name, rows in results.items():
        print_table(f"{name} cultures", rows)
    if args.json:
        Path(args.json).write_text(
            json.dumps({"args": vars(args), "results": results}, indent=2, default=str)
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
