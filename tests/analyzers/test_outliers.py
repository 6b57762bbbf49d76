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
    estimates = []
    for seed in range(8):
        rng = np.random.default_rng(seed)
        groups = []
        for _ in range(40):
            mean = rng.uniform(50, 2000)
            groups.append(
                [(rng.poisson(mean * np.exp(rng.normal(0, 0.12))), 3.0) for _ in range(3)]
            )
        sigma, used = estimate_sigma(groups)
        assert used == 40 and sigma == pytest.approx(0.12, rel=0.35)
        estimates.append(sigma)
    assert np.mean(estimates) == pytest.approx(0.12, rel=0.1)  # unbiased over plates
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


def test_fisher_combination_matches_the_chi2_tail() -> None:
    from scipy.stats import chi2

    from analyzers.qc import combined_p

    for p in ([0.5], [0.01, 0.2], [0.03, 0.04, 0.9]):
        x = -2 * np.log(p).sum()
        assert combined_p(p) == pytest.approx(chi2.sf(x, 2 * len(p)), rel=1e-9)


def test_gap_rule_adapts_to_the_plate_and_flags_a_bubbled_well() -> None:
    from analyzers.qc import gap_flags

    rng = np.random.default_rng(3)
    area, count = 256 * 256, 100.0
    for beta in (1.0, 4.0):  # random placement, clumped seeding
        # t = (gap / spacing)² of clean fields: a Gumbel law whose width depends on clumping
        t = np.clip(12.0 + beta * rng.gumbel(size=(60, 3)), 0.1, None)
        gap = np.sqrt(t * area / (np.pi * count))
        table = {
            f"W{i}": [(j, g, area, count) for j, g in enumerate(row)] for i, row in enumerate(gap)
        }
        bubble_t = 12.0 + beta * 9.0  # far out in this plate's tail
        big = float(np.sqrt(bubble_t * area / (np.pi * count)))
        table["BUB"] = [(0, big, area, count), (1, big, area, count), (2, gap[0, 2], area, count)]
        flags, model = gap_flags(table, alpha=1e-3)
        assert model is not None and model[1] == pytest.approx(beta, rel=0.35)
        assert "BUB" in flags and flags["BUB"][1] == [0, 1]
        assert len(flags) - 1 <= 1  # clean wells: ~0.1 % expected of 60


def test_field_dispersion_is_one_for_poisson_and_larger_for_clumped_counts() -> None:
    from analyzers.qc import field_dispersion

    rng = np.random.default_rng(5)
    poisson = {f"W{i}": list(rng.poisson(80, size=3)) for i in range(200)}
    assert field_dispersion(poisson) == pytest.approx(1.0, abs=0.15)
    clumped = {f"W{i}": list(rng.negative_binomial(20, 20 / 100, size=3)) for i in range(200)}
    assert field_dispersion(clumped) == pytest.approx(5.0, rel=0.3)  # var/mean = 1 + 80/20


def test_gr_curve_recovers_gr50_grmax_and_gec50_with_intervals() -> None:
    from analyzers.dose_response import logistic
    from analyzers.growth import fit_gr

    rng = np.random.default_rng(2)
    doses = np.repeat(np.logspace(-2, 1, 8), 3)
    # a partly cytotoxic drug: GRinf -0.4, GEC50 0.3 uM, Hill 1.5
    gr = logistic(doses, 1.0, -0.4, 0.3, 1.5) + rng.normal(0, 0.04, doses.size)
    fit = fit_gr(doses, gr, n_boot=60)
    assert fit.ok and fit.gec50_um == pytest.approx(0.3, rel=0.25)
    true_gr50 = 0.3 * ((1.0 + 0.4) / (0.5 + 0.4) - 1.0) ** (1 / 1.5)
    assert fit.gr50_um == pytest.approx(true_gr50, rel=0.25)
    assert fit.gr_max == pytest.approx(float(logistic(10.0, 1.0, -0.4, 0.3, 1.5)), abs=0.08)
    for key, value in (
        ("gec50_um", fit.gec50_um),
        ("gr50_um", fit.gr50_um),
        ("gr_max", fit.gr_max),
    ):
        lo, hi = fit.ci95[key]
        assert lo <= value <= hi
    # cytostatic only (GRinf 0.7): GR50 never reached, said so rather than invented
    mild = fit_gr(doses, logistic(doses, 1.0, 0.7, 0.3, 1.5) + rng.normal(0, 0.02, doses.size))
    assert mild.ok and mild.gr50_um is None and mild.gr_max > 0.5


def test_single_agent_wells_of_one_dose_are_tested_like_replicates() -> None:
    from analyzers.plate import single_agent_outliers
    from analyzers.settings import AnalysisSettings
    from protocols.layout import PlateLayout, WellAssignment, WellRole

    sa = WellRole.SINGLE_AGENT
    wells = [
        WellAssignment(well=w, role=sa, replicate=i, doses_um={"drug_a": 1.0})
        for i, w in enumerate(["B02", "B03", "B04"])
    ]
    wells.append(WellAssignment(well="B05", role=sa, doses_um={"drug_b": 1.0}))
    layout = PlateLayout(plate_id="P", plate_type="96", wells=wells)
    metrics = {"B02": _well(300, 150), "B03": _well(320, 140), "B04": _well(2, 1)}
    metrics["B05"] = _well(5, 5)  # alone at its dose: nothing to compare with
    calls = single_agent_outliers(metrics, layout, SIGMA, AnalysisSettings())
    assert list(calls) == ["B04"] and calls["B04"].startswith("single-agent well left out")
