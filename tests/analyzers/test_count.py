"""count_nuclei: the one-image API on synthetic nuclei of 8–40 px with touching pairs."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers import AnalysisError, count_nuclei
from analyzers.count import FEATURE_COLUMNS
from analyzers.seeded import estimate_diameter
from tests.analyzers.nuclei_images import render_nuclei


def _shape(d: float) -> tuple[int, int]:
    return (256, 256) if d < 30 else (384, 384)


def _singles(d: float) -> int:
    return 20 if d < 30 else 14


@pytest.mark.parametrize(("diameter", "tolerance"), [(8, 0.08), (16, 0.05), (24, 0.05), (40, 0.05)])
def test_count_within_five_percent_and_pairs_split(diameter: int, tolerance: float) -> None:
    """Within 5 % from 16 px; at 8 px (blur ~1 px) one touching pair in six stays merged."""
    truth = found = 0
    for seed in range(2):
        img, n = render_nuclei(diameter, _singles(diameter), 6, seed=seed, shape=_shape(diameter))
        result = count_nuclei(img, pixel_size_um=0.5, nucleus_diameter_um=diameter * 0.5)
        assert result.diameter_source == "given" and result.diameter_px == pytest.approx(diameter)
        assert result.count >= n - 3  # six touching pairs per image: at most three merged
        truth, found = truth + n, found + result.count
    assert abs(found - truth) / truth <= tolerance


@pytest.mark.parametrize("diameter", [10, 32])
def test_diameter_measured_from_the_image(diameter: int) -> None:
    img, n = render_nuclei(diameter, _singles(diameter), 6, seed=3, shape=_shape(diameter))
    assert estimate_diameter(img) == pytest.approx(diameter, rel=0.2)
    result = count_nuclei(img)
    assert result.diameter_source == "estimated"
    assert abs(result.count - n) <= 2


def test_large_nuclei_are_kept() -> None:
    """A nucleus twice the expected diameter is a nucleus, not debris."""
    img, n = render_nuclei(16, 14, 0, seed=4)
    yy, xx = np.mgrid[0:256, 0:256]
    big = (yy - 128) ** 2 + (xx - 128) ** 2 < 16**2  # 32 px across
    img = img.copy()
    img[big] = np.maximum(img[big], 900)
    result = count_nuclei(img, nucleus_diameter_px=16)
    assert result.labels[128, 128] > 0
    assert result.features["area_px"].max() > 0.8 * big.sum()


def test_features_per_nucleus() -> None:
    img, _ = render_nuclei(20, 10, 2, seed=5, dtype=np.uint8)
    r = count_nuclei(img, pixel_size_um=0.65, nucleus_diameter_um=13.0)
    assert set(r.features) == set(FEATURE_COLUMNS)
    assert all(len(v) == r.count for v in r.features.values())
    assert list(r.features["label"]) == list(range(1, r.count + 1))
    assert r.labels.dtype == np.int32 and r.labels.max() == r.count
    np.testing.assert_allclose(r.features["area_um2"], r.features["area_px"] * 0.65**2)
    assert np.all(r.features["mean_intensity"] > 0)
    assert np.median(r.features["equivalent_diameter_px"]) == pytest.approx(20, rel=0.25)
    assert r.summary()["count"] == r.count


def test_float_and_empty_images() -> None:
    img, n = render_nuclei(12, 10, 2, seed=6)
    assert count_nuclei(img.astype(np.float32) / 65535, nucleus_diameter_px=12).count == (
        count_nuclei(img, nucleus_diameter_px=12).count
    )
    flat = np.random.default_rng(0).normal(100, 3, (128, 128)).astype(np.float32)
    assert count_nuclei(flat, nucleus_diameter_px=12).count == 0
    assert count_nuclei(np.full((64, 64), 7, np.uint16)).count == 0


@pytest.mark.parametrize(
    ("image", "kwargs", "match"),
    [
        (np.zeros((3, 64, 64)), {}, "2-D"),
        (np.zeros((0, 0)), {}, "empty"),
        (np.zeros((64, 64)), {"nucleus_diameter_um": 10.0}, "pixel size"),
        (np.zeros((64, 64)), {"pixel_size_um": -1.0}, "pixel size"),
        (np.zeros((64, 64), dtype=bool), {}, "numbers"),
    ],
)
def test_bad_input_raises(image: np.ndarray, kwargs: dict, match: str) -> None:
    with pytest.raises(AnalysisError, match=match):
        count_nuclei(image, **kwargs)
