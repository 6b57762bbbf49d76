"""``cellpilot ledger``: deliberate, recorded maintenance of the event log.

    cellpilot ledger mask-secrets [--ledger URL] [--json]

Migration 0004 masks credentials in the events of every ledger it upgrades. ``mask-secrets``
does the same on demand (for example after a credential was written into a payload some other
way): every event holding a ``scheme://user:password@`` URL gets the password masked, the
chain after it is re-hashed and re-sealed, and a sealed ``secrets_masked`` event records how
many events were rewritten and the old head; the anchor files get a ``rechain`` line. A chain
that does not verify is not rewritten (that would launder tampering): the command stops.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from controller.cli.common import LedgerOpt, console, fail, ledger_url, os_user

ledger_app = typer.Typer(
    no_args_is_help=True, help="maintenance of the event log (recorded in the log)"
)


@ledger_app.command("mask-secrets")
def mask_secrets(
    ledger: LedgerOpt = None,
    as_json: Annotated[bool, typer.Option("--json", help="machine-readable output")] = False,
) -> None:
    """Mask credentials in every event and re-chain what follows (recorded as an event)."""
    from controller.ledger import anchor
    from controller.ledger.db import open_ledger_engine
    from controller.ledger.maintenance import mask_ledger
    from controller.ledger.sealing import LedgerKeyError, ledger_key

    db = open_ledger_engine(ledger_url(ledger))
    try:
        with db.begin() as conn:
            rewrites = mask_ledger(conn, ledger_key(), actor=os_user())
    except (ValueError, LedgerKeyError) as e:
        fail(str(e))
    for rw in rewrites:  # after the commit: an anchor must never name an uncommitted head
        for path, lines in rw.anchors.items():
            anchor.write_lines(path, lines)
    if as_json:
        console.print_json(
            json.dumps(
                [
                    {
                        "campaign_id": rw.campaign_id,
                        "masked_events": rw.masked,
                        "events_rewritten": rw.rewritten,
                        "old_head": rw.old_head,
                        "new_head": rw.new_head,
                    }
                    for rw in rewrites
                ]
            )
        )
        return
    if not rewrites:
        console.print("no event holds a credential; nothing rewritten")
    for rw in rewrites:
        chain = f"campaign {rw.campaign_id}" if rw.campaign_id else "the ledger-wide log"
        console.print(
            f"{chain}: {len(rw.masked)} event(s) masked, {rw.rewritten} re-chained "
            f"(old head {rw.old_head[:12]}…)"
        )


def register(app: typer.Typer) -> None:
    app.add_typer(ledger_app, name="ledger")
