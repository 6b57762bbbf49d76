from __future__ import annotations

import numpy as np
import pytest

from simulators.biology import HillCurve, VirtualBiology, is_edge_well

H48 = 48 * 3600.0


def test_hill_curve_is_monotone_and_bounded():
    curve = HillCurve(ic50_um=1.0, hill=1.5, emax=0.9)
    c = np.logspace(-3, 3, 50)
    f = curve.inhibition_array(c)
    assert np.all(np.diff(f) > 0)
    assert f[0] >= 0 and f[-1] <= 0.9
    assert curve.inhibition(1.0) == pytest.approx(0.45)
    assert curve.inhibition(0.0) == 0.0
    assert curve.inhibition_array(np.array([2.0]))[0] == pytest.approx(curve.inhibition(2.0))


@pytest.mark.parametrize("line", ["tumour", "normal"])
def test_each_drug_reduces_survival_monotonically(line):
    bio = VirtualBiology()
    for drug in ("drug_a", "drug_b", "drug_c", "drug_d"):
        s = [bio.surviving_fraction({drug: c}, line) for c in np.logspace(-2, 1, 20)]
        assert all(a >= b for a, b in zip(s, s[1:], strict=False)), drug


def test_staurosporine_kills_both_lines():
    bio = VirtualBiology()
    neg = bio.expected_counts({}, H48)
    pos = bio.expected_counts({"staurosporine": 1.0}, H48)
    assert pos[0] < 0.01 * neg[0] and pos[1] < 0.01 * neg[1]


def test_vehicle_and_unknown_reagents_are_inert():
    bio = VirtualBiology()
    assert bio.expected_counts({"vehicle": 5.0}, H48) == bio.expected_counts({}, H48)


def test_synergy_beyond_bliss_is_stronger_on_tumour():
    bio = VirtualBiology()
    a, b = {"drug_a": 1.0}, {"drug_b": 0.6}
    excess = {}
    for line in ("tumour", "normal"):
        bliss = bio.surviving_fraction(a, line) * bio.surviving_fraction(b, line)
        combo = bio.surviving_fraction({**a, **b}, line)
        excess[line] = bliss - combo
    assert excess["tumour"] > 0.1
    assert excess["tumour"] > 3 * excess["normal"]


def test_effect_grows_with_exposure_and_cells_grow_without_drug():
    bio = VirtualBiology()
    conc = {"drug_a": 2.0}
    ratios = [
        bio.expected_counts(conc, t)[0] / bio.expected_counts({}, t)[0]
        for t in (6e3, 4e4, H48, 2 * H48)
    ]
    assert all(x > y for x, y in zip(ratios, ratios[1:], strict=False))
    assert bio.expected_counts({}, H48)[0] > 3 * 2000  # tumour doubles daily


def test_edge_wells_grow_less_and_see_more_drug():
    bio = VirtualBiology()
    assert is_edge_well("A05") and is_edge_well("C12") and not is_edge_well("C05")
    centre = bio.expected_counts({"drug_a": 1.0}, H48)
    edge = bio.expected_counts({"drug_a": 1.0}, H48, edge=True)
    assert edge[0] < centre[0] and edge[1] < centre[1]


def test_well_counts_deterministic_per_seed_plate_well():
    conc = {"drug_a": 1.0}
    one = VirtualBiology(seed=1).well_counts("P1", "C05", conc, H48)
    assert one == VirtualBiology(seed=1).well_counts("P1", "C05", conc, H48)
    others = {
        VirtualBiology(seed=2).well_counts("P1", "C05", conc, H48),
        VirtualBiology(seed=1).well_counts("P2", "C05", conc, H48),
        VirtualBiology(seed=1).well_counts("P1", "C06", conc, H48),
    }
    assert one not in others


def test_well_noise_is_realistic_and_artefacts_are_rare():
    bio = VirtualBiology(seed=3)
    mean_t, _ = bio.expected_counts({}, H48, edge=False)
    wells = [f"{r}{c:02d}" for r in "BCDEFG" for c in range(2, 12)]
    counts = [bio.well_counts(f"P{p}", w, {}, H48) for p in range(20) for w in wells]
    good = np.array([c.tumour for c in counts if c.artefact is None], dtype=float)
    cv = good.std() / good.mean()
    assert 0.05 < cv < 0.15
    assert good.mean() == pytest.approx(mean_t, rel=0.03)
    failed = [c for c in counts if c.artefact is not None]
    assert 0.003 < len(failed) / len(counts) < 0.04
    assert {c.artefact for c in failed} <= {"bubble", "debris", "no_cells"}
    for c in failed:
        if c.artefact == "no_cells":
            assert c.tumour < 0.05 * mean_t


def test_dmso_costs_little_at_half_a_percent_and_halves_cells_near_two_percent():
    b = VirtualBiology()
    assert b.solvent_survival({}, "normal") == 1.0
    assert b.solvent_survival({"dmso": 0.1}, "normal") > 0.995
    for line in ("tumour", "normal"):
        assert 0.95 < b.solvent_survival({"dmso": 0.5}, line) < 0.99
        assert 0.8 < b.solvent_survival({"dmso": 1.0}, line) < 0.95
    assert 0.4 < b.solvent_survival({"dmso": 2.0}, "normal") < 0.6
    assert b.solvent_survival({"dmso": 4.0}, "normal") < b.solvent_survival({"dmso": 4.0}, "tumour")
    assert b.solvent_survival({"acetone": 5.0}, "normal") == 1.0  # unknown solvents are inert


def test_solvent_and_drug_act_independently_on_expected_counts():
    b = VirtualBiology()
    drug = b.expected_counts({"drug_a": 1.0}, H48)
    both = b.expected_counts({"drug_a": 1.0}, H48, solvent_percent={"dmso": 1.0})
    for i, line in enumerate(("tumour", "normal")):
        assert both[i] / drug[i] == pytest.approx(b.solvent_survival({"dmso": 1.0}, line))
