"""What every command shares: consoles, common options, one-paragraph errors."""

from __future__ import annotations

import json
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

LedgerOpt = Annotated[str | None, typer.Option("--ledger", envvar="CELLPILOT_LEDGER",
                                                  help="ledger URL (default sqlite:///runs/cellpilot.db)")]
CampaignOpt = Annotated[str | None, typer.Option("--campaign", help="campaign name (default: the latest)")]
ActorOpt = Annotated[str | None, typer.Option("--as", envvar="CELLPILOT_USER",
                                                 help="who acts (default: the login name)")]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one paragraph on standard error and exit (2: bad input, 3: device fault)."""
    err_console.print(f"[bold red]error:[/] {message}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def actor_name(name: str | None) -> str:
    import getpass

    return name or getpass.getuser()


def ledger_url(ledger: str | None) -> str:
    from controller.ledger.db import resolve_ledger_url

    return resolve_ledger_url(None, ledger)


def ledger_engine(ledger: str | None):
    from controller.ledger.db import open_ledger_engine

    return open_ledger_engine(ledger_url(ledger))


def done(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        console.print_json(json.dumps(data, default=str))
    else:
        console.print(text)
