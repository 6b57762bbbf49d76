from __future__ import annotations

import pytest

from instruments.interfaces import Clock
from simulators.clock import SimulatedClock


def test_sleep_advances_instantly_and_reports():
    seen: list[float] = []
    clock = SimulatedClock(start_s=100.0, on_advance=seen.append)
    assert isinstance(clock, Clock)
    clock.sleep(3600)
    assert clock.now() == 3700.0
    clock.advance_to(5000)
    clock.advance_to(10)  # the past: no change
    assert clock.now() == 5000.0
    assert seen == [3700.0, 5000.0]
    with pytest.raises(ValueError, match="negative"):
        clock.sleep(-1)
