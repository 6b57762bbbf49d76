"""Alerts: tell people when a campaign needs them, through a Slack-compatible JSON webhook.

The :class:`WebhookAlerter` subscribes to the event bus. When a campaign pauses for a fault,
a proposal is escalated outside the signed policy, a round waits for approval or the wait
times out, it POSTs ``{"text": ..., "campaign": ..., "event": ..., "payload": ...}`` (Slack
reads ``text``) and records ``alert_sent`` / ``alert_failed`` in the ledger's event log, where
the console shows it. A webhook that fails never stops the run.

Each alert also carries the campaign chain's head (``anchor``: ledger id, event count, last
hash), so the chat channel holds an anchor of the log outside the ledger
(``cellpilot verify`` checks it when the lines are saved to a file and passed with ``--anchor``).
The webhook URL (often a secret itself) is recorded as its scheme and host only.
"""

from __future__ import annotations

import json
import logging
import threading
import urllib.error
import urllib.request
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine
from sqlmodel import Session

from controller.ledger.chain import head, ledger_id
from controller.loop.events import EventBus, EventKind, append_event

log = logging.getLogger(__name__)

ALERTING = {
    EventKind.CAMPAIGN_PAUSED: "paused: {reason}",
    EventKind.PROPOSAL_ESCALATED: "proposal {proposal_id} needs a person: {reason}",
    EventKind.ROUND_AWAITING_APPROVAL: "round {round} is waiting for approval ({n} proposals)",
    EventKind.APPROVAL_TIMEOUT: "nobody answered in time: {action}",
    EventKind.PLATE_QC_FAILED: "plate of round {round} failed QC",
    EventKind.PLATE_HELD: "plate {plate} is held for a QC decision: {failures}",
}


class _Default(dict):
    def __missing__(self, key: str) -> str:
        return "?"


def post_json(url: str, body: dict[str, Any], timeout_s: float) -> int:
    req = urllib.request.Request(
        url,
        data=json.dumps(body, default=str).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(req, timeout=timeout_s) as resp:  # noqa: S310 - configured URL
        return resp.status


class WebhookAlerter:
    """Posts alerting events of one campaign to ``url`` and records the outcome."""

    def __init__(
        self, db: Engine, campaign_id: int, campaign: str, url: str, timeout_s: float = 5.0
    ) -> None:
        self.db = db
        self.campaign_id = campaign_id
        self.campaign = campaign
        self.url = url
        self.timeout_s = timeout_s
        self._lock = threading.Lock()

    def attach(self, bus: EventBus):
        return bus.subscribe(self.on_event)

    def on_event(self, kind: EventKind, payload: dict[str, Any]) -> None:
        template = ALERTING.get(kind)
        if template is None or payload.get("operator"):  # an operator's own pause needs no alert
            return
        text = f"[cellpilot] {self.campaign}: " + template.format_map(_Default(payload))
        body = {
            "text": text,
            "campaign": self.campaign,
            "event": kind.value,
            "payload": payload,
            "anchor": self._anchor(),
        }
        with self._lock:
            try:
                status = post_json(self.url, body, self.timeout_s)
                result: dict[str, Any] = {"status": status}
                outcome = EventKind.ALERT_SENT
            except (urllib.error.URLError, OSError, ValueError) as e:
                log.warning("alert webhook failed: %s", e)
                outcome, result = EventKind.ALERT_FAILED, {"error": str(e)}
            with Session(self.db) as s:
                append_event(
                    s,
                    self.campaign_id,
                    outcome,
                    {"text": text, "for": kind.value, "url": _shown(self.url), **result},
                )
                s.commit()

    def _anchor(self) -> dict[str, Any]:
        """The campaign chain's head now, as an anchor line."""
        with self.db.connect() as conn:
            count, last = head(conn, self.campaign_id)
            return {
                "ledger": ledger_id(conn),
                "campaign_id": self.campaign_id,
                "campaign": self.campaign,
                "count": count,
                "head": last,
            }


def _shown(url: str) -> str:
    """A webhook URL as recorded: scheme and host (the path of a Slack hook is its secret)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.hostname or ''}/…" if parts.scheme else "(webhook)"
