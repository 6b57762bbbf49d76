"""Concentration → volume math (C1·V1 = C2·V2), stock choice, splitting, and step replay."""

from __future__ import annotations

import math

import pytest
from hypothesis import given
from hypothesis import strategies as st

from protocols.base import (
    choose_stock,
    max_volume_over_range,
    replay_steps,
    split_volume,
)
from protocols.exceptions import ImpossibleVolume
from protocols.steps import Aspirate, Dispense

FINAL_UL, MIN_UL = 200.0, 0.5
stock_lists = st.lists(
    st.floats(min_value=1.0, max_value=1e5, allow_nan=False), min_size=1, max_size=4, unique=True
).map(sorted)


@given(stocks=stock_lists, factor=st.floats(min_value=1.0, max_value=1e4))
def test_choose_stock_volume_and_choice(stocks: list[float], factor: float) -> None:
    dose = factor * MIN_UL * stocks[0] / FINAL_UL  # at or above the smallest pipettable dose
    stock, volume = choose_stock("x", dose, stocks, FINAL_UL, MIN_UL)
    assert stock in stocks
    assert math.isclose(stock * volume, dose * FINAL_UL, rel_tol=1e-12)  # C1·V1 = C2·V2
    assert volume >= MIN_UL - 1e-9
    more_concentrated = [s for s in stocks if s > stock]
    assert all(dose * FINAL_UL / s < MIN_UL for s in more_concentrated)


def test_choose_stock_examples() -> None:
    assert choose_stock("a", 1.0, [10, 100, 1000], 200, 0.5) == (100, 2.0)
    assert choose_stock("a", 10.0, [10, 100, 1000], 200, 0.5) == (1000, 2.0)
    assert choose_stock("a", 0.05, [10, 100, 1000], 200, 0.5) == (10, 1.0)
    # exactly at the minimum counts as pipettable
    assert choose_stock("a", 2.5, [1000], 200, 0.5) == (1000, 0.5)


def test_choose_stock_below_minimum() -> None:
    with pytest.raises(ImpossibleVolume, match="below the handler's minimum") as e:
        choose_stock("drug_a", 0.01, [10, 100], 200, 0.5)
    assert e.value.reagent == "drug_a" and e.value.dose_um == 0.01
    assert "lowest dose possible is 0.025 uM" in e.value.reason


def test_choose_stock_negative() -> None:
    with pytest.raises(ImpossibleVolume, match="≥ 0"):
        choose_stock("drug_a", -1.0, [10], 200, 0.5)


@given(volume=st.floats(min_value=0.5, max_value=1000), tip=st.floats(min_value=1, max_value=300))
def test_split_volume(volume: float, tip: float) -> None:
    parts = split_volume(volume, tip)
    assert math.isclose(sum(parts), volume, rel_tol=1e-12)
    assert all(p <= tip * (1 + 1e-9) for p in parts)
    assert len(parts) == max(1, math.ceil(volume / tip - 1e-9))


@given(stocks=stock_lists, a=st.floats(0, 1), b=st.floats(0, 1))
def test_max_volume_over_range_bounds_every_dose(stocks: list[float], a: float, b: float) -> None:
    d_min = MIN_UL * stocks[0] / FINAL_UL
    low, high = sorted((d_min * 10 ** (3 * a), d_min * 10 ** (3 * b)))
    bound = max_volume_over_range(stocks, low, high, FINAL_UL, MIN_UL)
    probes = [low, high] + [low + (high - low) * i / 50 for i in range(51)]
    probes += [MIN_UL * s / FINAL_UL * (1 - 1e-9) for s in stocks]  # just below each switch
    for d in probes:
        if low <= d <= high:
            assert choose_stock("x", d, stocks, FINAL_UL, MIN_UL)[1] <= bound * (1 + 1e-9)


def test_replay_steps_tracks_concentrations() -> None:
    steps = [
        Aspirate(plate="P", source="d@100uM", reagent="d", stock_concentration_um=100, volume_ul=2),
        Dispense(plate="P", well="B02", reagent="d", volume_ul=2),
        Aspirate(
            plate="P", source="medium", reagent="medium", stock_concentration_um=0, volume_ul=48
        ),
        Dispense(plate="P", well="B02", reagent="medium", volume_ul=48),
    ]
    out = replay_steps(steps, initial_volume_ul=150.0, wells=["C03"])
    assert out["B02"].volume_ul == 200.0
    assert out["B02"].concentrations_um == {"d": 1.0}
    assert out["C03"].volume_ul == 150.0 and out["C03"].concentrations_um == {}
