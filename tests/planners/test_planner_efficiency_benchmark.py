"""A smoke run of benchmarks/planner_efficiency.py on a tiny budget (output format only)."""

from __future__ import annotations

import importlib.util
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "benchmarks" / "planner_efficiency.py"


def test_benchmark_runs_on_a_tiny_budget(capsys: pytest.CaptureFixture[str]) -> None:
    pytest.importorskip("simulators.assays")
    spec = importlib.util.spec_from_file_location("planner_efficiency", BENCH)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    module.main(
        [
            "--assays",
            "drug_combo",
            "--seeds",
            "1",
            "--budget",
            "12",
            "--batch",
            "6",
            "--latency-obs",
            "0",
            "--planners",
            "bayesian",
            "sobol",
            "random",
        ]
    )
    out = capsys.readouterr().out
    assert "median best true selectivity" in out
    assert "ratio to bayesian" in out
    for name in ("bayesian", "sobol", "random"):
        assert name in out
