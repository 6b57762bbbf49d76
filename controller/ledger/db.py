"""Opening a ledger: engine, SQLite pragmas, and Alembic migrations to the newest schema.

Several processes may open a new or older ledger at once (``serve`` and ``run`` started
together): migrations are serialised, by a PostgreSQL advisory lock held for the migrating
transaction, or by a lock file beside a SQLite file, and Alembic reads the revision only once
the lock is held, so the second process finds the schema already migrated.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from filelock import FileLock
from sqlalchemy import Engine, create_engine, event, text
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


MIGRATION_LOCK = (0x63656C6C, -1)  # advisory lock key pair (chains use (0x63656C6C, chain >= 0))
MIGRATION_LOCK_TIMEOUT_S = 600


def upgrade(engine: Engine) -> None:
    """Bring the ledger's schema to the newest migration (idempotent, safe to run concurrently)."""
    cfg = alembic_config()
    if schema_revision(engine) == head_revision():
        return  # the common case: nothing to do, no lock to wait for
    url = engine.url
    if url.get_backend_name() == "sqlite" and url.database and url.database != ":memory:":
        with FileLock(f"{url.database}.migrate.lock", timeout=MIGRATION_LOCK_TIMEOUT_S):
            _upgrade(engine, cfg)
        return
    _upgrade(engine, cfg)


def _upgrade(engine: Engine, cfg: Config) -> None:
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(
                text("SELECT pg_advisory_xact_lock(:a, :b)"),
                {"a": MIGRATION_LOCK[0], "b": MIGRATION_LOCK[1]},
            )
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, "head")


def schema_revision(engine: Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None, "the ledger's migrations have no head revision"
    return head


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
