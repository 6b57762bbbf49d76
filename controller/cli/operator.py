"""The approval gate and campaign control from a terminal: ``proposals``, ``approve``,
``reject``, ``edit``, ``pause``, ``resume``, ``abort``."""

from __future__ import annotations

import json
from typing import Annotated

import typer

from controller.cli.common import (
    ActorOpt,
    CampaignOpt,
    JsonOpt,
    LedgerOpt,
    actor_name,
    console,
    done,
    fail,
    ledger_engine,
)


def proposals(campaign: CampaignOpt = None, ledger: LedgerOpt = None, as_json: JsonOpt = False) -> None:
    """List proposals waiting for a decision, with the model's prediction for each."""
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


def approve(
    ids: Annotated[list[int] | None, typer.Argument(help="proposal ids")] = None,
    all_: Annotated[bool, typer.Option("--all", help="every pending proposal of the campaign")] = False,
    campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
) -> None:
    """Approve proposals (by id, or --all)."""
    from controller.loop.operator import OperatorError
    from controller.loop.operator import approve as do_approve

    if not ids and not all_:
        fail("name proposal ids or use --all")
    try:
        approved = do_approve(ledger_engine(ledger), None if all_ else list(ids), actor_name(actor), campaign)
    except OperatorError as e:
        fail(str(e))
    done(as_json, {"approved": approved}, f"approved {len(approved)} proposal(s): {approved}")


def reject(
    proposal_id: Annotated[int, typer.Argument(help="proposal id")],
    reason: Annotated[str, typer.Option("--reason", help="why (kept in the audit trail)")],
    ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
) -> None:
    """Reject a proposal with a reason; the planner will not propose it again."""
    from controller.loop.operator import OperatorError
    from controller.loop.operator import reject as do_reject

    try:
        do_reject(ledger_engine(ledger), proposal_id, reason, actor_name(actor))
    except OperatorError as e:
        fail(str(e))
    done(as_json, {"rejected": proposal_id, "reason": reason}, f"rejected proposal {proposal_id}")


def edit(
    proposal_id: Annotated[int, typer.Argument(help="proposal id")],
    assignments: Annotated[list[str], typer.Argument(help="param=value ...")],
    reason: Annotated[str | None, typer.Option("--reason")] = None,
    ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False,
) -> None:
    """Change a proposal's parameters (within the search space) and approve the edited version."""
    from controller.loop.operator import OperatorError, parse_assignments
    from controller.loop.operator import edit as do_edit

    try:
        params = do_edit(ledger_engine(ledger), proposal_id, parse_assignments(assignments), actor_name(actor), reason)
    except OperatorError as e:
        fail(str(e))
    done(as_json, {"edited": proposal_id, "params": params}, f"proposal {proposal_id} edited and approved: {params}")


def _control(action: str, campaign: str | None, ledger: str | None, actor: str | None, as_json: bool) -> None:
    from controller.loop.operator import OperatorError, request

    try:
        name = request(ledger_engine(ledger), action, actor_name(actor), campaign)
    except OperatorError as e:
        fail(str(e))
    done(as_json, {"campaign": name, "requested": action}, f"{action} requested for campaign {name}")


def pause(campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Hold a running campaign at the next step boundary."""
    _control("pause", campaign, ledger, actor, as_json)


def resume(campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Let a held campaign continue (a stopped runner continues with `cellpilot run`)."""
    _control("resume", campaign, ledger, actor, as_json)


def abort(campaign: CampaignOpt = None, ledger: LedgerOpt = None, actor: ActorOpt = None, as_json: JsonOpt = False) -> None:
    """Stop a campaign for good at the next step boundary."""
    _control("abort", campaign, ledger, actor, as_json)


def register(app: typer.Typer) -> None:
    for command in (proposals, approve, reject, edit, pause, resume, abort):
        app.command()(command)
