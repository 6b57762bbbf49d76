"""A simulated plate microscope that renders synthetic Hoechst (DAPI) and GFP nuclei images.

:func:`render_field` draws one field from given nucleus numbers (usable without a lab, e.g. to
test analyzers); :class:`SimulatedMicroscope` implements
:class:`instruments.interfaces.Microscope` on a :class:`~simulators.world.SimulatedLab`: the
number of nuclei in a field is Poisson with mean ``well count x field area / well area`` at
the clock's current time.

Rendering is vectorised: every nucleus is a rotated ellipse whose edge is a linear ramp as
wide as the optics' blur (a cheap stand-in for a Gaussian blur: the background is flat and
noise is added afterwards, so only the edges need softening), stamped into the image with one
``np.bincount`` per channel; the planes are multiplied by an illumination profile
(vignetting) and given shot noise (Gaussian approximation of Poisson, accurate for the
>= 60 photo-electrons per pixel involved) plus camera read noise and offset.

The ground truth (nucleus centres and classes, well counts, artefact) goes only into
``Frame.metadata["sim_truth"]``. Analyzers must never read that key; tests use it to validate
them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

import numpy as np
from scipy.spatial import cKDTree

from instruments.exceptions import ImagingError
from instruments.interfaces import Clock, Frame
from simulators.biology import stable_hash
from simulators.nuclei_scene import SceneOptions, render_scene
from simulators.world import SimulatedLab, UnknownWellError

CHANNELS: tuple[str, ...] = ("DAPI", "GFP")
TRUTH_KEY = "sim_truth"

# photo-electrons at 20 ms exposure: nuclear peak signal and background, per channel
_PEAK_E = {"DAPI": {"tumour": 1400.0, "normal": 1400.0}, "GFP": {"tumour": 1100.0, "normal": 25.0}}
_BACKGROUND_E = {"DAPI": 60.0, "GFP": 90.0}
_DEBRIS_E = {"DAPI": 4000.0, "GFP": 2500.0}
_OFFSET_ADU = 100.0
# closest centre distance of nuclei not placed as a touching pair, in diameters (the
# realistic scene simulator uses the same rule: simulators.nuclei_scene.SceneOptions.min_gap)
MIN_GAP = 0.85
_READ_NOISE_E = 3.0


_NOISE_BANK_SIZE = 1 << 22


@lru_cache(maxsize=1)
def _noise_bank() -> np.ndarray:
    """A fixed bank of float32 standard normals (16 MB), drawn once per process."""
    return np.random.default_rng(20260101).standard_normal(_NOISE_BANK_SIZE, dtype=np.float32)


def _standard_normal(size: int, rng: np.random.Generator) -> np.ndarray:
    """``size`` standard normals: a random window of the bank, randomly flipped.

    Four times cheaper than fresh draws; windows of different fields overlap at random
    offsets, which no image analysis can notice. Falls back to fresh draws for huge images.
    """
    if size > _NOISE_BANK_SIZE // 4:
        return rng.standard_normal(size, dtype=np.float32)
    start = int(rng.integers(0, _NOISE_BANK_SIZE - size))
    window = _noise_bank()[start : start + size]
    return -window if rng.random() < 0.5 else window


@lru_cache(maxsize=8)
def _illumination(shape: tuple[int, int], falloff: float = 0.35) -> np.ndarray:
    """Vignetting profile, 1 at the centre and ``1 - falloff`` in the corners. Shape ``(Y, X)``."""
    h, w = shape
    y = (np.arange(h) - (h - 1) / 2) / (h / 2)
    x = (np.arange(w) - (w - 1) / 2) / (w / 2)
    r2 = (y[:, None] ** 2 + x[None, :] ** 2) / 2.0
    return (1.0 - falloff * r2).astype(np.float32)


def _place_nuclei(
    n: int,
    shape: tuple[int, int],
    diameter_px: float,
    rng: np.random.Generator,
    touching_fraction: float = 0.2,
    min_gap: float = MIN_GAP,
) -> np.ndarray:
    """Nucleus centres ``(n, 2)`` as ``(y, x)``; a ``touching_fraction`` of them sit next to
    another, 0.8-1.15 diameters apart (touching or slightly overlapping pairs).

    The others follow a hard-core process (Matérn II thinning of uniform candidates, then a
    random subset): no two closer than ``min_gap`` diameters. Nuclei of a monolayer abut but
    do not lie on top of each other; uniform placement put some centres a pixel apart, one
    nucleus hiding another, which no segmentation can count and which made counts fall with
    density (``benchmarks/counting_plate_sim.py``). Beyond what the process can hold (far
    past confluence), the remaining centres fall at random.
    """
    h, w = shape
    size = np.array([h, w], dtype=float)
    if n > 1 and min_gap > 0:
        r = min_gap * diameter_px
        m = int(1.3 * n) + 8
        for _ in range(6):
            cand = rng.random((m, 2)) * size
            rank = rng.permutation(m)
            close = cKDTree(cand).query_pairs(r, output_type="ndarray")
            # Matérn II: of two close candidates the later-ranked one goes
            later = np.where(rank[close[:, 0]] > rank[close[:, 1]], close[:, 0], close[:, 1])
            keep = np.ones(m, dtype=bool)
            keep[later] = False
            cand = cand[keep]
            if len(cand) >= n:
                break
            m = int(1.6 * m)
        pos = cand[rng.permutation(len(cand))[:n]]
        if len(pos) < n:
            pos = np.vstack([pos, rng.random((n - len(pos), 2)) * size])
    else:
        pos = rng.random((n, 2)) * size
    if n > 1:
        paired = np.flatnonzero(rng.random(n) < touching_fraction)
        paired = paired[paired > 0]
        if paired.size:
            partner = (rng.random(paired.size) * paired).astype(int)  # an earlier nucleus
            angle = rng.random(paired.size) * 2 * np.pi
            dist = diameter_px * rng.uniform(0.8, 1.15, paired.size)
            pos[paired, 0] = pos[partner, 0] + dist * np.sin(angle)
            pos[paired, 1] = pos[partner, 1] + dist * np.cos(angle)
            pos[:, 0] = np.clip(pos[:, 0], 0, h - 1e-6)
            pos[:, 1] = np.clip(pos[:, 1], 0, w - 1e-6)
    return pos


def _stamp_ellipses(
    pos: np.ndarray,
    semi_a: np.ndarray,
    semi_b: np.ndarray,
    angle: np.ndarray,
    weights: Sequence[np.ndarray],
    shape: tuple[int, int],
    edge_px: float = 1.0,
) -> list[np.ndarray]:
    """Sum soft-edged ellipses into one ``(Y, X)`` float image per weight vector.

    ``edge_px`` is the width (pixels) of the linear ramp from background to full intensity.
    """
    h, w = shape
    n = pos.shape[0]
    if n == 0:
        return [np.zeros(shape, dtype=np.float64) for _ in weights]
    half = int(math.ceil(float(semi_a.max()) + 0.5 * edge_px + 1.0))
    off = np.arange(-half, half + 1, dtype=float)
    base = np.floor(pos).astype(int)
    frac = pos - base
    yy = off[None, :, None] - frac[:, 0, None, None]  # (n, K, 1)
    xx = off[None, None, :] - frac[:, 1, None, None]  # (n, 1, K)
    cos, sin = np.cos(angle)[:, None, None], np.sin(angle)[:, None, None]
    u = (xx * cos + yy * sin) / semi_a[:, None, None]
    v = (-xx * sin + yy * cos) / semi_b[:, None, None]
    rho = np.sqrt(u * u + v * v)  # (n, K, K); 1 on the nucleus boundary
    mean_r = np.sqrt(semi_a * semi_b)[:, None, None]
    ramp = np.clip((1.0 - rho) * (mean_r / edge_px) + 0.5, 0.0, 1.0)
    profile = ramp * (1.0 - 0.25 * np.minimum(rho, 1.0) ** 2)
    iy = base[:, 0, None, None] + off.astype(int)[None, :, None]
    ix = base[:, 1, None, None] + off.astype(int)[None, None, :]
    inside = (iy >= 0) & (iy < h) & (ix >= 0) & (ix < w) & (profile > 0)
    flat = (iy * w + ix)[inside]
    prof = profile[inside]
    nucleus_of = np.broadcast_to(np.arange(n)[:, None, None], profile.shape)[inside]
    return [
        np.bincount(flat, weights=prof * wt[nucleus_of], minlength=h * w).reshape(shape)
        for wt in weights
    ]


def _bubble(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """A bubble: ``(dim, ring)`` float maps; ``dim`` is the signal multiplier."""
    h, w = shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    radius = rng.uniform(0.25, 0.45) * min(h, w)
    y, x = np.ogrid[:h, :w]
    dist = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    dim = 0.12 + 0.88 * np.clip((dist - radius) / 2.0 + 0.5, 0.0, 1.0)
    ring = np.exp(-(((dist - radius) / 2.0) ** 2))
    return dim, ring


def _debris(shape: tuple[int, int], diameter_px: float, rng: np.random.Generator) -> np.ndarray:
    """Irregular bright autofluorescent particles, a ``(Y, X)`` map in ``[0, 1]``."""
    h, w = shape
    y, x = np.ogrid[:h, :w]
    out = np.zeros(shape)
    for _ in range(int(rng.integers(3, 9))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = diameter_px * rng.uniform(1.5, 5.0)
        ang = np.arctan2(y - cy, x - cx)
        wobble = 1.0 + 0.35 * np.sin(3 * ang + rng.uniform(0, 6.3)) * rng.uniform(0.3, 1.0)
        dist = np.sqrt((y - cy) ** 2 + (x - cx) ** 2) / (r * wobble)
        out = np.maximum(out, np.clip(1.5 - dist * 1.5, 0, 1))
    return out


def _nuclei(
    n_tumour: int,
    n_normal: int,
    shape: tuple[int, int],
    diameter_px: float,
    rng: np.random.Generator,
    touching_fraction: float = 0.2,
) -> dict[str, np.ndarray]:
    """Per-nucleus arrays (length ``n_tumour + n_normal``, tumour first): ``pos`` ``(n, 2)``,
    ``semi_a``, ``semi_b``, ``angle``, ``dna`` and ``gfp`` brightness factors, ``is_tumour``."""
    n = n_tumour + n_normal
    is_tumour = np.zeros(n, dtype=bool)
    is_tumour[:n_tumour] = True
    pos = _place_nuclei(n, shape, diameter_px, rng, touching_fraction)
    radius = 0.5 * diameter_px * rng.lognormal(0.0, 0.12, n) * np.where(is_tumour, 1.15, 1.0)
    return {
        "pos": pos,
        "semi_a": radius * rng.uniform(1.0, 1.3, n),
        "semi_b": radius * rng.uniform(0.75, 1.0, n),
        "angle": rng.uniform(0, np.pi, n),
        "dna": rng.lognormal(0.0, 0.15, n),  # Hoechst content varies with cell-cycle phase
        "gfp": rng.lognormal(0.0, 0.3, n),
        "is_tumour": is_tumour,
    }


def _camera(signal: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Shot and read noise, offset and 16-bit conversion of a float32 photo-electron stack
    (modified in place); returns uint16 of the same shape."""
    noise = _standard_normal(signal.size, rng).reshape(signal.shape)
    sd = np.sqrt(signal + np.float32(_READ_NOISE_E**2))
    sd *= noise
    signal += sd
    signal += np.float32(_OFFSET_ADU + 0.5)  # + 0.5: astype truncates, so this rounds
    np.clip(signal, 0, 65535, out=signal)
    return signal.astype(np.uint16)


def render_field(
    n_tumour: int,
    n_normal: int,
    *,
    channels: Sequence[str] = CHANNELS,
    image_size: tuple[int, int] = (256, 256),
    pixel_size_um: float = 0.65 * 4,
    exposure_ms: float = 20.0,
    rng: np.random.Generator | int | None = None,
    artefact: str | None = None,
    nucleus_diameter_um: float = 11.0,
    blur_sigma_px: float = 0.7,
    touching_fraction: float = 0.2,
    scene: SceneOptions | None = None,
) -> tuple[np.ndarray, dict[str, Any]]:
    """Render one field with ``n_tumour`` GFP-positive and ``n_normal`` GFP-negative nuclei.

    Args:
        n_tumour, n_normal: nuclei whose centres lie in the field.
        channels: names from ``{"DAPI", "GFP"}``, in the order of the output planes.
        image_size: ``(Y, X)`` pixels.
        pixel_size_um: µm per pixel at the sample.
        exposure_ms: exposure; signal scales linearly (20 ms is nominal), saturating at 65535.
        rng: generator or seed.
        artefact: None, ``"bubble"`` (a dark disc with a bright rim hiding nuclei),
            ``"debris"`` (large bright irregular particles in every channel) or ``"no_cells"``.
        nucleus_diameter_um: mean nucleus diameter (tumour nuclei are 15 % larger).
        blur_sigma_px: blur of the optics (pixels, a Gaussian's sigma); sets the width of
            the nuclei's soft edges.
        touching_fraction: share of nuclei placed touching another (0.8-1.15 diameters
            apart); at 2.6 µm/px a segmenter merges many of these pairs. The other
            nuclei keep at least ``MIN_GAP`` diameters apart (a monolayer).
        scene: None (default: smooth ellipses, the output above) or realistic fields from
            :func:`simulators.nuclei_scene.render_scene` (texture, colonies, mitoses,
            apoptotic nuclei, debris; any pixel size). Then only DAPI is supported and the
            truth adds ``labels`` (``(Y, X)`` int32 instance labels of the nuclei to count),
            ``other_labels`` and the counts of :class:`~simulators.nuclei_scene.SceneTruth`;
            ``n_tumour``/``n_normal`` split the counted nuclei in proportion.

    Returns:
        ``(image, truth)``: image ``(C, Y, X)`` uint16; truth a JSON-friendly dict with
        ``n_tumour``, ``n_normal`` (visible nuclei), ``centroids_yx``, ``is_tumour``,
        ``artefact``.

    Raises:
        ImagingError: an unknown channel name.
    """
    bad = [c for c in channels if c not in CHANNELS]
    if bad or not channels:
        raise ImagingError(f"unknown channels {bad}; the simulated microscope has {list(CHANNELS)}")
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    shape = (int(image_size[0]), int(image_size[1]))
    if scene is not None:
        return _render_scene_field(
            n_tumour, n_normal, channels, shape, pixel_size_um, exposure_ms, rng,
            nucleus_diameter_um, blur_sigma_px, scene,
        )  # fmt: skip
    diameter_px = nucleus_diameter_um / pixel_size_um
    nuc = _nuclei(int(n_tumour), int(n_normal), shape, diameter_px, rng, touching_fraction)
    dim = ring = None
    if artefact == "bubble":
        dim, ring = _bubble(shape, rng)
        visible = dim[nuc["pos"][:, 0].astype(int), nuc["pos"][:, 1].astype(int)] >= 1.0
        nuc = {k: v[visible] for k, v in nuc.items()}
    debris = _debris(shape, diameter_px, rng) if artefact == "debris" else None
    is_tumour = nuc["is_tumour"]
    weights = []
    for ch in channels:
        peak = np.where(is_tumour, _PEAK_E[ch]["tumour"], _PEAK_E[ch]["normal"])
        weights.append(peak * (nuc["dna"] if ch == "DAPI" else nuc["gfp"]))
    edge_px = math.sqrt(1.0 + (2.5 * blur_sigma_px) ** 2)
    planes = _stamp_ellipses(
        nuc["pos"], nuc["semi_a"], nuc["semi_b"], nuc["angle"], weights, shape, edge_px
    )
    signal = np.empty((len(planes), *shape), dtype=np.float32)
    illumination = _illumination(shape) * np.float32(exposure_ms / 20.0)
    for i, ch in enumerate(channels):
        plane = planes[i] + _BACKGROUND_E[ch]
        if debris is not None:
            plane += _DEBRIS_E[ch] * debris
        if dim is not None and ring is not None:
            plane = plane * dim + 3.0 * _BACKGROUND_E[ch] * ring
        np.multiply(plane, illumination, out=signal[i], casting="same_kind")
    image = _camera(signal, rng)
    truth = {
        "n_tumour": int(is_tumour.sum()),
        "n_normal": int((~is_tumour).sum()),
        "centroids_yx": np.round(nuc["pos"], 2).tolist(),
        "is_tumour": is_tumour.tolist(),
        "artefact": artefact,
    }
    return image, truth


def _render_scene_field(
    n_tumour: int, n_normal: int, channels: Sequence[str], shape: tuple[int, int],
    pixel_size_um: float, exposure_ms: float, rng: np.random.Generator,
    nucleus_diameter_um: float, blur_sigma_px: float, scene: SceneOptions,
) -> tuple[np.ndarray, dict[str, Any]]:  # fmt: skip
    """:func:`render_field` with ``scene``: a realistic DAPI field and instance truth."""
    if list(channels) != ["DAPI"]:
        raise ImagingError(f"realistic scenes render DAPI only, got channels {list(channels)}")
    image, st = render_scene(
        int(n_tumour) + int(n_normal), image_size=shape, pixel_size_um=pixel_size_um,
        nucleus_diameter_um=nucleus_diameter_um, options=scene, rng=rng,
        exposure_ms=exposure_ms, blur_sigma_px=blur_sigma_px,
    )  # fmt: skip
    total = max(int(n_tumour) + int(n_normal), 1)
    n_t = int(round(st.n_counted * int(n_tumour) / total))
    truth: dict[str, Any] = {"n_tumour": n_t, "n_normal": st.n_counted - n_t, "artefact": None}
    truth.update(st.summary(), labels=st.labels, other_labels=st.other_labels)
    return image[None], truth


class SimulatedMicroscope:
    """Implements :class:`instruments.interfaces.Microscope` on a simulated lab.

    Args:
        lab: the simulated lab whose wells are imaged.
        clock: acquisition times come from it; each field advances it by
            ``seconds_per_field`` plus the exposures.
        image_size: ``(Y, X)`` camera pixels (after binning).
        pixel_size_um: µm per pixel at the sample (default: 0.65 µm x 4 binning).
        seconds_per_field: stage move and autofocus time per field (s).
        seed: seeds the field rendering (with plate, well, field and time).
        nucleus_diameter_um: mean nucleus diameter (µm).
        touching_fraction: share of nuclei rendered touching another.
    """

    def __init__(
        self,
        lab: SimulatedLab,
        clock: Clock,
        *,
        image_size: tuple[int, int] = (256, 256),
        pixel_size_um: float = 0.65 * 4,
        seconds_per_field: float = 0.5,
        seed: int = 0,
        nucleus_diameter_um: float = 11.0,
        touching_fraction: float = 0.2,
    ) -> None:
        self.lab = lab
        self.clock = clock
        self.image_size = (int(image_size[0]), int(image_size[1]))
        self.pixel_size_um = float(pixel_size_um)
        self.seconds_per_field = float(seconds_per_field)
        self.seed = int(seed)
        self.nucleus_diameter_um = float(nucleus_diameter_um)
        self.touching_fraction = float(touching_fraction)
        self.frames_acquired = 0

    @property
    def field_area_mm2(self) -> float:
        h, w = self.image_size
        return h * w * (self.pixel_size_um / 1000.0) ** 2

    def field_fraction(self, plate: str) -> float:
        """Fraction of a well's bottom one field covers."""
        return self.field_area_mm2 / self.lab.plate_type(plate).well_area_mm2

    def _field_offset_um(self, field: int) -> tuple[float, float]:
        """Fields on a square grid centred in the well, row by row."""
        side = 1
        while side * side <= field:
            side += 1
        side = max(side, 1)
        r, c = divmod(field, side)
        step_y = self.image_size[0] * self.pixel_size_um
        step_x = self.image_size[1] * self.pixel_size_um
        return ((c - (side - 1) / 2) * step_x, (r - (side - 1) / 2) * step_y)

    def acquire_well(
        self,
        plate: str,
        well: str,
        channels: Sequence[str],
        fields: int,
        exposure_ms: float,
    ) -> list[Frame]:
        """Image ``fields`` fields of ``well`` in ``channels``; one :class:`Frame` per field.

        Raises:
            ImagingError: unknown well or channel, fields < 1, or exposure <= 0.
        """
        try:
            well = self.lab.canonical_well(plate, well)
        except UnknownWellError as exc:
            raise ImagingError(str(exc)) from exc
        if fields < 1 or exposure_ms <= 0:
            raise ImagingError(f"fields ({fields}) must be >= 1 and exposure ({exposure_ms}) > 0")
        bad = [c for c in channels if c not in CHANNELS]
        if bad or not channels:
            raise ImagingError(f"unknown channels {bad}; available: {list(CHANNELS)}")
        self.lab.ensure_plate(plate, self.clock.now())
        frac = self.field_fraction(plate)
        centre = self.lab.plate_type(plate).well_centre_um(well)
        frames = []
        for f in range(int(fields)):
            now = self.clock.now()
            cells = self.lab.cells_in_well(plate, well, now)
            rng = np.random.default_rng(
                [self.seed, stable_hash(plate), stable_hash(well), f, int(now * 1000) % 2**32]
            )
            n_t, n_n = rng.poisson([cells.tumour * frac, cells.normal * frac])
            artefact = cells.artefact
            if artefact in ("bubble", "debris") and rng.random() > 0.75:
                artefact = None  # this field happens to miss the bubble / debris
            image, truth = render_field(
                int(n_t), int(n_n), channels=list(channels), image_size=self.image_size,
                pixel_size_um=self.pixel_size_um, exposure_ms=exposure_ms, rng=rng,
                artefact=artefact, nucleus_diameter_um=self.nucleus_diameter_um,
                touching_fraction=self.touching_fraction,
            )  # fmt: skip
            truth.update(
                well_tumour=cells.tumour, well_normal=cells.normal, well_artefact=cells.artefact
            )
            dx, dy = self._field_offset_um(f)
            frames.append(
                Frame(
                    image=image,
                    channels=tuple(channels),
                    plate=plate,
                    well=well,
                    field=f,
                    pixel_size_um=self.pixel_size_um,
                    position_um=(centre[0] + dx, centre[1] + dy),
                    timestamp_s=now,
                    metadata={
                        "exposure_ms": float(exposure_ms),
                        "simulated": True,
                        TRUTH_KEY: truth,
                    },
                )
            )
            self.frames_acquired += 1
            self.clock.sleep(self.seconds_per_field + len(channels) * exposure_ms / 1000.0)
        return frames

    def identify(self) -> dict[str, Any]:
        """Identity and state for commissioning."""
        return {
            "model": "cellpilot simulated microscope",
            "serial": "SIM-MIC-0001",
            "firmware": "sim-1.0",
            "ready": True,
            "simulated": True,
            "channels": list(CHANNELS),
            "image_size": list(self.image_size),
            "pixel_size_um": self.pixel_size_um,
            "frames_acquired": self.frames_acquired,
        }
