"""Learned nucleus segmentation: a small U-Net at a canonical nucleus size, then watershed.

1. The image is rescaled so nuclei are ``CANONICAL_DIAMETER_PX`` (20 px) across, from the
   expected diameter ``d`` (given, or measured by :func:`analyzers.seeded.estimate_diameter`),
   and normalised by its 1st and 99.8th percentiles: one network serves 8-40 px nuclei and
   8/16-bit or float images alike.
2. :class:`~analyzers.learned.model.NucleusUNet` predicts the foreground probability and the
   distance to the nucleus edge (in canonical radii); large fields run in overlapping tiles.
3. Both maps are resized back to the image; seeds are the h-maxima of the distance
   (``seed_h``) above ``seed_floor``, grown by a watershed of the distance inside
   ``probability > fg_threshold``; pieces under 0.15 of a nucleus are dropped. The three
   settings were chosen on the validation images at training time and live in the weights
   file. Objects whose mean stain is under ``min_snr`` noise SDs above background are
   dropped (an empty field's noise, stretched by the normalisation, is not nuclei).

The weights (``analyzers/weights/nuclei_unet.pt``) ship with the repository and are rebuilt by
``python -m analyzers.learned.train`` (see that module); nothing downloads at run time.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import torch
from scipy import ndimage as ndi
from skimage.morphology import h_maxima
from skimage.segmentation import watershed
from skimage.transform import resize

from analyzers.exceptions import AnalysisError, MissingWeights
from analyzers.learned.model import NucleusUNet

__all__ = [
    "CANONICAL_DIAMETER_PX",
    "DEFAULT_WEIGHTS",
    "load_model",
    "normalise",
    "predict_maps",
    "segment_learned",
    "to_canonical",
]

CANONICAL_DIAMETER_PX = 20.0
DEFAULT_WEIGHTS = Path(__file__).resolve().parents[1] / "weights" / "nuclei_unet.pt"
TILE_PX = 512  # canonical px; a tile's edges see a 32 px margin of context that is discarded
TILE_MARGIN_PX = 32


def normalise(image: np.ndarray) -> np.ndarray:
    """Float32 image with its 1st percentile at 0 and 99.8th at 1 (robust to hot pixels)."""
    img = np.asarray(image, np.float32)
    lo, hi = np.percentile(img, (1.0, 99.8))
    return np.asarray((img - lo) / np.float32(max(hi - lo, 1e-6)), np.float32)


def to_canonical(image: np.ndarray, diameter_px: float) -> np.ndarray:
    """Resize ``(Y, X)`` so a ``diameter_px`` nucleus becomes ``CANONICAL_DIAMETER_PX``."""
    scale = CANONICAL_DIAMETER_PX / diameter_px
    shape = (max(8, round(image.shape[0] * scale)), max(8, round(image.shape[1] * scale)))
    resized = resize(image, shape, order=1, anti_aliasing=scale < 1, preserve_range=True)
    return np.asarray(resized, np.float32)


@lru_cache(maxsize=4)
def _load(path: str) -> tuple[NucleusUNet, dict[str, Any]]:
    if not Path(path).is_file():
        raise MissingWeights(path)
    blob = torch.load(path, map_location="cpu", weights_only=True)
    model = NucleusUNet(int(blob["width"]))
    model.load_state_dict({k: v.float() for k, v in blob["state_dict"].items()})
    model.eval()
    return model, {k: v for k, v in blob.items() if k != "state_dict"}


def load_model(weights: str | Path | None = None) -> tuple[NucleusUNet, dict[str, Any]]:
    """The network and its settings (thresholds, training record) from a weights file.

    Raises:
        MissingWeights: the file does not exist.
    """
    return _load(str(Path(weights or DEFAULT_WEIGHTS).resolve()))


def _run(model: NucleusUNet, canon: np.ndarray) -> np.ndarray:
    """``(2, H, W)`` maps of a canonical image (padded to a multiple of 8, tiled if large)."""
    h, w = canon.shape
    if h * w <= TILE_PX * TILE_PX * 2:
        ph, pw = -h % 8, -w % 8
        x = np.pad(canon, ((0, ph), (0, pw)), mode="reflect")
        with torch.no_grad():
            maps = np.asarray(model(torch.from_numpy(x)[None, None])[0].numpy())
        return maps[:, :h, :w]
    out = np.zeros((2, h, w), np.float32)
    step = TILE_PX - 2 * TILE_MARGIN_PX
    padded = np.pad(canon, TILE_MARGIN_PX, mode="reflect")
    m = TILE_MARGIN_PX
    for top in range(0, h, step):
        for left in range(0, w, step):
            th, tw = min(step, h - top), min(step, w - left)
            tile = padded[top : top + th + 2 * m, left : left + tw + 2 * m]
            res = _run(model, np.ascontiguousarray(tile))
            out[:, top : top + th, left : left + tw] = res[:, m : m + th, m : m + tw]
    return out


def predict_maps(
    image: np.ndarray, diameter_px: float, model: NucleusUNet
) -> tuple[np.ndarray, np.ndarray]:
    """Foreground probability and edge distance (canonical radii), both ``image.shape``."""
    canon = to_canonical(normalise(image), diameter_px)
    logit, dist = _run(model, canon)
    prob = 1.0 / (1.0 + np.exp(-logit))
    shape = image.shape
    return (
        resize(prob, shape, order=1, preserve_range=True).astype(np.float32),
        resize(dist, shape, order=1, preserve_range=True).astype(np.float32),
    )


def split_instances(
    prob: np.ndarray,
    dist: np.ndarray,
    diameter_px: float,
    fg_threshold: float = 0.5,
    seed_h: float = 0.1,
    seed_floor: float = 0.2,
) -> np.ndarray:
    """Instance labels 1..N from the two maps: a watershed of the distance inside the
    foreground, seeded by its h-maxima (a dip of less than ``seed_h`` canonical radii between
    two peaks is one nucleus) that stand above ``seed_floor``."""
    fg = prob > fg_threshold
    peaks = h_maxima(np.where(fg, dist, 0.0).astype(np.float32), seed_h).astype(bool)
    seeds, _ = ndi.label(peaks & fg & (dist > seed_floor))
    labels = watershed(-dist, seeds, mask=fg)
    areas = np.bincount(labels.ravel())
    keep = areas >= 0.15 * np.pi * diameter_px**2 / 4
    keep[0] = False
    labels = np.where(keep[labels], labels, 0)
    return np.unique(labels, return_inverse=True)[1].reshape(labels.shape).astype(np.int32)


def segment_learned(
    image: np.ndarray,
    diameter_px: float,
    *,
    weights: str | Path | None = None,
    fg_threshold: float | None = None,
    seed_h: float | None = None,
    min_snr: float = 5.0,
) -> np.ndarray:
    """Segment the nuclei of a ``(Y, X)`` image with the shipped network.

    Args:
        image: ``(Y, X)`` nuclear stain, any numeric dtype.
        diameter_px: expected nucleus diameter (px); the image is rescaled from it.
        weights: a weights file (default: the shipped ``analyzers/weights/nuclei_unet.pt``).
        fg_threshold: foreground probability cut (default: the file's).
        seed_h: least dip (canonical radii) of the distance between two seeds (default: the
            file's).
        min_snr: an object's mean stain must be this many noise SDs above background.

    Returns:
        ``(Y, X)`` int32 labels 1..N, 0 = background.

    Raises:
        MissingWeights: no weights file.
        AnalysisError: the image is not 2-D or the diameter is not positive.
    """
    img = np.asarray(image)
    if img.ndim != 2:
        raise AnalysisError(f"expected a 2-D (Y, X) image, got shape {img.shape}")
    if not diameter_px > 0:
        raise AnalysisError(f"nucleus diameter must be > 0 px, got {diameter_px}")
    model, meta = load_model(weights)
    prob, dist = predict_maps(img, diameter_px, model)
    labels = split_instances(
        prob,
        dist,
        diameter_px,
        meta["fg_threshold"] if fg_threshold is None else fg_threshold,
        meta["seed_h"] if seed_h is None else seed_h,
        meta["seed_floor"],
    )
    return drop_faint(labels, img, diameter_px, min_snr)


def drop_faint(
    labels: np.ndarray, image: np.ndarray, diameter_px: float, min_snr: float
) -> np.ndarray:
    """Labels without objects whose mean smoothed stain is under ``min_snr`` noise SDs above
    the pixels around no object (their median; the SD from their median absolute deviation):
    percentile normalisation stretches an empty field's noise to the range of nuclei, and
    the network then finds some. Measured on the gaps themselves, so a confluent field's
    nucleus edges do not inflate the noise (a whole-field percentile spread did, and dropped
    half the nuclei of confluent simulated fields). Left as is when under 5 % of the field
    is gap."""
    if not labels.any():
        return labels
    from analyzers.nuclei import estimate_background  # nuclei imports this module lazily

    img = np.asarray(image, np.float32)
    d = float(diameter_px)
    residual = img - estimate_background(img, block_px=max(16, round(3 * d)))  # uneven light
    smooth = ndi.gaussian_filter(residual, float(np.clip(0.1 * d, 0.5, 3.0)))
    outside = ~ndi.binary_dilation(labels > 0, iterations=max(1, round(0.2 * d)))
    if outside.mean() < 0.05:
        return labels
    gap = smooth[outside]
    level = float(np.median(gap))
    sigma = max(1.4826 * float(np.median(np.abs(gap - level))), 1e-6)
    n = int(labels.max())
    mean = np.asarray(ndi.mean(smooth, labels, np.arange(1, n + 1)))
    keep = np.concatenate([[False], mean - level >= min_snr * sigma])
    lut = np.zeros(n + 1, np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return np.asarray(lut[labels], np.int32)
