"""Image artefacts injected into rendered fields: bubbles and debris, for QC benchmarks and tests.

These act on finished camera images (``(C, Y, X)`` uint16 stacks, as any microscope delivers
them), not inside a renderer, so they apply to frames from any source:

- a **bubble** is a disc that refracts the excitation away: inside it the signal above the
  camera offset drops to ~12 % (shot noise kept consistent with the lower signal), and its
  rim scatters light into a bright ring;
- **debris** is a few large irregular autofluorescent particles, bright in every channel.

Well-level failures are physics, not images: an empty well is
:meth:`simulators.world.SimulatedLab.seed_well` with no cells; a pipetting miss is a dispense
that never happened.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

import numpy as np

from instruments.interfaces import Frame

__all__ = ["IMAGE_ARTEFACTS", "add_bubble", "add_debris", "inject"]

IMAGE_ARTEFACTS: tuple[str, ...] = ("bubble", "debris")
#: camera offset (ADU) assumed when a frame does not say; the simulated camera's
DEFAULT_OFFSET_ADU = 100.0


def _signal(image: np.ndarray, offset: float) -> np.ndarray:
    return np.clip(image.astype(np.float64) - offset, 0.0, None)


def _to_camera(signal: np.ndarray, offset: float) -> np.ndarray:
    return np.clip(np.rint(signal + offset), 0, 65535).astype(np.uint16)


def add_bubble(
    image: np.ndarray, rng: np.random.Generator, *, offset_adu: float = DEFAULT_OFFSET_ADU
) -> np.ndarray:
    """A bubble over a random part of the field. ``image`` is ``(C, Y, X)``; returns a copy.

    The disc's radius is 25–45 % of the field's shorter side; it may reach past the edge.
    """
    _, h, w = image.shape
    cy, cx = rng.uniform(0, h), rng.uniform(0, w)
    radius = rng.uniform(0.25, 0.45) * min(h, w)
    y, x = np.ogrid[:h, :w]
    dist = np.sqrt((y - cy) ** 2 + (x - cx) ** 2)
    dim = 0.12 + 0.88 * np.clip((dist - radius) / 2.0 + 0.5, 0.0, 1.0)
    ring = np.exp(-(((dist - radius) / 2.0) ** 2))
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        s = _signal(image[c], offset_adu)
        background = float(np.median(s))
        dimmed = s * dim
        # shot noise of the dimmed signal: scaling by `dim` left too little of it
        dimmed += rng.standard_normal(s.shape) * np.sqrt(s * dim * (1.0 - dim))
        out[c] = _to_camera(dimmed + 3.0 * background * ring, offset_adu)
    return out


def add_debris(
    image: np.ndarray,
    rng: np.random.Generator,
    *,
    nucleus_diameter_px: float = 4.2,
    offset_adu: float = DEFAULT_OFFSET_ADU,
) -> np.ndarray:
    """3–8 irregular bright particles, 1.5–5 nucleus diameters across. ``image`` is
    ``(C, Y, X)``; returns a copy. Particles are ~3x as bright as the brightest nuclei."""
    _, h, w = image.shape
    y, x = np.ogrid[:h, :w]
    particles = np.zeros((h, w))
    for _ in range(int(rng.integers(3, 9))):
        cy, cx = rng.uniform(0, h), rng.uniform(0, w)
        r = nucleus_diameter_px * rng.uniform(1.5, 5.0)
        angle = np.arctan2(y - cy, x - cx)
        wobble = 1.0 + 0.35 * np.sin(3 * angle + rng.uniform(0, 6.3)) * rng.uniform(0.3, 1.0)
        dist = np.sqrt((y - cy) ** 2 + (x - cx) ** 2) / (r * wobble)
        particles = np.maximum(particles, np.clip(1.5 - dist * 1.5, 0, 1))
    out = np.empty_like(image)
    for c in range(image.shape[0]):
        s = _signal(image[c], offset_adu)
        bright = max(float(np.percentile(s, 99.9)) - float(np.median(s)), 50.0)
        added = 3.0 * bright * particles
        added += rng.standard_normal(s.shape) * np.sqrt(added)
        out[c] = _to_camera(s + added, offset_adu)
    return out


def inject(
    frames: Sequence[Frame],
    kind: str,
    rng: np.random.Generator,
    *,
    field_probability: float = 0.75,
    nucleus_diameter_um: float = 11.0,
) -> list[Frame]:
    """The frames of one well with ``kind`` (``bubble`` or ``debris``) in some of its fields.

    Each field is hit with ``field_probability`` (at least one field always is), as a bubble
    or a speck covers part of a well. Hit frames say so in ``metadata["injected_artefact"]``
    (ground truth for benchmarks; analyzers never read metadata).

    Raises:
        ValueError: an unknown ``kind``.
    """
    if kind not in IMAGE_ARTEFACTS:
        raise ValueError(f"unknown image artefact {kind!r}; known: {list(IMAGE_ARTEFACTS)}")
    hit = rng.random(len(frames)) < field_probability
    if len(frames) and not hit.any():
        hit[int(rng.integers(len(frames)))] = True
    out = []
    for frame, h in zip(frames, hit, strict=True):
        if not h:
            out.append(frame)
            continue
        if kind == "bubble":
            image = add_bubble(frame.image, rng)
        else:
            image = add_debris(
                frame.image, rng, nucleus_diameter_px=nucleus_diameter_um / frame.pixel_size_um
            )
        meta = {**frame.metadata, "injected_artefact": kind}
        out.append(dataclasses.replace(frame, image=image, metadata=meta))
    return out
