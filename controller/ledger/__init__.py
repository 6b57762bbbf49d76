"""The ledger: the single source of truth, in SQL (SQLite by default, PostgreSQL to share).

| module | owns |
|---|---|
| :mod:`controller.ledger.models` | the tables (SQLModel): campaigns, rounds, proposals, approvals, experiments, wells, steps, raw data, measurements, events |
| :mod:`controller.ledger.db` | opening a ledger by URL, applying Alembic migrations (``migrations/``), one process at a time |
| :mod:`controller.ledger.chain` | the event chains: appending (serialised per chain, at commit), hashing, sealing, anchoring |
| :mod:`controller.ledger.sealing` | the ledger key outside the database, and the events' MACs |
| :mod:`controller.ledger.anchor` | chain heads written outside the ledger (anchor files) |
| :mod:`controller.ledger.binding` | digests that bind proposals, approvals and finished rounds' tables to events |
| :mod:`controller.ledger.verify` | what ``cellpilot verify`` checks, chain by chain |
| :mod:`controller.ledger.maintenance` | recorded rewrites: sealing an old ledger (migration 0004), masking secrets |
| :mod:`controller.ledger.secrets` | masking credentials in URLs, payloads and messages |
| :mod:`controller.ledger.queries` | read-only views for the CLI, the report and the console |
| :mod:`controller.ledger.accounts` | console accounts, roles, sessions, command-line tokens, login throttling |
"""
