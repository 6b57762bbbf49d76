"""Opening a ledger: engine, SQLite pragmas, and Alembic migrations to the newest schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, create_engine, event
from sqlalchemy.engine import make_url

MIGRATIONS = Path(__file__).parent / "migrations"

DEFAULT_LEDGER_URL = "sqlite:///runs/cellpilot.db"


def _sqlite_pragmas(dbapi_conn, _record) -> None:
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    # NORMAL is durable against process crashes (SIGKILL) in WAL mode; FULL also against power loss.
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute("PRAGMA busy_timeout=10000")
    cur.close()


def create_ledger_engine(url: str) -> Engine:
    """An engine for ``url`` (SQLite file with WAL, or ``postgresql+psycopg://...``)."""
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"check_same_thread": False})
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if u.get_backend_name() == "postgresql" and u.drivername == "postgresql":
        url = u.set(drivername="postgresql+psycopg").render_as_string(hide_password=False)
    return create_engine(url, pool_pre_ping=True)


def alembic_config() -> Config:
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    return cfg


def upgrade(engine: Engine) -> None:
    """Bring the ledger's schema to the newest migration (idempotent)."""
    cfg = alembic_config()
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    return ScriptDirectory.from_config(alembic_config()).get_current_head()


def open_ledger_engine(url: str) -> Engine:
    engine = create_ledger_engine(url)
    upgrade(engine)
    return engine


def resolve_ledger_url(spec: Any | None, override: str | None) -> str:
    """The ledger URL: ``override`` (``--ledger`` / ``CELLPILOT_LEDGER``), else the campaign
    file's ``ledger.url``, else the default SQLite file."""
    if override:
        return override
    if spec is not None and spec.ledger.url:
        return str(spec.ledger.url)
    return DEFAULT_LEDGER_URL
