"""Nucleus segmentation and per-nucleus features for one fluorescence field.

For nuclei of 6 px and more (real images at 10×–40×) :func:`segment_field` hands over to the
seeded watershed of :mod:`analyzers.seeded` (``seeded_diameter_px > 0``, what
:func:`segmentation_params` sets from 6 px on). Below that, and with the default arguments:

Pipeline (:func:`segment_field`): block-percentile background (uneven illumination) →
Gaussian smoothing → Otsu threshold, floored at a multiple of the background noise so an
empty field does not segment noise (and recomputed without any oversized bright blob, so debris
does not drag it up) → watershed from ``peak_local_max`` seeds of the distance transform (or,
for nuclei under ~6 px, of a Laplacian of Gaussian), which splits touching nuclei → small
over-split pieces merged back into their neighbour → size filter. Objects larger than
``max_area_px`` (bubbles, debris clumps) are taken out of the labels and reported separately
so field QC can see them, as is the largest nucleus-free region (a bubble's footprint).
:func:`segmentation_params` scales every pixel size from the expected nucleus diameter.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import ndimage as ndi
from skimage.feature import peak_local_max
from skimage.filters import threshold_otsu
from skimage.segmentation import watershed

from analyzers.exceptions import AnalysisError
from analyzers.seeded import fill_holes, segment_seeded

SEGMENTATION_METHODS = ("seeded", "learned")

__all__ = [
    "FieldSegmentation",
    "SEGMENTATION_METHODS",
    "segmentation_params",
    "estimate_background",
    "noise_sigma",
    "nucleus_features",
    "segment_field",
    "segment_nuclei",
]


def estimate_background(
    image: np.ndarray, *, block_px: int = 32, percentile: float = 10.0
) -> np.ndarray:
    """Smooth background of a ``(Y, X)`` image: a low percentile per block, bilinearly upsampled.

    Works while nuclei cover less than ``100 - percentile`` % of each block.

    Returns:
        ``(Y, X)`` float32 background, same shape as ``image``.
    """
    img = np.asarray(image, dtype=np.float32)
    ny, nx = -(-img.shape[0] // block_px), -(-img.shape[1] // block_px)
    pad = ((0, ny * block_px - img.shape[0]), (0, nx * block_px - img.shape[1]))
    padded = np.pad(img, pad, mode="reflect") if any(p[1] for p in pad) else img
    blocks = padded.reshape(ny, block_px, nx, block_px)
    if block_px >= 16:  # every other pixel is plenty for a percentile, 4x cheaper
        blocks = blocks[:, ::2, :, ::2]
    per_block = blocks.transpose(0, 2, 1, 3).reshape(ny, nx, -1)
    low = np.percentile(per_block, percentile, axis=-1).astype(np.float32)
    if min(ny, nx) >= 3:
        low = ndi.median_filter(low, size=3, mode="nearest")  # blocks full of nuclei
    wy = _linear_weights(img.shape[0], ny, block_px)
    wx = _linear_weights(img.shape[1], nx, block_px)
    return np.asarray(wy @ low @ wx.T, dtype=np.float32)


def _linear_weights(n_px: int, n_blocks: int, block_px: int) -> np.ndarray:
    """``(n_px, n_blocks)`` bilinear interpolation weights from block centres to pixels."""
    pos = np.clip((np.arange(n_px) + 0.5) / block_px - 0.5, 0, n_blocks - 1)
    lo = np.floor(pos).astype(int)
    hi = np.minimum(lo + 1, n_blocks - 1)
    frac = (pos - lo).astype(np.float32)
    w = np.zeros((n_px, n_blocks), np.float32)
    w[np.arange(n_px), lo] += 1 - frac
    w[np.arange(n_px), hi] += frac
    return w


def noise_sigma(residual: np.ndarray) -> float:
    """Robust noise SD of a background-subtracted image, from its 5th–25th percentile spread.

    Valid while background is at least a quarter of the pixels.
    """
    p5, p25 = np.percentile(residual, [5.0, 25.0])
    return float(max(p25 - p5, 1e-6) / 0.971)  # z(0.25) - z(0.05) = 0.971


def segmentation_params(nucleus_diameter_px: float) -> dict[str, float]:
    """:func:`segment_field` keyword arguments scaled to the expected nucleus diameter (px).

    ``A = π d² / 4``: ``min_area_px = max(3, 0.2 A)``, ``max_area_px = 8 A``,
    ``smooth_sigma_px = clip(0.1 d, 0.5, 3)``, ``background_block_px = max(16, 3 d)``,
    ``min_peak_distance_px = max(1, 0.2 d)``, ``merge_area_px = 0.4 A``. From d = 6 px the
    seeded watershed (:mod:`analyzers.seeded`, ``seeded_diameter_px = d``) is used, with
    ``min_area_px = 0.15 A``; only ``min_area_px``, ``max_area_px``, ``background_block_px``
    and ``min_snr`` apply to it (measured on real annotated images: object F1 0.72 → 0.94,
    see ``benchmarks/analysis_real.py``). Below d = 6 px the threshold pipeline's watershed
    is seeded from Laplacian-of-Gaussian blob centres (``log_sigma_px = 0.3 d``): the distance
    transform of a 4-px nucleus has too few levels to split touching pairs (measured on the
    simulator: 0.88 → 0.97 of the true count at 300 nuclei per field).
    """
    d = float(nucleus_diameter_px)
    area = np.pi * d * d / 4.0
    seeded = d >= 6.0
    return {
        "min_area_px": max(3, round((0.15 if seeded else 0.2) * area)),
        "max_area_px": max(12, round(8.0 * area)),
        "smooth_sigma_px": float(np.clip(0.1 * d, 0.5, 3.0)),
        "background_block_px": max(16, round(3.0 * d)),
        "min_peak_distance_px": max(1, round(0.2 * d)),
        "merge_area_px": round(0.4 * area),
        "log_sigma_px": 0.3 * d if d < 6.0 else 0.0,
        "seeded_diameter_px": d if seeded else 0.0,
    }


@dataclass(frozen=True)
class FieldSegmentation:
    """Result of segmenting one field.

    Attributes:
        labels: ``(Y, X)`` int32 nucleus labels, 0 = background.
        threshold: foreground threshold on the smoothed, background-subtracted image.
        noise_sigma: robust noise SD of that image.
        n_large_objects: objects removed for being larger than ``max_area_px``.
        large_object_area_px: their total area.
        background: ``(Y, X)`` float32 background estimate that was subtracted.
        largest_gap_px: radius of the largest nucleus-free disc (px); a bubble or a
            scratch leaves an empty region much larger than random spacing does.
        n_pyknotic: pyknotic (apoptotic) nuclei left out of ``labels`` (seeded path only).
    """

    labels: np.ndarray
    threshold: float
    noise_sigma: float
    n_large_objects: int
    large_object_area_px: int
    background: np.ndarray
    largest_gap_px: float = 0.0
    n_pyknotic: int = 0


def segment_field(
    dapi: np.ndarray,
    *,
    min_area_px: int = 20,
    max_area_px: int = 600,
    smooth_sigma_px: float = 1.0,
    background_block_px: int = 32,
    min_snr: float = 5.0,
    min_peak_distance_px: int = 2,
    merge_area_px: int = 0,
    log_sigma_px: float = 0.0,
    seeded_diameter_px: float = 0.0,
    texture_aware: bool = False,
    method: str = "seeded",
) -> FieldSegmentation:
    """Segment nuclei in a ``(Y, X)`` nuclear-stain image; see the module docstring.

    Args:
        dapi: ``(Y, X)`` nuclear channel (any numeric dtype).
        min_area_px: objects smaller than this are dropped (noise, small debris).
        max_area_px: objects larger than this are removed and counted as large objects.
        smooth_sigma_px: Gaussian sigma before thresholding.
        background_block_px: block size of the background estimate; several nuclei wide.
        min_snr: the threshold is at least this many noise SDs above background.
        min_peak_distance_px: smallest distance between two nucleus centres (watershed seeds);
            2 suits 8–14 px nuclei; raise it for much larger nuclei.
        merge_area_px: watershed pieces smaller than this that touch another piece are
            merged into the neighbour they share most boundary with (over-split nuclei);
            0 disables.
        log_sigma_px: > 0 seeds the watershed from Laplacian-of-Gaussian blob centres at
            this scale instead of the distance transform (for nuclei under ~6 px).
        seeded_diameter_px: > 0 segments with :func:`analyzers.seeded.segment_seeded` at this
            nucleus diameter instead (``smooth_sigma_px``, ``min_peak_distance_px``,
            ``merge_area_px`` and ``log_sigma_px`` then do not apply).
        texture_aware: with ``seeded_diameter_px``, the seeded watershed's texture-aware
            steps (:mod:`analyzers.seeded`; off by default).
        method: ``"seeded"`` (default) or ``"learned"``: with ``seeded_diameter_px``, the
            small U-Net of :mod:`analyzers.learned.segment` at that nucleus size instead of
            the seeded watershed (``texture_aware`` then does not apply).

    Raises:
        AnalysisError: an unknown ``method``.
        MissingWeights: ``method="learned"`` and the weights file is missing.
    """
    if method not in SEGMENTATION_METHODS:
        raise AnalysisError(
            f"unknown segmentation method {method!r}; known: {list(SEGMENTATION_METHODS)}"
        )
    if seeded_diameter_px > 0 and method == "learned":
        return _learned_field(dapi, seeded_diameter_px, background_block_px, max_area_px, min_snr)
    if seeded_diameter_px > 0:
        return _seeded_field(
            dapi,
            seeded_diameter_px,
            min_snr,
            background_block_px,
            min_area_px,
            max_area_px,
            texture_aware,
        )
    img = np.asarray(dapi, dtype=np.float32)
    background = estimate_background(img, block_px=background_block_px)
    residual = img - background
    smooth = ndi.gaussian_filter(residual, smooth_sigma_px)
    sigma = noise_sigma(smooth)
    thr = _threshold(smooth, min_snr * sigma, None)
    mask = fill_holes(smooth > thr)
    large = _large_components(mask, max_area_px)
    if large.any():  # a bright blob (debris) drags Otsu up: threshold again without it
        thr = _threshold(smooth, min_snr * sigma, ~ndi.binary_dilation(large, iterations=3))
        mask = fill_holes(smooth > thr)
    labels = _split_touching(mask, min_peak_distance_px, residual, log_sigma_px)
    if merge_area_px > 0:
        labels = _merge_fragments(labels, merge_area_px)
    labels, n_large, large_area = _filter_sizes(labels, min_area_px, max_area_px)
    gap = float(ndi.distance_transform_edt(labels == 0).max()) if labels.any() else 0.0
    return FieldSegmentation(labels, thr, sigma, n_large, large_area, background, gap)


def _seeded_field(
    dapi: np.ndarray,
    d: float,
    min_snr: float,
    block: int,
    min_area: int,
    max_area: int,
    texture_aware: bool = False,
) -> FieldSegmentation:
    seg = segment_seeded(
        dapi,
        d,
        min_snr=min_snr,
        background_block_px=block,
        min_area_px=min_area,
        max_area_px=max_area,
        texture_aware=texture_aware,
    )
    labels = seg.labels
    gap = float(ndi.distance_transform_edt(labels == 0).max()) if labels.any() else 0.0
    return FieldSegmentation(
        labels,
        seg.threshold,
        seg.noise_sigma,
        seg.n_large_objects,
        seg.large_object_area_px,
        seg.background,
        gap,
        seg.n_pyknotic,
    )


def _learned_field(
    dapi: np.ndarray, d: float, block: int, max_area: int, min_snr: float
) -> FieldSegmentation:
    # imported here: torch loads only when someone asks for the learned method
    from analyzers.learned.segment import segment_learned

    img = np.asarray(dapi, dtype=np.float32)
    background = estimate_background(img, block_px=block)
    labels = segment_learned(img, d, min_snr=min_snr)
    labels, n_large, large_area = _filter_sizes(labels, 1, max_area)
    sigma = noise_sigma(ndi.gaussian_filter(img - background, float(np.clip(0.1 * d, 0.5, 3))))
    gap = float(ndi.distance_transform_edt(labels == 0).max()) if labels.any() else 0.0
    # no intensity threshold: the network's foreground probability decides
    return FieldSegmentation(labels, float("nan"), sigma, n_large, large_area, background, gap)


def _threshold(smooth: np.ndarray, floor: float, where: np.ndarray | None) -> float:
    """Otsu over ``smooth`` (or its ``where`` pixels), never below ``floor``."""
    values = smooth if where is None else smooth[where]
    if values.size < 2 or values.max() <= values.min():
        return floor
    return max(float(threshold_otsu(values)), floor)


def _large_components(mask: np.ndarray, max_area_px: int) -> np.ndarray:
    """Pixels of connected components larger than ``max_area_px`` (before splitting)."""
    components, _ = ndi.label(mask)
    areas = np.bincount(components.ravel())
    areas[0] = 0
    return np.asarray((areas > max_area_px)[components])


def segment_nuclei(
    dapi: np.ndarray, *, min_area_px: int = 20, max_area_px: int = 600, **kwargs: float
) -> np.ndarray:
    """Nucleus labels of a ``(Y, X)`` nuclear-stain image (``(Y, X)`` int32, 0 = background).

    Keyword arguments are those of :func:`segment_field`.
    """
    return segment_field(dapi, min_area_px=min_area_px, max_area_px=max_area_px, **kwargs).labels  # type: ignore[arg-type]


def _split_touching(
    mask: np.ndarray, min_peak_distance_px: int, residual: np.ndarray, log_sigma_px: float
) -> np.ndarray:
    """Watershed from local maxima of the (lightly smoothed) distance transform or, when
    ``log_sigma_px > 0``, of the negative Laplacian of Gaussian of the image (blob centres:
    better for nuclei only a few pixels wide, where distances take few distinct values)."""
    if not mask.any():
        return np.zeros(mask.shape, dtype=np.int32)
    if log_sigma_px > 0:
        distance = -ndi.gaussian_laplace(residual, log_sigma_px)
    else:
        edt = ndi.distance_transform_edt(mask).astype(np.float32)
        distance = ndi.gaussian_filter(edt, 0.5)
    if log_sigma_px > 0:  # the LoG spreads across object borders: look per object
        components, _ = ndi.label(mask)
        if min_peak_distance_px == 1:
            peaks = _peaks_per_object_3x3(distance, components)
        else:
            peaks = peak_local_max(
                distance,
                min_distance=min_peak_distance_px,
                labels=components,
                exclude_border=False,
            )
    else:  # distance peaks sit >= a radius inside their object: one global pass (5x faster)
        peaks = peak_local_max(distance, min_distance=min_peak_distance_px, exclude_border=False)
        peaks = peaks[mask[tuple(peaks.T)]]
    markers = np.zeros(mask.shape, dtype=np.int32)
    markers[tuple(peaks.T)] = np.arange(1, len(peaks) + 1, dtype=np.int32)
    labels = watershed(-distance, markers, mask=mask)
    # components without a marker (tiny blobs) keep their own label
    missing = mask & (labels == 0)
    if missing.any():
        extra, _ = ndi.label(missing)
        labels = np.where(missing, extra + labels.max(), labels)
    return np.asarray(labels, dtype=np.int32)


def _peaks_per_object_3x3(image: np.ndarray, components: np.ndarray) -> np.ndarray:
    """``peak_local_max(image, min_distance=1, labels=components, exclude_border=False)`` in
    one vectorised pass (skimage loops over objects: 9 s of a 5-plate dry-run's 22 s of
    analysis). A pixel is a peak when no pixel of its own object within its 3x3 neighbourhood
    is higher; an object whose every pixel is a peak (flat) keeps only the pixels an opening
    removes, as skimage does. Coordinates are ordered like skimage's: by object, then by
    decreasing value."""
    h, w = image.shape
    pad_img = np.pad(image, 1, constant_values=-np.inf)
    pad_lab = np.pad(components, 1, constant_values=0)
    neighbour_max = image.copy()
    for dy, dx in ((0, 0), (0, 1), (0, 2), (1, 0), (1, 2), (2, 0), (2, 1), (2, 2)):
        val = pad_img[dy : dy + h, dx : dx + w]
        np.maximum(
            neighbour_max,
            val,
            out=neighbour_max,
            where=pad_lab[dy : dy + h, dx : dx + w] == components,
        )
    inside = components > 0
    n = int(components.max())
    if n == 0:
        return np.empty((0, 2), dtype=np.intp)
    is_max = inside & (image == neighbour_max)
    above = image > image.min()
    # objects whose every pixel is a maximum ("trivial" in skimage)
    all_max = np.bincount(components[inside & ~is_max], minlength=n + 1) == 0
    trivial = all_max[components] & inside
    if trivial.any():
        # Opened together: distinct objects are never 4-adjacent, so each opens as alone.
        is_max[trivial] = (trivial & ~ndi.binary_opening(trivial))[trivial]
    peak = is_max & above
    ys, xs = np.nonzero(peak)
    order = np.lexsort((-image[ys, xs], components[ys, xs]))  # stable: ties stay in raster order
    return np.stack([ys[order], xs[order]], axis=1)


def _merge_fragments(labels: np.ndarray, merge_area_px: int) -> np.ndarray:
    """Merge small watershed pieces into the touching piece with the longest shared border."""
    areas = np.bincount(labels.ravel())
    small = areas < merge_area_px
    small[0] = False
    if not small.any():
        return labels
    n = areas.size
    keys = []
    for a, b in ((labels[:, :-1], labels[:, 1:]), (labels[:-1, :], labels[1:, :])):
        touch = (a != b) & (a > 0) & (b > 0)
        a, b = a[touch].astype(np.int64), b[touch].astype(np.int64)
        keys += [a * n + b, b * n + a]
    if not keys:
        return labels
    pairs, counts = np.unique(np.concatenate(keys), return_counts=True)
    src, dst = pairs // n, pairs % n
    keep = small[src]
    src, dst, counts = src[keep], dst[keep], counts[keep]
    if src.size == 0:
        return labels
    order = np.lexsort((-counts, src))  # per source, the longest border first
    src, dst = src[order], dst[order]
    first = np.r_[True, src[1:] != src[:-1]]
    lut = np.arange(n, dtype=labels.dtype)
    lut[src[first]] = dst[first]
    lut = lut[lut]  # a fragment merged into another fragment follows it once more
    return np.asarray(lut[labels])


def _filter_sizes(labels: np.ndarray, min_area: int, max_area: int) -> tuple[np.ndarray, int, int]:
    """Drop small objects, remove large ones (reported), relabel 1..N."""
    areas = np.bincount(labels.ravel())
    areas[0] = 0
    large = areas > max_area
    keep = (areas >= min_area) & ~large
    keep[0] = False
    lut = np.zeros(areas.size, dtype=np.int32)
    lut[keep] = np.arange(1, int(keep.sum()) + 1, dtype=np.int32)
    return lut[labels], int(large.sum()), int(areas[large].sum())


def nucleus_features(
    labels: np.ndarray,
    planes: dict[str, np.ndarray],
    *,
    background_block_px: int = 32,
    subtract_background: bool = True,
) -> dict[str, np.ndarray]:
    """Per-nucleus features: ``label``, ``area_px``, ``centroid_y``, ``centroid_x`` and, for
    each named plane, ``mean_<name>`` of its background-corrected intensity.

    The same numbers as ``skimage.measure.regionprops_table(..., properties=("label", "area",
    "centroid", "intensity_mean"))`` for labels 1..N, computed with ``np.bincount`` (~20x
    faster with hundreds of nuclei).

    Args:
        labels: ``(Y, X)`` nucleus labels from :func:`segment_nuclei`.
        planes: channel name → ``(Y, X)`` image, e.g. ``{"DAPI": ..., "GFP": ...}``.
        background_block_px: block size of each plane's background estimate.
        subtract_background: False when ``planes`` are already background-corrected.

    Returns:
        Column name → 1-D array of length N (number of nuclei).
    """
    names = list(planes)
    corrected = [np.asarray(planes[n], np.float32) for n in names]
    if subtract_background:
        corrected = [p - estimate_background(p, block_px=background_block_px) for p in corrected]
    n = int(labels.max())
    flat = labels.ravel()
    area = np.bincount(flat, minlength=n + 1)[1:].astype(np.float64)
    safe = np.maximum(area, 1.0)
    yy, xx = np.indices(labels.shape)
    out: dict[str, np.ndarray] = {
        "label": np.arange(1, n + 1),
        "area_px": area,
        "centroid_y": np.bincount(flat, yy.ravel(), minlength=n + 1)[1:] / safe,
        "centroid_x": np.bincount(flat, xx.ravel(), minlength=n + 1)[1:] / safe,
    }
    for name, plane in zip(names, corrected, strict=True):
        out[f"mean_{name}"] = np.bincount(flat, plane.ravel(), minlength=n + 1)[1:] / safe
    return out
