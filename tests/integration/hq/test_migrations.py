"""The Alembic migrations build exactly the schema `hq.models` describes, on SQLite and PostgreSQL; they go
down and up again; several HQ workers may run them at once; the audit log refuses changes in the database."""

from __future__ import annotations

import threading

import pytest
import sqlalchemy as sa
from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from hq import db
from hq.models import audit_log, metadata


def test_migrations_produce_exactly_the_models(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        assert db.current_revision(engine) == db.head_revision()
        with engine.connect() as conn:
            diff = compare_metadata(MigrationContext.configure(conn, opts={"compare_type": True}), metadata)
        assert diff == [], "models and migrations differ; change the migration of your tables:\n" + "\n".join(
            map(str, diff))
        db.upgrade_schema(engine)  # a second start changes nothing and does not fail
    finally:
        engine.dispose()


def test_every_revision_goes_down_and_up_again(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            config = db.alembic_config()
            config.attributes["connection"] = conn
            from alembic import command

            command.downgrade(config, "base")
        assert set(sa.inspect(engine).get_table_names()) <= {"alembic_version"}
        db.upgrade_schema(engine)
        assert db.current_revision(engine) == db.head_revision()
    finally:
        engine.dispose()


@pytest.mark.postgres
def test_workers_starting_together_migrate_once(postgres_url: str) -> None:
    errors: list[BaseException] = []

    def start() -> None:
        engine = db.create_engine_for(postgres_url)
        try:
            db.upgrade_schema(engine)
        except BaseException as exc:
            errors.append(exc)
        finally:
            engine.dispose()

    threads = [threading.Thread(target=start) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    engine = db.create_engine_for(postgres_url)
    assert db.current_revision(engine) == db.head_revision()
    engine.dispose()


def test_the_audit_log_is_append_only_in_the_database(db_url: str) -> None:
    engine = db.create_engine_for(db_url)
    try:
        db.upgrade_schema(engine)
        with engine.begin() as conn:
            conn.execute(audit_log.insert().values(id=1, at_ms=1, actor="system", action="test",
                                                   prev_hash="0" * 64, hash="1" * 64))
        for change in (audit_log.update().values(action="edited"), audit_log.delete()):
            with pytest.raises(sa.exc.DatabaseError, match="append-only"), engine.begin() as conn:
                conn.execute(change)
        with engine.connect() as conn:
            assert conn.execute(sa.select(audit_log.c.action)).scalars().all() == ["test"]
    finally:
        engine.dispose()


def test_a_database_made_before_migrations_is_refused_with_a_clear_message(sqlite_url: str) -> None:
    engine = db.create_engine_for(sqlite_url)
    try:
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE gateways (id TEXT PRIMARY KEY)"))
        with pytest.raises(db.SchemaError, match="no migration history"):
            db.upgrade_schema(engine)
    finally:
        engine.dispose()
