"""The learned segmenter (analyzers/learned): shipped weights, accuracy on a rendered field,
bad input, determinism of inference and of training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from analyzers import AnalysisError, count_nuclei
from analyzers.exceptions import MissingWeights
from analyzers.learned.real_data import match_objects
from analyzers.learned.segment import DEFAULT_WEIGHTS, load_model, segment_learned
from analyzers.learned.train import canonical_pair, fit
from simulators.nuclei_scene import SceneOptions, coverage_count, render_scene


def _scene(seed: int, px: float = 0.65, coverage: float = 0.3) -> tuple[np.ndarray, np.ndarray]:
    size = (256, 256)
    image, truth = render_scene(
        coverage_count(coverage, size, 11.0 / px), image_size=size, pixel_size_um=px, rng=seed
    )
    return image, truth.labels


def test_shipped_weights_load() -> None:
    model, meta = load_model()
    n_params = sum(p.numel() for p in model.parameters())
    assert 100_000 < n_params < 1_000_000
    assert 0 < meta["fg_threshold"] < 1 and 0 < meta["seed_h"] < 1 and meta["seed_floor"] >= 0
    assert DEFAULT_WEIGHTS.stat().st_size < 3_000_000


#: measured 0.95-0.99 on these fields (the seeded watershed: 0.93-0.955)
F1_MIN = 0.93


@pytest.mark.parametrize(("seed", "px"), [(11, 0.65), (12, 0.325), (13, 1.3)])
def test_rendered_field_segmented(seed: int, px: float) -> None:
    """Realistic fields at 20x, 10x and binned; seeds outside the training (100000+) and
    benchmark (1000-2999) ranges."""
    image, truth = _scene(seed, px)
    result = count_nuclei(image, pixel_size_um=px, nucleus_diameter_um=11.0, method="learned")
    tp, fp, fn, _ = match_objects(truth, result.labels)
    f1 = 2 * tp / (2 * tp + fp + fn)
    assert result.method == "learned" and result.summary()["method"] == "learned"
    assert f1 >= F1_MIN, f"F1 {f1:.3f}"
    assert result.count == pytest.approx(int(truth.max()), rel=0.1)


def test_empty_field_has_no_nuclei() -> None:
    rng = np.random.default_rng(0)
    image = rng.poisson(100, (128, 128)).astype(np.uint16)
    assert segment_learned(image, 16.0).max() <= 1


def test_inference_is_deterministic() -> None:
    image, _ = _scene(21)
    a = segment_learned(image, 11.0 / 0.65)
    b = segment_learned(image.astype(np.float64), 11.0 / 0.65)
    assert np.array_equal(a, b)


def test_bad_input_rejected(tmp_path: Path) -> None:
    with pytest.raises(AnalysisError, match="2-D"):
        segment_learned(np.zeros((2, 32, 32)), 16.0)
    with pytest.raises(AnalysisError, match="diameter"):
        segment_learned(np.zeros((32, 32)), 0.0)
    with pytest.raises(MissingWeights, match="analyzers.learned.train"):
        segment_learned(np.zeros((32, 32)), 16.0, weights=tmp_path / "none.pt")
    with pytest.raises(AnalysisError, match="unknown segmentation method"):
        count_nuclei(np.zeros((32, 32)), nucleus_diameter_px=10, method="unet")  # type: ignore[arg-type]


def test_training_is_deterministic_for_a_seed() -> None:
    options = SceneOptions(debris_min=0)
    pool = []
    for seed in (1, 2):
        image, truth = render_scene(20, image_size=(96, 96), pixel_size_um=0.65,
                                    options=options, rng=seed)  # fmt: skip
        pool.append(canonical_pair(image, truth.labels, truth.diameter_px))
    runs = [fit([], pool, steps=2, seed=3, width=4, batch=2, patch=48)[0] for _ in range(2)]
    for (name, a), b in zip(
        runs[0].state_dict().items(), runs[1].state_dict().values(), strict=True
    ):
        assert torch.equal(a, b), name


def test_the_plate_analyzer_takes_the_method_from_its_settings() -> None:
    """``analyzer.settings.segmentation_method`` reaches each field's segmentation (what a
    campaign file or ``cellpilot reanalyze --settings`` sets)."""
    from analyzers.plate import _measure_plate
    from analyzers.settings import AnalysisSettings
    from instruments.interfaces import Frame

    assert AnalysisSettings().segmentation_method == "seeded"
    image, truth = _scene(31)
    stack = np.stack([image, np.full_like(image, 100)])
    frames = {"B2": [Frame(stack, ("DAPI", "GFP"), "P1", "B2", 0, 0.65, (0.0, 0.0), 0.0)]}
    counts = {}
    for method in ("seeded", "learned"):
        settings = AnalysisSettings(segmentation_method=method, nucleus_diameter_um=11.0)
        counts[method] = _measure_plate(frames, ["B2"], settings)["B2"][0].n_nuclei
    learned = count_nuclei(image, pixel_size_um=0.65, nucleus_diameter_um=11.0, method="learned")
    assert counts["learned"] == learned.count
    assert counts["learned"] == pytest.approx(int(truth.max()), rel=0.1)


def test_large_field_runs_in_tiles() -> None:
    """A 1024² field at 20 px nuclei is past the one-shot size: tiles must not cut nuclei."""
    size = (1024, 1024)
    image, truth = render_scene(coverage_count(0.2, size, 20.0), image_size=size,
                                pixel_size_um=0.55, rng=41)  # fmt: skip
    labels = segment_learned(image, 20.0)
    tp, fp, fn, _ = match_objects(truth.labels, labels)
    assert 2 * tp / (2 * tp + fp + fn) >= F1_MIN


def test_confluent_field_keeps_its_nuclei() -> None:
    """The faint-object floor measures noise in the gaps: a whole-field estimate, inflated by
    nucleus edges in a confluent field, dropped half of these nuclei."""
    image, truth = _scene(51, px=1.3, coverage=0.55)
    labels = segment_learned(image, 11.0 / 1.3)
    tp, fp, fn, _ = match_objects(truth, labels)
    assert 2 * tp / (2 * tp + fp + fn) >= F1_MIN


def test_a_clump_taken_for_a_nucleus_does_not_empty_a_confluent_field() -> None:
    """A 40 % field at 0.65 µm/px (benchmarks/analysis_sim.py, development seed 1316) where the
    quick size estimate took a clump for a nucleus (7x too large: nothing was counted)."""
    import sys

    from analyzers.seeded import estimate_diameter

    sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
    import analysis_sim

    rng = np.random.default_rng(1316)
    options = analysis_sim.field_options(0.4, rng)
    n = coverage_count(0.4, (384, 384), 11.0 / 0.65)
    image, truth = render_scene(n, image_size=(384, 384), pixel_size_um=0.65,
                                options=options, rng=rng)  # fmt: skip
    assert estimate_diameter(image) > 3 * estimate_diameter(image, texture_aware=True)
    assert count_nuclei(image).count == pytest.approx(truth.n_counted, rel=0.25)
