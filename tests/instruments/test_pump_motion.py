"""Motion-time formula (XCalibur manual, appendix B) and per-model tables."""

from __future__ import annotations

import pytest

from instruments.pumps.models import (
    MODELS,
    SPEED_CODES_HZ,
    SpeedSettings,
    get_model,
    init_time_s,
    move_time_s,
)


def test_default_full_stroke_takes_4_29_s() -> None:
    assert move_time_s(3000, SpeedSettings(), dispense=True) == pytest.approx(4.29, abs=0.005)
    assert move_time_s(3000, SpeedSettings(), dispense=False) == pytest.approx(4.29, abs=0.005)


def test_flat_profile_is_two_a_over_v() -> None:
    flat = SpeedSettings(start_hz=1000, top_hz=1000, cutoff_hz=1000)
    assert move_time_s(1500, flat, dispense=True) == pytest.approx(3.0)
    slow = SpeedSettings(start_hz=50, top_hz=40, cutoff_hz=50)
    assert move_time_s(100, slow, dispense=True) == pytest.approx(200 / 40)


def test_short_move_never_reaches_top_speed() -> None:
    speeds = SpeedSettings(start_hz=50, top_hz=6000, cutoff_hz=50, slope_code=1)
    t = move_time_s(10, speeds, dispense=True)
    assert 0 < t < 20 / 50
    peak = (2 * 2500 * 20 + 50**2 + 50**2) ** 0.5 / 2**0.5
    assert t == pytest.approx(2 * (peak - 50) / 2500)


def test_aspiration_ends_at_start_speed() -> None:
    speeds = SpeedSettings(start_hz=100, top_hz=2000, cutoff_hz=1900, slope_code=1)
    assert move_time_s(3000, speeds, dispense=False) > move_time_s(3000, speeds, dispense=True)


def test_speed_codes_and_init_time() -> None:
    assert len(SPEED_CODES_HZ) == 41 and SPEED_CODES_HZ[11] == 1400 and SPEED_CODES_HZ[27] == 100
    assert init_time_s(3000) == pytest.approx(13.0, abs=0.5)


def test_model_tables() -> None:
    assert get_model("xlp6000").increments == 6000 and get_model("xcalibur").increments == 3000
    assert get_model("psd4").speed_code_range == (1, 40)
    assert get_model("psd4").top_speed_range_hz == (2, 5800)
    assert set(MODELS) == {"xcalibur", "xlp6000", "psd4", "psd6"}
    with pytest.raises(ValueError, match="unknown pump model"):
        get_model("ne500")
