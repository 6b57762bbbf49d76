"""Wall-clock jobs with APScheduler, kept in the ledger's database (table ``apscheduler_jobs``).

``cellpilot run FILE --at 2026-11-29T22:00`` stores a date job; ``cellpilot scheduler`` runs
due jobs, each campaign in its own process (so a campaign that dies does not take the
scheduler with it, and it resumes from the ledger like any other run). Jobs survive a killed
scheduler: one whose time passed while nothing was running still fires at start-up within
``misfire_grace_time`` (6 h), then never again.

A job stores the ledger URL with its password masked; the scheduler runs each job against the
ledger it serves (the URL reaches the child process in ``CELLPILOT_LEDGER``, never on its
command line, where ``ps`` would show it).
"""

from __future__ import annotations

import os
import subprocess
import sys
import threading
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from apscheduler.events import EVENT_JOB_ERROR, EVENT_JOB_EXECUTED, EVENT_JOB_SUBMITTED
from apscheduler.jobstores.sqlalchemy import SQLAlchemyJobStore
from apscheduler.schedulers.background import BackgroundScheduler
from sqlalchemy import Engine

from controller.ledger.secrets import mask_secrets, mask_url

JOB_TABLE = "apscheduler_jobs"
MISFIRE_GRACE_S = 6 * 3600
_serving: dict[str, str] = {}  # the URL of the ledger this process's scheduler serves


def make_scheduler(db: Engine) -> BackgroundScheduler:
    return BackgroundScheduler(
        jobstores={"default": SQLAlchemyJobStore(engine=db, tablename=JOB_TABLE)},
        job_defaults={"coalesce": True, "max_instances": 1, "misfire_grace_time": MISFIRE_GRACE_S},
        timezone=UTC,
    )


def run_scheduled_campaign(file: str, ledger_url: str, dry_run: bool) -> int:
    """The job: run (or resume) a campaign in a child process; returns its exit code.
    ``ledger_url`` (masked) only names the ledger: the job runs on the one the scheduler serves."""
    cmd = [sys.executable, "-m", "controller.cli", "run", file, "--quiet"]
    if dry_run:
        cmd.append("--dry-run")
    env = {**os.environ, "CELLPILOT_LEDGER": _serving.get("url", ledger_url)}
    return subprocess.run(cmd, check=False, env=env).returncode


def schedule_campaign(
    db: Engine, ledger_url: str, name: str, file: Path, at: datetime, dry_run: bool
) -> str:
    """Store a date job that starts the campaign at ``at`` (UTC if naive)."""
    at = at if at.tzinfo else at.replace(tzinfo=UTC)
    if at <= datetime.now(UTC):
        raise ValueError(f"{at.isoformat()} is in the past")
    sched = make_scheduler(db)
    sched.start(paused=True)  # paused: only to write the job to the store
    try:
        job = sched.add_job(
            "controller.loop.scheduling:run_scheduled_campaign",
            "date",
            run_date=at,
            args=[str(file.resolve()), mask_url(ledger_url), dry_run],
            id=f"campaign:{name}",
            name=f"start campaign {name}",
            replace_existing=True,
        )
        return job.id
    finally:
        sched.shutdown(wait=False)


def list_jobs(db: Engine) -> list[dict[str, Any]]:
    sched = make_scheduler(db)
    sched.start(paused=True)
    try:
        return [
            {
                "id": j.id,
                "name": j.name,
                "next_run_utc": j.next_run_time,
                "args": mask_secrets(list(j.args)),
            }
            for j in sched.get_jobs()
        ]
    finally:
        sched.shutdown(wait=False)


def serve(db: Engine, *, exit_when_idle: bool = False, stop: threading.Event | None = None) -> None:
    """Run due jobs until ``stop`` is set (or, with ``exit_when_idle``, no job is left)."""
    stop = stop or threading.Event()
    _serving["url"] = db.url.render_as_string(hide_password=False)
    sched = make_scheduler(db)
    running = [0]
    lock = threading.Lock()

    def track(event) -> None:
        with lock:
            running[0] += 1 if event.code == EVENT_JOB_SUBMITTED else -1

    sched.add_listener(track, EVENT_JOB_SUBMITTED | EVENT_JOB_EXECUTED | EVENT_JOB_ERROR)
    sched.start()
    try:
        while not stop.wait(0.5):
            with lock:
                busy = running[0] > 0
            if exit_when_idle and not busy and not sched.get_jobs():
                break
    finally:
        sched.shutdown(wait=True)
