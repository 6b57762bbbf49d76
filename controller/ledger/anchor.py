"""Anchors: the head of each event chain (how many events, the last hash), written outside the
ledger after every commit that appended events, so deleting or rewriting the newest events is
detected even by someone who also rewrote the MACs' inputs.

One JSON line per commit and chain::

    {"ledger": "3f2c…", "campaign_id": 1, "campaign": "small", "count": 212, "head": "ab…", "at": "2026-…"}

Where the lines go:

- a campaign's chain: ``<data_dir>/ledger-anchor.jsonl`` (beside its raw data; the runner
  records the absolute path in the sealed ``campaign_started`` / ``campaign_resumed`` events,
  and other processes on the same machine, the console and the CLI, append to it too);
- the ledger-wide chain (accounts, logins, campaign registrations) and, as a second copy,
  every chain: ``ledger-anchor-<ledger id>.jsonl`` beside the ledger key.

``cellpilot ledger mask-secrets`` rewrites chains on purpose; it appends a ``rechain`` line
(old and new head) so that ``verify`` checks older lines against the old head only.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from controller.ledger.sealing import key_path

log = logging.getLogger(__name__)

CAMPAIGN_ANCHOR = "ledger-anchor.jsonl"


@dataclass(frozen=True)
class Anchor:
    """One line: the chain of ``campaign_id`` (None: the ledger-wide chain) had ``count``
    events ending in ``head`` at ``at``."""

    ledger: str
    campaign_id: int | None
    count: int
    head: str
    at: str
    campaign: str | None = None
    rechain: dict[str, Any] | None = None
    source: str = ""


def ledger_anchor_path(ledger_id: str) -> Path:
    """The machine's anchor file for one ledger (beside the ledger key)."""
    return key_path().parent / f"ledger-anchor-{ledger_id}.jsonl"


def campaign_anchor_path(data_dir: str | Path) -> Path:
    return Path(data_dir).resolve() / CAMPAIGN_ANCHOR


def anchor_line(
    ledger: str, campaign_id: int | None, campaign: str | None, count: int, head: str, **extra: Any
) -> dict[str, Any]:
    return {
        "ledger": ledger,
        "campaign_id": campaign_id,
        "campaign": campaign,
        "count": count,
        "head": head,
        "at": datetime.now(UTC).isoformat(),
        **extra,
    }


def write_lines(path: Path, lines: list[dict[str, Any]]) -> bool:
    """Append ``lines`` to ``path`` in one write (O_APPEND: lines of concurrent writers never
    interleave). False, with a warning, when the file cannot be written."""
    data = "".join(json.dumps(line, sort_keys=True) + "\n" for line in lines).encode()
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, data)
        finally:
            os.close(fd)
        return True
    except OSError as e:
        log.warning("cannot write the ledger anchor %s: %s", path, e)
        return False


def read_anchors(path: Path, ledger: str | None) -> list[Anchor]:
    """The lines of ``path`` about ``ledger`` (all ledgers when None); a torn last line is skipped."""
    out = []
    with path.open() as f:
        for n, raw in enumerate(f, 1):
            try:
                d = json.loads(raw)
            except json.JSONDecodeError:
                continue
            if not isinstance(d, dict) or (ledger is not None and d.get("ledger") != ledger):
                continue
            try:
                out.append(
                    Anchor(
                        ledger=d["ledger"],
                        campaign_id=d.get("campaign_id"),
                        count=int(d["count"]),
                        head=str(d["head"]),
                        at=str(d.get("at", "")),
                        campaign=d.get("campaign"),
                        rechain=d.get("rechain"),
                        source=f"{path}:{n}",
                    )
                )
            except (KeyError, TypeError, ValueError):
                continue
    return out
