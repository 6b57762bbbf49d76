"""Clocks injected into the loop: wall time for real runs, simulated time for dry-runs.

Both implement :class:`instruments.interfaces.Clock`. Waits are interruptible so pause and
abort reach into a long incubation (pymmcore-plus #222 is the cautionary tale).
"""

from __future__ import annotations

import threading
import time


class Interrupted(Exception):
    """A wait was cut short by a pause or abort request."""


class WallClock:
    """Real time. ``sleep`` returns early, raising :class:`Interrupted`, when ``stop`` is set."""

    def __init__(self, stop: threading.Event | None = None) -> None:
        self.stop = stop or threading.Event()

    def now(self) -> float:
        return time.time()

    def sleep(self, seconds: float) -> None:
        if seconds <= 0:
            return
        if self.stop.wait(seconds):
            raise Interrupted(f"wait of {seconds:.0f} s interrupted")
