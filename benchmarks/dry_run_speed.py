"""How long a simulated campaign takes, and where the time goes (issue 15, item 7).

Runs the demo campaign (examples/drug_combo.yaml: 96-well plates, 3 fields a well, two
channels, the Bayesian planner) as a dry-run for ``--plates`` plates in this process, with
timers around the parts of the chain, and prints wall time and the breakdown:

- import: loading the libraries (torch, botorch, scikit-image, ...) before the run;
- acquire: simulating the microscope's fields and writing them as OME-TIFFs (with checksums);
- analysis: reading the images back, segmenting and measuring every field (in worker
  processes where the plate is large, see analyzers/parallel.py), scoring, recording;
- planning: the planner's proposals;
- journal: the step journal (every step recorded before and after it runs);
- other: the rest of the controller (ledger, events, scheduling, the simulated handler).

The controller's own share is journal + other. Compare with ``--workers 1`` (no pool) and
``--codec zlib6`` (deflate at its default level, as before) in the same session.

    OMP_NUM_THREADS=1 python benchmarks/dry_run_speed.py --plates 10
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

T_START = time.perf_counter()
ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

TIMES: dict[str, float] = defaultdict(float)


def _timed(name: str, fn):
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        t = time.perf_counter()
        try:
            return fn(*args, **kwargs)
        finally:
            TIMES[name] += time.perf_counter() - t

    return wrapper


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--plates", type=int, default=10)
    ap.add_argument("--in-flight", type=int, default=3, help="workcell.max_plates_in_flight")
    ap.add_argument("--workers", type=int, default=None, help="analysis worker processes (1: none)")
    ap.add_argument("--codec", choices=["zlib1", "zlib6"], default="zlib1")
    args = ap.parse_args(argv)
    if args.workers is not None:
        os.environ["CELLPILOT_ANALYSIS_WORKERS"] = str(args.workers)

    from controller.loop import analysis, engine, runner  # noqa: F401  (imports are timed)
    from controller.loop.runner import CampaignRunner
    from controller.spec import load_campaign
    from planners import bayesian  # noqa: F401  (the runner loads it lazily: library import time)

    t_imported = time.perf_counter()
    if args.codec == "zlib6":
        import tifffile

        original = tifffile.TiffWriter.write

        def write_zlib6(self, *a, **kw):
            kw["compressionargs"] = {"level": 6}
            return original(self, *a, **kw)

        tifffile.TiffWriter.write = write_zlib6

    engine.StepEngine._acquire = _timed("acquire", engine.StepEngine._acquire)
    engine.StepEngine._mark = _timed("journal", engine.StepEngine._mark)
    runner.analyze_round = _timed("analysis", runner.analyze_round)
    runner.propose_round = _timed("planning", runner.propose_round)

    with tempfile.TemporaryDirectory(prefix="cellpilot-speed-") as tmp:
        data = yaml.safe_load((ROOT / "examples" / "drug_combo.yaml").read_text())
        data["budget"] = {"rounds": args.plates}
        data["workcell"]["max_plates_in_flight"] = args.in_flight
        data["workcell"]["incubator_slots"] = max(
            args.in_flight, data["workcell"]["incubator_slots"]
        )
        data["ledger"] = {"url": f"sqlite:///{tmp}/ledger.db", "data_dir": f"{tmp}/data"}
        path = Path(tmp) / "campaign.yaml"
        path.write_text(yaml.safe_dump(data))
        spec = load_campaign(path)
        t0 = time.perf_counter()
        result = CampaignRunner(spec, dry_run=True).run()
        wall = time.perf_counter() - t0
        images_mb = sum(f.stat().st_size for f in Path(tmp, "data").rglob("*.tif")) / 1e6

    from analyzers.parallel import analysis_workers

    total = wall + (t_imported - T_START)
    parts = {"import": t_imported - T_START, **TIMES}
    parts["other"] = wall - sum(TIMES.values())
    print(
        f"dry-run of {args.plates} plates ({result.status}, {result.valid_experiments} experiments), "
        f"{args.in_flight} in flight, analysis workers {analysis_workers()}, codec {args.codec}, "
        f"{os.cpu_count()} CPUs; images {images_mb:.0f} MB"
    )
    print(f"{'part':<10}{'seconds':>9}{'share':>8}")
    for name in ("import", "acquire", "analysis", "planning", "journal", "other"):
        print(f"{name:<10}{parts.get(name, 0.0):9.1f}{parts.get(name, 0.0) / total:8.0%}")
    print(f"{'total':<10}{total:9.1f}")
    ctrl = parts.get("journal", 0.0) + parts["other"]
    print(f"controller's own share (journal + other): {ctrl / total:.0%}")


if __name__ == "__main__":
    main()
