"""Experts' presence, precomputed (`hq.presence`): their free windows over the next hours, and the triggers that
make an expert's precomputed windows stale in the very transaction that changes what they were computed from
(weekly rules, exceptions, appointments, the expert's time zone) — whichever code, worker or tool writes it.

Revision 0010, after 0009.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0010"
down_revision = "0009"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")

STALE = "UPDATE expert_presence SET generation = generation + 1, until_ms = 0 WHERE expert_id = {row}.{column}"

# (table, the column naming the expert, the columns whose change matters to presence; None: all of them)
SOURCES = (
    ("availability_rules", "expert_id", None),
    ("availability_exceptions", "expert_id", ("expert_id", "starts_ms", "ends_ms")),
    ("appointments", "expert_id", ("expert_id", "start_ms", "end_ms", "status")),
    ("experts", "id", ("time_zone",)),
)


def upgrade() -> None:
    op.create_table(
        "expert_presence",
        sa.Column("expert_id", BigId, nullable=False),
        sa.Column("generation", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("from_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("until_ms", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_expert_presence_expert_id_experts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("expert_id", name=op.f("pk_expert_presence")),
    )
    op.create_table(
        "expert_free_windows",
        sa.Column("expert_id", BigId, nullable=False),
        sa.Column("starts_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_expert_free_windows_expert_id_experts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("expert_id", "starts_ms", name=op.f("pk_expert_free_windows")),
    )
    if op.get_bind().dialect.name == "sqlite":
        _sqlite_triggers()
    else:
        _postgres_triggers()


def _sqlite_triggers() -> None:
    for table, column, watched in SOURCES:
        of = f" OF {', '.join(watched)}" if watched else ""
        op.execute(f"CREATE TRIGGER {table}_presence_insert AFTER INSERT ON {table} "
                   f"BEGIN {STALE.format(row='NEW', column=column)}; END")
        op.execute(f"CREATE TRIGGER {table}_presence_update AFTER UPDATE{of} ON {table} "
                   f"BEGIN {STALE.format(row='OLD', column=column)}; "
                   f"{STALE.format(row='NEW', column=column)} AND NEW.{column} <> OLD.{column}; END")
        op.execute(f"CREATE TRIGGER {table}_presence_delete AFTER DELETE ON {table} "
                   f"BEGIN {STALE.format(row='OLD', column=column)}; END")


def _postgres_triggers() -> None:
    for table, column, watched in SOURCES:
        of = f" OF {', '.join(watched)}" if watched else ""
        op.execute(
            f"CREATE FUNCTION {table}_presence_stale() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
            f"IF TG_OP <> 'INSERT' THEN {STALE.format(row='OLD', column=column)}; END IF; "
            f"IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.{column} <> OLD.{column}) THEN "
            f"{STALE.format(row='NEW', column=column)}; END IF; "
            "RETURN NULL; END $$")
        op.execute(f"CREATE TRIGGER {table}_presence_stale AFTER INSERT OR UPDATE{of} OR DELETE ON {table} "
                   f"FOR EACH ROW EXECUTE FUNCTION {table}_presence_stale()")


def downgrade() -> None:
    sqlite = op.get_bind().dialect.name == "sqlite"
    for table, _, _ in SOURCES:
        if sqlite:
            for event in ("insert", "update", "delete"):
                op.execute(f"DROP TRIGGER IF EXISTS {table}_presence_{event}")
        else:
            op.execute(f"DROP TRIGGER IF EXISTS {table}_presence_stale ON {table}")
            op.execute(f"DROP FUNCTION IF EXISTS {table}_presence_stale()")
    op.drop_table("expert_free_windows")
    op.drop_table("expert_presence")
