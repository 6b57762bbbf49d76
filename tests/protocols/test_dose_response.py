"""The dose_response protocol: layouts, volumes, steps, refusals, serialisation."""

from __future__ import annotations

from collections import Counter
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import settings as hsettings
from hypothesis import strategies as st

from planners.space import SearchSpace
from protocols.base import CompiledPlate, get_protocol, replay_steps
from protocols.dose_response import DoseResponse, DoseResponseSettings
from protocols.exceptions import (
    ImpossibleVolume,
    InvalidSettings,
    MissingParameter,
    MixedPlateParameter,
    PlateFull,
    UnknownReagent,
    UnmappedParameter,
)
from protocols.labware import get_plate_type
from protocols.layout import WellRole
from protocols.steps import Acquire, Aspirate, Dispense, Incubate, Mix, step_from_json
from tests.protocols.protocol_testdata import base_settings, combo_space


def exp(a: float = 1.0, partner: str = "drug_b", p: float = 10.0) -> dict[str, Any]:
    return {"drug_a_um": a, "partner": partner, "partner_um": p}


def proto(**overrides: Any) -> DoseResponse:
    p = get_protocol("dose_response", base_settings(**overrides))
    assert isinstance(p, DoseResponse)
    return p


def assert_wells_match_intent(p: DoseResponse, c: CompiledPlate) -> None:
    expected = p.expected_contents(c)
    replayed = replay_steps(c.steps, p.settings.seeded_volume_ul)
    assert set(expected) == set(replayed) == {a.well for a in c.layout.wells}
    for well, contents in expected.items():
        assert contents.matches(replayed[well]), (well, contents, replayed[well])
        assert abs(replayed[well].volume_ul - p.settings.final_volume_ul) < 1e-9


# -- layout -----------------------------------------------------------------------------------


def test_capacity_96_with_edges_excluded() -> None:
    assert proto().capacity() == (60 - 12) // 3
    assert proto(exclude_edges=False).capacity() == (96 - 12) // 3
    assert proto(replicates=4, negative_controls=8, positive_controls=8).capacity() == 11


def test_layout_counts() -> None:
    p = proto()
    c = p.compile([exp(a=float(i + 1)) for i in range(5)], plate_id="P0003", seed=3)
    lay = c.layout
    assert lay.plate_id == "P0003" and lay.plate_type == "96" and c.plate_id == "P0003"
    assert lay.n_experiments == 5
    for i in range(5):
        assert len(lay.wells_of(i)) == 3
        assert sorted(a.replicate for a in lay.wells if a.experiment == i) == [0, 1, 2]
    assert len(lay.wells_with_role(WellRole.NEGATIVE_CONTROL)) == 6
    assert len(lay.wells_with_role(WellRole.POSITIVE_CONTROL)) == 6
    assert len({a.well for a in lay.wells}) == len(lay.wells) == 27


def test_randomisation_is_seeded() -> None:
    p = proto()
    exps = [exp(a=float(i + 1)) for i in range(10)]
    a = p.compile(exps, "P1", seed=1)
    assert p.compile(exps, "P1", seed=1) == a
    b = p.compile(exps, "P1", seed=2)
    assert a.layout.by_well() != b.layout.by_well()


def test_no_randomisation_is_ordered() -> None:
    p = proto(randomize=False)
    c1, c2 = p.compile([exp()], "P1", seed=1), p.compile([exp()], "P1", seed=99)
    assert c1.layout == c2.layout
    assert c1.layout.wells_of(0) == ["B02", "B03", "B04"]


@pytest.mark.parametrize("seed", range(5))
def test_edge_exclusion_keeps_edges_empty(seed: int) -> None:
    p = proto()
    c = p.compile([exp(a=float(i + 1)) for i in range(p.capacity())], "P1", seed=seed)
    plate = get_plate_type("96")
    used = {a.well for a in c.layout.wells}
    assert len(used) == 60 and not any(plate.is_edge(w) for w in used)
    touched = {w for s in c.steps for w in s.wells}
    assert touched == used


def test_without_edge_exclusion_edges_are_used() -> None:
    p = proto(exclude_edges=False)
    c = p.compile([exp(a=float(i + 1)) for i in range(p.capacity())], "P1", seed=0)
    assert any(get_plate_type("96").is_edge(a.well) for a in c.layout.wells)


def test_384_well_plate() -> None:
    p = proto(plate_type="384", seeded_volume_ul=40, final_volume_ul=50, max_volume_ul=10)
    assert p.capacity() == (308 - 12) // 3
    c = p.compile([exp(a=float(i % 50 + 1), p=5.0) for i in range(p.capacity())], "Q1", seed=5)
    assert c.layout.plate_type == "384"
    assert any(a.well.startswith(("I", "O")) for a in c.layout.wells)
    assert_wells_match_intent(p, c)


# -- volumes and steps --------------------------------------------------------------------------


def test_example_volumes() -> None:
    p = proto(randomize=False, negative_controls=0, positive_controls=0)
    c = p.compile([exp(a=1.0, partner="drug_b", p=10.0)], "P1", seed=0)
    well = c.layout.wells_of(0)[0]
    asp = [s for s in c.steps if isinstance(s, Aspirate)][:3]
    disp = [s for s in c.steps if isinstance(s, Dispense) and s.well == well]
    # 1 uM of drug_a at 200 uL from the 100 uM stock: 2 uL; 10 uM drug_b from 1000 uM: 2 uL
    assert [(a.source, a.volume_ul) for a in asp] == [
        ("drug_a@100uM", 2.0),
        ("drug_b@1000uM", 2.0),
        ("medium", 46.0),
    ]
    assert [d.volume_ul for d in disp] == [2.0, 2.0, 46.0]
    assert asp[0].stock_concentration_um == 100 and asp[2].stock_concentration_um == 0


@hsettings(max_examples=40, deadline=None)
@given(
    a=st.one_of(st.just(0.0), st.floats(min_value=0.05, max_value=100)),
    p=st.one_of(st.just(0.0), st.floats(min_value=0.5, max_value=50)),
    partner=st.sampled_from(["drug_b", "drug_c"]),
)
def test_every_well_gets_its_dose_and_final_volume(a: float, p: float, partner: str) -> None:
    prot = proto()
    c = prot.compile([exp(a=a, partner=partner, p=p), exp(a=0.05, p=50)], "P1", seed=7)
    assert_wells_match_intent(prot, c)
    for w in c.layout.wells_of(0):
        want = {k: v for k, v in {"drug_a": a, partner: p}.items() if v > 0}
        got = prot.expected_contents(c)[w].concentrations_um
        assert got.keys() == want.keys()
        assert all(abs(got[k] - want[k]) <= 1e-9 * want[k] for k in want)
    for s in c.steps:
        if isinstance(s, Aspirate | Dispense):
            assert 0.5 - 1e-9 <= s.volume_ul <= 50 + 1e-9


def test_zero_dose_dispenses_nothing() -> None:
    p = proto(randomize=False)
    c = p.compile([exp(a=0.0, p=10.0)], "P1", seed=0)
    wells = set(c.layout.wells_of(0))
    reagents = {s.reagent for s in c.steps if isinstance(s, Dispense) and s.well in wells}
    assert reagents == {"drug_b", "medium"}


def test_controls_contents() -> None:
    p = proto()
    c = p.compile([exp()], "P1", seed=0)
    contents = p.expected_contents(c)
    for w in c.layout.wells_with_role(WellRole.POSITIVE_CONTROL):
        assert contents[w].concentrations_um == {"staurosporine": 1.0}
    for w in c.layout.wells_with_role(WellRole.NEGATIVE_CONTROL):
        assert contents[w].concentrations_um == {}
        reagents = {s.reagent for s in c.steps if isinstance(s, Dispense) and s.well == w}
        assert reagents == {"medium"}
    assert_wells_match_intent(p, c)


def test_large_top_up_is_split_to_fit_the_tip() -> None:
    p = proto(seeded_volume_ul=100.0, max_volume_ul=40.0, randomize=False)
    c = p.compile([exp(a=0.0, p=0.0)], "P1", seed=0)
    well = c.layout.wells_of(0)[0]
    parts = [s.volume_ul for s in c.steps if isinstance(s, Dispense) and s.well == well]
    assert len(parts) == 3 and abs(sum(parts) - 100.0) < 1e-9
    assert_wells_match_intent(p, c)


def test_step_order() -> None:
    p = proto(mix_cycles=5)
    c = p.compile([exp(), exp(a=3.0)], "P1", seed=0)
    kinds = [s.type for s in c.steps]
    i_inc = kinds.index("incubate")
    assert kinds.count("incubate") == 1
    assert set(kinds[:i_inc]) == {"aspirate", "dispense", "mix"}
    assert set(kinds[i_inc + 1 :]) == {"acquire"}
    for prev, nxt in zip(c.steps, c.steps[1:], strict=False):
        if isinstance(prev, Aspirate):
            assert isinstance(nxt, Dispense) and nxt.reagent == prev.reagent
    used = [a.well for a in c.layout.wells]
    acquires = [s for s in c.steps if isinstance(s, Acquire)]
    assert sorted(s.well for s in acquires) == sorted(used)
    assert acquires[0].channels == ["DAPI", "GFP"] and acquires[0].fields == 4
    mixes = [s for s in c.steps if isinstance(s, Mix)]
    assert len(mixes) == len(used) and all(m.cycles == 5 and m.volume_ul == 50 for m in mixes)
    inc = next(s for s in c.steps if isinstance(s, Incubate))
    assert inc.duration_s == 48 * 3600


def test_no_mix_when_mix_cycles_zero() -> None:
    c = proto(mix_cycles=0).compile([exp()], "P1", seed=0)
    assert not any(isinstance(s, Mix) for s in c.steps)


def test_reagent_usage() -> None:
    p = proto(negative_controls=0, positive_controls=0, positive_control=None)
    usage = p.compile([exp(a=1.0, p=10.0)], "P1", seed=0).reagent_usage_ul()
    assert usage == {"drug_a@100uM": 6.0, "drug_b@1000uM": 6.0, "medium": 138.0}


def test_same_reagent_from_two_mappings_adds_up() -> None:
    p = proto(stocks={**base_settings()["stocks"], "drug_a": [10, 100, 1000]})
    c = p.compile([exp(a=1.0, partner="drug_a", p=2.0)], "P1", seed=0)
    w = c.layout.wells_of(0)[0]
    assert p.expected_contents(c)[w].concentrations_um == {"drug_a": 3.0}
    assert_wells_match_intent(p, c)


# -- refusals -------------------------------------------------------------------------------------


def test_plate_full() -> None:
    p = proto()
    with pytest.raises(PlateFull, match="57 wells needed but only 60 available|plate full") as e:
        p.compile([exp(a=float(i + 1)) for i in range(p.capacity() + 1)], "P1", seed=0)
    assert e.value.needed == 17 * 3 + 12 and e.value.available == 60


def test_dose_too_low() -> None:
    with pytest.raises(ImpossibleVolume, match="experiment 1: needs 0.2 uL") as e:
        proto().compile([exp(), exp(a=0.01)], "P1", seed=0)
    assert e.value.reagent == "drug_a" and e.value.dose_um == 0.01


def test_doses_too_high_to_fit() -> None:
    p = proto(stocks={**base_settings()["stocks"], "drug_a": [10]})
    with pytest.raises(ImpossibleVolume, match="fit above the 150 uL of cells") as e:
        p.compile([exp(a=5.0, p=10.0)], "P1", seed=0)  # 100 uL of the 10 uM stock
    assert e.value.reagent == "drug_a"


def test_top_up_below_minimum_is_refused() -> None:
    p = proto(stocks={**base_settings()["stocks"], "drug_a": [10]})
    with pytest.raises(ImpossibleVolume, match="top-up must be 0 or"):
        p.compile([exp(a=2.49, p=0.0)], "P1", seed=0)  # 49.8 uL leaves a 0.2 uL top-up
    p.compile([exp(a=2.5, p=0.0)], "P1", seed=0)  # exactly full: no top-up needed


def test_negative_dose() -> None:
    with pytest.raises(ImpossibleVolume, match="≥ 0"):
        proto().compile([exp(a=-1.0)], "P1", seed=0)


def test_unknown_reagent_level() -> None:
    with pytest.raises(UnknownReagent, match="no stock for reagent 'drug_z'") as e:
        proto().compile([exp(partner="drug_z")], "P1", seed=0)
    assert e.value.reagent == "drug_z" and "drug_b" in e.value.known


def test_unmapped_parameter_in_experiment() -> None:
    with pytest.raises(
        UnmappedParameter, match="'temperature_c'.*no entry in the protocol's doses"
    ):
        proto().compile([{**exp(), "temperature_c": 30.0}], "P1", seed=0)


def test_missing_parameter() -> None:
    with pytest.raises(
        MissingParameter, match="experiment 0 has no value for parameter 'partner_um'"
    ):
        proto().compile([{"drug_a_um": 1.0, "partner": "drug_b"}], "P1", seed=0)


# -- check_space ----------------------------------------------------------------------------------


def test_check_space_accepts_a_good_space(space: SearchSpace) -> None:
    proto().check_space(space)


def test_check_space_refuses_doses_near_zero() -> None:
    s = combo_space(drug_a_um={"low": 0.0, "log_scale": False})
    with pytest.raises(ImpossibleVolume, match="lowest positive dose is 0.025 uM"):
        proto().check_space(s)


def test_check_space_refuses_too_low_minimum() -> None:
    with pytest.raises(ImpossibleVolume, match="drug_a at 0.001 uM.*below the handler's minimum"):
        proto().check_space(combo_space(drug_a_um={"low": 0.001}))


def test_check_space_refuses_too_high_maximum() -> None:
    p = proto(stocks={**base_settings()["stocks"], "drug_a": [10]})
    with pytest.raises(ImpossibleVolume, match="range \\[0.05, 100\\] uM"):
        p.check_space(combo_space())


def test_check_space_refuses_combined_highs() -> None:
    stocks = {**base_settings()["stocks"], "drug_a": [100], "drug_b": [400], "drug_c": [400]}
    p = proto(stocks=stocks)
    # drug_a 20 uM: 40 uL, partner 50 uM: 25 uL: each fits alone, together they do not
    with pytest.raises(ImpossibleVolume, match="highest doses together can need 65 uL"):
        p.check_space(combo_space(drug_a_um={"low": 0.25, "high": 20}, partner_um={"low": 1.0}))


def test_check_space_refuses_unknown_level() -> None:
    s = combo_space(partner={"levels": ["drug_b", "drug_q"]})
    with pytest.raises(UnknownReagent, match="'drug_q' \\(from level of parameter partner\\)"):
        proto().check_space(s)


def test_check_space_refuses_unmapped_space_parameter() -> None:
    s = SearchSpace.model_validate(
        {
            "parameters": [
                *[p.model_dump() for p in combo_space().parameters],
                {"type": "continuous", "name": "glucose_mm", "low": 1, "high": 25},
            ]
        }
    )
    with pytest.raises(UnmappedParameter, match="'glucose_mm': in the search space but no entry"):
        proto().check_space(s)


def test_check_space_refuses_mapping_missing_from_space() -> None:
    s = SearchSpace.model_validate(
        {"parameters": [{"type": "continuous", "name": "drug_a_um", "low": 0.1, "high": 10}]}
    )
    with pytest.raises(UnmappedParameter, match="'partner_um': the protocol uses it but"):
        proto().check_space(s)


def test_check_space_refuses_categorical_dose() -> None:
    s = SearchSpace.model_validate(
        {"parameters": [{"type": "categorical", "name": "drug_a_um", "levels": ["lo", "hi"]}]}
    )
    with pytest.raises(UnmappedParameter, match="must be a numeric parameter"):
        proto(doses=["drug_a_um -> drug_a"]).check_space(s)


def test_check_space_integer_doses_from_zero() -> None:
    s = SearchSpace.model_validate(
        {"parameters": [{"type": "integer", "name": "drug_a_um", "low": 0, "high": 20}]}
    )
    proto(doses=["drug_a_um -> drug_a"]).check_space(s)  # 0 dispenses nothing, 1 uM is 2 uL


def test_check_space_refuses_a_plate_with_no_room() -> None:
    with pytest.raises(PlateFull, match="not even one experiment fits"):
        proto(negative_controls=30, positive_controls=29).check_space(combo_space())


@hsettings(max_examples=60, deadline=None)
@given(
    stock_a=st.lists(st.sampled_from([1.0, 10.0, 30.0, 100.0, 1000.0]), min_size=1, max_size=3),
    low_exp=st.floats(min_value=-3, max_value=1),
    span=st.floats(min_value=0.1, max_value=4),
    fractions=st.lists(st.floats(0, 1), min_size=1, max_size=8),
)
def test_a_space_that_passes_check_space_always_compiles(
    stock_a: list[float], low_exp: float, span: float, fractions: list[float]
) -> None:
    p = proto(
        doses=["drug_a_um -> drug_a"],
        stocks={"drug_a": stock_a, "staurosporine": [100]},
    )
    low, high = 10**low_exp, 10 ** (low_exp + span)
    space = SearchSpace.model_validate(
        {"parameters": [{"type": "continuous", "name": "drug_a_um", "low": low, "high": high}]}
    )
    try:
        p.check_space(space)
    except ImpossibleVolume:
        return
    doses = [low + f * (high - low) for f in fractions] + [low, high]
    doses += [
        0.5 * s / 200 * (1 - 1e-9) for s in stock_a if low <= 0.5 * s / 200 * (1 - 1e-9) <= high
    ]
    c = p.compile([{"drug_a_um": d} for d in doses], "P1", seed=0)
    assert_wells_match_intent(p, c)


# -- settings ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("overrides", "field", "message"),
    [
        ({"final_volume_ul": 100.0}, "final_volume_ul", "must exceed seeded_volume_ul"),
        ({"plate_type": "384"}, "final_volume_ul", "working volume of a 384-well plate"),
        ({"positive_control": None}, "positive_control", "needs a positive_control"),
        ({"plate_type": "48"}, "plate_type", "Input should be '96' or '384'"),
        ({"replicates": 0}, "replicates", "greater than or equal to 1"),
        ({"doses": ["drug_a_um drug_a"]}, "doses.0", "write it as 'drug_a_um -> drug_a'"),
        ({"doses": [{"parameter": "x"}]}, "doses.0", "exactly one of 'reagent' or 'reagent_from'"),
        ({"stocks": {"drug_a": []}}, "stocks", "positive stock concentrations"),
        ({"min_volume_ul": 5, "max_volume_ul": 2}, "max_volume_ul", "at least min_volume_ul"),
        ({"volume_ul": 3}, "volume_ul", "Extra inputs are not permitted"),
        ({"vehicle": "drug_a"}, "<root>", "vehicle 'drug_a' must not be listed in stocks"),
        ({"seeded_volume_ul": 199.8}, "<root>", "nothing could be pipetted"),
        ({"mix_volume_ul": 80.0}, "<root>", "mix_volume_ul exceeds max_volume_ul"),
        ({"doses": ["a -> drug_a", "a -> drug_b"]}, "<root>", "parameters mapped twice"),
    ],
)
def test_invalid_settings_name_the_field(
    overrides: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidSettings, match=message) as e:
        get_protocol("dose_response", base_settings(**overrides))
    assert field in e.value.fields
    assert f"{field}: " in str(e.value)


def test_positive_control_needs_a_stock() -> None:
    with pytest.raises(UnknownReagent, match="'killer' \\(from positive_control\\)"):
        proto(positive_control={"reagent": "killer", "concentration_um": 1.0})


def test_positive_control_must_be_pipettable() -> None:
    with pytest.raises(ImpossibleVolume, match="staurosporine at 0.0001 uM"):
        proto(positive_control={"reagent": "staurosporine", "concentration_um": 1e-4})


def test_fixed_dose_reagent_needs_a_stock() -> None:
    with pytest.raises(UnknownReagent, match="'drug_x' \\(from doses\\[x_um\\]\\)"):
        proto(doses=["x_um -> drug_x"])


def test_settings_defaults() -> None:
    s = DoseResponseSettings.model_validate(
        {"doses": ["a_um -> a"], "stocks": {"a": [100]}, "positive_controls": 0}
    )
    assert s.plate_type == "96" and s.replicates == 3 and s.exclude_edges and s.randomize
    assert (s.seeded_volume_ul, s.final_volume_ul, s.min_volume_ul, s.max_volume_ul) == (
        150.0,
        200.0,
        0.5,
        50.0,
    )
    assert s.imaging.channels == ["DAPI", "GFP"] and s.vehicle == "medium"
    assert s.stocks == {"a": [100.0]}


def test_settings_round_trip_yaml() -> None:
    s = proto().settings
    text = yaml.safe_dump(s.model_dump(mode="json"), sort_keys=False)
    again = DoseResponseSettings.model_validate(yaml.safe_load(text))
    assert again == s
    assert DoseResponseSettings.model_validate_json(s.model_dump_json()) == s


def test_settings_json_schema() -> None:
    schema = proto().settings.model_json_schema()
    props = schema["properties"]
    for name in ("plate_type", "doses", "stocks", "final_volume_ul", "imaging", "min_volume_ul"):
        assert name in props
    assert props["final_volume_ul"]["description"]
    assert schema["additionalProperties"] is False


# -- serialisation --------------------------------------------------------------------------------


def test_steps_round_trip_through_json() -> None:
    c = proto().compile([exp(), exp(a=0.0, partner="drug_c", p=50.0)], "P0003", seed=3)
    kinds = Counter(s.type for s in c.steps)
    assert set(kinds) == {"aspirate", "dispense", "mix", "incubate", "acquire"}
    for s in c.steps:
        assert step_from_json(s.model_dump_json()) == s


def test_compiled_plate_round_trips() -> None:
    c = proto().compile([exp(), exp(a=0.0, partner="drug_c", p=50.0)], "P0003", seed=3)
    again = CompiledPlate.model_validate_json(c.model_dump_json())
    assert again == c
    assert again.experiments[1]["partner"] == "drug_c"


# -- plate-level parameters ---------------------------------------------------------------------


def _timed_space(low: float = 24, unit: str | None = "h") -> SearchSpace:
    params = [p.model_dump() for p in combo_space().parameters]
    params.append({"type": "continuous", "name": "time_h", "low": low, "high": 72, "unit": unit})
    return SearchSpace.model_validate({"parameters": params})


def test_incubation_parameter_sets_the_plate_incubation() -> None:
    p = proto(incubation_parameter="time_h")
    assert p.plate_parameters() == ["time_h"]
    assert "time_h" in p.parameter_names()
    p.check_space(_timed_space())
    c = p.compile([{**exp(), "time_h": 24.0}, {**exp(a=2.0), "time_h": 24.0}], "P1", seed=0)
    inc = [s for s in c.steps if isinstance(s, Incubate)]
    assert len(inc) == 1 and inc[0].duration_s == 24 * 3600
    assert_wells_match_intent(p, c)


def test_incubation_parameter_must_be_shared_by_the_plate() -> None:
    p = proto(incubation_parameter="time_h")
    with pytest.raises(MixedPlateParameter, match="'time_h' differs .*\\[24.0, 48.0\\]") as e:
        p.compile([{**exp(), "time_h": 24.0}, {**exp(), "time_h": 48.0}], "P1", seed=0)
    assert e.value.parameter == "time_h"
    with pytest.raises(MissingParameter, match="experiment 0 has no value for parameter 'time_h'"):
        p.compile([exp()], "P1", seed=0)


def test_check_space_incubation_parameter() -> None:
    p = proto(incubation_parameter="time_h")
    with pytest.raises(UnmappedParameter, match="'time_h': the protocol uses it"):
        p.check_space(combo_space())
    with pytest.raises(UnmappedParameter, match="an incubation time must be in h, not 'uM'"):
        p.check_space(_timed_space(unit="uM"))
    with pytest.raises(UnmappedParameter, match="allows negative incubation times"):
        p.check_space(_timed_space(low=-1))
    with pytest.raises(UnmappedParameter, match="'time_h': in the search space but no entry"):
        proto().check_space(_timed_space())


CAMPAIGN_SECTION = """
plate_type: "96"
replicates: 3
negative_controls: 6
positive_controls: 6
positive_control: {reagent: staurosporine, concentration_um: 1.0}
doses:
  - drug_a_um -> drug_a
  - {parameter: partner_um, reagent_from: partner}
stocks: {drug_a: [10, 100, 1000], drug_b: [100, 1000, 10000], drug_c: [100, 1000, 10000], staurosporine: [100]}
imaging: {channels: [DAPI], fields_per_well: 2}
"""


def test_yaml_campaign_section_builds_the_protocol(space: SearchSpace) -> None:
    p = get_protocol("dose_response", yaml.safe_load(CAMPAIGN_SECTION))
    p.check_space(space)
    c = p.compile([exp()], "P0001", seed=0)
    acq = [s for s in c.steps if isinstance(s, Acquire)]
    assert acq[0].channels == ["DAPI"] and acq[0].fields == 2
