"""Amending a running campaign's file: which changes are allowed, and the record of them."""

from __future__ import annotations

import json
from typing import Any

from sqlmodel import Session, select

from controller.ledger.models import AnalysisVersion, Campaign
from controller.ledger.secrets import mask_secrets
from controller.loop.events import EventKind, append_event
from controller.loop.exceptions import CampaignError
from controller.spec import CampaignSpec


def amend_campaign(s: Session, camp: Campaign, spec: CampaignSpec, *, allowed: bool) -> None:
    """The file changed since the campaign started: refuse, or (``--amend``: ``allowed``)
    record the change in the event log and adopt the new file's hash."""
    changes = spec_changes(camp.spec, mask_secrets(spec.model_dump(mode="json")))
    fixed = sorted({c.split(".")[0] for c in changes} & FIXED_SECTIONS)
    where = ", ".join(changes[:8]) + (" ..." if len(changes) > 8 else "")
    if not allowed:
        raise CampaignError(
            f"campaign {spec.name!r} in the ledger was started from a different file "
            f"(changed: {where}); run again with --amend to continue with the change recorded "
            "in the event log, or give the new campaign another name"
        )
    if fixed:
        raise CampaignError(
            f"campaign {spec.name!r}: {fixed} cannot change once a campaign has "
            "started (its history would not mean the same); start a new campaign"
        )
    versioned = s.exec(
        select(AnalysisVersion.id).where(AnalysisVersion.campaign_id == camp.id)
    ).first()
    if versioned is not None and any(c.split(".")[0] == "analyzer" for c in changes):
        # the planner learns from an analysis version, not from the file's analyzer any more
        raise CampaignError(
            f"campaign {spec.name!r} has analysis versions: change its analysis with "
            f"cellpilot reanalyze --campaign {spec.name} --settings FILE --adopt, not in the file"
        )
    append_event(
        s,
        camp.id,
        EventKind.CAMPAIGN_AMENDED,
        {
            "changed": changes[:50],
            "old_spec_hash": camp.spec_hash,
            "new_spec_hash": spec.spec_hash(),
            "old": {c: _at(camp.spec, c) for c in changes[:50]},
        },
        clock_s=camp.clock_s,
    )
    camp.spec_hash = spec.spec_hash()


#: Sections a running campaign cannot amend: what its history's parameters mean, its seed,
#: and (dry-runs) the virtual lab the plates already in it were made in.
FIXED_SECTIONS = {"name", "space", "seed", "simulation"}


def spec_changes(old: Any, new: Any, prefix: str = "") -> list[str]:
    """Dotted paths where two campaign files (as JSON data) differ."""
    if isinstance(old, dict) and isinstance(new, dict):
        out: list[str] = []
        for key in sorted(set(old) | set(new), key=str):
            out += spec_changes(
                old.get(key), new.get(key), f"{prefix}.{key}" if prefix else str(key)
            )
        return out
    return [] if old == new else [prefix or "(whole file)"]


def _at(data: Any, path: str) -> Any:
    for part in path.split("."):
        data = data.get(part) if isinstance(data, dict) else None
    text = json.dumps(data, default=str)
    return data if len(text) <= 200 else text[:200] + "…"
