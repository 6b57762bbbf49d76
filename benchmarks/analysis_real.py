"""Nucleus segmentation on real, hand-annotated fluorescence images (issue 11).

Data (fetched once into ``~/.cache/cellpilot`` with ``pip download --no-deps``; never
installed, never committed):

- ``mnfinder==1.2.3`` (MIT): DAPI/Hoechst images of RPE1, U2OS and other lines at 20×–40×
  with instance masks (the id is the blue channel of each mask PNG; ids reused for separate
  nuclei are split into connected components). ``training-data/`` and ``validation-data/``
  are the **development** set (methods and settings were chosen on them);
  ``test-data/`` is the **hold-out**, scored only. A hold-out image that is pixel-identical
  to a development image is dropped from the hold-out (one is: ``test-data/2023-05-31_misc/
  1.tif`` = ``training-data/2022-05-26_RPE1/1.tif``).
- ``stardist==0.9.2``: the DSB2018 image ``data/images/img2d.tif`` with its mask
  (development set).

Methods, run on the same images in one process:

- ``seeded`` (called ``cellpilot`` in Runs 1–2, when it was the default):
  :func:`analyzers.count_nuclei` with ``method="seeded"`` and nothing but the image (the
  nucleus diameter is measured from the image; no pixel size is known for these images);
- ``seeded, annotated size``: the same with the image's median annotated nucleus diameter
  (how much a well-chosen size adds);
- ``learned``: :func:`analyzers.count_nuclei` with ``method="learned"`` (the small U-Net of
  :mod:`analyzers.learned`, trained on simulated fields and mnfinder ``training-data``;
  ``learned, annotated size`` with the annotated diameter). Its development figure is
  optimistic: the **validation** rows (mnfinder ``validation-data`` + DSB2018, which chose
  its checkpoint and settings but were never trained on) are its fair development figure;
- ``previous``: the threshold pipeline of :mod:`analyzers.nuclei` (Otsu + distance
  watershed + fragment merging) at the measured size, issue 11's starting point;
- ``skimage baseline``: Gaussian σ=1, Otsu, holes filled, distance transform,
  ``peak_local_max(min_distance=d/4)`` per object, watershed, pieces < 0.15 of a nucleus
  dropped; the same measured diameter ``d``.

Metrics per set: count error (Σ found − Σ annotated) / Σ annotated, the median and worst
per-image count error, precision, recall and F1 of objects matched one-to-one at IoU ≥ 0.5
(Hungarian on IoU), the worst per-image F1, the mean IoU of matched pairs, time per
megapixel.

    OMP_NUM_THREADS=1 python benchmarks/analysis_real.py            # ~3 min on one core
    OMP_NUM_THREADS=1 python benchmarks/analysis_real.py --json out.json --per-image
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_NUM_THREADS", "1")

import argparse  # noqa: E402
import json  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
from collections.abc import Callable  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Any  # noqa: E402

import numpy as np  # noqa: E402
from scipy import ndimage as ndi  # noqa: E402
from skimage.feature import peak_local_max  # noqa: E402
from skimage.filters import threshold_otsu  # noqa: E402
from skimage.segmentation import watershed  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from analyzers import count_nuclei  # noqa: E402
from analyzers.learned.real_data import (  # noqa: E402
    CACHE,
    fetch,
    load_dsb2018,
    load_split,
    match_objects,
)
from analyzers.nuclei import segment_field, segmentation_params  # noqa: E402
from analyzers.seeded import estimate_diameter  # noqa: E402

Sample = tuple[str, np.ndarray, np.ndarray]  # name, image, truth labels 1..N
match = match_objects


def load_sets(cache: Path = CACHE) -> tuple[list[Sample], list[Sample], list[str]]:
    """(development, hold-out, hold-out names dropped as duplicates of development images)."""
    dev = load_split("training-data", cache) + load_split("validation-data", cache)
    dev.append(load_dsb2018(cache))
    held, dropped = [], []
    for s in load_split("test-data", cache):
        if any(s[1].shape == d[1].shape and np.array_equal(s[1], d[1]) for d in dev):
            dropped.append(s[0])
        else:
            held.append(s)
    return dev, held, dropped


def skimage_baseline(image: np.ndarray, d: float) -> np.ndarray:
    """The textbook scikit-image pipeline: Otsu + distance-transform watershed."""
    smooth = ndi.gaussian_filter(np.asarray(image, np.float32), 1.0)
    mask = ndi.binary_fill_holes(smooth > threshold_otsu(smooth))
    distance = ndi.distance_transform_edt(mask)
    components, _ = ndi.label(mask)
    peaks = peak_local_max(distance, min_distance=max(1, round(d / 4)), labels=components)
    markers = np.zeros(mask.shape, np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1)
    labels = watershed(-distance, markers, mask=mask)
    areas = np.bincount(labels.ravel())
    keep = areas >= 0.15 * np.pi * d * d / 4
    keep[0] = False
    return np.where(keep[labels], labels, 0)


def previous(image: np.ndarray, d: float) -> np.ndarray:
    """Issue 11's starting point: the threshold pipeline at the nucleus size."""
    p = segmentation_params(d)
    p.update(seeded_diameter_px=0.0, min_area_px=max(3, round(0.2 * np.pi * d * d / 4)))
    return segment_field(image, **p).labels  # type: ignore[arg-type]


def median_diameter(truth: np.ndarray) -> float:
    areas = np.bincount(truth.ravel())[1:]
    return float(2 * np.sqrt(np.median(areas[areas > 0]) / np.pi))


Method = Callable[[np.ndarray, np.ndarray, float], np.ndarray]  # image, truth, measured d
METHODS: dict[str, Method] = {
    "seeded": lambda im, t, d: count_nuclei(im, method="seeded").labels,
    "seeded, annotated size": lambda im, t, d: (
        count_nuclei(im, method="seeded", nucleus_diameter_px=median_diameter(t)).labels
    ),
    "seeded, texture-aware": lambda im, t, d: (
        count_nuclei(im, method="seeded", texture_aware=True).labels
    ),
    "learned": lambda im, t, d: count_nuclei(im, method="learned").labels,
    "learned, annotated size": lambda im, t, d: (
        count_nuclei(im, method="learned", nucleus_diameter_px=median_diameter(t)).labels
    ),
    "previous": lambda im, t, d: previous(im, d),
    "skimage baseline": lambda im, t, d: skimage_baseline(im, d),
}


def score(samples: list[Sample], method: Method, diameters: list[float]) -> dict[str, Any]:
    tp = fp = fn = 0
    ious: list[float] = []
    per_image = []
    seconds = megapixels = 0.0
    for (name, image, truth), d in zip(samples, diameters, strict=True):
        t0 = time.perf_counter()
        pred = np.asarray(method(image, truth, d), np.int64)
        seconds += time.perf_counter() - t0
        megapixels += image.size / 1e6
        pred = np.unique(pred, return_inverse=True)[1].reshape(pred.shape)  # 1..N
        a, b, c, i = match(truth, pred)
        tp, fp, fn, ious = tp + a, fp + b, fn + c, ious + i
        n_true, n_found = int(truth.max()), int(pred.max())
        per_image.append(
            {
                "image": name,
                "truth": n_true,
                "found": n_found,
                "count_error": (n_found - n_true) / n_true,
                "f1": 2 * a / max(2 * a + b + c, 1),
            }
        )
    errors = [r["count_error"] for r in per_image]
    n_true = sum(r["truth"] for r in per_image)
    n_found = sum(r["found"] for r in per_image)
    return {
        "images": len(samples),
        "nuclei": n_true,
        "found": n_found,
        "count_error": (n_found - n_true) / n_true,
        "median_abs_count_error": float(np.median(np.abs(errors))),
        "worst_count_error": float(max(errors, key=abs)),
        "precision": tp / max(tp + fp, 1),
        "recall": tp / max(tp + fn, 1),
        "f1": 2 * tp / max(2 * tp + fp + fn, 1),
        "worst_f1": min(r["f1"] for r in per_image),
        "mean_matched_iou": float(np.mean(ious)) if ious else 0.0,
        "s_per_megapixel": seconds / megapixels,
        "per_image": per_image,
    }


def table(results: dict[str, dict[str, dict[str, Any]]]) -> str:
    head = (
        "| set | method | images | nuclei | found | count err | median / worst image "
        "| precision | recall | F1 | worst image F1 | matched IoU | s/MP |"
    )
    lines = [head, "|" + "---|" * 13]
    for split, by_method in results.items():
        for method, r in by_method.items():
            lines.append(
                f"| {split} | {method} | {r['images']} | {r['nuclei']} | {r['found']} "
                f"| {r['count_error']:+.1%} | {r['median_abs_count_error']:.1%} / "
                f"{r['worst_count_error']:+.0%} | {r['precision']:.3f} | {r['recall']:.3f} "
                f"| **{r['f1']:.3f}** | {r['worst_f1']:.2f} | {r['mean_matched_iou']:.3f} "
                f"| {r['s_per_megapixel']:.2f} |"
            )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--cache", type=Path, default=CACHE)
    ap.add_argument("--sets", nargs="+", default=["development", "validation", "hold-out"])
    ap.add_argument("--methods", nargs="+", default=list(METHODS))
    ap.add_argument("--json", type=Path, help="write every number here")
    ap.add_argument("--per-image", action="store_true", help="print every image's row")
    args = ap.parse_args(argv)
    dev, held, dropped = load_sets(fetch(args.cache))
    # the learned method trained on mnfinder training-data: its honest development figure is
    # the validation part (mnfinder validation-data + DSB2018), which it never trained on
    val = [x for x in dev if not x[0].startswith("training-data")]
    sets = {"development": dev, "validation": val, "hold-out": held}
    if dropped:
        print(f"hold-out: dropped {len(dropped)} image(s) identical to development ones: {dropped}")
    results: dict[str, dict[str, dict[str, Any]]] = {}
    for split in args.sets:
        samples = sets[split]
        diameters = [estimate_diameter(im) for _, im, _ in samples]
        results[split] = {m: score(samples, METHODS[m], diameters) for m in args.methods}
        if args.per_image:
            for m in args.methods:
                for r in results[split][m]["per_image"]:
                    print(
                        f"{split:12s} {m:26s} {r['image'][:60]:60s} {r['truth']:4d} "
                        f"{r['found']:4d} {r['count_error']:+.2f} F1 {r['f1']:.3f}"
                    )
    print(table(results))
    print(f"({time.strftime('%Y-%m-%d')}; IoU >= 0.5; count err = pooled over the set)")
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "date": time.strftime("%Y-%m-%d"),
                    "results": results,
                    "dropped_from_hold_out": dropped,
                },
                indent=1,
            )
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
