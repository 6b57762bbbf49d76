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
from typing import Annotated  # noqa: E402

import typer  # noqa: E402
from rich.console import Console  # noqa: E402

app = typer.Typer(add_completion=False, no_args_is_help=True,
                  help="cellpilot: closed-loop autonomous lab controller")
console = Console()
err_console = Console(stderr=True)

LedgerOpt = Annotated[str | None, typer.Option("--ledger", envvar="CELLPILOT_LEDGER",
                                                  help="ledger URL (default sqlite:///runs/cellpilot.db)")]
CampaignOpt = Annotated[str | None, typer.Option("--campaign", help="campaign name (default: the latest)")]


def _fail(message: str, code: int = 2) -> None:
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


@app.command()
def run(
    file: Annotated[Path, typer.Argument(help="campaign YAML file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="simulated instruments and clock")] = False,
    ledger: LedgerOpt = None,
    data_dir: Annotated[Path | None, typer.Option(help="raw data folder (default runs/<name>)")] = None,
    quiet: Annotated[bool, typer.Option("--quiet", "-q")] = False,
    at: Annotated[str | None, typer.Option("--at", help="start later: ISO time (UTC if no zone); needs `cellpilot scheduler`")] = None,
) -> None:
    """Run a campaign, or resume it from the ledger where it stopped."""
    if at is not None:
        _schedule(file, dry_run, ledger, at)
        return
    from controller.instrument_setup import InstrumentConfigError
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
    except InstrumentConfigError as e:
        _fail(f"campaign file {file} is invalid: {e}")
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


ActorOpt = Annotated[str | None, typer.Option("--as", envvar="CELLPILOT_USER",
                                                 help="who acts (default: the login name)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def _actor(name: str | None) -> str:
    import getpass

    return name or getpass.getuser()


def _operator_db(ledger: str | None):
    from controller.ledger.db import open_ledger_engine
    from controller.runner import resolve_ledger_url

    return open_ledger_engine(resolve_ledger_url(None, ledger))


def _done(as_json: bool, data: dict, text: str) -> None:
    if as_json:
        console.print_json(json.dumps(data, default=str))
    else:
        console.print(text)


@app.command()
def proposals(campaign: CampaignOpt = None, ledger: LedgerOpt = None, as_json: JsonOpt = False) -> None:
    """List proposals waiting for a decision, with the model's prediction for each."""
    from controller.operator import OperatorError, pending_proposals

    try:
        rows = pending_proposals(_operator_db(ledger), campaign)
    except OperatorError as e:
        _fail(str(e))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    from controller.progress import print_proposals

    print_proposals(console, rows)


@app.command()
def approve(
    ids: Annotated[list[int] | None, typer.Argument(help="proposal ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every pending proposal of the campaign")] = False,
    campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
) -> None:
    """Approve proposals (by id, or --all)."""
    from controller.operator import OperatorError
    from controller.operator import approve as do_approve

    if not ids and not all_:
        _fail("name proposal ids or use --all")
    try:
        done = do_approve(_operator_db(ledger), None if all_ else list(ids), _actor(actor), campaign)
    except OperatorError as e:
        _fail(str(e))
    _done(as_json, {"approved": done}, f"approved {len(done)} proposal(s): {done}")


@app.command()
def reject(
    proposal_id: Annotated[int, typer.Argument(help="proposal id")],
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit trail)")],
    ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
) -> None:
    """Reject a proposal with a reason; the planner will not propose it again."""
    from controller.operator import OperatorError
    from controller.operator import reject as do_reject

    try:
        do_reject(_operator_db(ledger), proposal_id, reason, _actor(actor))
    except OperatorError as e:
        _fail(str(e))
    _done(as_json, {"rejected": proposal_id, "reason": reason}, f"rejected proposal {proposal_id}")


@app.command()
def edit(
    proposal_id: Annotated[int, typer.Argument(help="proposal id")],
    assignments: Annotated[list[str], typer.Argument(help="param=value ...")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
) -> None:
    """Change a proposal's parameters (within the search space) and approve the edited version."""
    from controller.operator import OperatorError, parse_assignments
    from controller.operator import edit as do_edit

    try:
        params = do_edit(_operator_db(ledger), proposal_id, parse_assignments(assignments), _actor(actor), reason)
    except OperatorError as e:
        _fail(str(e))
    _done(as_json, {"edited": proposal_id, "params": params}, f"proposal {proposal_id} edited and approved: {params}")


def _control(action: str, campaign: str | None, ledger: str | None, actor: str | None, as_json: bool) -> None:
    from controller.operator import OperatorError, request

    try:
        name = request(_operator_db(ledger), action, _actor(actor), campaign)
    except OperatorError as e:
        _fail(str(e))
    _done(as_json, {"campaign": name, "requested": action}, f"{action} requested for campaign {name}")


@app.command()
def pause(campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Hold a running campaign at the next step boundary."""
    _control("pause", campaign, ledger, actor, as_json)


@app.command()
def resume(campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Let a held campaign continue (a stopped runner continues with `cellpilot run`)."""
    _control("resume", campaign, ledger, actor, as_json)


@app.command()
def abort(campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a campaign for good at the next step boundary."""
    _control("abort", campaign, ledger, actor, as_json)


def _schedule(file: Path, dry_run: bool, ledger: str | None, at: str) -> None:
    from datetime import datetime

    from controller.ledger.db import open_ledger_engine
    from controller.runner import resolve_ledger_url
    from controller.scheduling import schedule_campaign
    from controller.spec import CampaignFileError, load_campaign

    try:
        spec = load_campaign(file)
        when = datetime.fromisoformat(at)
    except CampaignFileError as e:
        _fail(str(e))
    except ValueError:
        _fail(f"--at {at!r} is not an ISO date-time such as 2026-11-29T22:00")
    url = resolve_ledger_url(spec, ledger)
    try:
        job = schedule_campaign(open_ledger_engine(url), url, spec.name, file, when, dry_run)
    except ValueError as e:
        _fail(f"cannot schedule: {e}")
    console.print(f"scheduled [bold]{job}[/] at {when.isoformat()}; keep `cellpilot scheduler` running")


@app.command()
def scheduler(
    ledger: LedgerOpt = None,
    exit_when_idle: Annotated[bool, typer.Option("--exit-when-idle", help="stop when no job is left")] = False,
) -> None:
    """Run scheduled jobs (campaign start times) stored in the ledger's database."""
    from controller.ledger.db import open_ledger_engine
    from controller.runner import resolve_ledger_url
    from controller.scheduling import serve

    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    try:
        serve(open_ledger_engine(resolve_ledger_url(None, ledger)), exit_when_idle=exit_when_idle, stop=stop)
    except KeyboardInterrupt:
        pass


@app.command()
def jobs(ledger: LedgerOpt = None, as_json: JsonOpt = False) -> None:
    """List scheduled jobs."""
    from controller.ledger.db import open_ledger_engine
    from controller.runner import resolve_ledger_url
    from controller.scheduling import list_jobs

    rows = list_jobs(open_ledger_engine(resolve_ledger_url(None, ledger)))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    for r in rows:
        console.print(f"{r['id']}: {r['name']} at {r['next_run_utc']}")
    if not rows:
        console.print("no scheduled job")


devices_app = typer.Typer(no_args_is_help=True, help="commission the instruments of a campaign file")
app.add_typer(devices_app, name="devices")


@devices_app.command("check")
def devices_check(
    file: Annotated[Path, typer.Argument(help="campaign YAML file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check against the emulators")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Connect to every instrument the file names and report identity and state."""
    import tempfile

    from controller.clocks import WallClock
    from controller.instrument_setup import InstrumentConfigError, check_devices, check_instruments
    from controller.spec import CampaignFileError, load_campaign

    try:
        spec = load_campaign(file)
        check_instruments(spec, dry_run=dry_run)
    except (CampaignFileError, InstrumentConfigError) as e:
        _fail(str(e))
    if dry_run:
        from simulators.clock import SimulatedClock

        clock = SimulatedClock()
    else:
        clock = WallClock()
    with tempfile.TemporaryDirectory(prefix="cellpilot-devices-") as tmp:
        rows = check_devices(spec, dry_run=dry_run, data_dir=Path(tmp), clock=clock)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
    else:
        for r in rows:
            mark = "[green]ok[/]" if r["ok"] else "[red]FAILED[/]"
            console.print(f"{mark} {r['role']} ({r['driver']})")
            detail = r.get("identity") if r["ok"] else r.get("error")
            console.print(f"    {json.dumps(detail, default=str)[:2000]}", highlight=False, soft_wrap=True)
    if not all(r["ok"] for r in rows):
        raise typer.Exit(3)


def _mount_optional() -> None:
    try:
        from controller.cli_pump import pump_app
    except ImportError:
        pass
    else:
        app.add_typer(pump_app, name="pump", help="drive one syringe pump by hand")
    try:
        from controller.cli_console import register as register_console
    except ImportError:
        pass
    else:
        register_console(app)  # cellpilot serve, cellpilot users


_mount_optional()


def main() -> None:
    app()


if __name__ == "__main__":
    main()
