"""Smoke test of benchmarks/rl_adaptive.py with a tiny policy and a small budget."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import numpy as np
import pytest

from planners.rl.policy import TrainConfig
from planners.rl.problem import DosingProblem
from planners.rl.train import train

BENCH = Path(__file__).resolve().parents[2] / "benchmarks"


@pytest.fixture()
def bench():
    sys.path.insert(0, str(BENCH))
    try:
        import rl_adaptive

        yield rl_adaptive
    finally:
        sys.path.remove(str(BENCH))


def test_schedule_family_contains_constant_schedules(bench):
    problem = DosingProblem()
    doses, exchange = bench.schedule_arrays(problem, bench.constant_params(problem, (2, 1), 1))
    assert doses.tolist() == [[1.0, 0.25]] * problem.protocol.decisions
    assert exchange.tolist() == [1.0] * problem.protocol.decisions
    params = bench.constant_params(problem, (0, 0), 0)
    params["drug_a_phase4"] = 3
    doses, _ = bench.schedule_arrays(problem, params)
    assert doses[:, 0].tolist() == [0.0] * 6 + [2.0] * 2  # the last 24 h
    bench.schedule_space(problem).validate_point(params)


def test_simulator_search_is_at_least_as_good_as_its_start_on_dev(bench):
    from planners.rl.evaluate import cultures, run_schedule

    problem = DosingProblem()
    start = bench.constant_params(problem, (1, 1), 1)
    best, _ = bench.best_open_loop(problem, 24, start, candidates=8)
    dev = cultures(problem, "dev", 0, 24)

    def value(p):
        return run_schedule(problem, *bench.schedule_arrays(problem, p), dev)["penalised"].mean()

    assert value(best) >= value(start)
    assert best != start  # coordinate ascent found something better than a constant


def test_benchmark_runs_all_methods_and_writes_json(bench, tmp_path, capsys):
    policy = train(TrainConfig.tiny(), tmp_path / "tiny.zip")
    out = tmp_path / "rl.json"
    assert (
        bench.main(
            [
                "--policy",
                str(policy.path),
                "--plates",
                "2",
                "--bo-seeds",
                "1",
                "--identical",
                "1",
                "--test-cultures",
                "16",
                "--dev-cultures",
                "16",
                "--candidates",
                "4",
                "--forecast-cultures",
                "2",
                "--json",
                str(out),
            ]
        )
        == 0
    )
    text = capsys.readouterr().out
    assert "== variable cultures" in text and "== identical cultures" in text
    assert "normal_within_2sd" in text
    data = json.loads(out.read_text())
    for scenario in ("variable", "identical"):
        rows = {r["method"]: r for r in data["results"][scenario]}
        assert set(rows) == {"rl", "bo", "sim-sched", "constant", "none"}
        assert rows["none"]["tumour_viability"] == pytest.approx(1.0)
        assert rows["none"]["violations"] == 0.0
        for r in rows.values():
            assert np.isfinite(r["penalised"]) and 0 <= r["violations"] <= 1
