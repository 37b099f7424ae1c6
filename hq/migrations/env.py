"""Alembic's environment for HQ: runs on the connection `hq.db.upgrade_schema` passes in, against
`hq.models.metadata`. There is no alembic.ini and no URL here: HQ's configuration is the one source."""

from __future__ import annotations

from alembic import context

from hq.models import metadata

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=metadata,
    render_as_batch=connection.dialect.name == "sqlite",  # SQLite alters tables by copying them
    compare_type=True,
)
with context.begin_transaction():
    context.run_migrations()
