"""Fixtures for the console tests: a ledger with accounts and a campaign waiting for decisions
(written directly, no runner), TestClients logged in per role, and for the browser tests a
dry-run campaign and ``cellpilot serve`` in subprocesses."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml
from sqlmodel import Session

from controller.console.auth import add_user
from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Campaign, Proposal, Round
from controller.loop.events import EventKind, append_event
from controller.spec import CampaignSpec
from tests.controller.conftest import ROOT, small_campaign_data

PASSWORDS = {"ana": "ana-operator-pw", "vic": "vic-viewer-pw", "root": "root-admin-pw"}
ROLES = {"ana": "operator", "vic": "viewer", "root": "admin"}


def add_accounts(db) -> None:
    for name, role in ROLES.items():
        add_user(db, name, PASSWORDS[name], role)


@pytest.fixture(autouse=True)
def cheap_password_hashes(monkeypatch):
    """argon2's default cost (64 MiB, 3 passes: ~0.3 s a hash here) is for production; in-process
    tests use the same algorithm at minimum cost."""
    from argon2 import PasswordHasher

    from controller.console import auth

    cheap = PasswordHasher(time_cost=1, memory_cost=1024, parallelism=1)
    monkeypatch.setattr(auth, "_hasher", cheap)
    monkeypatch.setattr(auth, "_DUMMY_HASH", cheap.hash("not a password"))


@pytest.fixture
def ledger_url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'ledger.db'}"


@pytest.fixture
def seeded(ledger_url):
    """A ledger with three accounts and campaign ``small`` whose round 1 waits for approval
    (three proposals with predictions, the third escalated)."""
    db = open_ledger_engine(ledger_url)
    add_accounts(db)
    spec = CampaignSpec.model_validate(small_campaign_data(approval={"mode": "manual"}))
    with Session(db) as s:
        camp = Campaign(
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_hash=spec.spec_hash(),
            dry_run=True,
            status="running",
        )
        s.add(camp)
        s.flush()
        rnd = Round(campaign_id=camp.id, index=0, plate_id="small-P001")
        s.add(rnd)
        s.flush()
        for i, (a, b) in enumerate([(0.1, 0.123456789), (1.0, 2.0), (5.0, 0.05)]):
            s.add(
                Proposal(
                    campaign_id=camp.id,
                    round_id=rnd.id,
                    position=i,
                    params={"drug_a_um": a, "drug_b_um": b},
                    predicted_mean={"selectivity": 0.3 + i / 10},
                    predicted_sd={"selectivity": 0.05},
                    acquisition_value=0.01 * (i + 1),
                    planner="bayesian",
                    escalation="drug_a_um=5 is outside the signed bounds [0.01, 3]"
                    if i == 2
                    else None,
                )
            )
        append_event(s, camp.id, EventKind.ALERT_SENT, {"text": "round 1 is waiting"}, clock_s=0.0)
        s.commit()
    return db


def login(client, name: str, password: str | None = None):
    """Log a TestClient in through the login form; return the campaign page's CSRF token getter."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    return client.post(
        "/login",
        data={
            "username": name,
            "password": password or PASSWORDS[name],
            "csrf_token": token,
            "next": "/",
        },
        follow_redirects=False,
    )


def csrf_of(client, path: str = "/campaigns/small") -> str:
    return re.search(r'name="csrf_token" value="([^"]+)"', client.get(path).text).group(1)


# -- subprocesses for the browser tests ------------------------------------------------------


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env() -> dict:
    return {**os.environ, "OMP_NUM_THREADS": "1", "COLUMNS": "200"}


def write_manual_campaign(tmp_path: Path, **overrides) -> Path:
    data = small_campaign_data(approval={"mode": "manual", "poll_s": 0.2}, **overrides)
    data["ledger"] = {
        "url": f"sqlite:///{tmp_path / 'ledger.db'}",
        "data_dir": str(tmp_path / "data"),
    }
    path = tmp_path / "small.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def start_campaign(path: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "run", str(path), "--dry-run", "--quiet"],
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def start_console(url: str, port: int, log: Path, host: str | None = None) -> subprocess.Popen:
    out = log.open("w")
    where = ["--host", host] if host else []
    return subprocess.Popen(
        [
            sys.executable,
            "-m",
            "controller.cli",
            "serve",
            "--port",
            str(port),
            "--ledger",
            url,
            *where,
        ],
        cwd=ROOT,
        env=_env(),
        stdout=out,
        stderr=subprocess.STDOUT,
        text=True,
    )


def wait_http(port: int, proc: subprocess.Popen, log: Path, timeout: float = 40.0) -> None:
    import urllib.error
    import urllib.request

    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if proc.poll() is not None:
            raise AssertionError(f"cellpilot serve exited: {log.read_text()}")
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/login", timeout=1)
            return
        except (urllib.error.URLError, OSError):
            time.sleep(0.2)
    raise AssertionError(f"cellpilot serve did not answer: {log.read_text()}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
