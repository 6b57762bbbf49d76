"""The ``cellpilot`` command line.

    cellpilot run FILE [--dry-run]            run or resume a campaign
    cellpilot status [--campaign NAME] [--json]
    cellpilot report [--campaign NAME] --out DIR
    cellpilot schema                          JSON Schema of campaign files
    cellpilot verify [--campaign NAME]        recompute the event log's hash chain

Mistakes in a campaign file or a device fault are reported in a paragraph, never a traceback.
Exit codes: 0 done, 2 bad input, 3 campaign paused (fault or signal), 1 unexpected error.
"""

from __future__ import annotations

import os

# Before numpy/torch are imported: one BLAS/OpenMP thread is 15-25x faster for BoTorch here.
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import json  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402
import threading  # noqa: E402
from pathlib import Path  # noqa: E402
from typing import Annotated, Optional  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="cellpilot: closed-loop autonomous lab controller")
console = Console()
err_console = Console(stderr=True)

LedgerOpt = Annotated[Optional[str], typer.Option("--ledger", envvar="CELLPILOT_LEDGER",
                                                  help="ledger URL (default sqlite:///runs/cellpilot.db)")]
CampaignOpt = Annotated[Optional[str], typer.Option("--campaign", help="campaign name (default: the latest)")]


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="campaign YAML file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="simulated instruments and clock")] = False,
    ledger: LedgerOpt = None,
    data_dir: Annotated[Optional[Path], typer.Option(help="raw data folder (default runs/<name>)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
) -> None:
    """Run a campaign, or resume it from the ledger where it stopped."""
    from controller.progress import ProgressView
    from controller.runner import CampaignError, CampaignRunner
    from controller.spec import CampaignFileError, load_campaign
    from instruments.exceptions import InstrumentError
    from planners.exceptions import PlannerError
    from protocols.exceptions import ProtocolError

    try:
        spec = load_campaign(file)
        stop = threading.Event()
        runner = CampaignRunner(spec, dry_run=dry_run, ledger_url=ledger, data_dir=data_dir, stop=stop)
    except CampaignFileError as e:
        _fail(str(e))
    except (ProtocolError, PlannerError) as e:
        _fail(f"campaign file {file} is invalid: {e}")

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
    except (CampaignError, ProtocolError, PlannerError, InstrumentError) as e:
        _fail(f"campaign {spec.name!r} cannot run: {e}")
    view.summary(result)
    if result.status == "paused":
        raise typer.Exit(3)


@app.command()
def status(
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Show campaigns (or one campaign's rounds) from the ledger."""
    from controller.queries import campaign_status, list_campaigns
    from controller.runner import resolve_ledger_url

    url = resolve_ledger_url(None, ledger)
    data = campaign_status(url, campaign) if campaign else list_campaigns(url)
    if data is None:
        _fail(f"no campaign named {campaign!r} in {url}")
    if as_json:
        console.print_json(json.dumps(data, default=str))
        return
    from controller.progress import print_status

    print_status(console, data, detailed=bool(campaign))


@app.command()
def report(
    out: Annotated[Path, typer.Option("--out", help="folder for index.html and PNG plots")],
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
) -> None:
    """Write an HTML report with convergence, plate heat maps, Z' and the best conditions."""
    from controller.report import write_report
    from controller.runner import resolve_ledger_url

    url = resolve_ledger_url(None, ledger)
    try:
        path = write_report(url, campaign, out)
    except LookupError as e:
        _fail(str(e))
    console.print(f"report written to [bold]{path}[/]")


@app.command()
def schema() -> None:
    """Print the JSON Schema of campaign files."""
    from controller.spec import campaign_json_schema

    sys.stdout.write(json.dumps(campaign_json_schema(), indent=2) + "\n")


@app.command()
def verify(campaign: CampaignOpt = None, ledger: LedgerOpt = None) -> None:
    """Recompute the event log's hash chain; report the first altered or missing event."""
    from controller.queries import verify_events
    from controller.runner import resolve_ledger_url

    ok, results = verify_events(resolve_ledger_url(None, ledger), campaign)
    for name, msg in results:
        console.print(f"{'[green]ok[/]' if ok or 'verified' in msg else '[red]TAMPERED[/]'} {name}: {msg}")
    if not ok:
        raise typer.Exit(4)


def _mount_optional() -> None:
    try:
        from controller.cli_pump import pump_app
    except ImportError:
        return
    app.add_typer(pump_app, name="pump", help="drive one syringe pump by hand")


_mount_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
