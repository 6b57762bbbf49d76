"""4PL fits against curves with known parameters."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.dose_response import fit_logistic, logistic

DOSES = np.repeat(10 ** np.linspace(-2, 1, 8), 3)


def test_exact_data_gives_back_the_parameters() -> None:
    y = logistic(DOSES, 1.0, 0.1, 0.8, 1.5)
    fit = fit_logistic(DOSES, y)
    assert fit.ok and fit.r2 == pytest.approx(1.0)
    assert fit.top == pytest.approx(1.0, abs=1e-6) and fit.bottom == pytest.approx(0.1, abs=1e-6)
    assert fit.ic50_um == pytest.approx(0.8, rel=1e-5) and fit.hill == pytest.approx(1.5, rel=1e-5)
    # viability 0.5 where 0.1 + 0.9 / (1 + (d/0.8)^1.5) = 0.5
    assert fit.absolute_ic50_um == pytest.approx(0.8 * (0.9 / 0.4 - 1) ** (1 / 1.5), rel=1e-5)


def test_confidence_intervals_cover_the_truth_at_about_the_stated_rate() -> None:
    rng = np.random.default_rng(0)
    covered, width = [], []
    for _ in range(60):
        y = logistic(DOSES, 1.0, 0.05, 0.5, 1.2) + rng.normal(0, 0.05, DOSES.size)
        fit = fit_logistic(DOSES, y)
        lo, hi = fit.ci95["ic50_um"]
        covered.append(lo <= 0.5 <= hi)
        width.append(hi / lo)
    assert 0.85 <= np.mean(covered) <= 1.0
    assert np.median(width) < 2.0  # 24 points pin the IC50 within a factor of ~1.5


def test_a_rising_response_and_fixed_asymptotes() -> None:
    y = logistic(DOSES, 0.0, 1.0, 2.0, 2.0)  # an EC50 curve: 0 -> 1
    fit = fit_logistic(DOSES, y)
    assert fit.ic50_um == pytest.approx(2.0, rel=1e-4) and fit.top == pytest.approx(0.0, abs=1e-6)
    few = [0.1, 1.0, 10.0, 100.0]
    fixed = fit_logistic(few, logistic(np.array(few), 1.0, 0.0, 3.0, 1.0), top=1.0, bottom=0.0)
    assert fixed.ic50_um == pytest.approx(3.0, rel=1e-6) and set(fixed.ci95) == {"ic50_um", "hill"}


def test_too_little_data_says_so() -> None:
    fit = fit_logistic([0.1, 0.1, 1.0], [0.9, 0.8, 0.5])
    assert not fit.ok and "too few" in fit.message
    with pytest.raises(ValueError, match="no curve"):
        fit.predict(1.0)


def test_figures_draw_points_fit_and_synergy(tmp_path) -> None:
    import matplotlib.pyplot as plt

    from analyzers.figures import plot_dose_response, plot_synergy, save_figure
    from analyzers.synergy import synergy_scores

    y = logistic(DOSES, 1.0, 0.1, 0.8, 1.5)
    fit = fit_logistic(DOSES, y)
    fig, (left, right) = plt.subplots(1, 2)
    plot_dose_response(left, [0.0, *DOSES], [1.0, *y], fit, label="drug_a")
    pts = synergy_scores([(0.1, 1.0, 0.2), (1.0, 0.1, 0.4), (0.0, 1.0, 0.3)], fit, fit)
    plot_synergy(right, pts, "loewe")
    save_figure(fig, str(tmp_path / "f.png"))
    assert (tmp_path / "f.png").stat().st_size > 5000
    with pytest.raises(ValueError, match="unknown score"):
        plot_synergy(right, pts, "zip")


def test_an_unbounded_ic50_interval_is_infinite_not_an_overflow() -> None:
    # a report's real case: 4 doses, one of them far above the others, noisy replicates; the
    # log10(IC50) interval runs past the float range (this raised OverflowError)
    doses = [0.0195, 0.0195, 0.0279, 0.0279, 0.0756, 0.0756, 0.0151, 0.0151, 3.5474, 3.5474]
    values = [0.865, 1.351, 1.111, 0.711, 0.933, 0.889, 0.944, 1.167, 0.556, 0.778]
    fit = fit_logistic(doses, values)
    assert fit.ok
    lo, hi = fit.ci95["ic50_um"]
    assert lo == 0.0 and hi == float("inf")
