"""Campaign start times with APScheduler's job store in the ledger database."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta

from controller.spec import load_campaign
from tests.controller.conftest import ROOT, run_cli


def test_scheduled_start_survives_a_killed_scheduler(write_campaign):
    path = write_campaign(budget={"rounds": 1})
    url = load_campaign(path).ledger.url
    start = datetime.now(UTC) + timedelta(seconds=10)  # a loaded machine starts the CLI slowly
    proc = run_cli("run", str(path), "--dry-run", "--at", start.isoformat())
    assert proc.returncode == 0 and "scheduled campaign:small" in proc.stdout
    listed = json.loads(run_cli("jobs", "--json", "--ledger", url).stdout)
    assert [j["id"] for j in listed] == ["campaign:small"]

    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.Popen(
        [sys.executable, "-m", "controller.cli", "scheduler", "--ledger", url], cwd=ROOT, env=env
    )
    time.sleep(1.5)
    first.send_signal(signal.SIGKILL)  # dies before the start time
    first.wait()
    assert datetime.now(UTC) < start, "the first scheduler should die before the start time"
    time.sleep((start - datetime.now(UTC)).total_seconds() + 1)  # it passes while none runs
    second = subprocess.run(
        [sys.executable, "-m", "controller.cli", "scheduler", "--ledger", url, "--exit-when-idle"],
        cwd=ROOT,
        env=env,
        timeout=180,
    )
    assert second.returncode == 0
    status = json.loads(run_cli("status", "--campaign", "small", "--json", "--ledger", url).stdout)
    assert status["status"] == "completed" and status["valid_experiments"] == 6
    assert json.loads(run_cli("jobs", "--json", "--ledger", url).stdout) == []


def test_scheduling_in_the_past_is_refused(write_campaign):
    path = write_campaign()
    proc = run_cli("run", str(path), "--dry-run", "--at", "2020-01-01T00:00")
    assert proc.returncode == 2 and "in the past" in proc.stderr
