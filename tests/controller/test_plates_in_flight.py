"""Several plates in flight: interleaved on one workcell, and as crash-safe as one at a time."""

from __future__ import annotations

import json
import signal

from sqlmodel import Session, select

from controller.ledger.models import Campaign, Event, Experiment, Round, Step
from controller.ledger.queries import campaign_timeline
from simulators.world import SimulatedLab
from tests.controller.conftest import run_cli
from tests.controller.test_crash_resume import _check_wells_exact, _ledger

WORKCELL = {"max_plates_in_flight": 3, "incubator_slots": 3}
# Counts are per process: each point fires in the run that resumes from the previous kill.
KILL_POINTS = [
    "step_started/incubate:1",  # plate 1 going into the incubator
    "round_proposed:1",  # plate 2 proposed while plate 1 incubates
    "step_started/dispense:40",  # pipetting plate 2
    "step_executed/dispense:47",  # pipetting plate 3: liquid moved, not journaled
    "step_executed/acquire:20",  # imaging plate 1 while plates 2 and 3 incubate
    "before_analysis_commit:1",  # plate 1 measured, not committed
    "step_started/acquire:25",  # imaging plate 2
    "before_analysis_commit:2",  # plate 3 measured, not committed
]


def _incubations(db, campaign: str) -> list[tuple[float, float]]:
    with Session(db) as s:
        camp = s.exec(select(Campaign).where(Campaign.name == campaign)).one()
        out = []
        for r in s.exec(select(Round).where(Round.campaign_id == camp.id).order_by(Round.index)):
            inc = s.exec(select(Step).where(Step.round_id == r.id, Step.kind == "incubate")).one()
            out.append((inc.result["incubation_started_s"], inc.result["incubation_ended_s"]))
    return out


def test_plates_interleave_and_the_clock_saves_days(write_campaign):
    seq = write_campaign("seq.yaml", name="seq", budget={"rounds": 3})
    par = write_campaign("par.yaml", name="par", budget={"rounds": 3}, workcell=WORKCELL)
    for path in (seq, par):
        out = run_cli("run", str(path), "--dry-run", "--quiet")
        assert out.returncode == 0, out.stderr
    spec, db = _ledger(par)
    serial, parallel = _incubations(db, "seq"), _incubations(db, "par")
    # one at a time: each plate goes in after the previous came out
    assert all(serial[i + 1][0] >= serial[i][1] for i in range(2))
    # three in flight: all three incubate at once, and each for its 48 h
    assert max(start for start, _ in parallel) < min(end for _, end in parallel)
    assert all(end - start >= 48 * 3600 for start, end in parallel)
    assert parallel[-1][1] < serial[-1][1] / 2
    with Session(db) as s:
        for name in ("seq", "par"):
            camp = s.exec(select(Campaign).where(Campaign.name == name)).one()
            assert (
                sum(
                    e.status == "measured"
                    for e in s.exec(select(Experiment).where(Experiment.campaign_id == camp.id))
                )
                == 18
            )
        # later plates were planned with the earlier plates' experiments as pending
        camp = s.exec(select(Campaign).where(Campaign.name == "par")).one()
        proposed = [
            e.payload
            for e in s.exec(
                select(Event).where(Event.campaign_id == camp.id, Event.kind == "round_proposed")
            )
        ]
        assert [p["round"] for p in proposed] == [1, 2, 3]
    status = json.loads(
        run_cli("status", "--campaign", "par", "--json", "--ledger", spec.ledger.url).stdout
    )
    assert status["status"] == "completed"


def test_sigkill_with_several_plates_in_flight_loses_nothing(write_campaign, tmp_path):
    path = write_campaign(budget={"rounds": 3}, workcell=WORKCELL)
    kills = 0
    for point in KILL_POINTS:
        proc = run_cli("run", str(path), "--dry-run", "--quiet", env={"CELLPILOT_FAILPOINT": point})
        kills += proc.returncode == -signal.SIGKILL
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    assert kills >= 7, "the failpoints did not fire"
    final = run_cli("run", str(path), "--dry-run", "--quiet")
    assert final.returncode == 0, final.stderr
    spec, db = _ledger(path)
    with Session(db) as s:
        assert s.exec(select(Campaign)).one().status == "completed"
        rounds = list(s.exec(select(Round)))
        assert len(rounds) == 3 and {r.status for r in rounds} == {"analyzed"}
        analysed = [
            e.payload["round"] for e in s.exec(select(Event).where(Event.kind == "round_analyzed"))
        ]
        assert sorted(analysed) == [1, 2, 3]  # each plate analysed exactly once
        assert sum(e.status == "measured" for e in s.exec(select(Experiment))) == 18
        assert {st.status for st in s.exec(select(Step))} <= {"done", "skipped"}
    _check_wells_exact(spec, db, tmp_path / "data")


WITH_MOVER = {
    "liquid_handler": {"driver": "simulated"},
    "microscope": {"driver": "simulated"},
    "plate_mover": {"driver": "simulated", "settings": {"transfer_s": 60}},
}


def _moves(db) -> list[dict]:
    with Session(db) as s:
        return [
            {"seq": st.seq, "kind": st.kind, "round": st.round_id, **st.result}
            for st in s.exec(select(Step).order_by(Step.round_id, Step.seq))
            if st.result and "moved_to" in st.result
        ]


def test_a_plate_mover_carries_each_plate_and_its_transfers_take_campaign_time(
    write_campaign, tmp_path
):
    path = write_campaign(
        budget={"rounds": 3},
        workcell=WORKCELL,
        instruments=WITH_MOVER,
    )
    out = run_cli("run", str(path), "--dry-run", "--quiet")
    assert out.returncode == 0, out.stderr
    spec, db = _ledger(path)
    moves = _moves(db)
    by_round: dict[int, list[str]] = {}
    for m in moves:
        by_round.setdefault(m["round"], []).append(m["moved_to"])
        assert m["transfer_s"] >= 60  # each move (and a stage cleared first) took its time
    # every plate: hotel -> handler (first dispense) -> incubator -> microscope (first read)
    assert sorted(by_round) == sorted({m["round"] for m in moves}) and len(by_round) == 3
    for places in by_round.values():
        assert places == ["liquid_handler", "incubator", "microscope"]
    # the stage holds one plate: each later read cleared the earlier plate into the hotel
    cleared = [m["cleared"] for m in moves if "cleared" in m]
    assert len(cleared) >= 2
    # an incubation starts after the plate's transfer into the incubator
    with Session(db) as s:
        for st in s.exec(select(Step).where(Step.kind == "incubate")):
            assert st.result["moved_to"] == "incubator"
            assert st.result["incubation_started_s"] >= st.result["transfer_s"]
    with Session(db) as s:  # the arm is a row of its own on the workcell timeline
        timeline = campaign_timeline(s, s.exec(select(Campaign)).one())
    arm = [seg for seg in timeline if seg["resource"] == "plate_mover"]
    assert len(arm) == len(moves) and all(seg["end_h"] > seg["start_h"] for seg in arm)
    lab = SimulatedLab(tmp_path / "data" / "sim_lab.json", read_only=True)  # snapshot + journal
    assert len(lab.plates_at("microscope")) == 1 and not lab.plates_at("incubator")
    assert len(lab.plates_at("hotel")) == 2  # the earlier plates, cleared off the stage
    _check_wells_exact(spec, db, tmp_path / "data")


def test_sigkill_during_transfers_resumes_with_every_plate_where_it_is(write_campaign, tmp_path):
    path = write_campaign(
        budget={"rounds": 2},
        workcell=WORKCELL,
        instruments=WITH_MOVER,
    )
    kills = 0
    for point in ("step_started/dispense:1", "step_started/incubate:1", "step_started/acquire:1"):
        proc = run_cli("run", str(path), "--dry-run", "--quiet", env={"CELLPILOT_FAILPOINT": point})
        kills += proc.returncode == -signal.SIGKILL
        assert proc.returncode in (0, -signal.SIGKILL), proc.stderr
    assert kills == 3, "the failpoints did not fire"
    final = run_cli("run", str(path), "--dry-run", "--quiet")
    assert final.returncode == 0, final.stderr
    spec, db = _ledger(path)
    with Session(db) as s:
        assert s.exec(select(Campaign)).one().status == "completed"
        assert {st.status for st in s.exec(select(Step))} <= {"done", "skipped"}
    for places in _group(_moves(db)).values():
        assert places == ["liquid_handler", "incubator", "microscope"]  # no move twice
    _check_wells_exact(spec, db, tmp_path / "data")


def _group(moves: list[dict]) -> dict[int, list[str]]:
    out: dict[int, list[str]] = {}
    for m in moves:
        out.setdefault(m["round"], []).append(m["moved_to"])
    return out
