"""What every command shares: consoles, common options, one-paragraph errors, and who acts.

Who acts (:func:`operator_identity`), for decisions and campaign control:

- with ``CELLPILOT_TOKEN`` (``cellpilot users token NAME``) or ``--user NAME`` and a password
  (prompted, or ``--password-stdin``): that account, if it is an operator or admin;
- otherwise, on a local SQLite ledger: the operating-system user running the command;
- otherwise (a shared PostgreSQL ledger): refused, since anyone who can reach the database
  could claim any name.

``--as NAME`` never changes who acts: it is recorded beside the actor as a claim.
"""

from __future__ import annotations

import getpass
import json
import os
import socket
import sys
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console

console = Console()
err_console = Console(stderr=True)

TOKEN_ENV = "CELLPILOT_TOKEN"
EXIT_ALREADY_DECIDED = 5

LedgerOpt = Annotated[
    str | None,
    typer.Option(
        "--ledger",
        envvar="CELLPILOT_LEDGER",
        help="ledger URL (default sqlite:///runs/cellpilot.db)",
    ),
]
CampaignOpt = Annotated[
    str | None, typer.Option("--campaign", help="campaign name (default: the latest)")
]
ActorOpt = Annotated[
    str | None,
    typer.Option(
        "--as",
        envvar="CELLPILOT_USER",
        help="a name recorded beside the actor as a claim (not checked)",
    ),
]
UserOpt = Annotated[
    str | None, typer.Option("--user", help="act as this console account (password asked)")
]
PasswordStdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="read --user's password from standard input")
]
JsonOpt = Annotated[bool, typer.Option("--json", help="machine-readable output")]


def fail(message: str, code: int = 2) -> NoReturn:
    """Print one paragraph on standard error and exit (2: bad input, 3: device fault).
    Credentials in URLs are masked: a message may quote a ledger URL."""
    from controller.ledger.secrets import mask_text

    err_console.print(f"[bold red]error:[/] {mask_text(message)}", highlight=False, soft_wrap=True)
    raise typer.Exit(code)


def os_user() -> str:
    """The operating-system user running this command."""
    return getpass.getuser()


def ledger_url(ledger: str | None) -> str:
    from controller.ledger.db import resolve_ledger_url

    return resolve_ledger_url(None, ledger)


def ledger_engine(ledger: str | None):
    from controller.ledger.db import open_ledger_engine

    return open_ledger_engine(ledger_url(ledger))


def is_shared(url: str) -> bool:
    """A ledger other people reach through a server (anything but a local SQLite file)."""
    from sqlalchemy.engine import make_url

    return make_url(url).get_backend_name() != "sqlite"


def operator_identity(
    db, url: str, *, user: str | None, claim: str | None, password_stdin: bool = False
) -> tuple[str, str | None]:
    """(actor, claimed name) for a decision from this command line; exits 2 when refused."""
    from controller.console import auth
    from controller.ledger.accounts import Role

    token = os.environ.get(TOKEN_ENV)
    if token:
        account = auth.token_user(db, token)
        if account is None:
            fail(
                f"{TOKEN_ENV} is not a valid token of an enabled account (cellpilot users token NAME)"
            )
    elif user:
        password = (
            sys.stdin.readline().rstrip("\r\n")
            if password_stdin
            else typer.prompt(f"password of {user}", hide_input=True, err=True)
        )
        try:
            account = auth.authenticate(
                db, user, password, address=f"cli:{socket.gethostname()}", channel="cli"
            )
        except auth.LoginRefused as e:
            fail(str(e))
        if account is None:
            fail("wrong user name or password")
    elif is_shared(url):
        fail(
            "this ledger is shared: a decision needs an account. Pass --user NAME (the password is asked, "
            f"or read with --password-stdin) or set {TOKEN_ENV} (cellpilot users token NAME)."
        )
    else:
        return os_user(), claim
    if Role(account.role).rank < Role.OPERATOR.rank:
        fail(f"{account.name} is a {account.role}; decisions need an operator or admin account")
    return account.name, claim


def done(as_json: bool, data: dict[str, Any], text: str) -> None:
    if as_json:
        console.print_json(json.dumps(data, default=str))
    else:
        console.print(text)
