"""The approval gate and operator controls: manual decisions from another process, a standing
policy running unattended with alerts, timeouts, pause / resume / abort."""

from __future__ import annotations

import getpass
import json
import os
import subprocess
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, HTTPServer

import pytest
from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Approval, Campaign, Event, Experiment, Proposal, Step
from controller.loop.events import verify_chain
from controller.loop.gate import policy_verdict
from controller.spec import ApprovalPolicySpec, load_campaign
from tests.controller.conftest import ROOT, run_cli


def _start(path, *extra):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", str(path), "--dry-run", "--quiet", *extra],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(predicate, timeout=60.0, what="condition"):
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


ME = getpass.getuser()


def _pending(url):
    proc = run_cli("proposals", "--json", "--ledger", url)
    return json.loads(proc.stdout) if proc.returncode == 0 and proc.stdout.strip() else []


def test_policy_verdict():
    pol = ApprovalPolicySpec(
        signed_by="ana", parameter_bounds={"x": (0, 1)}, max_plates=2, max_reagent_ul={"drug_a": 10}
    )
    assert policy_verdict(pol, {"x": 0.5}, plates_run=0, reagent_needed_ul={"drug_a": 5}) is None
    assert "outside the signed bounds" in policy_verdict(
        pol, {"x": 2}, plates_run=0, reagent_needed_ul={}
    )
    assert "allows 2 plates" in policy_verdict(pol, {"x": 0.5}, plates_run=2, reagent_needed_ul={})
    assert "drug_a would reach 12.0" in policy_verdict(
        pol, {"x": 0.5}, plates_run=0, reagent_needed_ul={"drug_a": 12}
    )


def test_manual_approval_edit_and_rejection_from_another_process(write_campaign):
    path = write_campaign(approval={"mode": "manual", "poll_s": 0.2})
    url = load_campaign(path).ledger.url
    proc = _start(path)
    try:
        first = _wait_for(lambda: _pending(url), what="round 1 proposals")
        assert len(first) == 6 and first[0]["round"] == 1
        ids = [p["id"] for p in first]
        bad = run_cli("edit", str(ids[0]), "drug_a_um=50", "--ledger", url, "--as", "ana")
        assert bad.returncode == 2 and "outside" in bad.stderr
        assert (
            run_cli(
                "edit",
                str(ids[0]),
                "drug_a_um=0.5",
                "--reason",
                "known toxic above 1 uM",
                "--ledger",
                url,
                "--as",
                "ana",
            ).returncode
            == 0
        )
        assert (
            run_cli(
                "reject", str(ids[1]), "--reason", "precipitates", "--ledger", url, "--as", "ana"
            ).returncode
            == 0
        )
        again = run_cli("reject", str(ids[1]), "--reason", "twice", "--ledger", url)
        assert again.returncode == 5 and f"already rejected by {ME} at" in again.stderr
        assert (
            run_cli("approve", *map(str, ids[2:]), "--ledger", url, "--as", "ben").returncode == 0
        )
        second = _wait_for(
            lambda: [p for p in _pending(url) if p["round"] == 2], what="round 2 proposals"
        )
        assert run_cli("approve", "--all", "--ledger", url, "--as", "ben", "--json").returncode == 0
        assert proc.wait(timeout=120) == 0, proc.stderr.read()
    finally:
        proc.kill()
    db = open_ledger_engine(url)
    with Session(db) as s:
        edited = s.exec(select(Proposal).where(Proposal.id == ids[0])).one()
        exp = s.exec(select(Experiment).where(Experiment.proposal_id == ids[0])).one()
        assert (
            edited.status == "edited" and edited.params["drug_a_um"] != 0.5
        )  # planner's original kept
        assert (
            exp.params["drug_a_um"] == 0.5 and exp.status == "measured"
        )  # the operator's version ran
        assert not s.exec(select(Experiment).where(Experiment.proposal_id == ids[1])).all()
        rejected = s.exec(select(Approval).where(Approval.proposal_id == ids[1])).one()
        # on a local SQLite ledger the actor is the OS user; --as is recorded as a claim beside it
        assert (rejected.decision, rejected.actor, rejected.claimed_as, rejected.reason) == (
            "rejected",
            ME,
            "ana",
            "precipitates",
        )
        assert {(a.actor, a.claimed_as) for a in s.exec(select(Approval))} == {
            (ME, "ana"),
            (ME, "ben"),
        }
        rej_params = s.get(Proposal, ids[1]).params
        assert all(p["params"] != rej_params for p in second)
        assert len([e for e in s.exec(select(Experiment)) if e.status == "measured"]) == 11
        kinds = [e.kind for e in s.exec(select(Event))]
        assert {
            "proposal_edited",
            "proposal_rejected",
            "proposal_approved",
            "round_awaiting_approval",
        } <= set(kinds)
        assert verify_chain(s, s.exec(select(Campaign)).one().id)[0]


class _Hook(BaseHTTPRequestHandler):
    received: list = []

    def do_POST(self):  # noqa: N802
        body = self.rfile.read(int(self.headers["Content-Length"]))
        _Hook.received.append(json.loads(body))
        self.send_response(200)
        self.end_headers()

    def log_message(self, *args):
        pass


@pytest.fixture
def webhook():
    _Hook.received = []
    server = HTTPServer(("127.0.0.1", 0), _Hook)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_port}/hook", _Hook.received
    server.shutdown()


def test_policy_mode_runs_unattended_and_escalates_with_alerts(write_campaign, webhook):
    url_hook, received = webhook
    path = write_campaign(
        approval={
            "mode": "policy",
            "poll_s": 0.1,
            "timeout_h": 0.0004,
            "on_timeout": "skip_round",
            "policy": {
                "signed_by": "ana",
                "outside": "wait",
                "parameter_bounds": {"drug_a_um": [0.01, 3.0], "drug_b_um": [0.01, 3.0]},
            },
        },
        alerts={"webhook_url": url_hook},
    )
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 0, proc.stderr
    db = open_ledger_engine(load_campaign(path).ledger.url)
    with Session(db) as s:
        props = s.exec(select(Proposal)).all()
        escalated = [p for p in props if p.escalation]
        inside = [p for p in props if not p.escalation]
        assert escalated and inside
        assert all(p.status == "rejected" for p in escalated)  # nobody answered: skipped
        assert all(p.status == "approved" for p in inside)
        assert {a.actor for a in s.exec(select(Approval))} == {"policy:ana", "timeout"}
        for e in s.exec(select(Experiment)):
            assert e.params["drug_a_um"] <= 3.0 and e.params["drug_b_um"] <= 3.0
        kinds = [e.kind for e in s.exec(select(Event))]
        assert "alert_sent" in kinds and "approval_timeout" in kinds
    texts = [r["text"] for r in received]
    assert any("needs a person" in t and "outside the signed bounds" in t for t in texts)
    assert all(r["campaign"] == "small" for r in received)


def test_policy_clip_edits_into_the_envelope(write_campaign):
    path = write_campaign(
        approval={
            "mode": "policy",
            "policy": {
                "signed_by": "ana",
                "outside": "clip",
                "parameter_bounds": {"drug_a_um": [0.01, 1.0]},
            },
        },
        budget={"rounds": 1},
    )
    assert run_cli("run", str(path), "--dry-run", "--quiet").returncode == 0
    db = open_ledger_engine(load_campaign(path).ledger.url)
    with Session(db) as s:
        assert all(e.params["drug_a_um"] <= 1.0 for e in s.exec(select(Experiment)))
        clipped = [a for a in s.exec(select(Approval)) if a.decision == "edited"]
        assert clipped and all(a.reason.startswith("clipped") for a in clipped)


def test_manual_timeout_pauses_the_campaign(write_campaign):
    path = write_campaign(
        approval={"mode": "manual", "poll_s": 0.1, "timeout_h": 0.0002, "on_timeout": "pause"}
    )
    proc = run_cli("run", str(path), "--dry-run", "--quiet")
    assert proc.returncode == 3
    assert "nobody decided 6 proposals" in proc.stdout
    status = json.loads(
        run_cli(
            "status", "--campaign", "small", "--json", "--ledger", load_campaign(path).ledger.url
        ).stdout
    )
    assert status["status"] == "paused"


def test_pause_resume_and_abort_reach_a_running_campaign(write_campaign):
    path = write_campaign(approval={"poll_s": 0.1}, budget={"rounds": 12})
    url = load_campaign(path).ledger.url
    db = open_ledger_engine(url)

    def steps_done():
        with Session(db) as s:
            return len(s.exec(select(Step).where(Step.status == "done")).all())

    proc = _start(path)
    try:
        _wait_for(lambda: steps_done() > 20, what="steps")
        assert run_cli("pause", "--ledger", url, "--as", "ana").returncode == 0
        held = _wait_for(
            lambda: (
                json.loads(
                    run_cli("status", "--campaign", "small", "--json", "--ledger", url).stdout
                )
                if f"paused by {ME}"
                in run_cli("status", "--campaign", "small", "--json", "--ledger", url).stdout
                else None
            ),
            what="held",
        )
        assert held["status"] == "paused"
        n = steps_done()
        time.sleep(1.0)
        assert steps_done() == n  # nothing moves while held
        assert run_cli("resume", "--ledger", url, "--as", "ana").returncode == 0
        _wait_for(lambda: steps_done() > n + 10, what="progress after resume")
        assert run_cli("abort", "--ledger", url, "--as", "ana").returncode == 0
        assert proc.wait(timeout=60) == 0
    finally:
        proc.kill()
    with Session(db) as s:
        camp = s.exec(select(Campaign)).one()
        assert camp.status == "aborted"
        kinds = [e.kind for e in s.exec(select(Event))]
        assert {
            "pause_requested",
            "campaign_held",
            "campaign_resumed",
            "abort_requested",
            "campaign_aborted",
        } <= set(kinds)
    again = run_cli("run", str(path), "--dry-run", "--quiet")
    assert again.returncode == 2 and "aborted" in again.stderr
