"""Solvent-aware dosing: DMSO stocks, vehicle-matched wells, intermediates, the solvent cap."""

from __future__ import annotations

import json
from typing import Any

import pytest

from planners.space import SearchSpace
from protocols.base import CompiledPlate, get_protocol, replay_steps
from protocols.exceptions import ImpossibleVolume, InvalidSettings
from protocols.layout import WellRole
from protocols.steps import Acquire, Aspirate, Dispense
from simulators.clock import SimulatedClock
from simulators.liquid_handler import SimulatedLiquidHandler
from simulators.world import SimulatedLab


def dmso_settings(**overrides: Any) -> dict[str, Any]:
    """The demo campaign's protocol section: 10 mM DMSO stocks, 0.5 % DMSO in every well."""
    settings: dict[str, Any] = {
        "replicates": 3,
        "negative_controls": 6,
        "positive_controls": 6,
        "positive_control": {"reagent": "staurosporine", "concentration_um": 1.0},
        "doses": ["drug_a_um -> drug_a", "drug_b_um -> drug_b"],
        "stocks": {"drug_a": [10000], "drug_b": [10000], "staurosporine": [1000]},
    }
    settings.update(overrides)
    return settings


def two_drug_space(low: float = 0.01, high: float = 10.0) -> SearchSpace:
    p = {"type": "continuous", "low": low, "high": high, "log_scale": True, "unit": "uM"}
    return SearchSpace.model_validate(
        {"parameters": [{**p, "name": "drug_a_um"}, {**p, "name": "drug_b_um"}]}
    )


EXPERIMENTS = [
    {"drug_a_um": 10.0, "drug_b_um": 10.0},  # the cap: 0.1 % + 0.1 % of the allowed 0.5 %
    {"drug_a_um": 0.01, "drug_b_um": 0.3},  # 0.01 uM needs two serial dilutions
    {"drug_a_um": 0.0, "drug_b_um": 2.0},
]


def test_every_dosed_well_controls_included_ends_at_the_same_dmso_share() -> None:
    proto = get_protocol("dose_response", dmso_settings())
    compiled = proto.compile(EXPERIMENTS, "P1", seed=3)
    s = proto.settings
    replayed = replay_steps(
        compiled.steps, s.seeded_volume_ul, [w.well for w in compiled.layout.wells]
    )
    for well, contents in replayed.items():
        assert contents.solvent_percent == pytest.approx({"dmso": 0.5}), well
        assert contents.volume_ul == pytest.approx(200.0)
    expected = proto.expected_contents(compiled)
    assert all(expected[w].matches(replayed[w]) for w in expected)
    roles = {a.role for a in compiled.layout.wells}
    assert roles == {
        WellRole.SAMPLE,
        WellRole.NEGATIVE_CONTROL,
        WellRole.POSITIVE_CONTROL,
        WellRole.SINGLE_AGENT,  # each drug of the two combinations alone: 4 wells
    }
    assert len(compiled.layout.wells_with_role(WellRole.SINGLE_AGENT)) == 4
    moved = [st.volume_ul for st in compiled.steps if isinstance(st, Aspirate | Dispense)]
    assert min(moved) >= s.min_volume_ul - 1e-9
    assert compiled.layout.solvent == "dmso" and compiled.layout.solvent_percent == 0.5


def test_a_dose_below_the_minimum_from_the_working_solution_gets_an_intermediate() -> None:
    proto = get_protocol("dose_response", dmso_settings())
    compiled = proto.compile(EXPERIMENTS, "P1", seed=3)
    wells = compiled.layout.wells_of(1)
    sources = {
        st.source for st in compiled.steps if isinstance(st, Aspirate) and st.reagent == "drug_a"
    }
    # 200 uM working solution (10 mM diluted 50x to 2 % DMSO), then 20 and 2 uM in vehicle
    assert sources == {"drug_a@200uM+2%dmso", "drug_a@2uM+2%dmso"}
    by_label = {i.label: i for i in compiled.layout.intermediates}
    two = by_label["drug_a@2uM+2%dmso"]
    assert two.made_from == "drug_a@20uM+2%dmso" and two.dilution == 10 and two.depth == 3
    assert [p.source for p in two.recipe] == ["drug_a@20uM+2%dmso", "medium+2%dmso"]
    top = by_label["drug_a@200uM+2%dmso"]
    assert [p.source for p in top.recipe] == ["drug_a@10000uM", "medium"]
    assert top.recipe[0].volume_ul / top.volume_ul == pytest.approx(0.02)  # 2 % DMSO
    vehicle = compiled.layout.intermediates[0]
    assert vehicle.label == "medium+2%dmso" and vehicle.reagent is None
    assert {p.source: p.volume_ul / vehicle.volume_ul for p in vehicle.recipe} == pytest.approx(
        {"dmso": 0.02, "medium": 0.98}
    )
    # each well of experiment 1 draws >= 0.5 uL of the 2 uM dilution (0.01 uM x 200 / 2 = 1 uL)
    draws = [
        st.volume_ul
        for i, st in enumerate(compiled.steps)
        if isinstance(st, Dispense) and st.well in wells and st.reagent == "drug_a"
    ]
    assert draws == pytest.approx([1.0] * 3)
    assert "prepare before dosing" in compiled.layout.render()


def test_intermediates_are_prepared_in_sufficient_volume_with_pipettable_parts() -> None:
    proto = get_protocol("dose_response", dmso_settings(intermediate_dead_volume_ul=0.0))
    compiled = proto.compile(EXPERIMENTS, "P1", seed=3)
    drawn: dict[str, float] = {}
    for st in compiled.steps:
        if isinstance(st, Aspirate):
            drawn[st.source] = drawn.get(st.source, 0.0) + st.volume_ul
    for inter in compiled.layout.intermediates:
        for part in inter.recipe:
            drawn[part.source] = drawn.get(part.source, 0.0) + part.volume_ul
            assert part.volume_ul >= 0.5 - 1e-9
        assert sum(p.volume_ul for p in inter.recipe) == pytest.approx(inter.volume_ul)
    for inter in compiled.layout.intermediates:
        assert inter.volume_ul >= drawn[inter.label] - 1e-9, inter.label


def test_compiled_plate_with_intermediates_round_trips_through_json() -> None:
    compiled = get_protocol("dose_response", dmso_settings()).compile(EXPERIMENTS, "P1", seed=0)
    again = CompiledPlate.model_validate_json(compiled.model_dump_json())
    assert again == compiled
    assert json.loads(compiled.model_dump_json())["layout"]["intermediates"]


def test_a_design_over_the_dmso_cap_is_refused_naming_the_parameter_and_dose() -> None:
    proto = get_protocol(
        "dose_response",
        dmso_settings(stocks={"drug_a": [1000], "drug_b": [10000], "staurosporine": [1000]}),
    )
    with pytest.raises(ImpossibleVolume, match=r"parameter drug_a_um range \[0.01, 10\] uM") as e:
        proto.check_space(two_drug_space())
    assert "1 % v/v dmso" in str(e.value) and "matched at 0.5 %" in str(e.value)
    assert e.value.reagent == "drug_a" and e.value.dose_um == 10


def test_doses_that_each_fit_but_not_together_are_refused_with_their_solvent_needs() -> None:
    stocks = {"drug_a": [3000], "drug_b": [3000], "staurosporine": [1000]}
    proto = get_protocol("dose_response", dmso_settings(stocks=stocks))
    with pytest.raises(ImpossibleVolume, match="drug_a_um, drug_b_um together") as e:
        proto.check_space(two_drug_space())  # 10 / 3000 = 0.33 % each: 0.67 % together
    assert "drug_a_um = 10 uM of drug_a: 0.333 %" in str(e.value)


def test_the_cap_is_configurable() -> None:
    stocks = {"drug_a": [1000], "drug_b": [1000], "staurosporine": [1000]}
    with pytest.raises(ImpossibleVolume, match="matched at 0.5 %"):
        get_protocol("dose_response", dmso_settings(stocks=stocks)).check_space(two_drug_space())
    # 1 % + 1 % of DMSO at the highest doses fits a 2.5 % allowance
    proto = get_protocol("dose_response", dmso_settings(stocks=stocks, solvent_percent=2.5))
    proto.check_space(two_drug_space())
    replayed = replay_steps(proto.compile(EXPERIMENTS, "P1", seed=0).steps, 150.0)
    assert {round(c.solvent_percent["dmso"], 9) for c in replayed.values()} == {2.5}


def test_an_aqueous_positive_control_on_a_dmso_plate_gets_the_plates_dmso() -> None:
    proto = get_protocol("dose_response", dmso_settings(stock_solvents={"staurosporine": "water"}))
    compiled = proto.compile(EXPERIMENTS, "P1", seed=1)
    st = next(i for i in compiled.layout.intermediates if i.reagent == "staurosporine")
    assert {p.source for p in st.recipe} == {"staurosporine@1000uM", "dmso"}
    replayed = replay_steps(compiled.steps, 150.0)
    for w in compiled.layout.wells_with_role(WellRole.POSITIVE_CONTROL):
        assert replayed[w].solvent_percent == pytest.approx({"dmso": 0.5})
        assert replayed[w].concentrations_um == pytest.approx({"staurosporine": 1.0})


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (
            {"stock_solvents": {"drug_a": "ethanol"}},
            "drug_a is in ethanol but the plate's solvent is dmso",
        ),
        ({"stock_solvents": {"drug_q": "water"}}, r"stock_solvents: \['drug_q'\] have no stocks"),
        ({"solvent": "plasma"}, "solvent"),
        ({"solvent_percent": 30}, "solvent_percent"),
    ],
)
def test_bad_solvent_settings_are_refused_naming_the_field(overrides: dict, message: str) -> None:
    with pytest.raises(InvalidSettings, match=message):
        get_protocol("dose_response", dmso_settings(**overrides))


def test_aqueous_plates_dose_from_the_stocks_and_top_up_with_plain_medium() -> None:
    stocks = {"drug_a": [1000, 100], "drug_b": [1000], "staurosporine": [100]}
    proto = get_protocol("dose_response", dmso_settings(solvent="water", stocks=stocks))
    compiled = proto.compile(EXPERIMENTS, "P1", seed=0)
    sources = {st.source for st in compiled.steps if isinstance(st, Aspirate)}
    assert "medium" in sources and "drug_a@1000uM" in sources
    assert all(st.solvent is None for st in compiled.steps if isinstance(st, Aspirate))
    # 0.01 uM from the 100 uM stock would be 0.02 uL: two 10x dilutions in medium instead
    inter = {i.label: i for i in compiled.layout.intermediates}
    assert sorted(inter) == ["drug_a@10uM", "drug_a@1uM", "drug_b@100uM"]
    assert [p.source for p in inter["drug_a@10uM"].recipe] == ["drug_a@100uM", "medium"]
    assert [p.source for p in inter["drug_a@1uM"].recipe] == ["drug_a@10uM", "medium"]


def test_time_zero_wells_are_imaged_before_any_liquid_moves_and_never_dosed() -> None:
    proto = get_protocol("dose_response", dmso_settings(time_zero_wells=4))
    assert proto.capacity() == (60 - 16) // (3 + 2)  # 3 replicates + 2 single agents
    compiled = proto.compile(EXPERIMENTS, "P1", seed=2)
    t0 = compiled.layout.wells_with_role(WellRole.TIME_ZERO)
    assert len(t0) == 4
    first_liquid = next(i for i, st in enumerate(compiled.steps) if isinstance(st, Aspirate))
    head = compiled.steps[:first_liquid]
    assert [st.well for st in head if isinstance(st, Acquire)] == sorted(t0) and len(head) == 4
    assert not any(st.wells and st.wells[0] in t0 for st in compiled.steps[first_liquid:])
    expected = proto.expected_contents(compiled)
    for w in t0:
        assert expected[w].volume_ul == 150.0 and not expected[w].solvent_percent


def test_simulated_cells_receive_the_solvent_the_steps_planned() -> None:
    proto = get_protocol("dose_response", dmso_settings())
    compiled = proto.compile(EXPERIMENTS, "P1", seed=3)
    lab = SimulatedLab()
    handler = SimulatedLiquidHandler(lab, SimulatedClock())
    for st in compiled.steps:
        if isinstance(st, Aspirate):
            handler.aspirate(st.source, st.reagent, st.stock_concentration_um, st.volume_ul)
        elif isinstance(st, Dispense):
            handler.dispense(st.plate, st.well, st.volume_ul)
    for well, want in proto.expected_contents(compiled).items():
        state = lab.well_state("P1", well)
        assert state.solvent_percent() == pytest.approx(want.solvent_percent), well
        assert state.concentrations_um() == pytest.approx(want.concentrations_um), well


def test_deck_sources_cover_every_aspirate_and_preparation_usage_names_the_stocks() -> None:
    proto = get_protocol("dose_response", dmso_settings())
    compiled = proto.compile(EXPERIMENTS, "P1", seed=3)
    sources = set(proto.deck_sources())
    assert {st.source for st in compiled.steps if isinstance(st, Aspirate)} <= sources
    assert "drug_a@0.2uM+2%dmso" in sources  # the third serial dilution, unused on this plate
    usage = compiled.preparation_usage_ul()
    assert set(usage) == {
        "dmso",
        "medium",
        "drug_a@10000uM",
        "drug_b@10000uM",
        "staurosporine@1000uM",
    }
    assert all(v > 0 for v in usage.values())
