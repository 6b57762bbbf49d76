"""The vectorised stand-ins for library calls give exactly the library's answer (they exist
for speed only: a dry-run segments thousands of fields)."""

import numpy as np
import pytest
from scipy import ndimage as ndi
from skimage.feature import peak_local_max

from analyzers.nuclei import _peaks_per_object_3x3
from analyzers.seeded import fill_holes


def _fields(n: int, seed: int):
    rng = np.random.default_rng(seed)
    for i in range(n):
        size = (96, 128) if i % 2 else (128, 128)
        img = ndi.gaussian_filter(rng.normal(size=size), rng.uniform(0.3, 3)).astype(np.float32)
        if i % 3 == 0:
            img = np.round(img * 4) / 4  # plateaus and ties
        mask = img > np.quantile(img, rng.uniform(0.05, 0.95))
        yield img, mask


@pytest.mark.parametrize("seed", [0, 1])
def test_per_object_peaks_match_skimage_exactly_in_content_and_order(seed):
    for img, mask in _fields(40, seed):
        components, _ = ndi.label(mask)
        expected = peak_local_max(img, min_distance=1, labels=components, exclude_border=False)
        np.testing.assert_array_equal(_peaks_per_object_3x3(img, components), expected)


def test_per_object_peaks_of_an_empty_mask():
    img = np.ones((8, 8), np.float32)
    assert _peaks_per_object_3x3(img, np.zeros((8, 8), np.int32)).shape == (0, 2)


def test_fill_holes_matches_scipy():
    for _, mask in _fields(60, 2):
        np.testing.assert_array_equal(fill_holes(mask), ndi.binary_fill_holes(mask))
    ring = np.zeros((7, 7), bool)
    ring[1:6, 1:6] = True
    ring[3, 3] = False
    assert fill_holes(ring)[3, 3]
    for edge in (np.zeros((4, 4), bool), np.ones((4, 4), bool)):
        np.testing.assert_array_equal(fill_holes(edge), ndi.binary_fill_holes(edge))
