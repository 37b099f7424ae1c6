"""The one engine factory: SQLite tuned for a durable single writer, or a pooled PostgreSQL.

It makes engines and the schema; it does not read or write rows (that is `hq.store` / `hq.queries`).
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import URL, make_url

log = logging.getLogger(__name__)

SQLITE_BUSY_TIMEOUT_MS = 10_000


def database_url(url: str, password_file: Path | None = None) -> URL:
    """The configured URL with the password read from its file (secrets never sit in the config)."""
    parsed = make_url(url)
    if password_file is not None:
        parsed = parsed.set(password=password_file.read_text(encoding="utf-8").strip())
    return parsed


def create_engine_for(url: str | URL, *, pool_size: int = 10, max_overflow: int = 10) -> sa.Engine:
    parsed = make_url(url) if isinstance(url, str) else url
    if parsed.get_backend_name() == "sqlite":
        if parsed.database and parsed.database != ":memory:":
            Path(parsed.database).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(parsed, connect_args={"timeout": SQLITE_BUSY_TIMEOUT_MS / 1000})
        sa.event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    if parsed.get_backend_name() == "postgresql":
        return sa.create_engine(
            parsed, pool_size=pool_size, max_overflow=max_overflow, pool_pre_ping=True, pool_recycle=1800,
        )
    raise ValueError(f"database {parsed.get_backend_name()!r} is not supported; expected sqlite or postgresql")


def _sqlite_pragmas(dbapi_conn: Any, _record: Any) -> None:
    cur = dbapi_conn.cursor()
    try:
        cur.execute("PRAGMA journal_mode=WAL")
        # FULL: a commit HQ acknowledged to a gateway must survive power loss, or the reading is gone.
        cur.execute("PRAGMA synchronous=FULL")
        cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cur.execute("PRAGMA foreign_keys=ON")
    finally:
        cur.close()


MIGRATIONS_DIR = Path(__file__).parent / "migrations"
# Any constant both HQ workers agree on: serialises their migrations when several start at once.
PG_MIGRATION_LOCK = 0x6871_6D69


class SchemaError(Exception):
    """The database's schema cannot be brought up to date; the message says why and what to do."""


def alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config()).get_current_head()
    assert head is not None
    return head


def current_revision(engine: sa.Engine) -> str | None:
    with engine.connect() as conn:
        return MigrationContext.configure(conn).get_current_revision()


def upgrade_schema(engine: sa.Engine, revision: str = "head") -> None:
    """Bring the database to `revision` with the Alembic migrations in `hq/migrations`, in one transaction.

    Safe to call at every start and from several HQ workers at once (PostgreSQL: an advisory lock).
    """
    config = alembic_config()
    with engine.begin() as conn:
        if conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:key)"), {"key": PG_MIGRATION_LOCK})
        tables = set(sa.inspect(conn).get_table_names())
        if tables and "alembic_version" not in tables:
            raise SchemaError(
                f"the database holds tables ({', '.join(sorted(tables)[:5])}, ...) but no migration history "
                "(alembic_version): it was made by a development build before migrations existed. "
                "Point HQ at a new database; this one cannot be upgraded in place.")
        config.attributes["connection"] = conn
        command.upgrade(config, revision)


def create_schema(engine: sa.Engine) -> None:
    """The schema at its newest revision (see `upgrade_schema`)."""
    upgrade_schema(engine)


def ping(engine: sa.Engine) -> None:
    """Raise if the database cannot answer a trivial query."""
    with engine.connect() as conn:
        conn.execute(sa.text("SELECT 1"))
