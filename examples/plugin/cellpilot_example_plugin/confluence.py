"""The ``confluence`` analyzer: how much of each field the nuclear stain covers, per well,
relative to the plate's vehicle wells.

A deliberately small analyzer that shows the contract (see :mod:`analyzers.registry`): a
callable ``(frames_by_well, layout, settings) -> result`` with a ``settings_model``; the result
gives per-well metrics and flags, per-experiment scores (replicates aggregated by
:func:`analyzers.score_experiments`), Z' and a plate verdict.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import BaseModel, ConfigDict, Field
from scipy import ndimage as ndi
from skimage.filters import threshold_otsu

from analyzers import ExperimentScore, MissingChannel, MissingControls, score_experiments, z_prime
from protocols.layout import PlateLayout, WellRole

METRIC = "relative_confluence"


class ConfluenceSettings(BaseModel):
    """Settings of the ``confluence`` analyzer."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    nuclear_channel: str = "DAPI"
    smooth_sigma_px: float = Field(default=1.0, ge=0, description="Gaussian blur before Otsu")
    z_prime_min: float = Field(default=0.5, description="plates below are flagged")


@dataclass
class WellConfluence:
    well: str
    metrics: dict[str, float]
    flags: list[str] = field(default_factory=list)


@dataclass
class ConfluenceResult:
    plate_id: str
    wells: dict[str, WellConfluence]
    experiments: dict[int, ExperimentScore]
    z_prime: dict[str, float | None]
    plate_ok: bool
    flags: list[str]
    analyzer: str = "confluence"


def _field_confluence(image: np.ndarray, sigma: float) -> float:
    smooth = (
        ndi.gaussian_filter(image.astype(np.float32), sigma) if sigma else image.astype(np.float32)
    )
    if float(smooth.max()) == float(smooth.min()):
        return 0.0
    return float((smooth > threshold_otsu(smooth)).mean())


def analyze_confluence(
    frames_by_well: Mapping[str, Sequence[Any]],
    layout: PlateLayout,
    settings: ConfluenceSettings | None = None,
) -> ConfluenceResult:
    """Area fraction covered by the nuclear stain, normalised to the mean of the vehicle wells."""
    s = settings or ConfluenceSettings()
    raw: dict[str, float] = {}
    for well, frames in frames_by_well.items():
        values = []
        for fr in frames:
            if s.nuclear_channel not in fr.channels:
                raise MissingChannel(s.nuclear_channel, tuple(fr.channels))
            values.append(
                _field_confluence(fr.image[fr.channels.index(s.nuclear_channel)], s.smooth_sigma_px)
            )
        if values:
            raw[well] = float(np.mean(values))
    negative = [w for w in layout.wells_with_role(WellRole.NEGATIVE_CONTROL) if w in raw]
    positive = [w for w in layout.wells_with_role(WellRole.POSITIVE_CONTROL) if w in raw]
    if not negative:
        raise MissingControls(
            f"plate {layout.plate_id}: no imaged vehicle well", "negative_control"
        )
    ref = float(np.median([raw[w] for w in negative])) or 1.0
    metrics = {w: {"confluence": v, METRIC: v / ref} for w, v in raw.items()}
    zp = z_prime([raw[w] for w in positive], [raw[w] for w in negative])
    flags = (
        []
        if zp is not None and zp >= s.z_prime_min
        else [f"Z'(confluence) = {zp} < {s.z_prime_min}"]
    )
    wells = {
        w: WellConfluence(w, metrics.get(w, {}), [] if w in metrics else ["no images"])
        for w in layout.by_well()
    }
    return ConfluenceResult(
        plate_id=layout.plate_id,
        wells=wells,
        experiments=score_experiments(
            metrics, layout, metrics=(METRIC,), outlier_metrics=(METRIC,)
        ),
        z_prime={"confluence": zp},
        plate_ok=not flags,
        flags=flags,
    )


analyze_confluence.settings_model = ConfluenceSettings  # type: ignore[attr-defined]
analyze_confluence.metrics = (METRIC,)  # type: ignore[attr-defined]
analyze_confluence.channels = lambda s: {s.nuclear_channel}  # type: ignore[attr-defined]
