"""The ledger: the single source of truth, in SQL (SQLite by default, PostgreSQL to share).

| module | owns |
|---|---|
| :mod:`controller.ledger.models` | the tables (SQLModel): campaigns, rounds, proposals, approvals, experiments, wells, steps, raw data, measurements, events |
| :mod:`controller.ledger.db` | opening a ledger by URL, applying Alembic migrations (``migrations/``) |
| :mod:`controller.ledger.queries` | read-only views for the CLI, the report and the console |
| :mod:`controller.ledger.accounts` | console accounts, roles and sessions |
"""
