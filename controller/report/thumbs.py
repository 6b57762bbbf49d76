"""Thumbnails of the best, worst and control wells, from the raw OME-TIFFs the ledger points at.

One field per well (the first; its central square), nuclear channel in blue and marker in
green, each channel scaled to 8 bits with the *same* limits for every thumbnail (pooled
0.5–99.5 percentiles), so a dim well looks dim. Small PNGs are embedded in the page as data URIs: the page stays
readable when copied alone.
"""

from __future__ import annotations

import base64
import html
import io
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import tifffile
from matplotlib.image import imsave

from controller.ledger.models import Experiment, RawData, Well
from controller.report.data import ReportData, kept_wells

THUMB_PX = 128
NUCLEAR = ("dapi", "hoechst", "nuclear")
COLOURS = {"nuclear": 2, "marker": 1, "other": 0}  # RGB index per kind of channel


@dataclass
class Tile:
    label: str
    well: Well
    raw: RawData | None
    caption: str


def first_field(raw: RawData) -> np.ndarray:
    """The first field of a well's OME-TIFF as (channels, y, x)."""
    with tifffile.TiffFile(raw.path) as tif:
        img = tif.series[0].asarray()
    return img[None] if img.ndim == 2 else img


def composite(
    images: list[np.ndarray], channels: list[str], px: int = THUMB_PX
) -> list[np.ndarray]:
    """RGB uint8 thumbnails of ``images`` (each (C, y, x)) with limits shared by all of them."""
    kinds = [
        "nuclear" if c.lower() in NUCLEAR else ("marker" if i > 0 else "other")
        for i, c in enumerate(channels)
    ]
    limits = []
    shrunk = [_shrink(im, px) for im in images]
    for c in range(len(channels)):
        pooled = np.concatenate([im[c].ravel() for im in shrunk if im.shape[0] > c])
        lo, hi = np.percentile(pooled, [0.5, 99.5])
        limits.append((float(lo), float(max(hi, lo + 1e-9))))
    out = []
    for small in shrunk:
        rgb = np.zeros((*small.shape[1:], 3), dtype=np.float64)
        for c, kind in enumerate(kinds[: small.shape[0]]):
            lo, hi = limits[c]
            rgb[..., COLOURS[kind]] += np.clip((small[c] - lo) / (hi - lo), 0, 1)
        out.append((np.clip(rgb, 0, 1) * 255).astype(np.uint8))
    return out


def _shrink(im: np.ndarray, px: int) -> np.ndarray:
    """The central ``2 px`` square, reduced to ``px`` by block maxima: a mean would dim the
    small bright nuclei into the background."""
    side = min(im.shape[1], im.shape[2], 2 * px)
    y0, x0 = (im.shape[1] - side) // 2, (im.shape[2] - side) // 2
    crop = im[:, y0 : y0 + side, x0 : x0 + side].astype(np.float64)
    step = max(1, int(np.ceil(side / px)))
    n = (side // step) * step
    return crop[:, :n, :n].reshape(im.shape[0], n // step, step, n // step, step).max(axis=(2, 4))


def png_data_uri(rgb: np.ndarray) -> str:
    buf = io.BytesIO()
    imsave(buf, rgb, format="png")
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode("ascii")


def pick_tiles(data: ReportData, best: Experiment | None, worst: Experiment | None) -> list[Tile]:
    """Replicate wells of the best and worst experiments, two vehicle and two positive-control
    wells of the best one's plate, and up to two flagged wells."""
    raw = {(r.round_id, r.well): r for r in data.raw}
    viab = {m: data.well_values(m) for m in ("tumour_viability", "normal_viability")}
    flags = data.well_flags()

    def tile(label: str, w: Well) -> Tile:
        vals = ", ".join(f"{m.split('_')[0]} {v[w.id]:.2f}" for m, v in viab.items() if w.id in v)
        note = f" ⚑ {_short('; '.join(flags[w.id]))}" if w.id in flags else ""
        rnd = data.round_by_id[w.round_id]
        return Tile(
            label,
            w,
            raw.get((w.round_id, w.well)),
            f"{label}: {rnd.plate_id} {w.well}" + (f" — {vals}" if vals else "") + note,
        )

    tiles: list[Tile] = []
    for label, e in (("best measured", best), ("worst measured", worst)):
        if e is None:
            continue
        kept = set(kept_wells(e))
        for w in sorted(data.wells.get(e.round_id, []), key=lambda w: w.well):
            if w.experiment_id == e.id and (not kept or w.well in kept):
                tiles.append(tile(f"{label} (exp {e.id})", w))
    plate = best.round_id if best is not None else (data.rounds[0].id if data.rounds else None)
    for role, label in (("negative_control", "vehicle"), ("positive_control", "positive control")):
        ws = sorted((w for w in data.wells.get(plate, []) if w.role == role), key=lambda w: w.well)
        tiles += [tile(label, w) for w in ws[:2]]
    flagged = [w for ws in data.wells.values() for w in ws if w.id in flags]
    tiles += [tile("flagged", w) for w in flagged[:2]]
    return tiles


def _short(text: str, n: int = 90) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def thumbs_section(
    data: ReportData, best: Experiment | None, worst: Experiment | None, out: Path
) -> list[str]:
    """The thumbnail strip (images embedded) with one caption per well."""
    tiles = pick_tiles(data, best, worst)
    parts = [
        "<h2>Well images</h2>",
        "<p>First field of each well (its centre); blue: nuclear stain, green: marker, so tumour nuclei look cyan. "
        "All thumbnails share the same intensity limits.</p>",
    ]
    loaded, missing = [], []
    for t in tiles:
        if t.raw is None or not Path(t.raw.path).exists():
            missing.append(t)
            continue
        try:
            loaded.append((t, first_field(t.raw)))
        except (OSError, ValueError, IndexError) as err:
            missing.append(Tile(t.label, t.well, t.raw, f"{t.caption} (unreadable: {err})"))
    if loaded:
        channels = list(loaded[0][0].raw.meta.get("channels") or [])  # type: ignore[union-attr]
        channels = channels or [f"c{i}" for i in range(loaded[0][1].shape[0])]
        rgbs = composite([im for _, im in loaded], channels)
        parts.append('<div class="thumbs">')
        for (t, _), rgb in zip(loaded, rgbs, strict=True):
            parts.append(
                f'<figure><img class="thumb" src="{png_data_uri(rgb)}" alt="{html.escape(t.caption)}">'
                f"<figcaption>{html.escape(t.caption)}</figcaption></figure>"
            )
        parts.append("</div>")
    if missing:
        parts.append(
            "<p>No image for: "
            + "; ".join(html.escape(t.caption) for t in missing)
            + " (files moved, or never acquired).</p>"
        )
    return parts
