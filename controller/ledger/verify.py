"""``cellpilot verify``: what the ledger can prove about itself, chain by chain.

For each chain (each campaign's, and the ledger-wide one of accounts and logins):

1. **hashes**: every event's hash is recomputed from its content and its predecessor's hash,
   and positions run 1, 2, 3, ... without a gap (an edited, inserted or deleted event);
2. **seals**: every event's MAC is checked with the ledger key; an event sealed with a key this
   machine does not hold is counted as unchecked, never as valid; an unsealed event after a
   sealed one, or a chain with no seal at all, is a rewrite by someone without the key;
3. **anchors**: each line of the anchor files (written outside the database after every commit)
   must still match: the event at that position has that hash (a rewritten chain), and the
   chain is at least that long (deleted newest events, a truncated or emptied log);
4. **bindings**: proposals, approvals and time-course decision points (what the policy saw,
   forecast and applied) must match the digests their latest events carry; each
   finished round's rows (round, experiments with their outcomes, wells, step journal, raw
   data, measurements, decision points; time points included) must match the digests of its ``round_analyzed`` event (or of a later
   event that changed it: a plate decision, a re-analysis), and each image file must still have
   its recorded SHA-256; analysis versions must match the digests of the events that wrote them,
   and the version the campaign plans from must be the one its latest ``analysis_adopted``
   event named; a campaign the ledger-wide chain registered must still exist.

What this does not prove, and cannot: that a person holding both the ledger key and write
access to every anchor file did not rewrite everything consistently; that the newest events
since the last anchor line were not deleted when no anchor file is at hand; that rows of a
round still in flight (not yet analysed) were not edited before the round bound them.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection, Engine

from controller.ledger import anchor
from controller.ledger.binding import (
    BINDING_VERSION,
    TABLES,
    analysis_rows,
    campaign_rows,
    check_round,
    decision_rows,
    row_matches,
)
from controller.ledger.chain import (
    CAMPAIGN,
    GENESIS,
    REGISTERED,
    SEALED,
    campaign_anchor,
    event_digest,
    ledger_id,
)
from controller.ledger.maintenance import MASKED, chain_keys, read_chain
from controller.ledger.sealing import LedgerKey


@dataclass
class ChainReport:
    """The verdict on one chain: ``problems`` are tampering, ``notes`` what was not checked."""

    name: str
    campaign_id: int | None
    events: int = 0
    sealed: int = 0
    unchecked: int = 0
    problems: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checked: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    @property
    def complete(self) -> bool:
        return self.ok and self.unchecked == 0


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def check_events(rep: ChainReport, events: list[Any], keys: dict[str, LedgerKey]) -> None:
    """Hashes, positions and seals of one chain's events."""
    prev, legacy, seen_sealed, missing_keys = GENESIS, 0, False, set()
    rep.events = len(events)
    for i, ev in enumerate(events, 1):
        what = f"event {ev.id} ({ev.kind})"
        if ev.seq != i:
            rep.problems.append(
                f"{what} is at position {ev.seq}, expected {i}: the event before it is missing "
                "(deleted)"
                if ev.seq is not None and ev.seq > i
                else f"{what} has no valid position"
            )
            return
        if ev.prev_hash != prev:
            rep.problems.append(f"{what}: previous event missing or altered")
            return
        if (
            event_digest(
                prev,
                ev.campaign_id,
                ev.kind,
                ev.actor,
                ev.payload,
                ev.clock_s,
                ev.created_at.isoformat(),
            )
            != ev.hash
        ):
            rep.problems.append(f"{what} was altered")
            return
        prev = ev.hash
        if ev.mac is None:
            if seen_sealed:
                rep.problems.append(
                    f"{what} is not sealed but events before it are: written or rewritten "
                    "without the ledger key"
                )
                return
            legacy += 1
            continue
        seen_sealed = True
        key = keys.get(ev.key_id)
        if key is None:
            rep.unchecked += 1
            missing_keys.add(ev.key_id)
        elif not key.check(ev.seq, ev.hash, ev.mac):
            rep.problems.append(
                f"{what}: its seal does not match (rewritten without the ledger key)"
            )
            return
        rep.sealed += 1
    if events and not seen_sealed:
        rep.problems.append(
            "no event of this chain is sealed: the seals were stripped (ledgers are sealed "
            "since migration 0004)"
        )
    if legacy:
        rep.notes.append(
            f"the first {legacy} events predate sealing; the seal after them covers them"
        )
    if missing_keys:
        rep.notes.append(
            f"{rep.unchecked} events are sealed with key(s) {', '.join(sorted(missing_keys))} that this "
            "machine does not hold: not checked (set CELLPILOT_LEDGER_KEYS or pass --key)"
        )


def check_anchors(
    rep: ChainReport, events: list[Any], lines: list[anchor.Anchor], files: list[Path]
) -> None:
    """Each anchor line of this chain must still hold: same hash at that position, no fewer events."""
    mine = sorted((a for a in lines if a.campaign_id == rep.campaign_id), key=lambda a: a.at)
    rechains = [i for i, a in enumerate(mine) if a.rechain]
    if rechains:
        last = mine[rechains[-1]]
        recorded = {ev.payload.get("old_head") for ev in events if ev.kind == MASKED}
        if (last.rechain or {}).get("old_head") not in recorded:
            rep.problems.append(
                f"anchor {last.source} says the chain was re-chained, but no {MASKED} event "
                "records it"
            )
        mine = mine[rechains[-1] :]
    if not mine:
        looked = ", ".join(str(f) for f in files) or "none"
        rep.notes.append(
            f"not anchored (anchor files read: {looked}): deleting the newest events would "
            "not be noticed; pass --anchor FILE"
        )
        return
    for a in mine:
        if a.count > len(events):
            rep.problems.append(
                f"the log holds {len(events)} events, but {a.count} were anchored at {a.at} "
                f"({a.source}): events were deleted"
            )
            return
        if a.count and events[a.count - 1].hash != a.head:
            rep.problems.append(
                f"event {a.count} differs from the one anchored at {a.at} ({a.source}): the "
                "chain was rewritten"
            )
            return
    newest = max(a.count for a in mine)
    rep.checked.append(f"anchored up to event {newest} of {len(events)}")


def check_bindings(
    conn: Connection, rep: ChainReport, campaign_id: int, events: list[Any], check_files: bool
) -> None:
    """Proposals, approvals and finished rounds against the digests their events carry."""
    latest: dict[str, tuple[str, Any]] = {}
    rounds: dict[int, tuple[dict[str, Any], Any]] = {}
    for ev in events:
        for ref, digest in (ev.payload.get("bind") or {}).items():
            latest[ref] = (digest, ev)
        for bound in (
            [ev.payload["bind_round"]]
            if "bind_round" in ev.payload
            else ev.payload.get("bind_rounds", [])
        ):
            rounds[bound["round_id"]] = (bound, ev)
    rows = campaign_rows(conn, campaign_id, BINDING_VERSION) | {
        "analysisversion": analysis_rows(conn, campaign_id),
        "decisionpoint": decision_rows(conn, campaign_id),
    }
    # decision points are bound from binding version 3 on; a log written before that (a
    # time-course plate of the first release) has its decisions covered by the rounds only
    binds_decisions = any(ref.startswith("decisionpoint:") for ref in latest)
    _check_adopted(conn, rep, campaign_id, events)
    for table, by_id in rows.items():
        for rid, row in by_id.items():
            ref = f"{table}:{rid}"
            if ref not in latest:
                if table == "decisionpoint" and not binds_decisions:
                    continue
                rep.problems.append(
                    f"{table} {rid} is not recorded in the event log (added outside cellpilot)"
                )
            elif not row_matches(table, row, latest[ref][0]):
                ev = latest[ref][1]
                rep.problems.append(f"{table} {rid} was altered after event {ev.id} ({ev.kind})")
    for ref, (digest, ev) in latest.items():
        table, _, rid_text = ref.partition(":")
        if digest != "deleted" and int(rid_text) not in rows.get(table, {}):
            rep.problems.append(f"{table} {rid_text} was deleted (bound by event {ev.id})")
    for rid, (bound, ev) in sorted(rounds.items()):
        for problem in check_round(conn, bound):
            rep.problems.append(f"round {rid} changed after event {ev.id} ({ev.kind}): {problem}")
    n_files = _check_files(conn, rep, list(rounds)) if check_files else 0
    rep.checked.append(
        f"{sum(len(v) for v in rows.values())} proposals and approvals, {len(rounds)} rounds' "
        f"tables, {n_files} image files"
    )


def _check_adopted(conn: Connection, rep: ChainReport, campaign_id: int, events: list[Any]) -> None:
    """The analysis version the planner learns from is the one the log last adopted."""
    adopted = [ev for ev in events if ev.kind == "analysis_adopted"]
    want = int(adopted[-1].payload["version"]) if adopted else 1
    now = conn.execute(
        sa.text("SELECT analysis_version FROM campaign WHERE id = :i"), {"i": campaign_id}
    ).scalar()
    if now is not None and int(now) != want:
        rep.problems.append(
            f"the campaign plans from analysis version {now}, but the log last adopted "
            f"version {want}" + (f" (event {adopted[-1].id})" if adopted else "")
        )


def _check_files(conn: Connection, rep: ChainReport, round_ids: list[int]) -> int:
    t = TABLES["rawdata"]
    n = 0
    for i in range(0, len(round_ids), 500):
        for raw in conn.execute(
            sa.select(t).where(t.c.round_id.in_(round_ids[i : i + 500])).order_by(t.c.id)
        ):
            path = Path(raw.path)
            if not path.exists():
                rep.problems.append(f"image file {path} (raw data {raw.id}) is missing")
            elif sha256_file(path) != raw.sha256:
                rep.problems.append(
                    f"image file {path} (raw data {raw.id}) was altered: its SHA-256 differs "
                    "from the ledger's"
                )
            n += 1
    return n


def check_registrations(conn: Connection, rep: ChainReport, events: list[Any]) -> None:
    """Every campaign the ledger-wide chain registered must still be in the ledger."""
    registered: dict[int, str] = {}
    for ev in events:
        if ev.kind == REGISTERED:
            registered[int(ev.payload["campaign_id"])] = ev.payload.get("name") or "?"
        elif ev.kind == SEALED:
            registered |= {int(i): n for i, n in (ev.payload.get("campaigns") or {}).items()}
    present = {r.id for r in conn.execute(sa.select(CAMPAIGN.c.id))}
    for cid, name in sorted(registered.items()):
        if cid not in present:
            rep.problems.append(
                f"campaign {name!r} (id {cid}) was registered in the log but is gone from the ledger"
            )


def verify_ledger(
    db: Engine,
    campaign: str | None = None,
    *,
    keys: dict[str, LedgerKey],
    anchors: Sequence[Path] = (),
    check_files: bool = True,
) -> list[ChainReport]:
    """Verify one campaign (by name) or the whole ledger; one report per chain."""
    with db.connect() as conn:
        names = dict(conn.execute(sa.select(CAMPAIGN.c.id, CAMPAIGN.c.name)).all())
        if campaign is not None:
            ids = [i for i, n in names.items() if n == campaign]
            if not ids:
                raise LookupError(f"no campaign named {campaign!r}")
            chains = ids
        else:
            chains = chain_keys(conn)
        lid = ledger_id(conn)
        return [
            _verify_chain(conn, k, names, lid, keys, list(anchors), check_files) for k in chains
        ]


def _verify_chain(
    conn: Connection,
    k: int,
    names: dict[int, str],
    lid: str | None,
    keys: dict[str, LedgerKey],
    extra: list[Path],
    check_files: bool,
) -> ChainReport:
    cid = k or None
    rep = ChainReport(names.get(k, f"campaign id {k} (deleted)") if cid else "ledger-wide log", cid)
    events = read_chain(conn, k)
    if cid is not None and cid in names and not events:
        rep.problems.append("the campaign has no events: its log was deleted")
    check_events(rep, events, keys)
    if lid is None:
        rep.problems.append(
            f"the ledger-wide log has no {SEALED} event naming the ledger: it was deleted"
        )
        return rep
    files = [anchor.ledger_anchor_path(lid), *extra]
    if cid is not None and (own := campaign_anchor(conn, cid)) is not None:
        files.append(own)
    files = list(dict.fromkeys(f for f in files if f.exists()))
    lines = [a for f in files for a in anchor.read_anchors(f, lid)]
    if rep.ok:
        check_anchors(rep, events, lines, files)
    if cid is None:
        check_registrations(conn, rep, events)
    elif rep.ok:
        check_bindings(conn, rep, cid, events, check_files)
    return rep
