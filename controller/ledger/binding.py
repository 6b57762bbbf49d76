"""Binding the ledger's tables to its event log: digests of rows, carried by sealed events.

The event log is sealed (:mod:`controller.ledger.sealing`), the other tables are not. So the
events that create or finish rows carry digests of them, and ``verify`` recomputes the digests
from the tables:

- ``proposal_created``, ``proposal_escalated`` and each decision bind the proposal row (and the
  decision's approval row) as it is after the event: ``payload["bind"] = {"proposal:12": d}``;
- ``round_analyzed`` (and ``plate_qc_failed`` when a plate cannot be analysed) bind everything
  the round produced: its round row, experiments (parameters and outcomes, what the planner
  learns from), wells, step journal, raw-data rows (with the images' SHA-256) and
  measurements: ``payload["bind_round"] = {"round_id": 3, "tables": {"step": {"n": 412, "digest": d}, ...}}``.

A digest covers a fixed list of columns per table (:data:`BOUND_COLUMNS`), read back through
this module's own table definitions, so the digest written at commit time and the one
recomputed by ``verify`` (or by a migration) see the same values. Columns added later are not
covered until a new binding version lists them. Times are not covered (databases round-trip
them differently); everything that steers an experiment or an analysis is.

Binding versions: 1 (up to migration 0005); 2 adds the analysis version of rounds and
measurements (migration 0006); 3 adds time-course plates (migration 0007): a round binds its
decision points, steps, images and measurements bind their time point, proposals their decision
point and unit, and each decision point is also bound on its own when it is proposed and when it
is applied (``"decisionpoint:4"``), so a decision cannot be rewritten while its plate runs. A
bound round records its version (``"v"``); a row bound on its own in version 2 or later carries
it as a prefix of its digest (``"v3:…"``; none means version 1). Rows and rounds are checked
against the columns of the version they were bound in, so older ledgers still verify.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import Connection

BINDING_VERSION = 3

_META = sa.MetaData()
_META_V2 = sa.MetaData()
_META_V3 = sa.MetaData()


def _table(name: str, *cols: tuple[str, Any], meta: sa.MetaData = _META) -> sa.Table:
    return sa.Table(name, meta, *(sa.Column(c, t) for c, t in cols))


INT, STR, FLT, JSN, BOOL = sa.Integer, sa.String, sa.Float, sa.JSON, sa.Boolean

TABLES: dict[str, sa.Table] = {
    t.name: t
    for t in (
        _table(
            "proposal",
            ("id", INT),
            ("campaign_id", INT),
            ("round_id", INT),
            ("position", INT),
            ("params", JSN),
            ("predicted_mean", JSN),
            ("predicted_sd", JSN),
            ("acquisition_value", FLT),
            ("planner", STR),
            ("status", STR),
            ("requeued_from_experiment_id", INT),
            ("escalation", STR),
        ),
        _table(
            "approval",
            ("id", INT),
            ("proposal_id", INT),
            ("decision", STR),
            ("actor", STR),
            ("reason", STR),
            ("params", JSN),
        ),
        _table(
            "round",
            ("id", INT),
            ("campaign_id", INT),
            ("index", INT),
            ("plate_id", STR),
            ("status", STR),
            ("layout", JSN),
            ("z_prime", JSN),
            ("plate_ok", BOOL),
            ("started_clock_s", FLT),
            ("finished_clock_s", FLT),
        ),
        _table(
            "experiment",
            ("id", INT),
            ("campaign_id", INT),
            ("round_id", INT),
            ("proposal_id", INT),
            ("position", INT),
            ("params", JSN),
            ("status", STR),
            ("outcomes", JSN),
            ("outcome_details", JSN),
            ("n_valid_replicates", INT),
            ("requeued_from_id", INT),
        ),
        _table(
            "well",
            ("id", INT),
            ("round_id", INT),
            ("plate_id", STR),
            ("well", STR),
            ("role", STR),
            ("experiment_id", INT),
            ("replicate", INT),
            ("status", STR),
            ("quarantine_reason", STR),
        ),
        _table(
            "step",
            ("id", INT),
            ("round_id", INT),
            ("seq", INT),
            ("kind", STR),
            ("plate_id", STR),
            ("wells", JSN),
            ("payload", JSN),
            ("status", STR),
            ("result", JSN),
            ("attempts", INT),
            ("started_clock_s", FLT),
            ("finished_clock_s", FLT),
        ),
        _table(
            "rawdata",
            ("id", INT),
            ("round_id", INT),
            ("plate_id", STR),
            ("well", STR),
            ("kind", STR),
            ("path", STR),
            ("sha256", STR),
            ("size_bytes", INT),
            ("meta", JSN),
        ),
        _table(
            "measurement",
            ("id", INT),
            ("campaign_id", INT),
            ("round_id", INT),
            ("well_id", INT),
            ("experiment_id", INT),
            ("metric", STR),
            ("value", FLT),
            ("flags", JSN),
        ),
        _table(
            "analysisversion",
            ("id", INT),
            ("campaign_id", INT),
            ("number", INT),
            ("analyzer", STR),
            ("settings", JSN),
            ("code_version", JSN),
            ("results", JSN),
            ("created_by", STR),
            ("note", STR),
        ),
    )
}


def _extend(base: dict[str, sa.Table], meta: sa.MetaData, **added: list[tuple[str, Any]]):
    return {
        **base,
        **{
            name: _table(
                name, *((c.name, type(c.type)) for c in base[name].columns), *cols, meta=meta
            )
            for name, cols in added.items()
        },
    }


#: version 2 adds each round's and measurement's analysis version (migration 0006)
TABLES_V2 = _extend(
    TABLES, _META_V2, round=[("analysis_version", INT)], measurement=[("analysis_version", INT)]
)

#: version 3 adds time-course plates (migration 0007)
TABLES_V3: dict[str, sa.Table] = {
    **_extend(
        TABLES_V2,
        _META_V3,
        proposal=[("decision_point_id", INT), ("unit", STR)],
        step=[("time_point", INT)],
        rawdata=[("time_point", INT)],
        measurement=[("time_point", INT)],
    ),
    "decisionpoint": _table(
        "decisionpoint",
        ("id", INT),
        ("campaign_id", INT),
        ("round_id", INT),
        ("index", INT),
        ("time_h", FLT),
        ("status", STR),
        ("policy_id", STR),
        ("policy", JSN),
        ("observations", JSN),
        ("forecasts", JSN),
        ("actions", JSN),
        ("state_after", JSN),
        ("first_seq", INT),
        ("clock_s", FLT),
        meta=_META_V3,
    ),
}

TABLES_BY_VERSION = {1: TABLES, 2: TABLES_V2, 3: TABLES_V3}

BOUND_COLUMNS = {name: [c.name for c in t.columns] for name, t in TABLES.items()}

#: what a round binds, and how each table's rows are found from the round
ROUND_TABLES = ("round", "experiment", "well", "step", "rawdata", "measurement")
ROUND_TABLES_BY_VERSION = {1: ROUND_TABLES, 2: ROUND_TABLES, 3: (*ROUND_TABLES, "decisionpoint")}


def canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), default=str)


def row_digest(table: str, row: dict[str, Any], v: int = 1) -> str:
    """SHA-256 of one row's columns bound in binding version ``v``."""
    body = {c.name: row.get(c.name) for c in TABLES_BY_VERSION[v][table].columns}
    return hashlib.sha256(canonical([table, v, body]).encode()).hexdigest()


def _rows(conn: Connection, table: str, where, v: int = 1) -> list[dict[str, Any]]:
    t = TABLES_BY_VERSION[v][table]
    return [dict(r._mapping) for r in conn.execute(sa.select(t).where(where(t)).order_by(t.c.id))]


def rows_by_id(
    conn: Connection, table: str, ids: Iterable[int], v: int = 1
) -> dict[int, dict[str, Any]]:
    ids = list(ids)
    if not ids:
        return {}
    out: dict[int, dict[str, Any]] = {}
    for i in range(0, len(ids), 500):
        for r in _rows(conn, table, lambda t, chunk=ids[i : i + 500]: t.c.id.in_(chunk), v):
            out[r["id"]] = r
    return out


def tagged_digest(table: str, row: dict[str, Any], v: int) -> str:
    """A row's digest as an event carries it: version 1 bare, later versions ``"v3:…"``."""
    digest = row_digest(table, row, v)
    return digest if v == 1 else f"v{v}:{digest}"


def row_matches(table: str, row: dict[str, Any], tagged: str) -> bool:
    """Whether ``row`` is what a digest from :func:`tagged_digest` bound."""
    v_text, sep, digest = tagged.partition(":")
    if not sep:
        return row_digest(table, row, 1) == tagged
    v = int(v_text.lstrip("v"))
    return table in TABLES_BY_VERSION[v] and row_digest(table, row, v) == digest


def bind_rows(
    conn: Connection, refs: Iterable[tuple[str, int]], v: int = BINDING_VERSION
) -> dict[str, str]:
    """``{"table:id": digest}`` of the rows ``refs`` names, as the database holds them now.

    Args:
        v: binding version; older ones only inside migrations, for the schema of their time.
    """
    out: dict[str, str] = {}
    by_table: dict[str, list[int]] = {}
    for table, rid in refs:
        by_table.setdefault(table, []).append(rid)
    for table, ids in by_table.items():
        rows = rows_by_id(conn, table, ids, v)
        for rid in ids:
            row = rows.get(rid)
            out[f"{table}:{rid}"] = tagged_digest(table, row, v) if row is not None else "deleted"
    return out


def _round_filter(table: str, round_id: int):
    return (
        (lambda t: t.c.id == round_id) if table == "round" else (lambda t: t.c.round_id == round_id)
    )


def table_digest(table: str, rows: list[dict[str, Any]], v: int = 1) -> dict[str, Any]:
    h = hashlib.sha256()
    for r in rows:
        h.update(row_digest(table, r, v).encode())
    return {"n": len(rows), "digest": h.hexdigest()}


def bind_round(conn: Connection, round_id: int, v: int = BINDING_VERSION) -> dict[str, Any]:
    """Digests of everything round ``round_id`` produced, per table (count and digest).

    Args:
        v: binding version; 1 only for a schema older than migration 0006 (inside migrations).
    """
    return {
        "round_id": round_id,
        "v": v,
        "tables": {
            t: table_digest(t, _rows(conn, t, _round_filter(t, round_id), v), v)
            for t in ROUND_TABLES_BY_VERSION[v]
        },
    }


def check_round(conn: Connection, bound: dict[str, Any]) -> list[str]:
    """What differs between a round's tables now and the digests ``bound`` recorded."""
    problems = []
    v = int(bound.get("v", 1))
    for table, want in bound["tables"].items():
        now = table_digest(table, _rows(conn, table, _round_filter(table, bound["round_id"]), v), v)
        if now == want:
            continue
        if now["n"] != want["n"]:
            problems.append(f"{table}: {want['n']} rows were bound, {now['n']} are there now")
        else:
            problems.append(f"{table}: rows altered")
    return problems


def campaign_rows(
    conn: Connection, campaign_id: int, v: int = 1
) -> dict[str, dict[int, dict[str, Any]]]:
    """The campaign's proposal and approval rows (bound one by one), read with the columns of
    binding version ``v`` (a row is checked against the version its digest names)."""
    props = {
        r["id"]: r for r in _rows(conn, "proposal", lambda t: t.c.campaign_id == campaign_id, v)
    }
    ap = TABLES["approval"]
    approvals = {}
    for i in range(0, len(props), 500):
        chunk = list(props)[i : i + 500]
        for r in conn.execute(sa.select(ap).where(ap.c.proposal_id.in_(chunk))):
            approvals[r.id] = dict(r._mapping)
    return {"proposal": props, "approval": approvals}


def decision_rows(conn: Connection, campaign_id: int) -> dict[int, dict[str, Any]]:
    """The campaign's decision points (bound one by one; schema 0007 and later)."""
    return {
        r["id"]: r
        for r in _rows(conn, "decisionpoint", lambda t: t.c.campaign_id == campaign_id, 3)
    }


def analysis_rows(conn: Connection, campaign_id: int) -> dict[int, dict[str, Any]]:
    """The campaign's analysis versions (bound one by one; schema 0006 and later)."""
    return {
        r["id"]: r for r in _rows(conn, "analysisversion", lambda t: t.c.campaign_id == campaign_id)
    }


def round_ids(conn: Connection, campaign_id: int) -> list[int]:
    t = TABLES["round"]
    return [
        r.id
        for r in conn.execute(
            sa.select(t.c.id).where(t.c.campaign_id == campaign_id).order_by(t.c.id)
        )
    ]
