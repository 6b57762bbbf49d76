"""A simulated clock for dry-runs: sleeping advances time at once."""

from __future__ import annotations

from collections.abc import Callable


class SimulatedClock:
    """Implements :class:`instruments.interfaces.Clock` with time that jumps.

    Args:
        start_s: the time the clock starts at (s since the campaign began, or any epoch).
        on_advance: called with the new time after every advance, so the controller can
            persist it and resume a crashed dry-run at the same simulated time.
    """

    def __init__(
        self, start_s: float = 0.0, on_advance: Callable[[float], None] | None = None
    ) -> None:
        self._now = float(start_s)
        self.on_advance = on_advance

    def now(self) -> float:
        """The current simulated time (s)."""
        return self._now

    def sleep(self, seconds: float) -> None:
        """Advance by ``seconds`` at once.

        Raises:
            ValueError: ``seconds`` is negative.
        """
        if seconds < 0:
            raise ValueError(f"cannot sleep a negative time ({seconds} s)")
        self.advance_to(self._now + seconds)

    def advance_to(self, t: float) -> None:
        """Jump to time ``t`` (s); a time in the past leaves the clock where it is."""
        if t <= self._now:
            return
        self._now = float(t)
        if self.on_advance is not None:
            self.on_advance(self._now)

    def __repr__(self) -> str:
        return f"SimulatedClock(now={self._now:.3f})"
