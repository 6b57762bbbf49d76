"""Smoke test of benchmarks/peers.py: one seed, budget 16, two cellpilot planners, no peers."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def peers_module():
    sys.path.insert(0, str(BENCH))
    try:
        import peers

        yield peers
    finally:
        sys.path.remove(str(BENCH))


def test_peers_benchmark_runs_and_writes_json(peers_module, tmp_path, capsys):
    out = tmp_path / "peers.json"
    peers_module.main(
        [
            "--seeds",
            "1",
            "--budget",
            "16",
            "--planners",
            "bayesian",
            "sobol",
            "--assays",
            "drug_combo",
            "drug_combo_mo",
            "--json",
            str(out),
        ]
    )
    printed = capsys.readouterr().out
    assert "== drug_combo " in printed and "normalised regret" in printed
    data = json.loads(out.read_text())
    assert data["checkpoints"] == [8, 16]
    combo = data["assays"]["drug_combo"]
    for planner in ("bayesian", "sobol"):
        median, q25, q75 = combo[planner]["regret"]["16"]
        assert q25 <= median <= q75
        assert -0.01 <= median <= 1.5
        assert combo[planner]["seconds_per_batch"] >= 0
    assert combo["bayesian"]["rec_regret"][0] <= 1.5
    # the two-objective assay reports hypervolume fractions (or the planner's refusal)
    mo = data["assays"]["drug_combo_mo"]
    assert 0.0 <= mo["sobol"]["hv"]["16"][0] <= 1.0
    assert mo["bayesian"]["failed"] in (0, 1)


def test_checkpoints_for_the_issue_budget(peers_module):
    assert peers_module.checkpoints(56, 8) == [16, 32, 56]
