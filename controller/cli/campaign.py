"""Campaign commands: ``run`` (or resume), ``status``, ``report``, ``schema``, ``verify``."""

from __future__ import annotations

import json
import signal
import sys
import threading
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.common import CampaignOpt, LedgerOpt, console, err_console, fail


def run(
    file: Annotated[Path, typer.Argument(help="campaign YAML file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="simulated instruments and clock")] = False,
    ledger: LedgerOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="raw data folder (default runs/<name>)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    at: Annotated[str | None, typer.Option("--at", help="start later: ISO time (UTC if no zone); needs `cellpilot scheduler`")] = None,
    amend: Annotated[bool, typer.Option("--amend", help="resume with a corrected file; the change is recorded in the event log")] = False,
) -> None:
    """Run a campaign, or resume it from the ledger where it stopped."""
    if at is not None:
        from controller.cli.schedule import schedule_campaign_file

        schedule_campaign_file(file, dry_run, ledger, at)
        return
    from controller.cli.progress import ProgressView
    from controller.loop.preflight import CampaignConfigError
    from controller.loop.runner import CampaignError, CampaignRunner
    from controller.rig.registry import InstrumentConfigError
    from controller.spec import CampaignFileError, load_campaign, shorten
    from instruments.exceptions import InstrumentError
    from planners.exceptions import PlannerError
    from protocols.exceptions import ProtocolError

    try:
        spec = load_campaign(file)
        stop = threading.Event()
        runner = CampaignRunner(spec, dry_run=dry_run, ledger_url=ledger, data_dir=data_dir, stop=stop,
                                amend=amend)
    except CampaignFileError as e:
        fail(str(e))
    except (CampaignConfigError, ProtocolError, PlannerError) as e:
        fail(f"campaign file {file} is invalid: {shorten(str(e), 2000)}")

    def on_signal(signum, _frame):
        if stop.is_set():
            raise KeyboardInterrupt
        err_console.print("[yellow]pausing at the next step boundary (again to abort now)[/]")
        stop.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    view = ProgressView(console, spec, enabled=not quiet)
    try:
        with view:
            result = runner.run()
    except (CampaignConfigError, InstrumentConfigError) as e:
        fail(f"campaign file {file} is invalid: {shorten(str(e), 2000)}")
    except (CampaignError, ProtocolError, PlannerError, InstrumentError) as e:
        fail(f"campaign {spec.name!r} cannot run: {shorten(str(e), 2000)}")
    view.summary(result)
    if result.status == "paused":
        raise typer.Exit(3)



def status(
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show campaigns (or one campaign's rounds) from the ledger."""
    from controller.ledger.db import resolve_ledger_url
    from controller.ledger.queries import campaign_status, list_campaigns

    url = resolve_ledger_url(None, ledger)
    data = campaign_status(url, campaign) if campaign else list_campaigns(url)
    if data is None:
        fail(f"no campaign named {campaign!r} in {url}")
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    from controller.cli.progress import print_status

    print_status(console, data, detailed=bool(campaign))


def report(
    out: Annotated[Path, typer.Option("--out", help="folder for index.html and PNG plots")],
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    """Write an HTML report with convergence, plate heat maps, Z' and the best conditions."""
    from controller.ledger.db import resolve_ledger_url
    from controller.report import write_report

    url = resolve_ledger_url(None, ledger)
    try:
        path = write_report(url, campaign, out)
    except LookupError as e:
        fail(str(e))
    console.print(f"report written to [bold]{path}[/]")


def schema() -> None:
    """Print the JSON Schema of campaign files."""
    from controller.spec import campaign_json_schema

    sys.stdout.write(json.dumps(campaign_json_schema(), indent=2) + "\n")


def verify(campaign: CampaignOpt = None, ledger: LedgerOpt = None) -> None:
    """Recompute the event log's hash chain; report the first altered or missing event."""
    from controller.ledger.db import resolve_ledger_url
    from controller.ledger.queries import verify_events

    ok, results = verify_events(resolve_ledger_url(None, ledger), campaign)
    for name, msg in results:
        console.print(f"{'[green]ok[/]' if ok or 'verified' in msg else '[red]TAMPERED[/]'} {name}: {msg}")
    if not ok:
        raise typer.Exit(4)




def register(app: typer.Typer) -> None:
    for command in (run, status, report, schema, verify):
        app.command()(command)
