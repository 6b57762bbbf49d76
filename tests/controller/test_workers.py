"""Runners in separate processes share one PostgreSQL ledger: each campaign is claimed with a
lease, a killed worker's campaign is taken over after its lease expires, and every plate is
run exactly once."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml
from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Campaign, Event, Experiment, Round, Step
from controller.loop.events import verify_chain
from controller.loop.leases import claim, release, renew
from controller.spec import load_campaign
from tests.controller.conftest import ROOT, run_cli, small_campaign_data
from tests.controller.test_crash_resume import _check_wells_exact

LEASE_S = 6


def _submit(tmp_path: Path, url: str, name: str) -> Path:
    data = small_campaign_data(
        name=name, budget={"rounds": 2}, workcell={"max_plates_in_flight": 2}
    )
    data["ledger"] = {"data_dir": str(tmp_path / name)}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    out = run_cli("submit", str(path), "--dry-run", "--ledger", url)
    assert out.returncode == 0, out.stderr
    return path


def _worker(url: str) -> subprocess.Popen:
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "worker",
            "--ledger",
            url,
            "--lease-s",
            str(LEASE_S),
            "--exit-when-idle",
        ],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def test_lease_is_exclusive_and_fenced(pg_url) -> None:  # noqa: F811
    db = open_ledger_engine(pg_url)
    with Session(db) as s:
        camp = Campaign(name="c", spec={}, spec_hash="h", status="running")
        s.add(camp)
        s.commit()
        cid = camp.id
    gen_a = claim(db, cid, "a", lease_s=0.5)
    assert gen_a is not None and claim(db, cid, "b", lease_s=30) is None  # held
    time.sleep(0.7)
    gen_b = claim(db, cid, "b", lease_s=30)  # expired: b takes over
    assert gen_b == gen_a + 1
    assert not renew(db, cid, "a", gen_a)  # a learns it lost the lease
    release(db, cid, "a", gen_a)  # and cannot release b's
    assert claim(db, cid, "c", lease_s=30) is None


def test_three_workers_one_killed_mid_plate_every_plate_once(pg_url, tmp_path) -> None:  # noqa: F811
    paths = [_submit(tmp_path, pg_url, f"wc{i}") for i in range(3)]
    workers = [_worker(pg_url) for _ in range(3)]
    db = open_ledger_engine(pg_url)
    victim = None
    deadline = time.time() + 300
    while victim is None and time.time() < deadline:  # a worker with a plate half-pipetted
        time.sleep(0.5)
        with Session(db) as s:
            for camp in s.exec(select(Campaign).where(Campaign.status == "running")):
                rounds = [r.id for r in s.exec(select(Round).where(Round.campaign_id == camp.id))]
                done = [
                    st
                    for st in s.exec(
                        select(Step).where(Step.round_id.in_(rounds), Step.kind == "dispense")
                    )
                    if st.status == "done"
                ]
                if len(done) > 10 and camp.runner_id:
                    victim = (camp.name, int(camp.runner_id.split(":")[1]))
                    break
    assert victim is not None, "no worker got to a plate"
    os.kill(victim[1], signal.SIGKILL)
    for w in workers:
        try:
            w.wait(timeout=900)
        except subprocess.TimeoutExpired:
            w.kill()
            raise
    killed = [w for w in workers if w.returncode == -signal.SIGKILL]
    assert len(killed) == 1 and all(w.returncode == 0 for w in workers if w not in killed)

    with Session(db) as s:
        for camp in s.exec(select(Campaign)):
            assert camp.status == "completed", camp.name
            rounds = list(s.exec(select(Round).where(Round.campaign_id == camp.id)))
            assert len(rounds) == 2 and {r.status for r in rounds} == {"analyzed"}
            analysed = [
                e.payload["round"]
                for e in s.exec(
                    select(Event).where(
                        Event.campaign_id == camp.id, Event.kind == "round_analyzed"
                    )
                )
            ]
            assert sorted(analysed) == [1, 2], camp.name  # every plate exactly once
            assert (
                sum(
                    e.status == "measured"
                    for e in s.exec(select(Experiment).where(Experiment.campaign_id == camp.id))
                )
                == 12
            )
            assert verify_chain(s, camp.id)[0], camp.name
            runners = {
                e.payload.get("runner")
                for e in s.exec(
                    select(Event).where(
                        Event.campaign_id == camp.id,
                        Event.kind.in_(["campaign_started", "campaign_resumed"]),
                    )
                )
            }
            if camp.name == victim[0]:
                assert len(runners) == 2  # taken over by another worker
    for path in paths:
        spec = load_campaign(path)
        spec = spec.model_copy(update={"ledger": spec.ledger.model_copy(update={"url": pg_url})})
        _check_wells_exact(spec, db, Path(spec.ledger.data_dir))


def test_a_second_runner_of_a_running_campaign_is_refused(write_campaign) -> None:
    path = write_campaign(approval={"mode": "manual", "poll_s": 0.2})
    first = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", str(path), "--dry-run", "--quiet"],
        cwd=ROOT,
        env={**os.environ, "OMP_NUM_THREADS": "1"},
    )
    try:
        url = load_campaign(path).ledger.url
        deadline = time.time() + 120
        while time.time() < deadline:  # the first runner waits for a person: it holds the lease
            time.sleep(0.5)
            if json_status(url).get("status") == "running":
                break
        second = run_cli("run", str(path), "--dry-run", "--quiet")
        assert second.returncode == 2 and "is being run by another runner" in second.stderr
    finally:
        first.send_signal(signal.SIGTERM)
        first.wait(timeout=60)
    # the first runner paused and released its lease: a new runner resumes at once
    assert run_cli("abort", "--ledger", url).returncode == 0


def json_status(url: str) -> dict:
    import json

    out = run_cli("status", "--campaign", "small", "--json", "--ledger", url)
    return json.loads(out.stdout) if out.returncode == 0 else {}
