"""``cellpilot serve`` (the operator console) and ``cellpilot users`` (console accounts).

    cellpilot serve [--host 127.0.0.1] [--port 8000] [--ledger URL] [--instance NAME]
    cellpilot users add NAME --role operator [--password-stdin]
    cellpilot users list [--json]
    cellpilot users passwd NAME [--password-stdin]
    cellpilot users role NAME ROLE
    cellpilot users remove NAME
    cellpilot users token NAME [--label TEXT]      (prints a command-line token once)
    cellpilot users revoke-tokens NAME

Every account change is an event of the ledger-wide chain with the OS user as actor.

Mounted on the main app by :mod:`controller.cli.app` (``register``).
"""

from __future__ import annotations

import json
import sys
from typing import Annotated

import typer
from rich.table import Table

from controller.cli.common import LedgerOpt, console, err_console, fail, os_user
from controller.cli.common import ledger_engine as _db

StdinOpt = Annotated[
    bool, typer.Option("--password-stdin", help="read the password from standard input")
]

users_app = typer.Typer(no_args_is_help=True, help="console accounts (viewer, operator, admin)")


def _password(from_stdin: bool) -> str:
    if from_stdin:
        return sys.stdin.readline().rstrip("\r\n")
    return typer.prompt("password", hide_input=True, confirmation_prompt=True)


def serve(
    host: Annotated[
        str, typer.Option(help="address to listen on (a reverse proxy adds TLS)")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port")] = 8000,
    ledger: LedgerOpt = None,
    secure_cookies: Annotated[
        bool, typer.Option("--secure-cookies", help="mark cookies Secure (behind an HTTPS proxy)")
    ] = False,
    instance: Annotated[
        str | None,
        typer.Option(
            help="name in this console's cookies (default: the port), so consoles on one host keep apart"
        ),
    ] = None,
) -> None:
    """Serve the operator console (FastAPI): campaigns, proposals, progress, images, events."""
    import uvicorn

    from controller.console.app import create_app
    from controller.ledger.db import resolve_ledger_url
    from controller.ledger.secrets import mask_url

    url = resolve_ledger_url(None, ledger)
    try:
        app = create_app(url, secure_cookies=secure_cookies, instance=instance or str(port))
    except Exception as e:  # a bad URL or an unreachable database: one paragraph, no traceback
        fail(f"cannot open the ledger {mask_url(url)}: {e}")
    if not _loopback(host):
        err_console.print(
            f"[bold red]warning:[/] serving plain HTTP on {host}: passwords and session cookies cross the "
            "network unencrypted. Serve on 127.0.0.1 behind a reverse proxy that adds HTTPS "
            "(and pass --secure-cookies), or on a network you trust.",
            highlight=False,
            soft_wrap=True,
        )
    console.print(
        f"cellpilot console on [bold]http://{host}:{port}/[/] (ledger {mask_url(url)})",
        highlight=False,
        soft_wrap=True,
    )
    config = uvicorn.Config(
        app,
        host=host,
        port=port,
        log_level="warning",
        timeout_graceful_shutdown=2,
        proxy_headers=True,
    )
    uvicorn.Server(config).run()


def _loopback(host: str) -> bool:
    import ipaddress

    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@users_app.command("add")
def users_add(
    name: Annotated[str, typer.Argument(help="user name (recorded as the actor of every action)")],
    role: Annotated[str, typer.Option(help="viewer | operator | admin")] = "viewer",
    password_stdin: StdinOpt = False,
    ledger: LedgerOpt = None,
) -> None:
    """Create a console account."""
    from controller.console.auth import AccountError, add_user, parse_role

    try:
        parse_role(role)
        add_user(_db(ledger), name, _password(password_stdin), role, actor=os_user())
    except AccountError as e:
        fail(str(e))
    console.print(f"user [bold]{name}[/] added as {role}")


@users_app.command("list")
def users_list(
    ledger: LedgerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """List console accounts and their roles."""
    from controller.console.auth import list_users

    rows = list_users(_db(ledger))
    if as_json:
        sys.stdout.write(json.dumps(rows, default=str) + "\n")
        return
    table = Table("name", "role", "created", "last login")
    for u in rows:
        table.add_row(
            u["name"],
            u["role"] + (" (disabled)" if u["disabled"] else ""),
            u["created_at"].strftime("%Y-%m-%d %H:%M"),
            u["last_login_at"].strftime("%Y-%m-%d %H:%M") if u["last_login_at"] else "never",
        )
    console.print(table)


@users_app.command("passwd")
def users_passwd(name: str, password_stdin: StdinOpt = False, ledger: LedgerOpt = None) -> None:
    """Set a new password (ends the user's sessions)."""
    from controller.console.auth import AccountError, set_password

    try:
        set_password(_db(ledger), name, _password(password_stdin), actor=os_user())
    except AccountError as e:
        fail(str(e))
    console.print(f"password of {name} changed")


@users_app.command("role")
def users_role(name: str, role: str, ledger: LedgerOpt = None) -> None:
    """Change a user's role."""
    from controller.console.auth import AccountError, set_role

    try:
        set_role(_db(ledger), name, role, actor=os_user())
    except AccountError as e:
        fail(str(e))
    console.print(f"{name} is now {role}")


@users_app.command("remove")
def users_remove(name: str, ledger: LedgerOpt = None) -> None:
    """Delete an account (its name stays in the audit trail)."""
    from controller.console.auth import AccountError, remove_user

    try:
        remove_user(_db(ledger), name, actor=os_user())
    except AccountError as e:
        fail(str(e))
    console.print(f"user {name} removed")


@users_app.command("token")
def users_token(
    name: str,
    label: Annotated[
        str | None, typer.Option(help="what the token is for (shown in the audit trail)")
    ] = None,
    ledger: LedgerOpt = None,
) -> None:
    """Create a command-line token for NAME (set it as CELLPILOT_TOKEN); shown once, stored hashed."""
    from controller.console.auth import AccountError, create_token

    try:
        token = create_token(_db(ledger), name, label=label, actor=os_user())
    except AccountError as e:
        fail(str(e))
    sys.stdout.write(token + "\n")


@users_app.command("revoke-tokens")
def users_revoke_tokens(name: str, ledger: LedgerOpt = None) -> None:
    """Revoke every command-line token of NAME."""
    from controller.console.auth import AccountError, revoke_tokens

    try:
        n = revoke_tokens(_db(ledger), name, actor=os_user())
    except AccountError as e:
        fail(str(e))
    console.print(f"{n} token(s) of {name} revoked")


def register(app: typer.Typer) -> None:
    """Add ``serve`` and ``users`` to the ``cellpilot`` command line."""
    app.command("serve")(serve)
    app.add_typer(users_app, name="users")
