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
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="simulated instruments and clock")
    ] = False,
    ledger: LedgerOpt = None,
    data_dir: Annotated[
        Path | None, typer.Option(help="raw data folder (default runs/<name>)")
    ] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    at: Annotated[
        str | None,
        typer.Option(
            "--at", help="start later: ISO time (UTC if no zone); needs `cellpilot scheduler`"
        ),
    ] = None,
    amend: Annotated[
        bool,
        typer.Option(
            "--amend", help="resume with a corrected file; the change is recorded in the event log"
        ),
    ] = False,
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
        runner = CampaignRunner(
            spec, dry_run=dry_run, ledger_url=ledger, data_dir=data_dir, stop=stop, amend=amend
        )
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
    from controller.ledger.secrets import mask_url

    url = resolve_ledger_url(None, ledger)
    data = campaign_status(url, campaign) if campaign else list_campaigns(url)
    if data is None:
        fail(f"no campaign named {campaign!r} in {mask_url(url)}")
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


def verify(
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    anchor: Annotated[
        list[Path] | None,
        typer.Option(
            "--anchor",
            help="an anchor file to check against (besides the campaign's own and this machine's)",
        ),
    ] = None,
    key: Annotated[
        list[Path] | None,
        typer.Option("--key", help="another ledger key file (events sealed on another machine)"),
    ] = None,
    no_files: Annotated[
        bool, typer.Option("--no-files", help="do not re-hash the image files")
    ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Check the event log and what it binds: hashes, seals, anchors, tables and image files.

    Exit codes: 0 everything checked holds; 4 tampering found (the first problem of each
    chain is named); 6 no tampering found, but events sealed with a key this machine does not
    hold were not checked. What is proved and what is not: docs/ledger.md.
    """
    from controller.ledger.db import open_ledger_engine, resolve_ledger_url
    from controller.ledger.sealing import LedgerKeyError, verification_keys
    from controller.ledger.secrets import mask_url
    from controller.ledger.verify import verify_ledger

    url = resolve_ledger_url(None, ledger)
    try:
        keys = verification_keys(key or [])
        reports = verify_ledger(
            open_ledger_engine(url),
            campaign,
            keys=keys,
            anchors=anchor or [],
            check_files=not no_files,
        )
    except (LookupError, LedgerKeyError) as e:
        fail(f"{e} (ledger {mask_url(url)})")
    if as_json:
        console.print_json(json.dumps([r.__dict__ | {"ok": r.ok} for r in reports], default=str))
    else:
        for r in reports:
            _print_report(r)
    if not all(r.ok for r in reports):
        raise typer.Exit(4)
    if not all(r.complete for r in reports):
        raise typer.Exit(6)


def _print_report(r) -> None:
    if r.problems:
        console.print(
            f"[red]TAMPERED[/] {r.name}: {r.problems[0]}", highlight=False, soft_wrap=True
        )
        for p in r.problems[1:]:
            console.print(f"    also: {p}", highlight=False, soft_wrap=True)
    else:
        checked = "; ".join(r.checked)
        console.print(
            f"[green]ok[/] {r.name}: {r.events} events verified ({r.sealed} sealed"
            f"{'; ' + checked if checked else ''})",
            highlight=False,
            soft_wrap=True,
        )
    for n in r.notes:
        console.print(f"    note: {n}", highlight=False, soft_wrap=True)


def register(app: typer.Typer) -> None:
    for command in (run, status, report, schema, verify):
        app.command()(command)
