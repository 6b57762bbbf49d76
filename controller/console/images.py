"""PNG rendering for the console: well thumbnails from the OME-TIFF raw data and the
convergence plot, both cached in memory (keyed by content, so a re-acquired well or a new
measurement gives a new image)."""

from __future__ import annotations

import io
import threading
from collections import OrderedDict
from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import numpy as np  # noqa: E402
import tifffile  # noqa: E402
from matplotlib.figure import Figure  # noqa: E402
from PIL import Image  # noqa: E402

from controller.ledger.models import Experiment, RawData  # noqa: E402

THUMB_PX = 160


class _LRU:
    def __init__(self, size: int) -> None:
        self.size = size
        self._d: OrderedDict[tuple, bytes] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, key: tuple) -> bytes | None:
        with self._lock:
            if key in self._d:
                self._d.move_to_end(key)
                return self._d[key]
            return None

    def put(self, key: tuple, value: bytes) -> bytes:
        with self._lock:
            self._d[key] = value
            self._d.move_to_end(key)
            while len(self._d) > self.size:
                self._d.popitem(last=False)
        return value


_thumbs = _LRU(512)
_plots = _LRU(32)


def auto_contrast(img: np.ndarray, low_pct: float = 1.0, high_pct: float = 99.7) -> np.ndarray:
    """Scale ``img`` (Y, X) to uint8 between two percentiles."""
    img = img.astype(np.float32)
    lo, hi = np.percentile(img, [low_pct, high_pct])
    if hi <= lo:
        hi = lo + 1.0
    return (np.clip((img - lo) / (hi - lo), 0.0, 1.0) * 255).astype(np.uint8)


def _channel_plane(raw: RawData, channel: str | None) -> np.ndarray:
    """The max projection over every field and any axis above YX of one channel (DAPI first)."""
    channels = list(raw.meta.get("channels") or [])
    want = channel or next((c for c in channels if c.upper() in ("DAPI", "HOECHST")), None)
    ci = channels.index(want) if want in channels else 0
    planes = []
    with tifffile.TiffFile(raw.path) as tif:
        for series in tif.series:
            arr = series.asarray()
            if arr.ndim >= 3:
                axes = series.axes
                if "C" in axes and arr.shape[axes.index("C")] > ci:
                    arr = np.take(arr, ci, axis=axes.index("C"))
                arr = arr.reshape(-1, *arr.shape[-2:]).max(axis=0)
            planes.append(arr)
    if not planes:
        raise ValueError(f"{raw.path} holds no image")
    shape = planes[0].shape
    return np.max([p for p in planes if p.shape == shape], axis=0)


def well_thumbnail(raw: RawData, channel: str | None = None, size_px: int = THUMB_PX) -> bytes:
    """A PNG thumbnail (auto-contrast max projection of DAPI) of one well's images."""
    key = (raw.path, raw.sha256, channel, size_px)
    cached = _thumbs.get(key)
    if cached is not None:
        return cached
    if not Path(raw.path).exists():
        raise FileNotFoundError(raw.path)
    img = Image.fromarray(auto_contrast(_channel_plane(raw, channel)), mode="L")
    img.thumbnail((size_px, size_px))
    buf = io.BytesIO()
    img.save(buf, format="PNG", optimize=True)
    return _thumbs.put(key, buf.getvalue())


def convergence_png(campaign_id: int, spec: dict, measured: list[Experiment]) -> bytes:
    """Best feasible value so far against the number of measured experiments (PNG)."""
    from controller.report import best_so_far
    from controller.spec import CampaignSpec

    key = (campaign_id, len(measured), measured[-1].id if measured else None)
    cached = _plots.get(key)
    if cached is not None:
        return cached
    cspec = CampaignSpec.model_validate(spec)
    obj = cspec.objectives[0]
    fig = Figure(figsize=(6, 3.2), dpi=100)
    ax = fig.subplots()
    if measured:
        curve, _ = best_so_far(cspec, measured)
        x = np.arange(1, len(curve) + 1)
        ax.scatter(
            x,
            [e.outcomes.get(obj.metric, np.nan) for e in measured],
            s=9,
            color="#9bb",
            label="each experiment",
        )
        ax.plot(x, curve, color="#1565c0", lw=2, label="best feasible so far")
        ax.legend(fontsize=7, loc="lower right")
    else:
        ax.text(0.5, 0.5, "no measurements yet", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("experiments measured")
    ax.set_ylabel(obj.metric)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    buf = io.BytesIO()
    fig.savefig(buf, format="png")
    return _plots.put(key, buf.getvalue())
