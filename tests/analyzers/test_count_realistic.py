"""count_nuclei's seeded watershed (``method="seeded"``) and its texture-aware steps on
realistic simulated fields (simulators/nuclei_scene.py); the learned default has its own
tests (test_learned.py)."""

from __future__ import annotations

import pytest

from analyzers import count_nuclei
from simulators.nuclei_scene import SceneOptions, coverage_count, render_scene


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_texture_does_not_split_a_single_nucleus(seed: int) -> None:
    options = SceneOptions(texture=1.5, nucleoli=3.0, mitotic_fraction=0.0,
                           apoptotic_per_live=0.0, debris_min=0)  # fmt: skip
    image, truth = render_scene(1, image_size=(96, 96), pixel_size_um=0.325,
                                options=options, rng=seed)  # fmt: skip
    assert truth.n_counted == 1
    result = count_nuclei(
        image, pixel_size_um=0.325, nucleus_diameter_um=11.0, texture_aware=True, method="seeded"
    )
    assert result.count == 1


def test_dense_field_at_10x_counted_within_tolerance() -> None:
    d = 11.0 / 0.65
    n = coverage_count(0.4, (256, 256), d)
    image, truth = render_scene(n, image_size=(256, 256), pixel_size_um=0.65, rng=7)
    result = count_nuclei(image, pixel_size_um=0.65, nucleus_diameter_um=11.0, method="seeded")
    assert truth.n_counted > 80
    assert result.count == pytest.approx(truth.n_counted, rel=0.08)


def test_pyknotic_nuclei_are_not_counted() -> None:
    """~30 apoptotic nuclei (pyknotic or fragmented) added to 30 live ones: at most half count."""
    extra = []
    for dead_per_live in (0.0, 1.0):
        options = SceneOptions(mitotic_fraction=0.0, apoptotic_per_live=dead_per_live,
                               debris_per_live=0.0, debris_min=0)  # fmt: skip
        image, truth = render_scene(30, image_size=(256, 256), pixel_size_um=0.65,
                                    options=options, rng=4)  # fmt: skip
        result = count_nuclei(
            image, pixel_size_um=0.65, nucleus_diameter_um=11.0, texture_aware=True,
            method="seeded",
        )  # fmt: skip
        extra.append(result.count - truth.n_counted)
        if dead_per_live:
            assert truth.n_apoptotic >= 20
            assert result.n_pyknotic >= 5 and result.summary()["n_pyknotic"] == result.n_pyknotic
    assert extra[1] - extra[0] <= 0.5 * 30


def test_the_plate_analyzer_takes_texture_aware_from_its_settings() -> None:
    """``analyzer.settings.texture_aware`` reaches each field's segmentation (what a campaign
    file or ``cellpilot reanalyze --settings`` sets): textured 20x nuclei stay whole."""
    import numpy as np

    from analyzers.plate import _measure_plate
    from analyzers.settings import AnalysisSettings
    from instruments.interfaces import Frame

    assert AnalysisSettings().texture_aware is False
    settings = AnalysisSettings(
        texture_aware=True, nucleus_diameter_um=11.0, segmentation_method="seeded"
    )
    options = SceneOptions(texture=1.5, nucleoli=3.0, mitotic_fraction=0.0,
                           apoptotic_per_live=0.0, debris_min=0)  # fmt: skip
    frames = {}
    for seed in range(3):
        dapi, truth = render_scene(1, image_size=(96, 96), pixel_size_um=0.325,
                                   options=options, rng=seed)  # fmt: skip
        assert truth.n_counted == 1
        stack = np.stack([dapi, np.full_like(dapi, 100)])
        well = f"B{seed + 2}"
        frames[well] = [Frame(stack, ("DAPI", "GFP"), "P1", well, 0, 0.325, (0.0, 0.0), 0.0)]
    measured = _measure_plate(frames, list(frames), settings)
    assert [m[0].n_nuclei for m in measured.values()] == [1, 1, 1]
