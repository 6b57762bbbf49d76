"""Campaigns on syringe pumps (driver ``cavro``): the real driver over a pty to the emulated
firmware, whose executed moves fill the simulated plate (simulators/fluidics.py)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from sqlmodel import Session, select

from controller.ledger.models import Campaign, Experiment, Round, Step, Well, WellStatus
from controller.rig.cavro import EMULATOR_ENV
from instruments.pumps import MODELS
from protocols.base import CompiledPlate, get_protocol
from protocols.layout import PlateLayout
from protocols.steps import STEP_ADAPTER, Aspirate, Dispense
from simulators.world import SimulatedLab
from tests.controller.conftest import run_cli
from tests.controller.test_crash_resume import _ledger

PUMPS = {
    1: {"model": "xcalibur", "syringe_ul": 500},  # vehicle top-ups up to 50 µL
    2: {"model": "xlp6000", "syringe_ul": 100},  # drug_a stocks: 1/60 µL per increment
    3: {"model": "xlp6000", "syringe_ul": 100},  # drug_b stocks
}
LINES = {
    "medium": [1, 1],
    "staurosporine": [1, 2],  # one stock: keyed by the reagent
    **{f"drug_a@{c}uM": [2, i + 1] for i, c in enumerate((1000, 100, 10, 1))},
    **{f"drug_b@{c}uM": [3, i + 1] for i, c in enumerate((1000, 100, 10, 1))},
}


#: the aqueous stocks these pump tests were written for (four per drug, one line each); the
#: rig example (test_rig_example.py) runs DMSO working solutions on pumps
AQUEOUS_STOCKS = {
    "solvent": "water",
    "stocks": {"drug_a": [1000, 100, 10, 1], "drug_b": [1000, 100, 10, 1], "staurosporine": [100]},
}


def pump_campaign(
    write_campaign,
    protocol: str = "oem",
    emulator: dict | None = None,
    rounds: int = 1,
    **changes,
) -> Path:
    settings = {
        "pumps": PUMPS,
        "lines": LINES,
        "output_port": 6,
        "protocol": protocol,
        "emulator": emulator or {},
        **changes,
    }
    from tests.controller.conftest import small_campaign_data

    proto = small_campaign_data()["protocol"]
    proto["settings"]["mix_cycles"] = 0  # a fixed nozzle cannot mix (see controller/rig/cavro.py)
    # the well counts and failpoint step numbers below are those of plates without
    # single-agent wells (tests/controller/test_rig_example.py runs a pump rig with them)
    proto["settings"]["single_agent_wells"] = False
    proto["settings"].update(AQUEOUS_STOCKS)
    return write_campaign(
        budget={"rounds": rounds},
        protocol=proto,
        instruments={
            "liquid_handler": {"driver": "cavro", "settings": settings},
            "microscope": {"driver": "simulated"},
        },
    )


def _line(step: Aspirate) -> tuple[float, float]:
    """(µL per increment, stock µM) of the line an aspirate draws from."""
    key = step.source if step.source in LINES else step.reagent
    pump = PUMPS[LINES[key][0]]
    return pump["syringe_ul"] / MODELS[pump["model"]].increments, step.stock_concentration_um


def _check_wells_metered(spec, db, data_dir: Path) -> int:
    """Every non-quarantined well holds exactly what the protocol planned, metered by the pumps.

    A pump moves whole increments, so each addition is the planned volume rounded to its
    syringe's increment: compared to that to 1e-6 µL (a double or lost dispense would be off by
    ≥ 0.5 µL), and to the protocol's own plan (``expected_contents``, as in
    test_crash_resume._check_wells_exact) within half an increment per addition.
    """
    lab = SimulatedLab(data_dir / "sim_lab.json", read_only=True)
    proto = get_protocol(spec.protocol.name, spec.protocol.settings)
    seeded = spec.protocol.settings["seeded_volume_ul"]
    checked = 0
    with Session(db) as s:
        for r in s.exec(select(Round)):
            steps = [
                STEP_ADAPTER.validate_python(st.payload)
                for st in s.exec(select(Step).where(Step.round_id == r.id).order_by(Step.seq))
            ]
            exps = s.exec(
                select(Experiment).where(Experiment.round_id == r.id).order_by(Experiment.position)
            )
            compiled = CompiledPlate(
                protocol=spec.protocol.name,
                layout=PlateLayout.model_validate(r.layout),
                steps=steps,
                experiments=[e.params for e in exps],
                seed=0,
            )
            planned = proto.expected_contents(compiled)
            metered: dict[str, list[float]] = {}
            amounts: dict[str, dict[str, float]] = {}
            slack: dict[str, float] = {}
            line = (1.0, 0.0)
            reagent = ""
            for st in steps:
                if isinstance(st, Aspirate):
                    line, reagent = _line(st), st.reagent
                elif isinstance(st, Dispense):
                    upi, stock = line
                    volume = round(st.volume_ul / upi) * upi
                    metered.setdefault(st.well, []).append(volume)
                    slack[st.well] = slack.get(st.well, 0.0) + upi / 2
                    if stock > 0:
                        a = amounts.setdefault(st.well, {})
                        a[reagent] = a.get(reagent, 0.0) + stock * volume
            wells = {w.well: w for w in s.exec(select(Well).where(Well.round_id == r.id))}
            for name, plan in planned.items():
                if wells[name].status == WellStatus.QUARANTINED.value:
                    continue
                state = lab.well_state(r.plate_id, name)
                volume = seeded + sum(metered[name])
                assert state.volume_ul == pytest.approx(volume, abs=1e-6), (r.plate_id, name)
                assert state.volume_ul == pytest.approx(plan.volume_ul, abs=slack[name] + 1e-9)
                got = state.concentrations_um()
                assert set(got) == set(plan.concentrations_um), (r.plate_id, name)
                for reagent_name, conc in plan.concentrations_um.items():
                    exact = amounts[name][reagent_name] / volume
                    assert got[reagent_name] == pytest.approx(exact, rel=1e-9), (name, reagent_name)
                    assert got[reagent_name] == pytest.approx(conc, rel=0.03), (name, reagent_name)
                checked += 1
    return checked


def _pump_runs(data_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (data_dir / "pump_runs.jsonl").read_text().splitlines()]


def _physical_steps(db) -> list[Step]:
    with Session(db) as s:
        return list(s.exec(select(Step).where(Step.kind.in_(["aspirate", "dispense"]))))


@pytest.mark.parametrize("protocol", ["oem", "dt"])
def test_dry_run_on_emulated_pumps_fills_the_plate_exactly(write_campaign, tmp_path, protocol):
    path = pump_campaign(write_campaign, protocol=protocol)
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    spec, db = _ledger(path)
    with Session(db) as s:
        assert s.exec(select(Campaign)).one().status == "completed"
        assert sum(e.status == "measured" for e in s.exec(select(Experiment))) == 6
        assert not s.exec(select(Well).where(Well.status == WellStatus.QUARANTINED.value)).all()
    assert _check_wells_metered(spec, db, tmp_path / "data") == 20
    (run,) = _pump_runs(tmp_path / "data")
    dispenses = [st for st in _physical_steps(db) if st.kind == "dispense"]
    assert run["fluidics"]["transfers"] == len(dispenses)
    assert run["fluidics"]["anomalies"] == [] and run["emulator"]["listener_errors"] == []
    moves = 2 * (len(dispenses) + run["dispenser"]["flushes"])  # a flush: one stroke out
    assert sum(p["plunger_moves"] for p in run["emulator"]["pumps"].values()) == moves


@pytest.mark.parametrize("protocol", ["oem", "dt"])
def test_dropped_and_garbled_replies_never_dispense_twice(write_campaign, tmp_path, protocol):
    faults = {"drop_reply": 0.05, "garble_reply": 0.05, "drop_request": 0.03, "seed": 3}
    path = pump_campaign(write_campaign, protocol=protocol, emulator=faults)
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    spec, db = _ledger(path)
    assert _check_wells_metered(spec, db, tmp_path / "data") == 20
    (run,) = _pump_runs(tmp_path / "data")
    link, emu = run["link"], run["emulator"]
    print(
        f"link {link}, dropped {emu['dropped']}, garbled {emu['garbled']}, "
        f"pump wall time {run['wall_s']:.2f} s"
    )
    assert emu["dropped"] > 5 and emu["garbled"] > 5 and emu["lost_requests"] > 3
    # each lost answer is resent (OEM, DT queries) or settled (DT actions), never ignored
    assert link["retries"] + link["settled"] >= emu["dropped"]
    dispenses = [st for st in _physical_steps(db) if st.kind == "dispense"]
    assert all(st.status == "done" and st.attempts == 1 for st in _physical_steps(db))
    pumps = emu["pumps"].values()
    moves = 2 * (len(dispenses) + run["dispenser"]["flushes"])
    assert sum(p["plunger_moves"] for p in pumps) == moves  # each move once
    assert all(p["aspirated"] == p["dispensed"] for p in pumps)
    assert run["fluidics"]["transfers"] == len(dispenses)


@pytest.mark.parametrize(
    ("fault", "error_type", "reason", "failed_seq", "quarantined"),
    [  # the 10th plunger move is the 5th dispense (step 9) or, after 8, the 5th aspirate
        ({"overload_after_moves": 9}, "PlungerOverload", "plunger overload", 9, 1),
        ({"stuck_after_moves": 9}, "PumpTimeout", "still busy", 9, 1),
        ({"overload_after_moves": 8}, "PlungerOverload", "plunger overload", 8, 0),
    ],
)
def test_pump_fault_pauses_then_the_same_command_resumes(
    write_campaign, tmp_path, fault, error_type, reason, failed_seq, quarantined
):
    # no flush and no line dead volume: the fault lands on the plunger move counted above
    path = pump_campaign(write_campaign, emulator={"line_ul": 0}, flush_ul=0)
    first = run_cli("run", str(path), "--dry-run", "--quiet", env={EMULATOR_ENV: json.dumps(fault)})
    assert first.returncode == 3, first.stderr + first.stdout
    spec, db = _ledger(path)
    with Session(db) as s:
        camp = s.exec(select(Campaign)).one()
        assert camp.status == "paused" and reason in camp.pause_reason.lower(), camp.pause_reason
        (failed,) = s.exec(select(Step).where(Step.status == "failed")).all()
        assert failed.seq == failed_seq and failed.result["error_type"] == error_type

    again = run_cli("run", str(path), "--dry-run", "--quiet")  # the fault is cleared
    assert again.returncode == 0, again.stderr + again.stdout
    with Session(db) as s:
        assert s.exec(select(Campaign)).one().status == "completed"
        q = s.exec(select(Well).where(Well.status == WellStatus.QUARANTINED.value)).all()
        assert len(q) == quarantined
        if quarantined:
            assert "cannot measure" in q[0].quarantine_reason
        assert sum(e.status == "measured" for e in s.exec(select(Experiment))) == 6  # none lost
        assert {st.status for st in s.exec(select(Step))} <= {"done", "skipped"}
    assert _check_wells_metered(spec, db, tmp_path / "data") == 20 - quarantined
    runs = _pump_runs(tmp_path / "data")
    assert len(runs) == 2 and not any(r["fluidics"]["anomalies"] for r in runs)


def _build(tmp_path, mix_cycles: int = 0, **changes):
    from controller.rig.cavro import build_cavro
    from controller.rig.registry import BuildContext
    from controller.spec import parse_campaign
    from simulators.clock import SimulatedClock
    from tests.controller.conftest import small_campaign_data

    data = small_campaign_data()
    data["protocol"]["settings"]["mix_cycles"] = mix_cycles
    data["protocol"]["settings"].update(AQUEOUS_STOCKS)
    spec = parse_campaign(data)
    settings = {"pumps": PUMPS, "lines": LINES, "output_port": 6, **changes}
    ctx = BuildContext(spec=spec, data_dir=tmp_path, clock=SimulatedClock(), dry_run=True)
    return build_cavro(settings, ctx)


@pytest.mark.parametrize(
    ("mix_cycles", "changes", "message"),
    [
        (3, {}, "cannot mix: set protocol.settings.mix_cycles: 0"),
        (
            0,
            {"lines": {k: v for k, v in LINES.items() if k != "drug_b@1uM"}},
            "no line for 'drug_b@1uM'",
        ),
        (
            0,
            {"lines": {**LINES, "drug_a@100uM": {"pump": 2, "port": 2, "stock_um": 10}}},
            "'drug_a@100uM' would be drawn from line 'drug_a@100uM' \\(drug_a at 10 µM\\)",
        ),
        (0, {"lines": {**LINES, "medium": [2, 1]}}, "already carries"),
        (0, {"lines": {**LINES, "medium": [1, 6]}}, "is the output port"),
        (0, {"pumps": {**PUMPS, 1: {"model": "xyz", "syringe_ul": 5}}}, "unknown pump model"),
        (0, {"protocol": "rs485"}, "settings: protocol: Input should be 'oem' or 'dt'"),
    ],
)
def test_bad_settings_are_refused_before_anything_moves(tmp_path, mix_cycles, changes, message):
    from controller.rig.cavro import CavroConfigError
    from instruments.exceptions import InstrumentError

    with pytest.raises(CavroConfigError, match=message) as info:
        _build(tmp_path, mix_cycles, **changes)
    assert isinstance(info.value, InstrumentError)  # the CLI reports it (exit 2), no traceback


def test_mix_policy_skip_journals_mixes_as_no_ops(tmp_path):
    handler = _build(tmp_path, mix_cycles=3, mix_policy="skip")
    try:
        handler.mix("P1", "B02", 50.0, 3)  # logged, nothing moves
        assert handler.identify()["measures_wells"] is False
        assert handler.well_volume_ul("P1", "B02") is None
    finally:
        handler.close()
    (run,) = _pump_runs(tmp_path)
    assert run["fluidics"]["transfers"] == 0
    assert all(p["init_count"] == 1 for p in run["emulator"]["pumps"].values())


def test_sigkill_after_a_pump_dispense_quarantines_only_that_well(write_campaign, tmp_path):
    import signal

    path = pump_campaign(write_campaign)
    killed = run_cli(
        "run",
        str(path),
        "--dry-run",
        "--quiet",
        env={"CELLPILOT_FAILPOINT": "step_executed/dispense:4"},
    )
    assert killed.returncode == -signal.SIGKILL
    final = run_cli("run", str(path), "--dry-run", "--quiet")
    assert final.returncode == 0, final.stderr + final.stdout
    spec, db = _ledger(path)
    with Session(db) as s:
        (q,) = s.exec(select(Well).where(Well.status == WellStatus.QUARANTINED.value)).all()
        assert "cannot measure" in q.quarantine_reason
        assert sum(e.status == "measured" for e in s.exec(select(Experiment))) == 6
    # the killed process's dispense stayed in the persisted plate; every other well is exact
    assert _check_wells_metered(spec, db, tmp_path / "data") == 19


# -- issue 9 --------------------------------------------------------------------------------


def _campaign_status(path: Path) -> tuple[str, str | None, int]:
    _, db = _ledger(path)
    with Session(db) as s:
        camp = s.exec(select(Campaign)).one()
        done = len(s.exec(select(Step).where(Step.status == "done")).all())
        return camp.status, camp.pause_reason, done


def test_pumps_failing_at_start_pause_the_campaign(write_campaign, tmp_path):  # item 8
    path = pump_campaign(write_campaign)
    env = {EMULATOR_ENV: json.dumps({"init_failure": True})}
    first = run_cli("run", str(path), "--dry-run", "--quiet", env=env)
    assert first.returncode == 3, first.stderr + first.stdout
    status, reason, done = _campaign_status(path)
    assert status == "paused" and "InitializationError" in reason and done == 0
    again = run_cli("run", str(path), "--dry-run", "--quiet")
    assert again.returncode == 0, again.stderr + again.stdout
    assert _campaign_status(path)[0] == "completed"


def test_an_unreachable_pump_port_pauses_the_campaign(write_campaign, tmp_path):  # item 8
    path = pump_campaign(write_campaign, port=str(tmp_path / "ttyUSB9"))
    proc = run_cli("run", str(path), "--quiet")  # on "instruments": no such port
    assert proc.returncode == 3, proc.stderr + proc.stdout
    status, reason, _ = _campaign_status(path)
    assert status == "paused" and "cannot open" in reason


@pytest.fixture
def external_pumps():
    """The project's emulator started on its own, as if it were someone else's."""
    from simulators.pump_emulator import PumpEmulator

    emu = PumpEmulator(
        tuple(PUMPS),
        pump_models={a: p["model"] for a, p in PUMPS.items()},
        time_scale=0.0005,
        transport="tcp",  # the built-in emulator's tests use a pty
    )
    yield emu
    emu.close()


def _moves(emu) -> tuple[int, int]:
    pumps = [emu.pump(a) for a in PUMPS]
    return sum(p.plunger_moves for p in pumps), sum(p.init_count for p in pumps)


def test_dry_run_against_an_external_emulator(write_campaign, tmp_path, external_pumps):
    """Item 9: the real driver on another port; the clock and the virtual lab stay simulated,
    and the virtual cells receive what the driver confirmed the pumps dispensed."""
    emu = external_pumps
    path = pump_campaign(write_campaign, emulator={"port": emu.port, "time_scale": 0.0005})
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    spec, db = _ledger(path)
    assert _check_wells_metered(spec, db, tmp_path / "data") == 20
    (run,) = _pump_runs(tmp_path / "data")
    assert "emulator" not in run and run["fluidics"]["external_pumps"]
    assert run["fluidics"]["anomalies"] == []
    dispenses = [st for st in _physical_steps(db) if st.kind == "dispense"]
    assert run["fluidics"]["transfers"] == len(dispenses)
    assert _moves(emu) == (2 * (len(dispenses) + run["dispenser"]["flushes"]), len(PUMPS))
    assert not emu._listeners  # nothing in the campaign's process could see this firmware


def test_devices_check_reads_the_pumps_and_moves_nothing(write_campaign, tmp_path, external_pumps):
    """Items 5 and 6: commissioning reads status, valve type and position; no init."""
    emu = external_pumps
    path = pump_campaign(write_campaign, emulator={"port": emu.port})
    proc = run_cli("devices", "check", str(path), "--dry-run", "--json")
    assert proc.returncode == 0, proc.stderr + proc.stdout
    (row,) = [r for r in json.loads(proc.stdout) if r["role"] == "liquid_handler"]
    pump = row["identity"]["pumps"]["2"]
    assert pump["valve_type"] == "6-port distribution" and pump["initialized"] is False
    assert _moves(emu) == (0, 0)
    nine = {a: {**p, "valve_ports": 9} for a, p in PUMPS.items()}
    path = pump_campaign(write_campaign, emulator={"port": emu.port}, pumps=nine)
    proc = run_cli("devices", "check", str(path), "--dry-run", "--json")
    assert proc.returncode == 3, proc.stderr + proc.stdout
    (row,) = [r for r in json.loads(proc.stdout) if r["role"] == "liquid_handler"]
    assert "PumpConfigurationError" in row["error"] and "6-port distribution" in row["error"]
    assert _moves(emu) == (0, 0)


def test_a_resume_never_pushes_the_leftover_into_a_well(write_campaign, tmp_path, external_pumps):
    """Item 6: killed with liquid in a syringe and the stage over a well; the pumps (someone
    else's emulator) keep it; the init at resume pushes it out over the waste."""
    emu = external_pumps
    path = pump_campaign(write_campaign, emulator={"port": emu.port, "time_scale": 0.0005})
    killed = run_cli(
        "run", str(path), "--dry-run", "--quiet",
        env={"CELLPILOT_FAILPOINT": "step_executed/aspirate:12"},
    )  # fmt: skip
    assert killed.returncode == -9, killed.stderr
    stage = json.loads((tmp_path / "data" / "sim_stage.json").read_text())["current"]
    held = sum(emu.pump(a).position for a in PUMPS)
    assert stage[0] != "waste" and held > 0  # the hazard: a full syringe over a well
    final = run_cli("run", str(path), "--dry-run", "--quiet")
    assert final.returncode == 0, final.stderr + final.stdout
    spec, db = _ledger(path)
    assert _check_wells_metered(spec, db, tmp_path / "data") == 20
    second = _pump_runs(tmp_path / "data")[-1]
    assert second["fluidics"]["anomalies"] == [] and second["fluidics"]["wasted_ul"] > 0
