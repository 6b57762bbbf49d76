"""Fixtures for the pump driver tests: emulated pumps on a pty or TCP, fast driver settings."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from simulators.pump_emulator import PumpEmulator

TIME_SCALE = 0.001


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
