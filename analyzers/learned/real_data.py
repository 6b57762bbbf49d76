"""Real annotated nucleus images from registry wheels (for training and benchmarks only).

``mnfinder==1.2.3`` (MIT; DAPI/Hoechst, several cell lines, 20x-40x, instance masks) and
``stardist==0.9.2`` (one DSB2018 image with its mask) are fetched with
``pip download --no-deps`` into a cache (default ``~/.cache/cellpilot``, or
``$CELLPILOT_CACHE``) and unpacked there; never installed (they pull TensorFlow), never
committed. mnfinder's ``test-data/`` is the benchmarks' hold-out: nothing is trained or
chosen on it.
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
from scipy import ndimage as ndi
from scipy.optimize import linear_sum_assignment

__all__ = ["CACHE", "Sample", "fetch", "load_split", "load_dsb2018", "match_objects"]

CACHE = Path(os.environ.get("CELLPILOT_CACHE", Path.home() / ".cache" / "cellpilot"))
WHEELS = {"mnfinder": "mnfinder==1.2.3", "stardist": "stardist==0.9.2"}

Sample = tuple[str, np.ndarray, np.ndarray]  # name, image, truth labels 1..N


def fetch(cache: Path = CACHE) -> Path:
    """Download the two wheels (no dependencies) and unpack their image data; return the root."""
    wheels = cache / "wheels"
    wheels.mkdir(parents=True, exist_ok=True)
    for name, spec in WHEELS.items():
        if not list(wheels.glob(f"{name}-*.whl")):
            cmd = [sys.executable, "-m", "pip", "download", "-q", "--no-deps", spec]
            subprocess.run([*cmd, "-d", str(wheels)], check=True)
        dest = cache / name
        if not (dest / ".unpacked").exists():
            wheel = next(iter(wheels.glob(f"{name}-*.whl")))
            with zipfile.ZipFile(wheel) as z:
                members = [m for m in z.namelist() if "-data/" in m or "data/images/" in m]
                z.extractall(dest, members)
            (dest / ".unpacked").touch()
    return cache


def mask_labels(path: Path) -> np.ndarray:
    """Instance labels from an mnfinder mask PNG: blue channel ids, split into components
    (annotators sometimes reused an id for separate nuclei)."""
    from PIL import Image

    ids = np.asarray(Image.open(path))[..., 2]
    labels = np.zeros(ids.shape, np.int32)
    n = 0
    for i in np.unique(ids[ids > 0]):
        comp, k = ndi.label(ids == i)
        labels[comp > 0] = comp[comp > 0] + n
        n += k
    return labels


def load_split(name: str, cache: Path = CACHE) -> list[Sample]:
    """mnfinder's ``training-data``, ``validation-data`` or ``test-data`` (fetched first)."""
    import tifffile

    root = cache / "mnfinder" / "mnfinder"
    out = []
    for img_path in sorted((root / name).glob("*/images/*.tif")):
        mask = img_path.parent.parent / "nucleus_masks" / (img_path.stem + ".png")
        if mask.exists():
            rel = str(img_path.relative_to(root))
            out.append((rel, tifffile.imread(img_path), mask_labels(mask)))
    return out


def load_dsb2018(cache: Path = CACHE) -> Sample:
    """StarDist's DSB2018 example image with its instance mask."""
    import tifffile

    sd = cache / "stardist" / "stardist" / "data" / "images"
    truth = tifffile.imread(sd / "mask2d.tif")
    dense = np.unique(truth, return_inverse=True)[1].reshape(truth.shape).astype(np.int32)
    return ("stardist/img2d.tif (DSB2018)", tifffile.imread(sd / "img2d.tif"), dense)


def match_objects(
    truth: np.ndarray, pred: np.ndarray, iou_min: float = 0.5
) -> tuple[int, int, int, list[float]]:
    """(true positives, false positives, false negatives, IoUs of matched pairs).

    Objects are matched one-to-one (Hungarian on IoU); a pair counts at IoU ≥ ``iou_min``.
    Both label images must hold labels 1..N.
    """
    nt, npred = int(truth.max()), int(pred.max())
    if nt == 0 or npred == 0:
        return 0, npred, nt, []
    joint = truth.ravel().astype(np.int64) * (npred + 1) + pred.ravel()
    table = np.bincount(joint, minlength=(nt + 1) * (npred + 1)).reshape(nt + 1, npred + 1)
    inter = table[1:, 1:].astype(np.float64)
    union = table.sum(1)[1:, None] + table.sum(0)[None, 1:] - inter
    iou = inter / np.maximum(union, 1.0)
    rows, cols = linear_sum_assignment(-np.where(iou >= iou_min, iou, 0.0))
    ok = iou[rows, cols] >= iou_min
    tp = int(ok.sum())
    return tp, npred - tp, nt - tp, [float(x) for x in iou[rows, cols][ok]]
