"""Plates held by the QC gate: ``plates`` lists them, ``plate accept|exclude|rerun`` decides."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.table import Table

from controller.cli.common import (
    ActorOpt,
    CampaignOpt,
    JsonOpt,
    LedgerOpt,
    PasswordStdinOpt,
    UserOpt,
    console,
    done,
    fail,
    ledger_engine,
    ledger_url,
    operator_identity,
)

plate_app = typer.Typer(no_args_is_help=True, help="decide a plate held by the QC gate")


def plates(
    campaign: CampaignOpt = None, ledger: LedgerOpt = None, as_json: JsonOpt = False
) -> None:
    """List plates held for a QC decision, with the checks they failed."""
    from controller.loop.qc_gate import held_plates

    rows = held_plates(ledger_engine(ledger), campaign)
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    if not rows:
        console.print("no plate is held for a QC decision")
        return
    t = Table(title="plates held for a QC decision")
    for name in ("campaign", "plate", "round", "experiments", "failed checks"):
        t.add_column(name)
    for r in rows:
        t.add_row(
            r["campaign"],
            r["plate"],
            str(r["round"]),
            str(r["experiments"]),
            "; ".join(r["failures"]),
        )
    console.print(t)


def _decide(
    decision: str,
    plate: str,
    reason: str | None,
    ledger: str | None,
    claim: str | None,
    user: str | None,
    password_stdin: bool,
    as_json: bool,
) -> None:
    from controller.ledger.db import open_ledger_engine
    from controller.loop.qc_gate import PlateDecisionError, decide_plate

    url = ledger_url(ledger)
    db = open_ledger_engine(url)
    actor, claimed = operator_identity(
        db, url, user=user, claim=claim, password_stdin=password_stdin
    )
    try:
        result = decide_plate(db, plate, decision, actor, reason, claimed_as=claimed)  # type: ignore[arg-type]
    except PlateDecisionError as e:
        fail(str(e))
    verb = {
        "accept": "accepted: its results feed the planner",
        "exclude": "excluded: kept for the record only",
        "rerun": "re-queued: its experiments run again on a later plate",
    }[decision]
    done(as_json, result, f"plate {plate} {verb} ({result['experiments']} experiments)")


PlateArg = Annotated[str, typer.Argument(help="plate id, e.g. drug_combo-P003")]
ReasonOpt = Annotated[str | None, typer.Option("--reason", help="why (kept in the audit trail)")]


@plate_app.command("accept")
def accept(
    plate: PlateArg,
    reason: ReasonOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Accept a held plate: its results feed the planner."""
    _decide("accept", plate, reason, ledger, actor, user, password_stdin, as_json)


@plate_app.command("exclude")
def exclude(
    plate: PlateArg,
    reason: ReasonOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Exclude a held plate: its results are kept for the record only."""
    _decide("exclude", plate, reason, ledger, actor, user, password_stdin, as_json)


@plate_app.command("rerun")
def rerun(
    plate: PlateArg,
    reason: ReasonOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Re-run a held plate: its experiments are re-queued on a later plate."""
    _decide("rerun", plate, reason, ledger, actor, user, password_stdin, as_json)


def register(app: typer.Typer) -> None:
    app.command()(plates)
    app.add_typer(plate_app, name="plate")
