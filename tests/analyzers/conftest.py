"""A small synthetic co-culture image generator whose truth the tests know.

Nuclei are filled ellipses (some placed as touching pairs) in a DAPI plane; a known subset
(the tumour cells) is also bright in a GFP plane. Blur, vignetting, background, Poisson and
read noise are added; an optional bright debris blob or a dark bubble spoils a field.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import pytest
from scipy import ndimage as ndi

from instruments.interfaces import Frame
from protocols.layout import PlateLayout, WellAssignment, WellRole


@dataclass
class SynthTruth:
    centres: np.ndarray  # (N, 2) y, x
    is_tumour: np.ndarray  # (N,) bool
    n_touching_pairs: int

    @property
    def n(self) -> int:
        return len(self.is_tumour)

    @property
    def n_tumour(self) -> int:
        return int(self.is_tumour.sum())


def _place(
    rng: np.random.Generator, n: int, n_pairs: int, shape: tuple[int, int], r_max: float
) -> tuple[np.ndarray, np.ndarray]:
    """Centres and radii: n_pairs touching pairs, the rest at least 2 px apart."""
    centres: list[tuple[float, float]] = []
    radii: list[float] = []
    margin = r_max + 1

    def free(c: tuple[float, float], r: float, skip: int = -1) -> bool:
        for i, (cc, rr) in enumerate(zip(centres, radii, strict=True)):
            if i != skip and np.hypot(c[0] - cc[0], c[1] - cc[1]) < r + rr + 2.5:
                return False
        return True

    tries = 0
    while len(centres) < n and tries < 20000:
        tries += 1
        r = rng.uniform(4.0, r_max)
        c = (rng.uniform(margin, shape[0] - margin), rng.uniform(margin, shape[1] - margin))
        if not free(c, r):
            continue
        pair = len(centres) < 2 * n_pairs and len(centres) + 1 < n
        if pair:
            r2 = rng.uniform(4.0, r_max)
            ang = rng.uniform(0, 2 * np.pi)
            d = 0.9 * (r + r2)  # overlapping a little: a real touching pair
            c2 = (c[0] + d * np.sin(ang), c[1] + d * np.cos(ang))
            inside = margin <= c2[0] <= shape[0] - margin and margin <= c2[1] <= shape[1] - margin
            if not inside or not free(c2, r2):
                continue
            centres += [c, c2]
            radii += [r, r2]
        else:
            centres.append(c)
            radii.append(r)
    return np.array(centres), np.array(radii)


def render_coculture(
    seed: int = 0,
    *,
    n_nuclei: int = 60,
    tumour_fraction: float = 0.5,
    n_touching_pairs: int = 6,
    shape: tuple[int, int] = (256, 256),
    r_max: float = 7.0,
    dapi_level: float = 600.0,
    gfp_level: float = 400.0,
    background: float = 100.0,
    vignette: float = 0.3,
    blur_sigma: float = 1.0,
    read_noise: float = 4.0,
    debris: bool = False,
    bubble: bool = False,
) -> tuple[np.ndarray, SynthTruth]:
    """Render a ``(2, Y, X)`` uint16 stack (DAPI, GFP) and its truth."""
    rng = np.random.default_rng(seed)
    centres, radii = _place(rng, n_nuclei, n_touching_pairs, shape, r_max)
    n = len(centres)
    is_tumour = rng.permutation(n) < round(tumour_fraction * n)  # exact count
    dapi = np.zeros(shape, np.float32)
    gfp = np.zeros(shape, np.float32)
    yy, xx = np.mgrid[0 : shape[0], 0 : shape[1]].astype(np.float32)
    for (cy, cx), r, tum in zip(centres, radii, is_tumour, strict=True):
        ecc = rng.uniform(0.75, 1.0)
        th = rng.uniform(0, np.pi)
        y0, y1 = int(max(cy - r - 2, 0)), int(min(cy + r + 3, shape[0]))
        x0, x1 = int(max(cx - r - 2, 0)), int(min(cx + r + 3, shape[1]))
        dy, dx = yy[y0:y1, x0:x1] - cy, xx[y0:y1, x0:x1] - cx
        u = dy * np.cos(th) + dx * np.sin(th)
        v = -dy * np.sin(th) + dx * np.cos(th)
        inside = (u / r) ** 2 + (v / (r * ecc)) ** 2 <= 1.0
        dapi[y0:y1, x0:x1][inside] = dapi_level * rng.uniform(0.7, 1.3)
        if tum:
            gfp[y0:y1, x0:x1][inside] = gfp_level * rng.uniform(0.6, 1.4)
    if debris:
        dy, dx = yy - shape[0] * 0.3, xx - shape[1] * 0.6
        dapi[(dy**2 + dx**2) < 22**2] = 3 * dapi_level
    illum = (
        1.0
        - vignette
        * (((yy - shape[0] / 2) / shape[0]) ** 2 + ((xx - shape[1] / 2) / shape[1]) ** 2)
        * 2
    )
    if bubble:
        dy, dx = yy - shape[0] * 0.5, xx - shape[1] * 0.5
        illum = np.where(dy**2 + dx**2 < (0.42 * shape[0]) ** 2, 0.05, illum)
    planes = []
    for plane in (dapi, gfp):
        p = ndi.gaussian_filter(plane, blur_sigma) * illum + background * illum
        p = rng.poisson(np.clip(p, 0, None)).astype(np.float32) + rng.normal(0, read_noise, shape)
        planes.append(np.clip(p, 0, 65535).astype(np.uint16))
    return np.stack(planes), SynthTruth(centres, is_tumour, n_touching_pairs)


def make_frame(image: np.ndarray, well: str, field: int = 0, plate: str = "P1") -> Frame:
    return Frame(
        image=image,
        channels=("DAPI", "GFP"),
        plate=plate,
        well=well,
        field=field,
        pixel_size_um=1.0,  # nuclei 8-14 px = 8-14 µm
        position_um=(0.0, 0.0),
        timestamp_s=0.0,
    )


@pytest.fixture
def synth() -> Callable[..., tuple[np.ndarray, SynthTruth]]:
    return render_coculture


def make_plate(
    spec: dict[str, tuple[str, int | None, int, float]],
    *,
    fields: int = 2,
    seed: int = 0,
    artefacts: dict[tuple[str, int], str] | None = None,
) -> tuple[dict[str, list[Frame]], PlateLayout]:
    """Frames and layout for ``spec``: well -> (role, experiment, n_nuclei, tumour_fraction).

    ``artefacts`` maps (well, field) to "debris" or "bubble".
    """
    artefacts = artefacts or {}
    frames: dict[str, list[Frame]] = {}
    wells = []
    reps: dict[int, int] = {}
    for i, (well, (role, exp, n, tf)) in enumerate(sorted(spec.items())):
        rep = 0
        if exp is not None:
            rep = reps.get(exp, 0)
            reps[exp] = rep + 1
        wells.append(WellAssignment(well=well, role=WellRole(role), experiment=exp, replicate=rep))
        frames[well] = []
        for f in range(fields):
            kind = artefacts.get((well, f))
            img, _ = render_coculture(
                seed * 10_000 + i * 100 + f,
                n_nuclei=n,
                tumour_fraction=tf,
                n_touching_pairs=min(4, n // 4),
                debris=kind == "debris",
                bubble=kind == "bubble",
            )
            frames[well].append(make_frame(img, well, f))
    return frames, PlateLayout(plate_id="P1", plate_type="96", wells=wells)
