from __future__ import annotations

import numpy as np
import pytest

from planners.rl.evaluate import cultures, run_schedule, shifted_prior, summarise
from planners.rl.problem import DosingProblem

PROBLEM = DosingProblem()


def test_culture_streams_never_share_draws():
    draws = {s: cultures(PROBLEM, s, 0, 50).tumour_sensitivity for s in ("train", "dev", "test")}
    assert not np.intersect1d(draws["train"], draws["test"]).size
    assert not np.intersect1d(draws["dev"], draws["test"]).size
    again = cultures(PROBLEM, "test", 0, 50).tumour_sensitivity
    assert np.array_equal(again, draws["test"])
    lot = cultures(PROBLEM, "test", 3, 4, identical=True)
    assert np.all(lot.normal_sensitivity == lot.normal_sensitivity[0])


def test_open_loop_schedules_score_as_the_objective_says():
    lots = cultures(PROBLEM, "dev", 0, 40)
    k = PROBLEM.protocol.decisions
    none = run_schedule(PROBLEM, np.zeros((k, 2)), np.zeros(k), lots)
    assert none["tumour_viability"] == pytest.approx(np.ones(40))
    assert summarise(none)["violations"] == 0.0
    heavy = summarise(run_schedule(PROBLEM, np.tile([2.0, 1.0], (k, 1)), np.zeros(k), lots))
    light = summarise(run_schedule(PROBLEM, np.tile([0.5, 0.25], (k, 1)), np.ones(k), lots))
    assert heavy["tumour_viability"] < light["tumour_viability"]
    assert heavy["violations"] > light["violations"]
    assert heavy["drug_um"] == pytest.approx(k * 3.0)
    # measured viabilities (images) track the truth
    assert light["measured_normal_viability"] == pytest.approx(light["normal_viability"], abs=0.05)


def test_shifted_prior_is_harder():
    shifted = shifted_prior(PROBLEM.prior)
    a = cultures(PROBLEM, "test", 0, 400)
    b = cultures(PROBLEM, "test", 0, 400, prior=shifted)
    assert np.median(b.normal_sensitivity) > 1.2 * np.median(a.normal_sensitivity)
    assert b.resistant_fraction.mean() > 2 * a.resistant_fraction.mean()
