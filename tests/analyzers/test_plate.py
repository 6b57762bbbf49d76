from __future__ import annotations

import numpy as np
import pytest

from analyzers import (
    AnalysisSettings,
    MissingControls,
    MissingImages,
    PlateAnalysis,
    analyze_plate,
    z_prime,
)
from protocols.layout import PlateLayout
from tests.analyzers.conftest import make_plate

NEG, POS, SAMPLE = "negative_control", "positive_control", "sample"

SPEC = {
    **{w: (NEG, None, 60, 0.5) for w in ("B02", "C02", "D02", "E02")},
    **{w: (POS, None, 8, 0.0) for w in ("B11", "C11", "D11", "E11")},
    **{w: (SAMPLE, 0, 45, 1 / 3) for w in ("B04", "C04", "D04")},  # kills half the tumour
    **{w: (SAMPLE, 1, 60, 0.5) for w in ("B05", "C05", "D05")},  # inert
    **{w: (SAMPLE, 2, 60, 0.5) for w in ("B06", "C06", "D06")},
    "E06": (SAMPLE, 2, 20, 0.5),  # a replicate that went wrong
}


@pytest.fixture(scope="module")
def plate() -> tuple[dict, PlateLayout, PlateAnalysis]:
    frames, layout = make_plate(SPEC, fields=2, artefacts={("C05", 1): "bubble"})
    return frames, layout, analyze_plate(frames, layout)


def test_z_prime_hand_computed() -> None:
    # pos mean 2 sd 1, neg mean 12 sd 2: 1 - 3 * 3 / 10
    assert z_prime([1, 2, 3], [10, 12, 14]) == pytest.approx(0.1)
    assert z_prime([0, 0], [30, 30]) == pytest.approx(1.0)
    assert z_prime([1], [10, 12]) is None
    assert z_prime([5, 7], [7, 5]) is None


def test_counts_and_normalisation(plate: tuple) -> None:
    _, _, a = plate
    neg = [a.wells[w].metrics for w in ("B02", "C02", "D02", "E02")]
    ref_t = np.mean([m["tumour_count"] for m in neg])
    ref_n = np.mean([m["normal_count"] for m in neg])
    assert ref_t == pytest.approx(30, rel=0.06)
    assert ref_n == pytest.approx(30, rel=0.06)
    for r in a.wells.values():
        m = r.metrics
        assert m["tumour_viability"] == pytest.approx(m["tumour_count"] / ref_t)
        assert m["normal_viability"] == pytest.approx(m["normal_count"] / ref_n)
        assert m["selectivity"] == pytest.approx(m["normal_viability"] - m["tumour_viability"])
    s0 = a.experiments[0].values
    assert s0["tumour_viability"] == pytest.approx(0.5, abs=0.08)
    assert s0["normal_viability"] == pytest.approx(1.0, abs=0.08)
    assert s0["selectivity"] == pytest.approx(0.5, abs=0.12)
    assert a.experiments[1].values["tumour_viability"] == pytest.approx(1.0, abs=0.15)


def test_z_prime_and_plate_ok(plate: tuple) -> None:
    _, _, a = plate
    assert a.z_prime["tumour_count"] is not None and a.z_prime["tumour_count"] > 0.5
    assert a.z_prime["cell_count"] is not None
    assert a.plate_ok
    strict = analyze_plate(plate[0], plate[1], AnalysisSettings(z_prime_min=1.01))
    assert not strict.plate_ok
    assert any("plate suspect" in f for f in strict.flags)


def test_outlier_replicate_flagged_and_kept(plate: tuple) -> None:
    _, _, a = plate
    e2 = a.experiments[2]
    assert {o.well for o in e2.outliers} == {"E06"}
    assert e2.n_replicates == 3
    assert e2.wells == ["B06", "C06", "D06", "E06"]
    assert "E06" in a.wells and a.wells["E06"].metrics["cell_count"] < 25
    assert e2.values["tumour_viability"] == pytest.approx(1.0, abs=0.15)


def test_bubble_field_flagged(plate: tuple) -> None:
    _, _, a = plate
    assert a.wells["C05"].flagged_fields == [1]
    assert "C05" not in [w for w, r in a.wells.items() if w != "C05" and r.flags]
    assert a.wells["C05"].metrics["n_fields"] == 2  # kept, not dropped


def test_round_trip_json(plate: tuple) -> None:
    _, _, a = plate
    assert PlateAnalysis.model_validate_json(a.model_dump_json()) == a


def test_missing_negative_controls_raise(plate: tuple) -> None:
    frames, layout, _ = plate
    no_neg = PlateLayout(
        plate_id="P1",
        plate_type="96",
        wells=[w for w in layout.wells if w.role.value != NEG],
    )
    with pytest.raises(MissingControls, match="negative-control") as err:
        analyze_plate(frames, no_neg)
    assert err.value.role == NEG
    imaged_without_neg = {w: f for w, f in frames.items() if SPEC[w][0] != NEG}
    with pytest.raises(MissingControls, match="negative-control"):
        analyze_plate(imaged_without_neg, layout)


def test_missing_positive_controls(plate: tuple) -> None:
    frames, layout, _ = plate
    without = {w: f for w, f in frames.items() if SPEC[w][0] != POS}
    with pytest.raises(MissingControls, match="positive-control"):
        analyze_plate(without, layout)
    a = analyze_plate(without, layout, AnalysisSettings(require_positive_controls=False))
    assert a.z_prime["tumour_count"] is None
    assert not a.plate_ok
    assert any("wells without images" in f for f in a.flags)
    assert a.wells["B11"].flags == ["no images"] and a.wells["B11"].metrics == {}


def test_missing_sample_well_is_flagged_in_scores(plate: tuple) -> None:
    frames, layout, _ = plate
    a = analyze_plate({w: f for w, f in frames.items() if w != "C04"}, layout)
    assert a.experiments[0].flags == ["C04: no images"]
    assert a.experiments[0].n_replicates == 2


def test_no_images_raise(plate: tuple) -> None:
    _, layout, _ = plate
    with pytest.raises(MissingImages, match="no frames") as err:
        analyze_plate({}, layout)
    assert "B02" in err.value.wells
