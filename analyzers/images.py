"""Reading one user image (TIFF, OME-TIFF, PNG) and writing what :func:`count_nuclei` found.

:func:`read_image` returns a 2-D plane and the pixel size when the file states it (OME
``PhysicalSizeX``, or a TIFF resolution in µm); every problem (missing, not an image, no such
channel, 3-D where a plane is expected, empty) is an :class:`ImageFileError` with one line.
:func:`write_results` writes the label image (TIFF), per-nucleus features (CSV and JSON), the
counts (JSON) and an overlay PNG a person can check.
"""

from __future__ import annotations

import csv
import json
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import tifffile
from PIL import Image, UnidentifiedImageError

from analyzers.count import FEATURE_COLUMNS, NucleusCount
from analyzers.exceptions import AnalysisError

__all__ = [
    "ImageFileError",
    "LoadedImage",
    "overlay",
    "read_image",
    "write_counts",
    "write_results",
]

_UM_PER_UNIT = {"µm": 1.0, "um": 1.0, "micron": 1.0, "nm": 1e-3, "mm": 1e3, "cm": 1e4, "m": 1e6}


class ImageFileError(AnalysisError):
    """An image file cannot be analysed; the message is one line saying why.

    Attributes:
        path: the file.
    """

    def __init__(self, path: Path | str, reason: str) -> None:
        super().__init__(f"{path}: {reason}")
        self.path = Path(path)


@dataclass(frozen=True)
class LoadedImage:
    """One 2-D plane of an image file.

    Attributes:
        path: the file.
        plane: ``(Y, X)`` pixels.
        pixel_size_um: µm per pixel from the file's metadata, or None.
        channel: index of the plane's channel in the file (0 for a single-channel image).
        channel_names: names from OME metadata (may be empty).
    """

    path: Path
    plane: np.ndarray
    pixel_size_um: float | None
    channel: int
    channel_names: tuple[str, ...] = ()


def _ome_metadata(tif: tifffile.TiffFile) -> tuple[float | None, tuple[str, ...]]:
    """Pixel size (µm) and channel names from OME-XML, when present."""
    xml = tif.ome_metadata
    if not xml:
        return None, ()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return None, ()
    pixels = next((e for e in root.iter() if e.tag.endswith("}Pixels")), None)
    if pixels is None:
        return None, ()
    names = tuple(e.get("Name") or e.get("ID") or "" for e in pixels if e.tag.endswith("}Channel"))
    size = pixels.get("PhysicalSizeX")
    if size is None:
        return None, names
    unit = pixels.get("PhysicalSizeXUnit", "µm")
    return float(size) * _UM_PER_UNIT.get(unit, 1.0), names


def _tiff_resolution_um(tif: tifffile.TiffFile) -> float | None:
    """µm per pixel from the TIFF resolution tags, when the unit is a length (not inches
    of a screen image: 72 dpi is no microscope)."""
    page = tif.pages.first
    tag = page.tags.get("XResolution")
    unit = page.tags.get("ResolutionUnit")
    if tag is None or unit is None or int(unit.value) != 3:  # 3: centimetre
        return None
    num, den = tag.value
    if num <= 0:
        return None
    return float(1e4 * den / num)


def _select_plane(
    path: Path, data: np.ndarray, axes: str, channel: int | str | None, names: tuple[str, ...]
) -> tuple[np.ndarray, int]:
    """The ``(Y, X)`` plane of ``channel`` from an array with tifffile ``axes``."""
    keep = [i for i, n in enumerate(data.shape) if n > 1]  # singleton axes (T=1, Z=1) go
    axes = "".join(axes[i] for i in keep) if len(axes) == data.ndim else ""
    data = data.reshape([data.shape[i] for i in keep])
    if data.ndim < 2:
        raise ImageFileError(path, f"is too small to hold nuclei (shape {data.shape})")
    if data.ndim == 2:
        if channel not in (None, 0, "0") and not (names and channel == names[0]):
            raise ImageFileError(path, f"has one channel; there is no channel {channel!r}")
        return data, 0
    if data.ndim == 3:
        c_axis = axes.find("C") if "C" in axes else (axes.find("S") if "S" in axes else -1)
        if c_axis < 0 and data.shape[-1] in (3, 4):
            c_axis = data.ndim - 1
        if c_axis < 0:
            raise ImageFileError(
                path, f"is 3-D (shape {data.shape}, axes {axes or '?'}); a 2-D plane is expected"
            )
        n = data.shape[c_axis]
        index = _channel_index(path, channel, n, names)
        return np.take(data, index, axis=c_axis), index
    raise ImageFileError(
        path, f"has {data.ndim} dimensions (shape {data.shape}); a 2-D plane is expected"
    )


def _channel_index(path: Path, channel: int | str | None, n: int, names: tuple[str, ...]) -> int:
    if channel is None:
        if n in (3, 4) and not names:  # an RGB(A) picture: nuclei are usually blue
            return 2
        raise ImageFileError(
            path, f"has {n} channels {list(names) or ''}: choose one with --channel"
        )
    if isinstance(channel, str) and not channel.isdigit():
        if channel in names:
            return names.index(channel)
        raise ImageFileError(path, f"has no channel {channel!r} (channels: {list(names)})")
    index = int(channel)
    if not 0 <= index < n:
        raise ImageFileError(path, f"has channels 0..{n - 1}; there is no channel {index}")
    return index


def read_image(path: Path | str, *, channel: int | str | None = None) -> LoadedImage:
    """Read a 2-D nuclear-stain plane from a TIFF/OME-TIFF or PNG file.

    Args:
        path: the file.
        channel: index or OME channel name of the nuclear channel in a multi-channel file
            (an RGB picture without it: the blue channel).

    Raises:
        ImageFileError: missing, unreadable, no such channel, 3-D, empty or constant.
    """
    p = Path(path)
    if not p.is_file():
        raise ImageFileError(p, "no such file")
    pixel_size: float | None = None
    names: tuple[str, ...] = ()
    try:
        with tifffile.TiffFile(p) as tif:
            series = tif.series[0]
            data, axes = series.asarray(), series.axes
            pixel_size, names = _ome_metadata(tif)
            pixel_size = pixel_size or _tiff_resolution_um(tif)
    except (tifffile.TiffFileError, ValueError, IndexError):
        try:
            with Image.open(p) as im:
                data = np.asarray(im)
        except (UnidentifiedImageError, OSError) as e:
            raise ImageFileError(p, "is not an image TIFF or PNG can read") from e
        axes = "YXS" if data.ndim == 3 else "YX"
    data = np.asarray(data)
    if data.size == 0:
        raise ImageFileError(p, "is empty (no pixels)")
    plane, index = _select_plane(p, data, axes, channel, names)
    if not (np.issubdtype(plane.dtype, np.integer) or np.issubdtype(plane.dtype, np.floating)):
        raise ImageFileError(p, f"pixels are not numbers (dtype {plane.dtype})")
    if min(plane.shape) < 8:
        raise ImageFileError(p, f"is too small to hold nuclei (shape {plane.shape})")
    if np.nanmax(plane) == np.nanmin(plane):
        raise ImageFileError(p, "is blank (every pixel has the same value)")
    return LoadedImage(p, plane, pixel_size, index, names)


def overlay(plane: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """``(Y, X, 3)`` uint8: the plane contrast-stretched in grey, nucleus outlines in yellow."""
    from skimage.segmentation import find_boundaries

    a = np.asarray(plane, np.float64)
    lo, hi = np.percentile(a, [0.5, 99.8])
    grey = np.clip((a - lo) / max(hi - lo, 1e-12), 0, 1) * 255
    rgb = np.repeat(grey.astype(np.uint8)[..., None], 3, axis=2)
    rgb[find_boundaries(labels, mode="inner")] = (255, 220, 0)
    return rgb


def _rows(result: NucleusCount) -> list[dict[str, Any]]:
    cols = [result.features[c] for c in FEATURE_COLUMNS]
    return [
        {
            c: (int(v) if c == "label" else None if np.isnan(v) else round(float(v), 4))
            for c, v in zip(FEATURE_COLUMNS, vals, strict=True)
        }
        for vals in zip(*cols, strict=True)
    ]


def write_results(image: LoadedImage, result: NucleusCount, out_dir: Path | str) -> dict[str, Path]:
    """Write ``<stem>_labels.tif``, ``<stem>_nuclei.csv``, ``<stem>_nuclei.json`` and
    ``<stem>_overlay.png`` into ``out_dir``; return them by kind."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = image.path.name.split(".")[0]
    paths = {
        "labels": out / f"{stem}_labels.tif",
        "csv": out / f"{stem}_nuclei.csv",
        "json": out / f"{stem}_nuclei.json",
        "overlay": out / f"{stem}_overlay.png",
    }
    labels = result.labels.astype(np.uint16 if result.count < 65536 else np.uint32)
    meta = {"axes": "YX"}
    if image.pixel_size_um:
        meta["PhysicalSizeX"] = image.pixel_size_um  # type: ignore[assignment]
        meta["PhysicalSizeY"] = image.pixel_size_um  # type: ignore[assignment]
    tifffile.imwrite(paths["labels"], labels, ome=True, metadata=meta, compression="zlib")
    rows = _rows(result)
    with paths["csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(FEATURE_COLUMNS))
        writer.writeheader()
        writer.writerows(rows)
    summary = {"image": str(image.path), "channel": image.channel, **result.summary()}
    paths["json"].write_text(json.dumps({**summary, "nuclei": rows}, indent=1))
    Image.fromarray(overlay(image.plane, result.labels)).save(paths["overlay"])
    return paths


COUNT_COLUMNS = (
    "image",
    "channel",
    "count",
    "method",
    "diameter_px",
    "diameter_source",
    "pixel_size_um",
    "n_large_objects",
    "large_object_area_px",
)


def write_counts(summaries: list[dict[str, Any]], out_dir: Path | str) -> dict[str, Path]:
    """Per-image counts (one row per image, ``COUNT_COLUMNS``) as ``counts.csv`` and
    ``counts.json`` in ``out_dir``."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths = {"counts_csv": out / "counts.csv", "counts_json": out / "counts.json"}
    with paths["counts_csv"].open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=list(COUNT_COLUMNS), extrasaction="ignore")
        writer.writeheader()
        writer.writerows(summaries)
    paths["counts_json"].write_text(json.dumps(summaries, indent=1))
    return paths
