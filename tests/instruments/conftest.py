"""Fixtures for the pump driver tests: emulated pumps on a pty or TCP, fast driver settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.pump_emulator import PumpEmulator

TIME_SCALE = 0.001

#: driver settings matched to an emulator that answers in well under a millisecond.
FAST = {
    "reply_timeout_s": 0.03,
    "retry_delay_s": 0.005,
    "poll_interval_s": 0.002,
    "deadline_margin_s": 0.3,
    "time_scale": TIME_SCALE,
}


@pytest.fixture
def emulator() -> Iterator[PumpEmulator]:
    emu = PumpEmulator((1, 2), time_scale=TIME_SCALE)
    yield emu
    emu.close()


@pytest.fixture
def tcp_emulator() -> Iterator[PumpEmulator]:
    emu = PumpEmulator((1,), time_scale=TIME_SCALE, transport="tcp")
    yield emu
    emu.close()
