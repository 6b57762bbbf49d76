"""Campaigns from a shared ledger: ``submit`` queues a campaign file, ``worker`` runs queued
campaigns (and takes over those whose runner died)."""

from __future__ import annotations

import json
import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.common import LedgerOpt, console, err_console, fail


def submit(
    file: Annotated[Path, typer.Argument(help="campaign YAML file")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="simulated instruments and clock")
    ] = False,
    ledger: LedgerOpt = None,
) -> None:
    """Check a campaign file and queue it in the ledger for a worker (`cellpilot worker`)."""
    from controller.ledger.db import resolve_ledger_url
    from controller.loop.preflight import CampaignConfigError, check_campaign
    from controller.loop.queue import QueueError, queue_campaign
    from controller.spec import CampaignFileError, load_campaign, shorten

    try:
        spec = load_campaign(file)
        check_campaign(spec, dry_run=dry_run)
    except CampaignFileError as e:
        fail(str(e))
    except CampaignConfigError as e:
        fail(f"campaign file {file} is invalid: {shorten(str(e), 2000)}")
    url = resolve_ledger_url(spec, ledger)
    try:
        queue_campaign(url, spec, dry_run=dry_run)
    except QueueError as e:
        fail(str(e))
    console.print(
        f"campaign [bold]{spec.name}[/] queued; a `cellpilot worker` on this ledger will run it"
    )


def worker(
    ledger: LedgerOpt = None,
    lease_s: Annotated[
        float,
        typer.Option(
            "--lease-s", min=5, help="lease length; a dead worker's campaign is taken over after it"
        ),
    ] = 60.0,
    exit_when_idle: Annotated[
        bool, typer.Option("--exit-when-idle", help="stop when no campaign is left")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json")] = False,
) -> None:
    """Run queued campaigns from the ledger, one at a time, and take over orphaned ones."""
    from controller.ledger.db import resolve_ledger_url
    from controller.loop.worker import run_worker

    stop = threading.Event()

    def on_signal(signum, _frame):
        err_console.print("[yellow]worker stopping at the next step boundary[/]")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    report = run_worker(
        resolve_ledger_url(None, ledger), lease_s=lease_s, exit_when_idle=exit_when_idle, stop=stop
    )
    if as_json:
        console.print_json(json.dumps({"runner": report.runner_id, "campaigns": report.campaigns}))
    else:
        for name, status in report.campaigns.items():
            console.print(f"{name}: {status}")


def register(app: typer.Typer) -> None:
    app.command()(submit)
    app.command()(worker)
