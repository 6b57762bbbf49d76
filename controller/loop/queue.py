"""Queueing a campaign in the ledger for a worker (``cellpilot submit``)."""

from __future__ import annotations

from sqlmodel import Session, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Campaign, CampaignStatus
from controller.loop.events import EventKind, append_event
from controller.spec import CampaignSpec


class QueueError(Exception):
    """The campaign cannot be queued (a campaign of that name exists)."""


def queue_campaign(ledger_url: str, spec: CampaignSpec, *, dry_run: bool) -> int:
    """Write the campaign with status ``queued``; returns its id."""
    db = open_ledger_engine(ledger_url)
    with Session(db) as s:
        if s.exec(select(Campaign.id).where(Campaign.name == spec.name)).first() is not None:
            raise QueueError(
                f"a campaign named {spec.name!r} is already in the ledger; resume it with "
                "`cellpilot run` or give the new campaign another name"
            )
        camp = Campaign(
            name=spec.name,
            spec=spec.model_dump(mode="json"),
            spec_hash=spec.spec_hash(),
            dry_run=dry_run,
            status=CampaignStatus.QUEUED.value,
        )
        s.add(camp)
        s.flush()
        append_event(
            s,
            camp.id,
            EventKind.CAMPAIGN_CREATED,
            {"name": spec.name, "dry_run": dry_run, "spec_hash": camp.spec_hash, "queued": True},
        )
        s.commit()
        assert camp.id is not None  # flushed above
        return camp.id
