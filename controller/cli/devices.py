"""``cellpilot devices check``: commission every instrument a campaign file names."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from controller.cli.common import JsonOpt, console, fail

devices_app = typer.Typer(
    no_args_is_help=True, help="commission the instruments of a campaign file"
)


@devices_app.command("check")
def devices_check(
    file: Annotated[Path, typer.Argument(help="campaign YAML file")],
    dry_run: Annotated[bool, typer.Option("--dry-run", help="check against the emulators")] = False,
    as_json: JsonOpt = False,
) -> None:
    """Connect to every instrument the file names and report identity and state."""
    import tempfile

    from controller.loop.clocks import WallClock
    from controller.loop.preflight import CampaignConfigError, check_campaign
    from controller.rig.registry import check_devices
    from controller.spec import CampaignFileError, load_campaign, shorten

    try:
        spec = load_campaign(file)
        check_campaign(spec, dry_run=dry_run)  # the whole file, as `run` checks it
    except CampaignFileError as e:
        fail(str(e))
    except CampaignConfigError as e:
        # an instrument this machine cannot reach (no port, no config file) is what the check
        # reports, device by device, below; any other fault is the file's
        if dry_run or e.field != "instruments":
            fail(f"campaign file {file} is invalid: {shorten(str(e), 2000)}")
    from simulators.clock import SimulatedClock

    clock: SimulatedClock | WallClock = SimulatedClock() if dry_run else WallClock()
    with tempfile.TemporaryDirectory(prefix="cellpilot-devices-") as tmp:
        rows = check_devices(spec, dry_run=dry_run, data_dir=Path(tmp), clock=clock)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
    else:
        for r in rows:
            mark = "[green]ok[/]" if r["ok"] else "[red]FAILED[/]"
            console.print(f"{mark} {r['role']} ({r['driver']})")
            detail = r.get("identity") if r["ok"] else r.get("error")
            console.print(
                f"    {json.dumps(detail, default=str)[:2000]}", highlight=False, soft_wrap=True
            )
    if not all(r["ok"] for r in rows):
        raise typer.Exit(3)


def register(app: typer.Typer) -> None:
    app.add_typer(devices_app, name="devices")
