"""A worker: a runner process that takes campaigns from a shared ledger, one at a time.

Start one worker per workcell (``cellpilot worker --ledger postgresql+psycopg://...``). Each
claims the oldest queued campaign (``cellpilot submit FILE``), or a running campaign whose
runner died and whose lease has expired, and runs it exactly as ``cellpilot run`` would, from
the campaign file stored in the ledger. Because the journal and the leases are in the ledger,
a campaign whose worker was killed mid-plate is resumed by another worker once the lease
expires: uncertain steps are resolved, never repeated. A worker runs one campaign at a time;
plates of different campaigns are not interleaved on one workcell's instruments.
"""

from __future__ import annotations

import logging
import threading
from dataclasses import dataclass
from pathlib import Path

from sqlmodel import Session, col, select

from controller.ledger.db import open_ledger_engine
from controller.ledger.models import Campaign, CampaignStatus
from controller.loop.exceptions import CampaignError
from controller.loop.leases import DEFAULT_LEASE_S, claim_next, new_runner_id
from controller.spec import CampaignSpec

log = logging.getLogger(__name__)


@dataclass
class WorkerReport:
    """What a worker did: campaign name -> the status it left the campaign in."""

    runner_id: str
    campaigns: dict[str, str]


def work_left(db) -> bool:
    """True while some campaign is queued or running (possibly under another worker)."""
    with Session(db) as s:
        return (
            s.exec(
                select(Campaign.id).where(
                    col(Campaign.status).in_(
                        [CampaignStatus.QUEUED.value, CampaignStatus.RUNNING.value]
                    )
                )
            ).first()
            is not None
        )


def run_worker(
    ledger_url: str,
    *,
    lease_s: float = DEFAULT_LEASE_S,
    poll_s: float = 2.0,
    exit_when_idle: bool = False,
    stop: threading.Event | None = None,
    runner_id: str | None = None,
) -> WorkerReport:
    """Claim and run campaigns until ``stop`` is set (or, with ``exit_when_idle``, none is left)."""
    from controller.loop.runner import CampaignRunner

    stop = stop or threading.Event()
    runner_id = runner_id or new_runner_id()
    db = open_ledger_engine(ledger_url)
    report = WorkerReport(runner_id, {})
    while not stop.is_set():
        cid = claim_next(db, runner_id, lease_s)
        if cid is None:
            if exit_when_idle and not work_left(db):
                break  # (a campaign another worker runs may still be orphaned: wait for it)
            stop.wait(poll_s)
            continue
        with Session(db) as s:
            camp = s.get(Campaign, cid)
            spec = CampaignSpec.model_validate(camp.spec)
            dry_run = camp.dry_run
        data_dir = Path(spec.ledger.data_dir or Path("runs") / spec.name)
        log.info("worker %s runs campaign %s", runner_id, spec.name)
        try:
            result = CampaignRunner(
                spec,
                dry_run=dry_run,
                ledger_url=ledger_url,
                data_dir=data_dir,
                stop=stop,
                runner_id=runner_id,
                lease_s=lease_s,
            ).run()
            report.campaigns[spec.name] = result.status
        except CampaignError as err:  # e.g. a changed file: the campaign waits for a person
            log.error("campaign %s cannot run: %s", spec.name, err)
            report.campaigns[spec.name] = f"error: {err}"
    return report
