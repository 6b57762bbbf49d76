"""Collecting one sequence's images from ``core.mda.events.frameReady``.

pymmcore-plus's MDA engine does not raise when a device fails mid-acquisition: it logs a
warning ("Failed to snap image. ...", "Failed to set channel. ...") and carries on without
that image. :class:`FrameCollector` therefore also listens to the ``pymmcore-plus`` logger
while the sequence runs, so that such a fault becomes an
:class:`~instruments.exceptions.ImagingError` carrying the device's message instead of a
well silently imaged with missing planes.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

# warnings of the MDA engine that mean the acquisition did not do what was asked
_FAULT_PREFIXES = (
    "Failed to snap image",
    "Failed to set",
    "Hardware autofocus failed",
    "No autofocus device",
    "No XY stage device",
    "No Z stage device",
)
MDA_LOGGER = "pymmcore-plus"


@dataclass
class Plane:
    """One image from ``frameReady``: ``(Y, X)`` pixels, its indices and metadata."""

    image: np.ndarray
    position: int
    channel: int
    z: int
    metadata: dict[str, Any]
    clock_s: float


class FrameCollector(logging.Handler):
    """Records planes and engine faults while connected (use as a context manager).

    Args:
        core: the pymmcore-plus core whose ``mda.events.frameReady`` is listened to.
        clock_now: returns the clock's time (s); stamped on every plane as it arrives.
    """

    def __init__(self, core: Any, clock_now: Callable[[], float]) -> None:
        super().__init__(level=logging.WARNING)
        self.core = core
        self.clock_now = clock_now
        self.planes: list[Plane] = []
        self.faults: list[str] = []

    # logging.Handler
    def emit(self, record: logging.LogRecord) -> None:
        message = record.getMessage()
        if message.startswith(_FAULT_PREFIXES):
            self.faults.append(message)

    def _on_frame(self, image: np.ndarray, event: Any, metadata: Any) -> None:
        index = event.index
        self.planes.append(
            Plane(
                image=np.array(image, copy=True),
                position=int(index.get("p", 0)),
                channel=int(index.get("c", 0)),
                z=int(index.get("z", 0)),
                metadata=dict(metadata or {}),
                clock_s=float(self.clock_now()),
            )
        )

    def __enter__(self) -> FrameCollector:
        logging.getLogger(MDA_LOGGER).addHandler(self)
        self.core.mda.events.frameReady.connect(self._on_frame)
        return self

    def __exit__(self, *exc: object) -> None:
        self.core.mda.events.frameReady.disconnect(self._on_frame)
        logging.getLogger(MDA_LOGGER).removeHandler(self)
