"""Alembic environment for the cellpilot ledger.

Run programmatically by :func:`controller.ledger.db.upgrade` (which passes an open connection in
``config.attributes["connection"]``), or from a shell for new revisions::

    alembic -c controller/ledger/alembic.ini revision --autogenerate -m "what changed"
"""

from __future__ import annotations

from alembic import context
from sqlalchemy import create_engine, pool
from sqlmodel import SQLModel

import controller.ledger.accounts  # noqa: F401  (console accounts, migration 0003)
import controller.ledger.models  # noqa: F401  (registers the tables)

config = context.config
target_metadata = SQLModel.metadata


def _include(obj, name, type_, reflected, compare_to) -> bool:
    # APScheduler creates and owns its job table in the same database.
    return not (type_ == "table" and name == "apscheduler_jobs")


def _configure(connection) -> None:
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        include_object=_include,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
        return
    engine = create_engine(config.get_main_option("sqlalchemy.url"), poolclass=pool.NullPool)
    with engine.connect() as conn:
        _configure(conn)


run_migrations_online()
