"""Nuclear-stain fields at realistic resolution, with per-nucleus instance truth.

:func:`render_scene` draws one ``(Y, X)`` Hoechst/DAPI field at any pixel size (unbinned
20x ~0.33 µm/px, 10x ~0.65 µm/px, binned 1.3 µm/px and coarser) with what real fields have
and :func:`simulators.microscope.render_field`'s smooth ellipses lack:

- **chromatin texture**: granular/speckled intensity inside each nucleus (band-passed noise
  at ~0.07 nucleus diameters), darker nucleoli (1-3 spots), a per-nucleus amplitude;
- **irregular outlines**: ellipses with a few low radial harmonics;
- **clumps and colonies**: a share of nuclei placed around colony centres, touching or
  slightly overlapping (painter's order decides the labels where they overlap);
- **mitotic figures**: prophase (bright, granular, round), metaphase (a bright bar) and
  anaphase/telophase pairs (two small bright daughters; they count as **2**);
- **apoptotic/pyknotic nuclei**: small, very bright, round, or fragmented into 3-6 bodies;
- **debris**: small irregular bright or dim particles, some blurred;
- **uneven staining** (per-nucleus log-normal brightness, a per-field linear gradient,
  vignetting), **out-of-focus** fields (extra Gaussian blur) and a camera model (shot and
  read noise, offset, 16-bit).

What an analyzer **should count** (``SceneTruth.n_counted``): live nuclei, i.e. interphase
nuclei plus mitotic figures, an anaphase/telophase pair counting as two (two cells are about
to exist and both keep their DNA). Pyknotic and fragmented apoptotic nuclei and debris are
not live nuclei and are not counted: they are in ``other_labels`` so a benchmark can see
whether a segmenter picked them up. ``labels`` holds exactly ``n_counted`` objects, one label
each (a mitotic daughter has its own label).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from scipy import ndimage as ndi

__all__ = ["SceneOptions", "SceneTruth", "render_scene", "coverage_count"]


@dataclass(frozen=True)
class SceneOptions:
    """What a field contains besides plain interphase nuclei (defaults: all realistic effects).

    Attributes:
        texture: chromatin texture amplitude (0 = smooth; 1 = granular, ±~30 % inside a nucleus).
        nucleoli: mean number of dark nucleoli per interphase nucleus.
        outline_irregularity: amplitude of the radial harmonics of the outline (fraction).
        colony_fraction: share of nuclei placed in colonies (clumps) rather than at random.
        min_gap: closest centre distance as a fraction of the sum of two radii (< 1: overlap).
        mitotic_fraction: share of counted cells that are mitotic figures.
        apoptotic_per_live: pyknotic/fragmented nuclei per live nucleus (not counted).
        debris_per_live: debris particles per live nucleus (plus ``debris_min`` per field).
        debris_min: debris particles in every field, even an empty one.
        stain_cv: per-nucleus brightness SD (log-normal sigma).
        field_gradient: per-field linear staining gradient (±, fraction across the field).
        defocus_sigma: extra blur as a fraction of the nucleus diameter (Gaussian sigma).
        peak_e: mean nuclear signal (photo-electrons per pixel) at 20 ms.
        background_e: background signal (photo-electrons per pixel) at 20 ms.
    """

    texture: float = 1.0
    nucleoli: float = 1.5
    outline_irregularity: float = 0.05
    colony_fraction: float = 0.5
    min_gap: float = 0.85
    mitotic_fraction: float = 0.04
    apoptotic_per_live: float = 0.05
    debris_per_live: float = 0.05
    debris_min: int = 3
    stain_cv: float = 0.25
    field_gradient: float = 0.3
    defocus_sigma: float = 0.0
    peak_e: float = 1400.0
    background_e: float = 80.0

    @classmethod
    def smooth(cls) -> SceneOptions:
        """Plain ellipses only: no texture, clumps, mitoses, apoptosis or debris."""
        return cls(
            texture=0.0, nucleoli=0.0, outline_irregularity=0.0, colony_fraction=0.0,
            min_gap=0.95, mitotic_fraction=0.0, apoptotic_per_live=0.0, debris_per_live=0.0,
            debris_min=0, stain_cv=0.15, field_gradient=0.0,
        )  # fmt: skip


@dataclass(frozen=True)
class SceneTruth:
    """Ground truth of one rendered field (analyzers must never see it).

    Attributes:
        labels: ``(Y, X)`` int32, the objects to count, 1..n_counted (0 = none).
        other_labels: ``(Y, X)`` int32, apoptotic bodies and debris (not to be counted).
        n_counted: live nuclei an analyzer should count (``labels.max()``).
        n_interphase: interphase nuclei among them.
        n_mitotic: mitotic figures among them (a daughter of a pair is one).
        n_apoptotic: pyknotic or fragmented nuclei (a fragmented one counts once here).
        n_debris: debris particles.
        diameter_px: mean nucleus diameter in pixels.
        kind: per counted label (index label-1): "interphase", "prophase", "metaphase",
            "daughter".
    """

    labels: np.ndarray
    other_labels: np.ndarray
    n_counted: int
    n_interphase: int
    n_mitotic: int
    n_apoptotic: int
    n_debris: int
    diameter_px: float
    kind: list[str] = field(default_factory=list)

    def summary(self) -> dict[str, float | int]:
        """JSON-friendly counts (no images)."""
        return {
            "n_counted": self.n_counted,
            "n_interphase": self.n_interphase,
            "n_mitotic": self.n_mitotic,
            "n_apoptotic": self.n_apoptotic,
            "n_debris": self.n_debris,
            "diameter_px": round(self.diameter_px, 2),
        }


def coverage_count(coverage: float, image_size: tuple[int, int], diameter_px: float) -> int:
    """Number of nuclei of ``diameter_px`` covering ``coverage`` (0-1) of a field."""
    return int(round(coverage * image_size[0] * image_size[1] / (math.pi * diameter_px**2 / 4)))


@dataclass
class _Obj:
    """One object to stamp: centre, semi-axes (px), angle, brightness, texture, kind."""

    y: float
    x: float
    a: float
    b: float
    angle: float
    bright: float
    texture: float
    kind: str
    counted: bool
    harmonics: np.ndarray  # (k, 2): amplitude, phase of radial harmonics 2..k+1
    nucleoli: list[tuple[float, float, float, float]]  # dy, dx, radius, depth
    group: int = 0  # the apoptotic nucleus a fragment came from


def _place(
    radii: np.ndarray, shape: tuple[int, int], opts: SceneOptions, rng: np.random.Generator
) -> np.ndarray:
    """Centres ``(n, 2)`` by random sequential addition: no two closer than ``min_gap`` x the
    sum of their radii; a ``colony_fraction`` share drawn around colony centres. Slots that
    do not fit after 40 batches of candidates get NaN (the field is full)."""
    h, w = shape
    n = radii.size
    pos = np.full((n, 2), np.nan)
    in_colony = rng.random(n) < opts.colony_fraction
    n_col = max(1, int(round(in_colony.sum() / 12)))
    centres = rng.random((n_col, 2)) * [h, w]
    spread = np.sqrt(12.0) * 2.0 * float(np.median(radii)) * rng.uniform(0.5, 1.0, n_col)
    for i in rng.permutation(n):
        placed = ~np.isnan(pos[:, 0])
        for attempt in range(40):
            if in_colony[i]:
                c = int(rng.integers(n_col))
                grow = 1.0 + attempt / 8.0  # a full colony grows outwards
                cand = centres[c] + rng.normal(0.0, spread[c] * grow, (32, 2))
            else:
                cand = rng.random((32, 2)) * [h, w]
            cand = cand[(cand[:, 0] >= 0) & (cand[:, 0] < h) & (cand[:, 1] >= 0) & (cand[:, 1] < w)]
            if cand.size == 0:
                continue
            if placed.any():
                dist = np.hypot(*(cand[:, None, :] - pos[None, placed, :]).transpose(2, 0, 1))
                ok = (dist >= opts.min_gap * (radii[i] + radii[placed])[None, :]).all(1)
                cand = cand[ok]
            if cand.size:
                pos[i] = cand[0]
                break
    return pos


def _harmonics(irregularity: float, rng: np.random.Generator) -> np.ndarray:
    amp = irregularity * rng.uniform(0.3, 1.0, 3) / np.array([1.0, 1.5, 2.0])
    return np.stack([amp, rng.uniform(0, 2 * np.pi, 3)], axis=1)


def _nucleoli(a: float, n_mean: float, rng: np.random.Generator) -> list:
    out = []
    for _ in range(int(rng.poisson(n_mean))):
        r = a * math.sqrt(rng.random()) * 0.55
        t = rng.uniform(0, 2 * np.pi)
        out.append(
            (r * math.sin(t), r * math.cos(t), a * rng.uniform(0.12, 0.22), rng.uniform(0.25, 0.5))
        )
    return out


def _objects(
    n_live: int, d: float, shape: tuple[int, int], opts: SceneOptions, rng: np.random.Generator
) -> list[_Obj]:
    """Counted cells, apoptotic nuclei and their placement (debris is separate)."""
    n_apo = int(rng.poisson(opts.apoptotic_per_live * n_live))
    kinds = ["interphase"] * n_live + ["apoptotic"] * n_apo
    n_mit = int(rng.binomial(n_live, opts.mitotic_fraction)) if n_live else 0
    for i in rng.choice(n_live, n_mit, replace=False) if n_mit else []:
        kinds[i] = str(rng.choice(["prophase", "metaphase", "pair", "pair"]))
    size = {"interphase": 1.0, "prophase": 0.9, "metaphase": 0.7, "pair": 1.1, "apoptotic": 0.6}
    radii = np.array([0.5 * d * size[k] for k in kinds]) * rng.lognormal(0.0, 0.12, len(kinds))
    pos = _place(radii, shape, opts, rng)
    objs: list[_Obj] = []
    tex = opts.texture
    for slot, (k, r, (y, x)) in enumerate(zip(kinds, radii, pos, strict=True)):
        if np.isnan(y):
            continue
        bright = float(rng.lognormal(0.0, opts.stain_cv))
        ang = float(rng.uniform(0, np.pi))
        if k == "interphase":
            a, b = r * rng.uniform(1.0, 1.25), r * rng.uniform(0.75, 1.0)
            harm = _harmonics(opts.outline_irregularity, rng)
            objs.append(
                _Obj(
                    y,
                    x,
                    a,
                    b,
                    ang,
                    bright,
                    tex * rng.uniform(0.4, 1.2),
                    k,
                    True,
                    harm,
                    _nucleoli(a, opts.nucleoli, rng),
                )
            )
        elif k == "prophase":
            objs.append(
                _Obj(
                    y,
                    x,
                    r,
                    r * 0.9,
                    ang,
                    1.6 * bright,
                    tex * 1.5,
                    k,
                    True,
                    _harmonics(opts.outline_irregularity, rng),
                    [],
                )
            )
        elif k == "metaphase":
            objs.append(
                _Obj(
                    y,
                    x,
                    r,
                    0.3 * r,
                    ang,
                    3.5 * bright,
                    tex * 0.5,
                    k,
                    True,
                    _harmonics(0.03, rng),
                    [],
                )
            )
        elif k == "pair":
            sep = r * rng.uniform(0.55, 0.8)
            for s in (-1.0, 1.0):
                dy, dx = s * sep * math.sin(ang), s * sep * math.cos(ang)
                objs.append(
                    _Obj(
                        y + dy,
                        x + dx,
                        0.45 * r,
                        0.32 * r,
                        ang + np.pi / 2,
                        3.0 * bright,
                        tex * 0.5,
                        "daughter",
                        True,
                        _harmonics(0.04, rng),
                        [],
                    )
                )
        elif rng.random() < 0.5:  # pyknotic: small, round, very bright
            objs.append(
                _Obj(
                    y,
                    x,
                    r * 0.75,
                    r * 0.7,
                    ang,
                    3.5 * bright,
                    0.1,
                    "pyknotic",
                    False,
                    _harmonics(0.02, rng),
                    [],
                )
            )
        else:  # fragmented into apoptotic bodies
            for _ in range(int(rng.integers(3, 7))):
                t, rr = rng.uniform(0, 2 * np.pi), r * rng.uniform(0.2, 0.9)
                s = r * rng.uniform(0.18, 0.35)
                objs.append(
                    _Obj(
                        y + rr * math.sin(t),
                        x + rr * math.cos(t),
                        s,
                        s * 0.85,
                        ang,
                        2.5 * bright,
                        0.0,
                        "fragment",
                        False,
                        _harmonics(0.02, rng),
                        [],
                        slot,
                    )
                )
    return objs


def _stamp(
    o: _Obj,
    texture: np.ndarray,
    signal: np.ndarray,
    cover: np.ndarray,
    labels: np.ndarray,
    lab: int,
) -> None:
    """Draw one object into ``signal`` (adds) and ``labels`` (where it covers most)."""
    h, w = signal.shape
    half = int(math.ceil(max(o.a, o.b) * 1.25 + 2))
    y0, y1 = max(0, int(o.y) - half), min(h, int(o.y) + half + 1)
    x0, x1 = max(0, int(o.x) - half), min(w, int(o.x) + half + 1)
    if y0 >= y1 or x0 >= x1:
        return
    yy = np.arange(y0, y1, dtype=np.float64)[:, None] - o.y
    xx = np.arange(x0, x1, dtype=np.float64)[None, :] - o.x
    c, s = math.cos(o.angle), math.sin(o.angle)
    u, v = (xx * c + yy * s) / o.a, (-xx * s + yy * c) / o.b
    rho = np.sqrt(u * u + v * v)
    theta = np.arctan2(v, u)
    edge = np.ones_like(rho)
    for k, (amp, phase) in enumerate(o.harmonics, start=2):
        edge += amp * np.cos(k * theta + phase)
    rel = rho / edge
    r_px = math.sqrt(o.a * o.b)
    cov = np.clip((1.0 - rel) * r_px + 0.5, 0.0, 1.0)  # 1-px anti-aliased edge
    # projected thickness of a flattened ellipsoid, softened: darker rims, so two abutting
    # nuclei show a seam; overlaps take the brighter one (nuclei in a monolayer abut and
    # deform rather than stack)
    profile = cov * (1.0 - np.minimum(rel, 0.97) ** 2) ** 0.3
    tex = 1.0 + o.texture * texture[y0:y1, x0:x1]
    for dy, dx, rad, depth in o.nucleoli:
        tex *= 1.0 - depth * np.exp(-((yy - dy) ** 2 + (xx - dx) ** 2) / (2 * rad * rad))
    region = signal[y0:y1, x0:x1]
    np.maximum(region, o.bright * profile * np.clip(tex, 0.15, None), out=region)
    mine = (cov >= 0.5) & (cov >= cover[y0:y1, x0:x1])
    labels[y0:y1, x0:x1][mine] = lab
    cover[y0:y1, x0:x1] = np.maximum(cover[y0:y1, x0:x1], cov)


def _texture(shape: tuple[int, int], d: float, rng: np.random.Generator) -> np.ndarray:
    """Zero-mean, unit-ish SD granular texture: band-passed noise (grains ~0.07 d) plus a
    coarser component (chromatin domains ~0.2 d), clipped to about ±1."""
    noise = rng.standard_normal(shape).astype(np.float32)
    fine = ndi.gaussian_filter(noise, max(0.6, 0.035 * d))
    coarse = ndi.gaussian_filter(noise, max(1.0, 0.1 * d))
    tex = fine / (fine.std() + 1e-9) * 0.6 + coarse / (coarse.std() + 1e-9) * 0.4
    return np.clip(0.3 * tex, -0.9, 0.9).astype(np.float32)


def _debris(
    n: int, d: float, shape: tuple[int, int], rng: np.random.Generator, labels: np.ndarray
) -> np.ndarray:
    """``n`` irregular particles (0.05-0.4 d, a few up to 0.8 d, dim to bright), a float map
    in units of the mean nuclear peak; their footprints go into ``labels`` (1..n)."""
    h, w = shape
    out = np.zeros(shape, np.float32)
    for i in range(1, n + 1):
        r = d * (rng.uniform(0.4, 0.8) if rng.random() < 0.1 else rng.uniform(0.05, 0.4))
        r = max(r, 0.8)
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        half = int(r * 1.6 + 2)
        y0, y1 = max(0, int(cy) - half), min(h, int(cy) + half + 1)
        x0, x1 = max(0, int(cx) - half), min(w, int(cx) + half + 1)
        yy = np.arange(y0, y1)[:, None] - cy
        xx = np.arange(x0, x1)[None, :] - cx
        t = np.arctan2(yy, xx)
        wob = 1.0 + 0.4 * np.sin(3 * t + rng.uniform(0, 6.3)) * rng.random() + 0.2 * np.sin(5 * t)
        cov = np.clip((1.0 - np.hypot(yy, xx) / (r * wob)) * r + 0.5, 0.0, 1.0)
        blob = cov * rng.choice([0.3, 1.0, 3.0]) * rng.uniform(0.5, 1.5)
        if rng.random() < 0.3:
            blob = ndi.gaussian_filter(blob, max(1.0, 0.3 * r))
        out[y0:y1, x0:x1] += blob.astype(np.float32)
        region = labels[y0:y1, x0:x1]
        region[(cov >= 0.5) & (region == 0)] = i
    return out


def render_scene(
    n_live: int,
    *,
    image_size: tuple[int, int] = (512, 512),
    pixel_size_um: float = 0.325,
    nucleus_diameter_um: float = 11.0,
    options: SceneOptions | None = None,
    rng: np.random.Generator | int | None = None,
    exposure_ms: float = 20.0,
    blur_sigma_px: float = 0.7,
) -> tuple[np.ndarray, SceneTruth]:
    """Render one nuclear-stain field with ``n_live`` live cells (before mitoses are drawn).

    Args:
        n_live: live cells whose centres should lie in the field; a crowded field places
            what fits (``truth.n_counted`` says what was drawn).
        image_size: ``(Y, X)`` pixels.
        pixel_size_um: µm per pixel at the sample (0.325: 20x unbinned; 0.65: 10x; 1.3, 2.6:
            binned).
        nucleus_diameter_um: mean interphase nucleus diameter (µm).
        options: what else the field holds (default :class:`SceneOptions` ()).
        rng: generator or seed; the same seed gives the same image and truth.
        exposure_ms: signal scales linearly (20 ms nominal), saturating at 65535.
        blur_sigma_px: the optics' Gaussian blur (px); defocus adds to it.

    Returns:
        ``(image, truth)``: image ``(Y, X)`` uint16; truth a :class:`SceneTruth`.
    """
    from simulators.microscope import _camera, _illumination

    opts = options or SceneOptions()
    rng = rng if isinstance(rng, np.random.Generator) else np.random.default_rng(rng)
    shape = (int(image_size[0]), int(image_size[1]))
    d = nucleus_diameter_um / pixel_size_um
    objs = _objects(int(n_live), d, shape, opts, rng)
    texture = _texture(shape, d, rng)
    signal = np.zeros(shape, np.float32)
    cover = np.zeros(shape, np.float32)
    labels = np.zeros(shape, np.int32)
    other = np.zeros(shape, np.int32)
    counted = [o for o in objs if o.counted]
    for i, o in enumerate(counted, start=1):
        _stamp(o, texture, signal, cover, labels, i)
    dead = [o for o in objs if not o.counted]
    n_debris = int(rng.poisson(opts.debris_per_live * len(counted))) + opts.debris_min
    signal += _debris(n_debris, d, shape, rng, other)
    for i, o in enumerate(dead, start=n_debris + 1):  # above the debris labels
        _stamp(o, texture, signal, np.zeros(shape, np.float32), other, i)
    other[labels > 0] = 0  # a counted nucleus on top hides what is under it
    sigma = math.hypot(blur_sigma_px, opts.defocus_sigma * d)
    signal = ndi.gaussian_filter(signal, sigma) if sigma > 0.3 else signal
    gy, gx = np.linspace(-0.5, 0.5, shape[0]), np.linspace(-0.5, 0.5, shape[1])
    t = rng.uniform(0, 2 * np.pi)
    gradient = 1.0 + opts.field_gradient * (gy[:, None] * math.sin(t) + gx[None, :] * math.cos(t))
    photons = (signal * opts.peak_e * gradient + opts.background_e) * _illumination(shape)
    photons = (photons * np.float32(exposure_ms / 20.0)).astype(np.float32)
    image = _camera(photons, rng)
    n_apo = sum(1 for o in dead if o.kind == "pyknotic")
    n_apo += len({o.group for o in dead if o.kind == "fragment"})
    visible = np.unique(labels)
    kinds = [counted[i - 1].kind for i in visible[visible > 0]]  # a fully hidden one is gone
    truth = SceneTruth(
        labels=_relabel(labels),
        other_labels=_relabel(other),
        n_counted=len(kinds),
        n_interphase=kinds.count("interphase"),
        n_mitotic=len(kinds) - kinds.count("interphase"),
        n_apoptotic=n_apo,
        n_debris=n_debris,
        diameter_px=d,
        kind=kinds,
    )
    return image, truth


def _relabel(labels: np.ndarray) -> np.ndarray:
    """Labels 1..N in order of first appearance of the original ids (drop ids fully hidden)."""
    ids = np.unique(labels)
    lut = np.zeros(int(labels.max()) + 1, np.int32)
    lut[ids[ids > 0]] = np.arange(1, int((ids > 0).sum()) + 1, dtype=np.int32)
    return lut[labels]
