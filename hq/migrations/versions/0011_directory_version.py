"""The directory's version: one number that grows in every transaction changing experts, their tags or their
capability figures, so that a process keeping the directory in memory for matching (`hq.experts`) can tell
with one read whether its copy is current.

Triggers, so that every writer counts, the console, imports, the upkeep task and tools alike. On PostgreSQL one
bump per statement, taken BEFORE the statement's rows: transactions changing the directory queue on the row
before they lock any expert, so two of them cannot deadlock on it. SQLite has a single writer.

Revision 0011, after 0010.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011"
down_revision = "0010"
branch_labels = None
depends_on = None

TABLES = ("experts", "expert_tags", "expert_capability")
BUMP = "UPDATE directory_version SET version = version + 1 WHERE id = 1"


def upgrade() -> None:
    op.create_table(
        "directory_version",
        sa.Column("id", sa.SmallInteger(), autoincrement=False, nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("id = 1", name=op.f("ck_directory_version_single_row")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_directory_version")),
    )
    op.execute("INSERT INTO directory_version (id, version) VALUES (1, 0)")
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for event in ("INSERT", "UPDATE", "DELETE"):
                op.execute(f"CREATE TRIGGER {table}_directory_{event.lower()} AFTER {event} ON {table} "
                           f"BEGIN {BUMP}; END")
    else:
        op.execute("CREATE FUNCTION directory_version_bump() RETURNS trigger LANGUAGE plpgsql AS "
                   f"$$ BEGIN {BUMP}; RETURN NULL; END $$")
        for table in TABLES:
            op.execute(f"CREATE TRIGGER {table}_directory_version BEFORE INSERT OR UPDATE OR DELETE OR TRUNCATE "
                       f"ON {table} FOR EACH STATEMENT EXECUTE FUNCTION directory_version_bump()")


def downgrade() -> None:
    if op.get_bind().dialect.name == "sqlite":
        for table in TABLES:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_directory_{event}")
    else:
        for table in TABLES:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_directory_version ON {table}")
        op.execute("DROP FUNCTION IF EXISTS directory_version_bump()")
    op.drop_table("directory_version")
