from __future__ import annotations

import numpy as np
import pytest

from instruments.exceptions import ImagingError
from simulators.microscope import render_field
from simulators.nuclei_scene import SceneOptions, coverage_count, render_scene


@pytest.mark.parametrize("pixel_size_um", [0.325, 1.3])
def test_truth_matches_the_label_image(pixel_size_um: float) -> None:
    options = SceneOptions(mitotic_fraction=0.2, apoptotic_per_live=0.3, debris_per_live=0.2)
    image, truth = render_scene(60, image_size=(256, 256), pixel_size_um=pixel_size_um,
                                options=options, rng=3)  # fmt: skip
    assert image.shape == (256, 256) and image.dtype == np.uint16
    ids = np.unique(truth.labels)
    assert ids[0] == 0 and list(ids[1:]) == list(range(1, truth.n_counted + 1))
    assert truth.n_interphase + truth.n_mitotic == truth.n_counted == len(truth.kind)
    assert truth.n_mitotic > 0 and truth.n_apoptotic > 0 and truth.n_debris > 0
    assert not ((truth.labels > 0) & (truth.other_labels > 0)).any()
    # a mitotic pair counts as two objects: daughters come in twos
    assert truth.kind.count("daughter") % 2 == 0
    areas = np.bincount(truth.labels.ravel())[1:]
    assert np.median(areas) == pytest.approx(np.pi * truth.diameter_px**2 / 4, rel=0.35)


def test_same_seed_same_field_and_truth() -> None:
    a, ta = render_scene(40, image_size=(128, 160), pixel_size_um=0.65, rng=11)
    b, tb = render_scene(40, image_size=(128, 160), pixel_size_um=0.65, rng=11)
    c, _ = render_scene(40, image_size=(128, 160), pixel_size_um=0.65, rng=12)
    assert np.array_equal(a, b) and np.array_equal(ta.labels, tb.labels)
    assert ta.summary() == tb.summary()
    assert not np.array_equal(a, c)


def test_smooth_scene_has_only_interphase_nuclei() -> None:
    _, truth = render_scene(30, image_size=(192, 192), pixel_size_um=0.65,
                            options=SceneOptions.smooth(), rng=1)  # fmt: skip
    assert truth.n_counted == truth.n_interphase == 30
    assert truth.n_apoptotic == truth.n_debris == 0 and truth.other_labels.max() == 0


def test_coverage_count_and_crowded_field_places_what_fits() -> None:
    n = coverage_count(0.5, (256, 256), 20.0)
    assert n == round(0.5 * 256 * 256 / (np.pi * 100))
    _, truth = render_scene(3 * n, image_size=(256, 256), pixel_size_um=0.55, rng=2,
                            options=SceneOptions(apoptotic_per_live=0.0))  # fmt: skip
    assert n < truth.n_counted < 3 * n  # placed what fitted, truth says how many
    assert truth.labels.max() == truth.n_counted


def test_render_field_scene_option() -> None:
    image, truth = render_field(20, 30, channels=("DAPI",), image_size=(128, 128),
                                pixel_size_um=0.65, rng=5, scene=SceneOptions())  # fmt: skip
    assert image.shape == (1, 128, 128) and image.dtype == np.uint16
    assert truth["labels"].max() == truth["n_counted"] == truth["n_tumour"] + truth["n_normal"]
    with pytest.raises(ImagingError, match="DAPI only"):
        render_field(1, 1, scene=SceneOptions())
