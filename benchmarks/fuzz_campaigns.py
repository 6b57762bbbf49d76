"""Fuzzed campaign files: refused before anything is written, or run to the end.

Mutates the example campaign files (a value replaced by an odd one, a key deleted, added or
misspelt), then for each mutant:

1. ``cellpilot run --dry-run`` in a subprocess with a timeout;
2. classifies the outcome: ``refused`` (exit 2, one paragraph, no ledger written),
   ``completed`` (exit 0), ``paused`` (exit 3: a device fault after the robot moved),
   ``traceback`` (exit 1), ``hang`` (timeout).

Accepted mutants are shrunk first (one round, one field per well, small images) so a run takes
seconds. The goal: 0 tracebacks, 0 hangs, nothing written for a refused file, and no accepted
file that pauses or fails after pipetting.

    .venv/bin/python benchmarks/fuzz_campaigns.py --n 120
"""

from __future__ import annotations

import argparse
import collections
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.controller.campaign_mutations import mutations  # noqa: E402


def shrink(data: dict) -> dict:
    """Keep a mutant's meaning but make its dry-run short."""
    if isinstance(data.get("budget"), dict):
        data["budget"] = {"rounds": 1}
    sim = data.get("simulation")
    if isinstance(sim, dict):
        sim.setdefault("image_size_px", 96)
    proto = data.get("protocol", {})
    settings = proto.get("settings") if isinstance(proto, dict) else None
    if isinstance(settings, dict) and isinstance(settings.get("imaging"), dict):
        if (
            isinstance(settings["imaging"].get("fields_per_well"), int)
            and 0 < settings["imaging"]["fields_per_well"] <= 4
        ):
            settings["imaging"]["fields_per_well"] = 1
    return data


def run_one(label: str, data: dict, timeout_s: float) -> tuple[str, str]:
    with tempfile.TemporaryDirectory(prefix="cellpilot-fuzz-") as tmp:
        ledger = Path(tmp) / "ledger.db"
        if isinstance(data, dict):
            data["ledger"] = {"url": f"sqlite:///{ledger}", "data_dir": str(Path(tmp) / "data")}
        path = Path(tmp) / "c.yaml"
        path.write_text(yaml.safe_dump(shrink(data), sort_keys=False))
        env = {**os.environ, "OMP_NUM_THREADS": "1"}
        try:
            out = subprocess.run(
                [sys.executable, "-m", "controller.cli", "run", str(path), "--dry-run", "--quiet"],
                capture_output=True,
                text=True,
                timeout=timeout_s,
                env=env,
                cwd=ROOT,
            )
        except subprocess.TimeoutExpired:
            return "hang", label
        if out.returncode == 2:
            wrote = ledger.exists() and ledger.stat().st_size > 0
            ok = "Traceback" not in out.stderr and len(out.stderr) < 3000
            return (
                "refused" if ok and not wrote else "refused_badly"
            ), f"{label}: {out.stderr.strip()[:300]}"
        kind = {0: "completed", 3: "paused"}.get(out.returncode, "traceback")
        return kind, f"{label}: {(out.stdout + out.stderr).strip()[-400:]}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=60, help="mutants per example file")
    ap.add_argument("--seed", type=int, default=2026)
    ap.add_argument("--timeout-s", type=float, default=300)
    args = ap.parse_args()
    tally: collections.Counter[str] = collections.Counter()
    examples: dict[str, list[str]] = collections.defaultdict(list)
    t0 = time.time()
    for example in ("drug_combo.yaml", "drug_combo_rig.yaml"):
        base = yaml.safe_load((ROOT / "examples" / example).read_text())
        for label, data in mutations(base, args.n, seed=args.seed):
            kind, detail = run_one(f"{example}: {label}", data, args.timeout_s)
            tally[kind] += 1
            examples[kind].append(detail)
            print(f"{kind:14s} {detail[:160]}", file=sys.stderr, flush=True)
    print(json.dumps({"counts": dict(tally), "seconds": round(time.time() - t0)}, indent=2))
    for kind in ("traceback", "hang", "refused_badly", "paused"):
        for d in examples.get(kind, [])[:10]:
            print(f"{kind}: {d}")


if __name__ == "__main__":
    main()
