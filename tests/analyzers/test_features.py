from __future__ import annotations

import numpy as np
import pytest

from analyzers.exceptions import MissingChannel
from analyzers.features import FieldMeasurement, fit_marker_threshold, measure_field, well_metrics
from analyzers.nuclei import segment_nuclei
from tests.analyzers.conftest import make_frame, render_coculture


def _classification_accuracy(gfp_level: float, vignette: float) -> float:
    frames, truths = [], []
    for seed in range(4):
        img, truth = render_coculture(
            seed, gfp_level=gfp_level, vignette=vignette, tumour_fraction=0.3
        )
        frames.append(make_frame(img, "B02", seed))
        truths.append((img, truth))
    fields = [measure_field(f) for f in frames]
    thr = fit_marker_threshold(
        np.concatenate([f.marker_mean for f in fields]), [f.marker_noise_sigma for f in fields]
    )
    assert thr.method == "otsu", thr
    right = total = 0
    for (img, truth), field in zip(truths, fields, strict=True):
        labels = segment_nuclei(img[0])
        c = np.round(truth.centres).astype(int)
        hit = labels[c[:, 0], c[:, 1]]
        called = field.marker_mean > thr.value
        ok = hit > 0
        right += int((called[hit[ok] - 1] == truth.is_tumour[ok]).sum())
        total += int(ok.sum())
    return right / total


@pytest.mark.parametrize(
    ("gfp_level", "vignette"), [(400.0, 0.3), (120.0, 0.5), (2000.0, 0.2), (60.0, 0.3)]
)
def test_tumour_classification_is_accurate_across_marker_brightness(
    gfp_level: float, vignette: float
) -> None:
    assert _classification_accuracy(gfp_level, vignette) > 0.98


def test_threshold_fixed_and_fallback() -> None:
    assert fit_marker_threshold(np.array([1.0, 500.0]), [3.0], fixed=42.0).method == "fixed"
    rng = np.random.default_rng(0)
    unimodal = rng.normal(0, 5, 300)  # no tumour cells on this plate
    thr = fit_marker_threshold(unimodal, [4.0, 6.0])
    assert thr.method == "fallback"
    assert thr.value == pytest.approx(50.0)
    assert (unimodal > thr.value).sum() == 0
    bimodal = np.concatenate([rng.normal(0, 5, 200), rng.normal(300, 40, 100)])
    thr = fit_marker_threshold(bimodal, [5.0])
    assert thr.method == "otsu"
    assert 40 < thr.value < 200  # inside the gap, not at a class edge
    assert ((bimodal > thr.value) == (np.arange(300) >= 200)).all()


def test_missing_channel_raises() -> None:
    img, _ = render_coculture(0, n_nuclei=5)
    frame = make_frame(img, "B02")
    with pytest.raises(MissingChannel, match="'mCherry'"):
        measure_field(frame, marker_channel="mCherry")


def _field(field: int, n: int, n_tumour: int, large: int = 0) -> FieldMeasurement:
    marker = np.r_[np.full(n_tumour, 300.0), np.zeros(n - n_tumour)]
    return FieldMeasurement(
        well="C03", field=field, area_px=np.full(n, 100.0), nuclear_mean=np.full(n, 500.0),
        marker_mean=marker, marker_noise_sigma=4.0, n_large_objects=large,
        large_object_area_px=1500 * large,
    )  # fmt: skip


def test_well_metrics_counts_per_field_and_totals() -> None:
    m, flags, flagged = well_metrics([_field(0, 40, 10), _field(1, 44, 12)], threshold=100.0)
    assert m["n_fields"] == 2
    assert m["cell_count"] == 42
    assert m["tumour_count"] == 11
    assert m["normal_count"] == 31
    assert m["total_cells"] == 84
    assert m["tumour_fraction"] == pytest.approx(22 / 84)
    assert flags == [] and flagged == []


def test_artefact_field_is_flagged_and_kept() -> None:
    fields = [_field(0, 40, 10), _field(1, 42, 10), _field(2, 8, 2), _field(3, 41, 9, large=1)]
    m, flags, flagged = well_metrics(fields, threshold=100.0)
    assert flagged == [2, 3]
    assert "field 2: 8 nuclei" in flags[0]
    assert "oversized" in flags[1]
    assert m["total_cells"] == 131  # kept
    m2, _, flagged2 = well_metrics(fields, threshold=100.0, exclude_flagged_fields=True)
    assert flagged2 == [2, 3]
    assert m2["total_cells"] == 82 and m2["n_fields"] == 2
    _, flags, flagged = well_metrics([_field(0, 40, 10), _field(1, 12, 3)], threshold=100.0)
    assert flagged == [1]  # two fields: only the emptier one is blamed


def test_bubble_field_flagged_on_real_pixels() -> None:
    frames = [make_frame(render_coculture(s, bubble=s == 2)[0], "D04", s) for s in range(3)]
    _, flags, flagged = well_metrics([measure_field(f) for f in frames], threshold=100.0)
    assert flagged == [2], flags


def test_split_mixed_objects_separates_a_fused_normal() -> None:
    from analyzers.features import split_mixed_objects

    labels = np.zeros((12, 20), np.int32)
    labels[2:8, 2:14] = 1  # one object: a tumour (left, marker-positive) fused to a normal
    labels[9:11, 16:19] = 2
    positive = np.zeros_like(labels, bool)
    positive[2:8, 2:8] = True
    positive[2:8, 8] = True  # a spill rim one pixel into the normal
    out = split_mixed_objects(labels, positive, min_part_px=5)
    assert out.max() == 3
    assert len(np.unique(out[2:8, 2:9])) == 1 and len(np.unique(out[2:8, 9:14])) == 1
    assert out[3, 3] != out[3, 12]
    # a normal with only a thin positive rim is not split
    rim = np.zeros_like(positive)
    rim[2:8, 13] = True
    assert split_mixed_objects(labels, rim, min_part_px=5).max() == 2


def test_segmentation_params_scale_with_nucleus_size() -> None:
    from analyzers.nuclei import segmentation_params

    big, small = segmentation_params(10.0), segmentation_params(4.0)
    # from 6 px the seeded watershed (min area 0.15 of a nucleus), below it the LoG seeds
    assert (big["min_area_px"], big["max_area_px"], big["min_peak_distance_px"]) == (12, 628, 2)
    assert big["seeded_diameter_px"] == 10.0 and small["seeded_diameter_px"] == 0.0
    assert big["log_sigma_px"] == 0.0 and small["log_sigma_px"] > 0
    assert small["min_area_px"] < big["min_area_px"] and small["background_block_px"] == 16
