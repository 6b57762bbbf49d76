"""Wall-clock start times: ``run FILE --at TIME`` stores a job; ``scheduler`` runs due jobs;
``jobs`` lists them (APScheduler, jobs in the ledger's database)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.common import JsonOpt, LedgerOpt, console, fail


def schedule_campaign_file(file: Path, dry_run: bool, ledger: str | None, at: str) -> None:
    from datetime import datetime

    from controller.ledger.db import open_ledger_engine, resolve_ledger_url
    from controller.loop.scheduling import schedule_campaign
    from controller.spec import CampaignFileError, load_campaign

    try:
        spec = load_campaign(file)
        when = datetime.fromisoformat(at)
    except CampaignFileError as e:
        fail(str(e))
    except ValueError:
        fail(f"--at {at!r} is not an ISO date-time such as 2026-11-29T22:00")
    url = resolve_ledger_url(spec, ledger)
    try:
        job = schedule_campaign(open_ledger_engine(url), url, spec.name, file, when, dry_run)
    except ValueError as e:
        fail(f"cannot schedule: {e}")
    console.print(
        f"scheduled [bold]{job}[/] at {when.isoformat()}; keep `cellpilot scheduler` running"
    )


def scheduler(
    ledger: LedgerOpt = None,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="stop when no job is left")
    ] = False,
) -> None:
    """Run scheduled jobs (campaign start times) stored in the ledger's database."""
    from controller.ledger.db import open_ledger_engine, resolve_ledger_url
    from controller.loop.scheduling import serve

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve(
            open_ledger_engine(resolve_ledger_url(None, ledger)),
            exit_when_idle=exit_when_idle,
            stop=stop,
        )
    except KeyboardInterrupt:
        pass


def jobs(ledger: LedgerOpt = None, as_json: JsonOpt = False) -> None:
    """List scheduled jobs."""
    from controller.ledger.db import open_ledger_engine, resolve_ledger_url
    from controller.loop.scheduling import list_jobs

    rows = list_jobs(open_ledger_engine(resolve_ledger_url(None, ledger)))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    for r in rows:
        console.print(f"{r['id']}: {r['name']} at {r['next_run_utc']}")
    if not rows:
        console.print("no scheduled job")


def register(app: typer.Typer) -> None:
    app.command()(scheduler)
    app.command()(jobs)
