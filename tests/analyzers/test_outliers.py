"""Calibrated outlier calls, robust controls, GR values and the plate verdict, on numbers."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.growth import gr_value
from analyzers.outliers import estimate_sigma, group_outliers
from analyzers.qc import control_group

SIGMA = {"total_tumour": 0.1, "total_normal": 0.1}


def _well(t: float, n: float) -> dict[str, float]:
    return {"total_tumour": t, "total_normal": n, "n_fields": 3.0}


def test_the_spread_is_measured_beyond_counting_noise_and_robust_to_a_bad_group() -> None:
    rng = np.random.default_rng(1)
    groups = []
    for _ in range(40):
        mean = rng.uniform(50, 2000)
        groups.append([(rng.poisson(mean * np.exp(rng.normal(0, 0.12))), 3.0) for _ in range(3)])
    sigma, used = estimate_sigma(groups)
    assert used == 40 and sigma == pytest.approx(0.12, rel=0.25)
    groups[:3] = [[(5.0, 3.0), (900.0, 3.0), (1000.0, 3.0)]] * 3  # three groups with an empty well
    assert estimate_sigma(groups)[0] == pytest.approx(sigma, rel=0.2)
    assert estimate_sigma([[(10.0, 1.0)]]) == (0.04, 0)  # nothing to pool: the floor


def test_an_empty_replicate_is_called_and_its_good_partners_are_not() -> None:
    group = {"B02": _well(300, 150), "C02": _well(320, 140), "D02": _well(2, 1)}
    calls = group_outliers(group, SIGMA, k=4.5)
    assert list(calls) == ["D02"] and calls["D02"].z < -10
    assert "standard errors" in calls["D02"].reason


def test_a_well_far_from_two_disagreeing_others_is_not_blamed_for_their_disagreement() -> None:
    # a near-dead triplicate with one missed dose: the outlier is the miss, not a good well
    group = {"F02": _well(6, 29), "F07": _well(3, 36), "G05": _well(184, 83)}
    assert list(group_outliers(group, SIGMA, k=4.5)) == ["G05"]


def test_counting_noise_keeps_few_nuclei_from_being_called() -> None:
    group = {"B02": _well(4, 2), "C02": _well(1, 5), "D02": _well(9, 3)}
    assert group_outliers(group, SIGMA, k=4.5) == {}
    assert group_outliers({"B02": _well(1, 1), "C02": _well(900, 900)}, SIGMA, k=1) == {}


def test_a_group_keeps_its_majority() -> None:
    group = {f"B{i:02d}": _well(v, v) for i, v in enumerate([300, 310, 290, 5, 8], start=2)}
    calls = group_outliers(group, SIGMA, k=4.5)
    assert set(calls) == {"B05", "B06"}  # 2 of 5 at most
    bad = {f"B{i:02d}": _well(v, v) for i, v in enumerate([300, 5, 8, 6, 310], start=2)}
    assert len(group_outliers(bad, SIGMA, k=4.5)) <= 2


def test_one_empty_vehicle_well_is_left_out_of_the_reference() -> None:
    rng = np.random.default_rng(4)
    metrics = {}
    for i in range(6):
        t, n = rng.poisson(300 * np.exp(rng.normal(0, 0.1, size=2)))
        metrics[f"C{i + 2:02d}"] = {**_well(t, n), "tumour_count": t / 3, "normal_count": n / 3}
    clean = control_group("negative_control", list(metrics), metrics, SIGMA, 4.5, tuple(SIGMA))
    assert clean.outliers == {} and clean.used == list(metrics)
    metrics["C02"] = {**_well(0, 1), "tumour_count": 0.0, "normal_count": 1 / 3}
    hit = control_group("negative_control", list(metrics), metrics, SIGMA, 4.5, tuple(SIGMA))
    assert list(hit.outliers) == ["C02"] and "C02" not in hit.used
    plain = np.mean([m["tumour_count"] for m in metrics.values()])
    kept = np.mean([metrics[w]["tumour_count"] for w in hit.used])
    assert hit.reference["tumour_count"] == pytest.approx(kept)
    assert plain < 0.9 * kept  # a plain mean would raise every viability by > 10 %


def test_gr_values_separate_cytostatic_from_cytotoxic() -> None:
    assert gr_value(400, 100, 400) == pytest.approx(1.0)  # no effect
    assert gr_value(100, 100, 400) == pytest.approx(0.0)  # stopped dividing
    assert gr_value(50, 100, 400) == pytest.approx(2 ** (-1 / 2) - 1)  # lost half: cytotoxic
    assert gr_value(0, 100, 400) == -1.0
    assert gr_value(100, 100, 90) is None  # controls did not grow
    # two lines, one doubling twice as often: the same halving of division gives the same GR
    fast = gr_value(100 * 2**1.0, 100, 100 * 2**2.0)
    slow = gr_value(100 * 2**0.5, 100, 100 * 2**1.0)
    assert fast == pytest.approx(slow) and 100 * 2**1.0 / 400 != 100 * 2**0.5 / 200
