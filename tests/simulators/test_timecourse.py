from __future__ import annotations

import math

import numpy as np
import pytest

from simulators.biology import VirtualBiology
from simulators.timecourse import (
    CulturePrior,
    ImagingNoise,
    LogNormal,
    TimecourseModel,
)

MODEL = TimecourseModel()
PRIOR = CulturePrior()


def nominal(n: int = 1, **changes: float):
    p = PRIOR.nominal(n)
    if not changes:
        return p
    values = p.as_dict()
    for k, v in changes.items():
        values[k] = np.full_like(values[k], v, dtype=float)
    return type(p)(**values)


def dose(state, a_um: float = 0.0, b_um: float = 0.0):
    v = state.volume_ul
    state = MODEL.add(state, "drug_a", a_um * v, np.zeros(state.n))
    return MODEL.add(state, "drug_b", b_um * v, np.zeros(state.n))


def test_untreated_cultures_grow_to_confluence_and_stay_viable():
    p = nominal()
    s = MODEL.advance(p, MODEL.initial_state(p, 150.0), 24 * 20)
    total = s.line_counts().sum()
    assert 0.95 * p.capacity_cells[0] < total <= p.capacity_cells[0] * 1.001
    assert s.viability() == pytest.approx(np.ones((1, 2)))


def test_drug_decays_with_its_half_life():
    p = nominal()
    s = dose(MODEL.initial_state(p, 150.0), a_um=2.0, b_um=1.0)
    s = MODEL.advance(p, s, float(p.half_life_h[0, 0]))
    conc = s.concentrations_um()[0]
    assert conc[0] == pytest.approx(1.0, rel=1e-6)
    assert conc[1] == pytest.approx(0.5 ** (p.half_life_h[0, 0] / p.half_life_h[0, 1]), rel=1e-6)


def test_a_held_concentration_kills_as_the_48h_end_point_model_says():
    # no growth, no decay, no resistance: 48 h at a fixed concentration leaves exactly the
    # surviving fraction of simulators.biology
    p = nominal(tumour_doubling_h=1e12, normal_doubling_h=1e12, resistant_fraction=0.0)
    p = type(p)(**{**p.as_dict(), "half_life_h": np.full((1, 2), 1e12)})
    s = MODEL.advance(p, dose(MODEL.initial_state(p, 150.0), a_um=1.0, b_um=0.5), 48.0)
    bio = VirtualBiology()
    expected = [
        bio.surviving_fraction({"drug_a": 1.0, "drug_b": 0.5}, line)
        for line in ("tumour", "normal")
    ]
    assert s.viability()[0] == pytest.approx(expected, rel=1e-6)


def test_exchange_removes_drug_in_proportion_and_restores_the_volume():
    p = nominal()
    s = dose(MODEL.initial_state(p, 150.0), a_um=2.0)
    s = MODEL.add(s, "drug_b", np.array([0.0]), np.array([10.0]))  # 10 µL of something
    s = MODEL.exchange(s, np.array([True]), residual_ul=30.0, refill_ul=120.0)
    assert s.volume_ul[0] == pytest.approx(150.0)
    assert s.amount_pmol[0, 0] == pytest.approx(2.0 * 150.0 * 30.0 / 160.0)
    untouched = MODEL.exchange(s, np.array([False]), 30.0, 120.0)
    assert untouched.amount_pmol[0, 0] == s.amount_pmol[0, 0]


def test_resistant_cells_expand_under_constant_drug_a_and_not_without_it():
    p = nominal(resistant_fraction=0.05, resistance_factor=20.0, resistance_cost=0.2)
    s0 = MODEL.initial_state(p, 150.0)

    def resistant_share(a_um: float) -> float:
        s = s0
        for _ in range(8):
            s = MODEL.advance(p, dose(s, a_um=a_um), 12.0)
        return float(s.cells[0, 1] / (s.cells[0, 0] + s.cells[0, 1]))

    assert resistant_share(2.0) > 3 * 0.05  # selected: from 5 % to over 15 % in 4 days
    assert resistant_share(0.0) < 0.05


def test_more_sensitive_cultures_die_more():
    p = PRIOR.nominal(3)
    p = type(p)(**{**p.as_dict(), "tumour_sensitivity": np.array([0.5, 1.0, 2.0])})
    s = MODEL.initial_state(p, 150.0)
    for _ in range(4):
        s = MODEL.advance(p, dose(s, a_um=1.0), 12.0)
    tv = s.viability()[:, 0]
    assert tv[0] > tv[1] > tv[2]


def test_prior_draws_are_reproducible_and_varied():
    a = PRIOR.sample(np.random.default_rng(3), 200)
    b = PRIOR.sample(np.random.default_rng(3), 200)
    assert all(
        np.array_equal(x, y)
        for x, y in zip(a.as_dict().values(), b.as_dict().values(), strict=True)
    )
    assert a.half_life_h.shape == (200, 2)
    assert 0.3 < np.std(np.log(a.normal_sensitivity)) < 0.6
    assert np.all((a.resistant_fraction >= 0) & (a.resistant_fraction < 1))
    same = PRIOR.sample_identical(np.random.default_rng(4), 5)
    assert np.all(same.tumour_sensitivity == same.tumour_sensitivity[0])
    assert len(a.take([1, 2]).to_records()) == 2


def test_lognormal_bounds_and_json_round_trip():
    d = LogNormal(median=1.0, sd=3.0, low=0.5, high=2.0)
    x = d.sample(np.random.default_rng(0), 1000)
    assert x.min() >= 0.5 and x.max() <= 2.0
    assert CulturePrior.model_validate_json(PRIOR.model_dump_json()) == PRIOR


def test_imaging_counts_cells_per_field_with_poisson_noise():
    noise = ImagingNoise(well_sd=0.0, line_sd=0.0, image_sd=0.0, misclassified=0.0)
    rng = np.random.default_rng(0)
    cells = np.array([[20000.0, 5000.0]])
    seeding = noise.seeding_factors(rng, (1, 4000))
    counts = noise.count(rng, cells, seeding)
    per_field = cells[0] * noise.field_fraction
    assert counts[0].mean(axis=0) == pytest.approx(per_field, rel=0.01)
    # Poisson over 4 fields: sd of the per-field mean is sqrt(mean / fields)
    assert counts[0, :, 1].std() == pytest.approx(math.sqrt(per_field[1] / 4), rel=0.1)


def test_misclassification_moves_counts_between_lines():
    noise = ImagingNoise(well_sd=0.0, line_sd=0.0, image_sd=0.0, misclassified=0.1)
    rng = np.random.default_rng(1)
    counts = noise.count(rng, np.array([[10000.0, 0.0]]), np.ones((1, 2000, 2)))
    fraction = counts[0, :, 1].mean() / counts[0].sum(axis=1).mean()
    assert fraction == pytest.approx(0.1, abs=0.01)


def test_model_refuses_drugs_outside_the_library():
    with pytest.raises(ValueError, match="not in the biology"):
        TimecourseModel(drugs=("drug_a", "mystery"))
    with pytest.raises(ValueError, match="resistant_to"):
        TimecourseModel(resistant_to="drug_c")
