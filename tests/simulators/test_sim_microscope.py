from __future__ import annotations

import time

import numpy as np
import pytest
from scipy import ndimage

from instruments.exceptions import ImagingError
from instruments.interfaces import Microscope
from simulators.biology import VirtualBiology
from simulators.clock import SimulatedClock
from simulators.liquid_handler import SimulatedLiquidHandler
from simulators.microscope import MIN_GAP, TRUTH_KEY, SimulatedMicroscope, render_field
from simulators.world import SimulatedLab


def _count_blobs(plane: np.ndarray) -> int:
    smooth = ndimage.gaussian_filter(plane.astype(float), 1.0)
    threshold = np.median(smooth) + 0.3 * (np.percentile(smooth, 99.9) - np.median(smooth))
    return int(ndimage.label(smooth > threshold)[1])


def test_render_field_shape_dtype_and_channels():
    image, truth = render_field(30, 20, channels=("GFP", "DAPI"), rng=0, image_size=(128, 160))
    assert image.shape == (2, 128, 160) and image.dtype == np.uint16
    assert truth["n_tumour"] == 30 and truth["n_normal"] == 20
    assert len(truth["centroids_yx"]) == 50
    with pytest.raises(ImagingError, match="unknown channels"):
        render_field(1, 1, channels=("Cy5",))


def test_nucleus_count_in_image_scales_with_simulated_count():
    few = _count_blobs(render_field(20, 20, rng=1, channels=("DAPI",))[0][0])
    many = _count_blobs(render_field(80, 80, rng=1, channels=("DAPI",))[0][0])
    assert 25 <= few <= 45
    assert 2.5 < many / few < 4.5


def test_nuclei_of_a_monolayer_do_not_lie_on_top_of_each_other():
    d = 11.0 / 2.6
    _, truth = render_field(150, 150, rng=3, touching_fraction=0.0)
    yx = np.array(truth["centroids_yx"])
    dist = np.hypot(*(yx[:, None, :] - yx[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    assert dist.min() >= MIN_GAP * d - 0.01  # rounding of the truth's centroids
    # touching pairs still exist when asked for: 0.8-1.15 diameters from a partner
    _, truth = render_field(150, 150, rng=3)
    yx = np.array(truth["centroids_yx"])
    dist = np.hypot(*(yx[:, None, :] - yx[None, :, :]).transpose(2, 0, 1))
    np.fill_diagonal(dist, np.inf)
    assert (dist.min(axis=1) < MIN_GAP * d).sum() >= 0.1 * len(yx)


def test_placement_far_past_confluence_still_places_every_nucleus():
    _, truth = render_field(2000, 2000, rng=4, image_size=(128, 128))
    assert truth["n_tumour"] + truth["n_normal"] == 4000 == len(truth["centroids_yx"])


def test_tumour_nuclei_are_bright_in_gfp_only():
    img_t, _ = render_field(40, 0, rng=2)
    img_n, _ = render_field(0, 40, rng=2)
    assert (img_t[1] > 400).sum() > 500 and (img_n[1] > 400).sum() == 0
    assert _count_blobs(img_t[0]) == pytest.approx(_count_blobs(img_n[0]), abs=6)


def test_artefacts_look_wrong():
    clean, _ = render_field(100, 100, rng=3)
    bubble, truth = render_field(100, 100, rng=3, artefact="bubble")
    debris, _ = render_field(100, 100, rng=3, artefact="debris")
    assert truth["n_tumour"] + truth["n_normal"] < 190  # nuclei under the bubble are hidden
    assert (debris[0] > 3000).sum() > 5 * max((clean[0] > 3000).sum(), 10)
    assert bubble.dtype == debris.dtype == np.uint16


def test_exposure_scales_signal():
    dim, _ = render_field(50, 50, rng=4, exposure_ms=10)
    bright, _ = render_field(50, 50, rng=4, exposure_ms=40)
    assert bright.astype(float).mean() - 100 > 3 * (dim.astype(float).mean() - 100)


def test_microscope_acquires_frames_from_lab_state():
    lab = SimulatedLab(biology=VirtualBiology(seed=5))
    clock = SimulatedClock()
    lh = SimulatedLiquidHandler(lab, clock)
    scope = SimulatedMicroscope(lab, clock)
    assert isinstance(scope, Microscope) and scope.identify()["ready"]
    lh.aspirate("stauro", "staurosporine", 20.0, 10.0)
    lh.dispense("P1", "C03", 10.0)
    clock.sleep(48 * 3600)
    t0 = clock.now()
    frames = scope.acquire_well("P1", "C04", ["DAPI", "GFP"], fields=3, exposure_ms=20)
    assert len(frames) == 3 and clock.now() > t0
    f = frames[0]
    assert f.image.shape == (2, 256, 256) and f.image.dtype == np.uint16
    assert f.channels == ("DAPI", "GFP") and f.plate == "P1" and f.well == "C04"
    assert f.pixel_size_um == pytest.approx(2.6) and f.timestamp_s == t0
    assert len({fr.position_um for fr in frames}) == 3
    truth = f.metadata[TRUTH_KEY]
    expected = (truth["well_tumour"] + truth["well_normal"]) * scope.field_fraction("P1")
    assert abs(truth["n_tumour"] + truth["n_normal"] - expected) < 5 * np.sqrt(expected)
    killed = scope.acquire_well("P1", "C03", ["DAPI"], fields=1, exposure_ms=20)[0]
    assert killed.image.shape == (1, 256, 256)
    kt = killed.metadata[TRUTH_KEY]
    assert kt["n_tumour"] + kt["n_normal"] < 0.05 * expected
    again = SimulatedMicroscope(lab, SimulatedClock(t0)).acquire_well(
        "P1", "C04", ["DAPI", "GFP"], 1, 20
    )
    np.testing.assert_array_equal(again[0].image, f.image)  # deterministic
    with pytest.raises(ImagingError, match="has no well"):
        scope.acquire_well("P1", "Q01", ["DAPI"], 1, 20)
    with pytest.raises(ImagingError, match="unknown channels"):
        scope.acquire_well("P1", "C04", ["TRITC"], 1, 20)


def test_rendering_is_fast():
    rng = np.random.default_rng(0)
    render_field(150, 150, rng=rng)
    t0 = time.perf_counter()
    for _ in range(20):
        render_field(150, 150, rng=rng)
    assert (time.perf_counter() - t0) / 20 < 0.05  # target ~5 ms; loose bound for slow CI
