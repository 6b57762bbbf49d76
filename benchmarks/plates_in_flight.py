"""Several plates in flight against one plate at a time, on the same experiment budget.

Drives the controller's own scheduler (:func:`controller.loop.workcell.next_action`) and the
real ``bayesian`` planner through whole campaigns on a simulated assay, with the instruments'
time modelled from a dry-run's journal (pipetting a 96-well plate ~28 min, imaging ~2 min,
incubation 48 h) and measurements drawn from the assay's noisy ground truth. The planner sees
exactly what the runner would give it: the measured plates as history, the plates in flight
as ``pending``. Printed per setting, over seeds (median and worst seed):

- simulated days to finish the budget;
- experiments measured before the best condition tried so far is truly within 10 % of the
  true optimum (and feasible), the sequential loop's count as the reference (``--targets``:
  other fractions of the optimum, each its own table from the same runs; inf = not reached).

    .venv/bin/python benchmarks/plates_in_flight.py --seeds 5 --plates 10 --batch 8
"""

from __future__ import annotations

import argparse
import math
import statistics
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from controller.loop.workcell import PlateView, StepView, WorkcellLimits, next_action  # noqa: E402
from planners import Observation, get_planner  # noqa: E402
from simulators.assays import Assay, get_assay  # noqa: E402

PIPETTE_H = 0.46  # one 96-well plate, from the demo's journal
IMAGE_H = 0.03
INCUBATION_H = 48.0


@dataclass
class Plate:
    index: int
    params: list[dict]
    steps: list[StepView] = field(default_factory=list)
    status: str = "compiled"

    def view(self) -> PlateView:
        return PlateView(self.index, self.index, self.status, tuple(self.steps))


def _plate_steps() -> list[StepView]:
    return [
        StepView(0, "dispense", "pending"),
        StepView(1, "incubate", "pending", duration_s=INCUBATION_H * 3600),
        StepView(2, "acquire", "pending"),
    ]


def _finish(plate: Plate, kind: str, **changes) -> None:
    i = next(i for i, s in enumerate(plate.steps) if s.kind == kind)
    plate.steps[i] = replace(plate.steps[i], **changes)


def true_score(assay: Assay, params: dict) -> float:
    truth = assay.expected(params)
    if not assay.feasible(truth):
        return -math.inf
    obj = assay.objectives[0]
    return obj.sign * truth[obj.metric]


def run_campaign(
    assay: Assay, in_flight: int, plates: int, batch: int, seed: int
) -> tuple[float, list[float]]:
    """One campaign; returns (simulated hours, best true score after each measured experiment)."""
    planner = get_planner("bayesian", profile="fast")
    rng = np.random.default_rng(seed)
    limits = WorkcellLimits(max_plates_in_flight=in_flight, incubator_slots=in_flight)
    history: list[Observation] = []
    flying: list[Plate] = []
    now, started, best, trace = 0.0, 0, -math.inf, []
    while True:
        action = next_action(
            [p.view() for p in flying], now * 3600, limits, can_propose=started < plates
        )
        plate = next((p for p in flying if p.index == action.round_id), None)
        if action.kind == "propose":
            pending = [q for p in flying for q in p.params]
            props = planner.propose(
                assay.space,
                assay.objectives,
                history,
                pending,
                batch,
                seed=seed * 1000 + started,
                outcome_constraints=assay.outcome_constraints,
            )
            flying.append(Plate(started, [p.params for p in props], _plate_steps()))
            started += 1
        elif action.kind == "dispense":
            now += PIPETTE_H
            _finish(plate, "dispense", status="done")
        elif action.kind == "start_incubation":
            _finish(plate, "incubate", status="started", started_s=now * 3600)
        elif action.kind == "wait":
            now = action.until_s / 3600
        elif action.kind == "end_incubation":
            _finish(plate, "incubate", status="done")
        elif action.kind == "image":
            now += IMAGE_H
            _finish(plate, "acquire", status="done")
        elif action.kind == "analyse":
            for params in plate.params:
                history.append(Observation(params=params, outcomes=assay.sample(params, rng)))
                best = max(best, true_score(assay, params))
                trace.append(best)
            flying.remove(plate)
        elif action.kind == "done":
            return now, trace
        else:
            raise RuntimeError(f"unexpected action {action}")


def to_reach(trace: list[float], target: float) -> float:
    return next((float(i + 1) for i, v in enumerate(trace) if v >= target), math.inf)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--assay", default="drug_combo")
    ap.add_argument(
        "--in-flight", default="1,2,3,5", help="plates in flight to compare (1 = sequential)"
    )
    ap.add_argument("--plates", type=int, default=10)
    ap.add_argument("--batch", type=int, default=8, help="experiments per plate")
    ap.add_argument("--seeds", type=int, default=5)
    ap.add_argument(
        "--targets",
        default="0.1",
        help="targets as fractions of the optimum, comma-separated (one table each, same runs)",
    )
    args = ap.parse_args()
    assay = get_assay(args.assay)
    _, opt = assay.optimum()
    opt_score = assay.objectives[0].sign * opt
    fractions = [float(x) for x in args.targets.split(",")]
    settings = [int(x) for x in args.in_flight.split(",")]
    rows = {}
    for n in settings:
        days, traces = [], []
        t0 = time.time()
        for seed in range(args.seeds):
            hours, trace = run_campaign(assay, n, args.plates, args.batch, seed)
            days.append(hours / 24)
            traces.append(trace)
            print(
                f"  in flight {n} seed {seed}: {hours / 24:.1f} days", file=sys.stderr, flush=True
            )
        rows[n] = (days, traces, time.time() - t0)
    for frac in fractions:
        target = opt_score - frac * abs(opt_score)
        reach = {n: [to_reach(t, target) for t in traces] for n, (_, traces, _) in rows.items()}
        ref = statistics.median(reach[1]) if 1 in reach else None
        print(
            f"\n{args.assay}: {args.plates} plates x {args.batch} experiments, {args.seeds} seeds; "
            f"target = best tried condition truly within {frac:.0%} of the optimum "
            f"({opt_score:.3f}) and feasible"
        )
        print(
            f"{'in flight':>9} | {'days (median)':>13} | {'days (worst)':>12} | "
            f"{'to target (median)':>18} | {'to target (worst)':>17} | {'vs sequential':>13} | "
            f"{'CPU s':>6}"
        )
        for n, (days, _, cpu) in rows.items():
            med = statistics.median(reach[n])
            ok = ref and math.isfinite(med) and math.isfinite(ref)
            ratio = f"{med / ref:.2f}x" if ok else "-"
            print(
                f"{n:>9} | {statistics.median(days):>13.1f} | {max(days):>12.1f} | {med:>18.0f} | "
                f"{max(reach[n]):>17.0f} | {ratio:>13} | {cpu:>6.0f}"
            )


if __name__ == "__main__":
    main()
