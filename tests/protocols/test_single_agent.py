"""Single-agent wells on combination plates: placed, dosed and vehicle-matched like every well."""

from __future__ import annotations

from typing import Any

import pytest

from protocols.base import get_protocol, replay_steps
from protocols.exceptions import PlateFull
from protocols.layout import PlateLayout, WellRole
from protocols.steps import Aspirate

COMBOS = [
    {"drug_a_um": 10.0, "drug_b_um": 10.0},
    {"drug_a_um": 0.01, "drug_b_um": 0.3},  # 0.01 uM: two serial dilutions
    {"drug_a_um": 10.0, "drug_b_um": 2.0},  # drug_a at 10 uM again: one set of wells
    {"drug_a_um": 0.0, "drug_b_um": 2.0},  # not a combination
]


def two_drug(**overrides: Any) -> dict[str, Any]:
    """The demo campaign's protocol: 10 mM DMSO stocks, 0.5 % DMSO in every dosed well."""
    settings: dict[str, Any] = {
        "replicates": 3,
        "negative_controls": 6,
        "positive_controls": 6,
        "positive_control": {"reagent": "staurosporine", "concentration_um": 1.0},
        "time_zero_wells": 4,
        "doses": ["drug_a_um -> drug_a", "drug_b_um -> drug_b"],
        "stocks": {"drug_a": [10000], "drug_b": [10000], "staurosporine": [1000]},
    }
    settings.update(overrides)
    return settings


def _drawn(steps: list, well: str) -> dict[str, float]:
    """source label -> µL dispensed into ``well`` (aspirations pair with the next dispense)."""
    out: dict[str, float] = {}
    for asp, disp in zip(steps, steps[1:], strict=False):
        if isinstance(asp, Aspirate) and getattr(disp, "well", None) == well:
            out[asp.source] = out.get(asp.source, 0.0) + asp.volume_ul
    return out


def test_a_two_drug_plate_holds_each_drug_alone_at_its_combination_doses() -> None:
    proto = get_protocol("dose_response", two_drug())
    compiled = proto.compile(COMBOS, "P1", seed=5)
    layout = compiled.layout
    singles = {w.well: w.doses_um for w in layout.wells if w.role is WellRole.SINGLE_AGENT}
    wanted = [{"drug_a": 0.01}, {"drug_a": 10.0}, {"drug_b": 0.3}, {"drug_b": 2.0}]
    wanted.append({"drug_b": 10.0})
    assert sorted(singles.values(), key=lambda d: sorted(d.items())) == sorted(
        wanted, key=lambda d: sorted(d.items())
    )
    s = proto.settings
    replayed = replay_steps(compiled.steps, s.seeded_volume_ul, [w.well for w in layout.wells])
    dosed = [w for w in layout.wells if w.role is not WellRole.TIME_ZERO]
    for a in dosed:  # every dosed well, single agents included: same volume, same DMSO share
        assert replayed[a.well].volume_ul == pytest.approx(s.final_volume_ul), a.well
        assert replayed[a.well].solvent_percent == pytest.approx({"dmso": 0.5}), a.well
    expected = proto.expected_contents(compiled)
    for well, doses in singles.items():
        assert replayed[well].concentrations_um == pytest.approx(doses)
        assert expected[well].matches(replayed[well])
    # a single-agent well gets the same working solution and volume as that drug's
    # combination wells, and more vehicle in place of the partner
    combo_well = layout.wells_of(0)[0]
    a10 = next(w for w, d in singles.items() if d == {"drug_a": 10.0})
    combo, alone = _drawn(compiled.steps, combo_well), _drawn(compiled.steps, a10)
    drug_a_source = next(k for k in alone if k.startswith("drug_a"))
    assert alone[drug_a_source] == pytest.approx(combo[drug_a_source])
    assert sum(alone.values()) == pytest.approx(sum(combo.values()))
    vehicle = proto.solutions.vehicle.label
    assert alone[vehicle] > combo.get(vehicle, 0.0)
    assert min(st.volume_ul for st in compiled.steps if isinstance(st, Aspirate)) >= (
        s.min_volume_ul - 1e-9
    )
    # edges stay empty and the layout round-trips with the doses
    rows_cols = {(w.well[0], int(w.well[1:])) for w in layout.wells}
    assert not any(r in "AH" or c in (1, 12) for r, c in rows_cols)
    assert PlateLayout.model_validate_json(layout.model_dump_json()) == layout
    assert " s" in layout.render()


def test_capacity_reserves_single_agent_wells_and_a_full_plate_fits() -> None:
    proto = get_protocol("dose_response", two_drug())
    cap = proto.capacity()
    assert cap == (60 - 16) // (3 + 2)
    experiments = [{"drug_a_um": 0.1 * (i + 1), "drug_b_um": 0.2 * (i + 1)} for i in range(cap)]
    compiled = proto.compile(experiments, "P1", seed=1)
    assert len(compiled.layout.wells_with_role(WellRole.SINGLE_AGENT)) == 2 * cap


def test_single_agents_that_do_not_fit_are_refused_naming_the_setting() -> None:
    proto = get_protocol("dose_response", two_drug(single_agent_replicates=3))
    experiments = [{"drug_a_um": 0.1 * (i + 1), "drug_b_um": 0.2 * (i + 1)} for i in range(8)]
    with pytest.raises(PlateFull, match="single_agent_replicates 3"):
        proto.compile(experiments, "P1", seed=1)


def test_single_agent_wells_default_on_for_combinations_only_and_can_be_turned_off() -> None:
    off = get_protocol("dose_response", two_drug(single_agent_wells=False))
    assert off.capacity() == (60 - 16) // 3
    compiled = off.compile(COMBOS, "P1", seed=5)
    assert not compiled.layout.wells_with_role(WellRole.SINGLE_AGENT)
    one = get_protocol(
        "dose_response",
        two_drug(
            doses=["drug_a_um -> drug_a"], stocks={"drug_a": [10000], "staurosporine": [1000]}
        ),
    )
    assert not one.settings.single_agents and one.capacity() == (60 - 16) // 3
