from __future__ import annotations

import pytest

from analyzers.scoring import flag_outliers, score_experiments
from protocols.layout import PlateLayout, WellAssignment, WellRole


def _layout(n_exp: int, reps: int) -> PlateLayout:
    wells = [WellAssignment(well="A01", role=WellRole.NEGATIVE_CONTROL)]
    for e in range(n_exp):
        for r in range(reps):
            wells.append(
                WellAssignment(
                    well=f"{'BCDEFG'[r]}{e + 2:02d}",
                    role=WellRole.SAMPLE,
                    experiment=e,
                    replicate=r,
                )
            )
    return PlateLayout(plate_id="P", plate_type="96", wells=wells)


def _m(tv: float, nv: float = 1.0, cc: float = 50.0) -> dict[str, float]:
    return {
        "tumour_viability": tv,
        "normal_viability": nv,
        "selectivity": nv - tv,
        "cell_count": cc,
    }


def test_mad_rule() -> None:
    vals = {"B02": 0.50, "C02": 0.52, "D02": 0.48, "E02": 0.95}
    out = flag_outliers(vals)
    assert list(out) == ["E02"]
    med, reason = out["E02"]
    assert med == pytest.approx(0.51)
    assert "robust SDs" in reason
    assert flag_outliers({"B02": 0.5, "C02": 0.9}) == {}  # two replicates: no call
    # identical replicates (MAD 0): the relative floor keeps small differences in
    assert flag_outliers({"B02": 1.0, "C02": 1.0, "D02": 1.1}) == {}


def test_scores_are_means_of_kept_replicates_with_sd() -> None:
    layout = _layout(2, 4)
    metrics = {
        "B02": _m(0.50), "C02": _m(0.52), "D02": _m(0.48), "E02": _m(0.95),
        "B03": _m(0.2, 0.8), "C03": _m(0.3, 0.9), "D03": _m(0.25, 0.85), "E03": _m(0.25, 0.85),
    }  # fmt: skip
    scores = score_experiments(metrics, layout)
    s0 = scores[0]
    assert s0.n_replicates == 3
    assert s0.values["tumour_viability"] == pytest.approx(0.50)
    assert s0.sd["tumour_viability"] == pytest.approx(0.02)
    assert s0.values["selectivity"] == pytest.approx(0.50)
    assert [(o.well, o.metric) for o in s0.outliers] == [("E02", "tumour_viability")]
    assert s0.wells == ["B02", "C02", "D02", "E02"]  # the outlier stays on record
    s1 = scores[1]
    assert s1.outliers == [] and s1.n_replicates == 4
    assert s1.values["normal_viability"] == pytest.approx(0.85)
    assert set(s1.values) == {"tumour_viability", "normal_viability", "selectivity", "cell_count"}


def test_qc_exclusion_and_single_replicate() -> None:
    layout = _layout(1, 3)
    metrics = {"B02": _m(0.5), "C02": _m(0.6), "D02": _m(0.55)}
    s = score_experiments(metrics, layout, excluded_wells={"C02": "field 1: bubble"})[0]
    assert s.n_replicates == 2
    assert s.outliers[0].metric == "qc" and s.outliers[0].reason == "field 1: bubble"
    s = score_experiments({"B02": _m(0.5)}, layout)[0]
    assert s.n_replicates == 1 and "tumour_viability" not in s.sd
    assert s.flags == ["C02: no images", "D02: no images"]
    assert score_experiments({}, layout) == {}
