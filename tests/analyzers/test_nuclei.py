from __future__ import annotations

import numpy as np
import pytest

from analyzers.nuclei import estimate_background, nucleus_features, segment_field, segment_nuclei
from tests.analyzers.conftest import render_coculture


def _match(labels: np.ndarray, centres: np.ndarray) -> tuple[int, int, int]:
    """(missed, merged, extra): truth centres on background, labels holding 2+ centres,
    labels holding none."""
    c = np.clip(np.round(centres).astype(int), 0, np.array(labels.shape) - 1)
    hit = labels[c[:, 0], c[:, 1]]
    vals, counts = np.unique(hit[hit > 0], return_counts=True)
    return int((hit == 0).sum()), int((counts > 1).sum()), int(labels.max() - vals.size)


@pytest.mark.parametrize(
    "kwargs",
    [{}, {"n_nuclei": 120, "n_touching_pairs": 15}, {"vignette": 0.5}, {"dapi_level": 200.0}],
)
def test_counts_within_a_few_percent(kwargs: dict) -> None:
    truth_total = found_total = 0
    for seed in range(4):
        img, truth = render_coculture(seed, **kwargs)
        labels = segment_nuclei(img[0])
        truth_total += truth.n
        found_total += int(labels.max())
    assert abs(found_total - truth_total) / truth_total < 0.04


def test_touching_pairs_are_split() -> None:
    missed = merged = pairs = 0
    for seed in range(4):
        img, truth = render_coculture(seed, n_nuclei=40, n_touching_pairs=20)
        m, g, extra = _match(segment_nuclei(img[0]), truth.centres)
        missed, merged, pairs = missed + m, merged + g, pairs + truth.n_touching_pairs
        assert extra <= 1
    assert missed == 0
    assert merged <= 0.1 * pairs  # at least 90 % of touching pairs split


def test_empty_field_segments_nothing() -> None:
    img, _ = render_coculture(0, n_nuclei=0)
    seg = segment_field(img[0])
    assert seg.labels.max() == 0
    assert segment_nuclei(np.full((64, 64), 100, np.uint16)).max() == 0


def test_sparse_field_found() -> None:
    img, truth = render_coculture(3, n_nuclei=5, n_touching_pairs=0)
    assert segment_nuclei(img[0]).max() == truth.n


def test_debris_is_reported_and_does_not_hide_nuclei() -> None:
    img, truth = render_coculture(1, debris=True)
    seg = segment_field(img[0])
    assert seg.n_large_objects == 1
    assert seg.large_object_area_px > 1000
    assert seg.labels.max() >= 0.85 * truth.n  # some nuclei lie under the blob


def test_background_follows_illumination() -> None:
    yy = np.linspace(0, 1, 128)[:, None] * np.ones((1, 128))
    img = (100 + 200 * yy).astype(np.float32)
    bg = estimate_background(img)
    residual = (img - bg)[16:-16]
    assert np.ptp(residual) < 3  # shape followed; a constant low-percentile offset remains
    assert 0 <= residual.mean() < 0.15 * 200


def test_features_per_nucleus() -> None:
    labels = np.zeros((20, 20), np.int32)
    labels[2:6, 2:6] = 1
    labels[10:15, 10:14] = 2
    dapi = np.where(labels > 0, 500.0, 0.0)
    gfp = np.where(labels == 2, 300.0, 0.0)
    f = nucleus_features(labels, {"DAPI": dapi, "GFP": gfp}, subtract_background=False)
    assert list(f["label"]) == [1, 2]
    assert list(f["area_px"]) == [16, 20]
    assert list(f["mean_DAPI"]) == [500, 500]
    assert list(f["mean_GFP"]) == [0, 300]
