"""The approval gate and campaign control from a terminal: ``proposals``, ``approve``,
``reject``, ``edit``, ``pause``, ``resume``, ``abort``.

Who acts: see :func:`controller.cli.common.operator_identity` (an account on a shared ledger,
the OS user on a local SQLite file; ``--as`` is recorded as a claim). A decision someone else
made first is refused with who and when, exit code 5.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

import typer

from controller.cli.common import (
    EXIT_ALREADY_DECIDED,
    ActorOpt,
    CampaignOpt,
    JsonOpt,
    LedgerOpt,
    PasswordStdinOpt,
    UserOpt,
    console,
    done,
    fail,
    ledger_url,
    operator_identity,
)


def proposals(
    campaign: CampaignOpt = None, ledger: LedgerOpt = None, as_json: JsonOpt = False
) -> None:
    """List proposals waiting for a decision, with the model's prediction for each."""
    from controller.cli.common import ledger_engine
    from controller.loop.operator import OperatorError, pending_proposals

    try:
        rows = pending_proposals(ledger_engine(ledger), campaign)
    except OperatorError as e:
        fail(str(e))
    if as_json:
        console.print_json(json.dumps(rows, default=str))
        return
    from controller.cli.progress import print_proposals

    print_proposals(console, rows)


def _act(
    ledger: str | None, user: str | None, claim: str | None, password_stdin: bool, action
) -> Any:
    """Open the ledger, establish who acts, run ``action(db, actor, claimed_as)``; errors exit
    2 (5 when someone else decided first)."""
    from controller.ledger.db import open_ledger_engine
    from controller.loop.operator import AlreadyDecided, OperatorError

    url = ledger_url(ledger)
    db = open_ledger_engine(url)
    actor, claimed = operator_identity(
        db, url, user=user, claim=claim, password_stdin=password_stdin
    )
    try:
        return action(db, actor, claimed)
    except AlreadyDecided as e:
        fail(str(e), EXIT_ALREADY_DECIDED)
    except OperatorError as e:
        fail(str(e))


def approve(
    ids: Annotated[list[int] | None, typer.Argument(help="proposal ids")] = None,
    all_: Annotated[
        bool, typer.Option("--all", help="every pending proposal inside the policy")
    ] = False,
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Approve proposals (by id, or --all: every pending one not escalated outside the policy)."""
    from controller.loop.operator import approve as do_approve

    if not ids and not all_:
        fail("name proposal ids or use --all")
    approved = _act(
        ledger,
        user,
        actor,
        password_stdin,
        lambda db, who, claim: do_approve(
            db, None if all_ else list(ids or []), who, campaign, claimed_as=claim
        ),
    )
    text = f"approved {len(approved)} proposal(s): {approved}"
    if all_:
        from controller.cli.common import ledger_engine
        from controller.loop.operator import pending_proposals

        left = [
            p["id"] for p in pending_proposals(ledger_engine(ledger), campaign) if p["escalation"]
        ]
        if left:
            text += f"\n{len(left)} escalated outside the policy, not approved: {left} (name their ids to approve)"
    done(as_json, {"approved": approved}, text)


def reject(
    proposal_id: Annotated[int, typer.Argument(help="proposal id")],
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit trail)")],
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Reject a proposal with a reason; the planner will not propose it again."""
    from controller.loop.operator import reject as do_reject

    _act(
        ledger,
        user,
        actor,
        password_stdin,
        lambda db, who, claim: do_reject(db, proposal_id, reason, who, claimed_as=claim),
    )
    done(as_json, {"rejected": proposal_id, "reason": reason}, f"rejected proposal {proposal_id}")


def edit(
    proposal_id: Annotated[int, typer.Argument(help="proposal id")],
    assignments: Annotated[list[str], typer.Argument(help="param=value ...")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Change a proposal's parameters (within the search space) and approve the edited version."""
    from controller.loop.operator import OperatorError, parse_assignments
    from controller.loop.operator import edit as do_edit

    try:
        changes = parse_assignments(assignments)
    except OperatorError as e:
        fail(str(e))
    params = _act(
        ledger,
        user,
        actor,
        password_stdin,
        lambda db, who, claim: do_edit(db, proposal_id, changes, who, reason, claimed_as=claim),
    )
    done(
        as_json,
        {"edited": proposal_id, "params": params},
        f"proposal {proposal_id} edited and approved: {params}",
    )


def _control(
    action: str,
    campaign: str | None,
    ledger: str | None,
    actor: str | None,
    user: str | None,
    password_stdin: bool,
    as_json: bool,
) -> None:
    from controller.loop.operator import request

    name = _act(
        ledger,
        user,
        actor,
        password_stdin,
        lambda db, who, claim: request(db, action, who, campaign, claimed_as=claim),
    )
    done(
        as_json, {"campaign": name, "requested": action}, f"{action} requested for campaign {name}"
    )


def pause(
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Hold a running campaign at the next step boundary."""
    _control("pause", campaign, ledger, actor, user, password_stdin, as_json)


def resume(
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Let a held campaign continue (a stopped runner continues with `cellpilot run`)."""
    _control("resume", campaign, ledger, actor, user, password_stdin, as_json)


def abort(
    campaign: CampaignOpt = None,
    ledger: LedgerOpt = None,
    actor: ActorOpt = None,
    user: UserOpt = None,
    password_stdin: PasswordStdinOpt = False,
    as_json: JsonOpt = False,
) -> None:
    """Stop a campaign for good at the next step boundary."""
    _control("abort", campaign, ledger, actor, user, password_stdin, as_json)


def register(app: typer.Typer) -> None:
    for command in (proposals, approve, reject, edit, pause, resume, abort):
        app.command()(command)
