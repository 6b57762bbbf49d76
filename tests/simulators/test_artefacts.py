"""Image artefacts injected into rendered fields hide or add objects the way real ones do."""

from __future__ import annotations

import numpy as np
import pytest

from analyzers.features import measure_field
from analyzers.nuclei import segmentation_params
from instruments.interfaces import Frame
from simulators.artefacts import add_bubble, add_debris, inject
from simulators.microscope import render_field


def _frame(seed: int, n: int = 120) -> Frame:
    image, _ = render_field(n, n, image_size=(256, 256), rng=seed)
    return Frame(image, ("DAPI", "GFP"), "P", "C05", 0, 2.6, (0.0, 0.0), 0.0, {})


def _measure(frame: Frame):
    return measure_field(frame, **segmentation_params(11.0 / frame.pixel_size_um))


def test_a_bubble_hides_nuclei_and_debris_adds_oversized_objects() -> None:
    rng = np.random.default_rng(0)
    frame = _frame(1)
    clean = _measure(frame)
    hidden = [_measure(inject([frame], "bubble", rng)[0]).n_nuclei for _ in range(5)]
    assert np.mean(hidden) < 0.85 * clean.n_nuclei
    debris = _measure(inject([frame], "debris", np.random.default_rng(2))[0])
    assert debris.n_large_objects > clean.n_large_objects


def test_injected_frames_say_so_and_other_fields_are_untouched() -> None:
    frames = [_frame(s) for s in range(4)]
    out = inject(frames, "debris", np.random.default_rng(3), field_probability=0.0)
    hit = [f.metadata.get("injected_artefact") for f in out]
    assert hit.count("debris") == 1  # at least one field is always hit
    for before, after in zip(frames, out, strict=True):
        if after.metadata.get("injected_artefact") is None:
            assert after is before
    with pytest.raises(ValueError, match="unknown image artefact"):
        inject(frames, "smudge", np.random.default_rng(0))


def test_artefacts_keep_the_camera_format() -> None:
    image = _frame(5).image
    for out in (
        add_bubble(image, np.random.default_rng(1)),
        add_debris(image, np.random.default_rng(1)),
    ):
        assert out.dtype == np.uint16 and out.shape == image.shape
        assert out.min() >= 0
