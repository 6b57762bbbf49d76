"""Synergy scores on combinations whose answer is known analytically."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.dose_response import LogisticFit, logistic
from analyzers.synergy import combination_index, loewe_reference, synergy_scores

A = LogisticFit(top=1.0, bottom=0.0, ic50_um=1.0, hill=1.0, n=10)
B = LogisticFit(top=1.0, bottom=0.2, ic50_um=0.3, hill=2.0, n=10)


def test_bliss_is_zero_for_independent_drugs_and_hsa_for_the_best_single_agent() -> None:
    pts = [(a, b, float(A.predict(a) * B.predict(b))) for a in (0.1, 1, 5) for b in (0.1, 0.5)]
    scores = synergy_scores(pts, A, B)
    assert all(s.bliss == pytest.approx(0.0, abs=1e-12) for s in scores)
    best = [(a, b, float(min(A.predict(a), B.predict(b)))) for a, b, _ in pts]
    assert all(s.hsa == pytest.approx(0.0, abs=1e-12) for s in synergy_scores(best, A, B))
    stronger = [(a, b, e - 0.1) for a, b, e in pts]  # 0.1 fewer cells than independence
    assert all(s.bliss == pytest.approx(0.1) for s in synergy_scores(stronger, A, B))


def test_loewe_sham_combination_is_additive_and_bliss_calls_it_antagonism() -> None:
    # a drug combined with itself: the combination is the total dose of one drug
    pts = [
        (d1, d2, float(logistic(d1 + d2, 1.0, 0.0, 1.0, 1.0)))
        for d1, d2 in [(0.5, 0.5), (1, 1), (0.2, 2)]
    ]
    scores = synergy_scores(pts, A, A)
    for s in scores:
        assert s.combination_index == pytest.approx(1.0, rel=1e-9)
        assert s.loewe == pytest.approx(0.0, abs=1e-9)
    # at d1 = d2 = IC50: observed 1/3, Bliss expects 1/2 x 1/2 = 1/4
    assert scores[1].bliss == pytest.approx(0.25 - 1 / 3)


def test_loewe_is_undefined_beyond_a_drugs_reach() -> None:
    # drug B alone never goes below 0.2: an effect of 0.1 has no B-alone equivalent dose
    assert combination_index(A, B, 1.0, 1.0, 0.1) is None
    ref = loewe_reference(A, B, 50.0, 50.0)
    assert ref is None or ref >= 0.2
    assert loewe_reference(A, B, 1.0, 0.0) == pytest.approx(0.5)


def test_a_failed_single_agent_fit_is_refused() -> None:
    with pytest.raises(ValueError, match="drug b: no single-agent curve"):
        synergy_scores([(1.0, 1.0, 0.3)], A, LogisticFit(n=2, message="too few"))


def test_synergy_grows_with_the_simulated_interaction() -> None:
    from simulators.biology import VirtualBiology

    bio = VirtualBiology()
    fits = {}
    doses = np.repeat(10 ** np.linspace(-2, 1.5, 9), 2)
    from analyzers.dose_response import fit_logistic

    for drug in ("drug_a", "drug_b"):
        y = [bio.surviving_fraction({drug: d}, "tumour") for d in doses]
        fits[drug] = fit_logistic(doses, y)
    pts = [(1.0, 1.0, bio.surviving_fraction({"drug_a": 1.0, "drug_b": 1.0}, "tumour"))]
    tumour = synergy_scores(pts, fits["drug_a"], fits["drug_b"])[0]
    assert tumour.bliss > 0.05  # gamma = 10 beyond Bliss on the tumour line


def test_measured_single_agents_replace_the_fits_for_bliss_and_hsa() -> None:
    pts = [(1.0, 0.3, 0.2), (0.1, 0.1, 0.5)]
    measured = [(0.6, 0.5), (None, 0.9)]  # the plate measured both drugs of the first point
    first, second = synergy_scores(pts, A, B, measured=measured)
    assert first.reference == "measured" and second.reference == "mixed"
    assert first.bliss == pytest.approx(0.6 * 0.5 - 0.2)
    assert first.hsa == pytest.approx(0.5 - 0.2)
    assert second.bliss == pytest.approx(float(A.predict(0.1)) * 0.9 - 0.5)
    assert first.loewe is not None  # Loewe still inverts the fitted curves
    assert synergy_scores(pts, A, B)[0].reference == "fitted"
    # no curve for drug a, but every point measured it: Bliss and HSA still computed
    failed = LogisticFit(n=2, message="too few doses")  # no parameters: not ok
    (only,) = synergy_scores(pts[:1], failed, B, measured=measured[:1])
    assert only.bliss == pytest.approx(0.6 * 0.5 - 0.2) and only.loewe is None
    with pytest.raises(ValueError, match="drug a: no single-agent curve"):
        synergy_scores(pts, failed, B, measured=measured)


def test_zip_is_zero_for_independent_drugs_and_positive_for_a_potency_shift() -> None:
    from analyzers.synergy import zip_scores

    da, db = [0.1, 0.3, 1.0, 3.0, 10.0], [0.05, 0.15, 0.3, 1.0]
    independent = [[float(A.predict(a) * B.predict(b)) for b in db] for a in da]
    flat = zip_scores(da, db, independent, A, B)
    assert flat.mean_delta == pytest.approx(0.0, abs=1e-3)
    assert all(abs(d) < 5e-3 for row in flat.delta for d in row if d is not None)
    # drug b makes drug a three times as potent: fewer cells than independence predicts
    shifted = [
        [float(logistic(a * 3.0, 1.0, 0.0, 1.0, 1.0) * B.predict(b)) for b in db] for a in da
    ]
    syn = zip_scores(da, db, shifted, A, B)
    assert syn.mean_delta is not None and syn.mean_delta > 0.05
    with pytest.raises(ValueError, match="3 x 3"):
        zip_scores(da[:2], db, independent[:2], A, B)
