from __future__ import annotations

from typing import Any

import pytest

from planners.space import ContinuousParameter, SearchSpace
from protocols import get_protocol, registered_protocols
from protocols.adaptive_dosing import AdaptiveDosing, CompiledDecision
from protocols.exceptions import (
    ImpossibleVolume,
    InvalidDecision,
    InvalidSettings,
    PlateFull,
    UnknownReagent,
    UnmappedParameter,
)
from protocols.layout import WellRole
from protocols.steps import Acquire, Aspirate, Dispense, Incubate, Mix, Withdraw, step_from_json
from protocols.timecourse import UnitAction, WellLiquid


def settings(**overrides: Any) -> dict[str, Any]:
    s: dict[str, Any] = {
        "dose_steps_um": {"drug_a": [0.5, 1.0, 2.0], "drug_b": [0.25, 0.5, 1.0]},
        "stocks": {"drug_a": [30, 300], "drug_b": [30, 300], "staurosporine": [100]},
        "master_stock_um": {"drug_a": 10000, "drug_b": 10000, "staurosporine": 10000},
        "positive_control": {"reagent": "staurosporine", "concentration_um": 1.0},
    }
    s.update(overrides)
    return s


@pytest.fixture
def proto() -> AdaptiveDosing:
    p = get_protocol("adaptive_dosing", settings())
    assert isinstance(p, AdaptiveDosing)
    return p


def test_registered_and_capacity(proto: AdaptiveDosing):
    assert "adaptive_dosing" in registered_protocols()
    assert proto.capacity() == (60 - 6 - 4) // 3
    assert proto.decision_times_h() == [12.0 * k for k in range(8)]
    assert proto.duration_h == 96.0


def test_plate_has_groups_controls_and_baseline_images(proto: AdaptiveDosing):
    c = proto.compile([{}] * 5, "P1", seed=3)
    roles = [a.role for a in c.layout.wells]
    assert roles.count(WellRole.SAMPLE) == 15 and roles.count(WellRole.NEGATIVE_CONTROL) == 6
    acquired = [s.well for s in c.steps if isinstance(s, Acquire)]
    assert sorted(acquired) == sorted(a.well for a in c.layout.wells)
    dosed = {s.well for s in c.steps if isinstance(s, Dispense)}
    assert dosed == set(c.layout.wells_with_role(WellRole.POSITIVE_CONTROL))
    contents = proto.expected_contents(c)
    pc = c.layout.wells_with_role(WellRole.POSITIVE_CONTROL)[0]
    assert contents[pc].concentrations_um["staurosporine"] == pytest.approx(1.0, rel=0.01)
    assert proto.units(c) == {str(i): c.layout.wells_of(i) for i in range(5)}


def test_decision_doses_every_well_of_a_group_then_incubates_and_images(proto: AdaptiveDosing):
    c = proto.compile([{}] * 2, "P1", seed=0)
    d = proto.compile_decision(
        c,
        proto.initial_state(c),
        {
            0: {"drug_a_um": 1.0, "drug_b_um": 0.25, "exchange": 0},
            "1": UnitAction(),
        },
    )
    assert d.decision == 0 and d.time_h == 0.0
    group0, group1 = c.layout.wells_of(0), c.layout.wells_of(1)
    for w in group0:
        conc = d.state_after.wells[w].concentrations_um()
        assert conc["drug_a"] == pytest.approx(1.0, rel=0.02)  # the addition dilutes < 2 %
        assert conc["drug_b"] == pytest.approx(0.25, rel=0.02)
    for w in group1:
        assert d.state_after.wells[w] == WellLiquid(volume_ul=150.0)
    kinds = [type(s) for s in d.steps]
    assert kinds.count(Incubate) == 1 and kinds.count(Mix) == len(group0)
    incubate = next(s for s in d.steps if isinstance(s, Incubate))
    assert incubate.duration_s == 12 * 3600
    assert kinds.index(Incubate) < kinds.index(Acquire)
    assert {s.well for s in d.steps if isinstance(s, Dispense)} == set(group0)
    stock = next(s for s in d.steps if isinstance(s, Aspirate) and s.reagent == "drug_a")
    assert stock.source == "drug_a@300uM" and stock.volume_ul == pytest.approx(0.5)


def test_exchange_withdraws_to_the_residual_and_refills(proto: AdaptiveDosing):
    c = proto.compile([{}], "P1", seed=0)
    first = proto.compile_decision(c, proto.initial_state(c), {0: {"drug_a_um": 2.0}})
    second = proto.compile_decision(c, first.state_after, {0: {"drug_a_um": 0.5, "exchange": 1}})
    well = c.layout.wells_of(0)[0]
    before = first.state_after.wells[well]
    withdrawn = [s for s in second.steps if isinstance(s, Withdraw) and s.well == well]
    assert sum(s.volume_ul for s in withdrawn) == pytest.approx(before.volume_ul - 30.0)
    after = second.state_after.wells[well]
    left = before.amounts_pmol["drug_a"] * 30.0 / before.volume_ul
    assert after.amounts_pmol["drug_a"] == pytest.approx(left + 0.5 * 150.0)
    assert after.volume_ul == pytest.approx(150.0 + 2.5)
    steps = [s for s in second.steps if getattr(s, "well", None) == well]
    assert isinstance(steps[0], Withdraw)  # exchange before dosing


def test_well_mode_decides_each_well(proto: AdaptiveDosing):
    p = AdaptiveDosing(settings(decision_unit="well"))
    c = p.compile([{}] * 2, "P1", seed=0)
    units = p.units(c)
    assert sorted(units) == sorted(c.layout.wells_of(0) + c.layout.wells_of(1))
    actions = {w: UnitAction(doses_um={"drug_a": 0.5}) for w in units}
    assert len(p.compile_decision(c, p.initial_state(c), actions).actions) == 6


def test_bad_decisions_are_refused_before_any_step(proto: AdaptiveDosing):
    c = proto.compile([{}] * 2, "P1", seed=0)
    st = proto.initial_state(c)
    ok = {"0": {}, "1": {}}
    with pytest.raises(InvalidDecision, match=r"drug_a_um=0\.7 is not one of the dose steps"):
        proto.compile_decision(c, st, {**ok, "1": {"drug_a_um": 0.7}})
    with pytest.raises(InvalidDecision, match=r"missing \['1'\]"):
        proto.compile_decision(c, st, {"0": {}})
    with pytest.raises(InvalidDecision, match="unknown action parameters"):
        proto.compile_decision(c, st, {**ok, "0": {"drug_z_um": 1.0}})
    done = st.model_copy(update={"next_decision": 8})
    with pytest.raises(InvalidDecision, match="all 8 decisions"):
        proto.compile_decision(c, done, ok)


def test_overfill_and_solvent_are_refused_when_the_protocol_is_built():
    with pytest.raises(ImpossibleVolume, match=r"holds .* uL after decision"):
        AdaptiveDosing(
            settings(
                stocks={"drug_a": [30], "drug_b": [30], "staurosporine": [100]},
                max_well_volume_ul=170,
            )
        )
    with pytest.raises(ImpossibleVolume, match=r"DMSO after decision .* max_solvent_percent"):
        AdaptiveDosing(settings(master_stock_um={"drug_a": 1000, "drug_b": 1000}))
    with pytest.raises(ImpossibleVolume, match="below the handler's minimum"):
        AdaptiveDosing(settings(dose_steps_um={"drug_a": [0.01], "drug_b": [0.25]}))
    with pytest.raises(UnknownReagent, match="drug_c"):
        AdaptiveDosing(settings(dose_steps_um={"drug_c": [1.0]}))


def test_a_decision_that_would_exceed_the_limits_is_refused():
    # a 10-decision protocol fits; applying actions to an over-full well does not
    p = AdaptiveDosing(settings())
    full = WellLiquid(volume_ul=299.8)
    with pytest.raises(InvalidDecision, match="more than 300 uL; exchange the medium"):
        p.plan_action(full, {"drug_a_um": 2.0}, unit="0")
    salty = WellLiquid(volume_ul=150.0, solvent_ul=0.74)
    with pytest.raises(InvalidDecision, match="DMSO would reach"):
        p.plan_action(salty, {"drug_a_um": 2.0}, unit="0")


def test_settings_errors_name_the_field():
    with pytest.raises(InvalidSettings, match="residual_volume_ul must be below"):
        get_protocol("adaptive_dosing", settings(residual_volume_ul=200))
    with pytest.raises(InvalidSettings, match="dose_steps_um.drug_a"):
        get_protocol("adaptive_dosing", settings(dose_steps_um={"drug_a": [0.5, -1]}))
    with pytest.raises(PlateFull):
        AdaptiveDosing(settings()).compile([{}] * 20, "P1", 0)


def test_action_space_and_check_space(proto: AdaptiveDosing):
    space = proto.action_space()
    assert space.names == ["drug_a_um", "drug_b_um", "exchange"]
    proto.check_space(space)
    with pytest.raises(UnmappedParameter, match="not an action"):
        proto.check_space(
            SearchSpace(parameters=[ContinuousParameter(name="temperature", low=30, high=40)])
        )


def test_unit_action_params_round_trip():
    a = UnitAction(doses_um={"drug_b": 0.5}, exchange=True)
    params = a.to_params(["drug_a", "drug_b"])
    assert params == {"drug_a_um": 0.0, "drug_b_um": 0.5, "exchange": 1}
    assert UnitAction.from_params(params, ["drug_a", "drug_b"]) == a
    assert UnitAction().is_nothing and not a.is_nothing


def test_steps_and_decisions_round_trip_through_json(proto: AdaptiveDosing):
    c = proto.compile([{}] * 2, "P1", seed=0)
    first = proto.compile_decision(c, proto.initial_state(c), {0: {"drug_a_um": 1.0}, 1: {}})
    d = proto.compile_decision(c, first.state_after, {0: {"exchange": 1}, 1: {"drug_b_um": 1.0}})
    assert any(isinstance(s, Withdraw) for s in d.steps)
    for s in d.steps:
        assert step_from_json(s.model_dump_json()) == s
    assert CompiledDecision.model_validate_json(d.model_dump_json()) == d
