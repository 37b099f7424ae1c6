"""The fleet: clinics, gateways, observations (keyed by gateway and seq), facts about the database.

Revision 0001 (the first).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "clinics",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_clinics")),
    )
    op.create_table(
        "hq_meta",
        sa.Column("key", sa.String(length=64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint("key", name=op.f("pk_hq_meta")),
    )
    op.create_table(
        "observations",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=40), nullable=True),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("recv_ms", sa.BigInteger(), nullable=False),
        sa.Column("hq_ms", sa.BigInteger(), nullable=False),
        sa.Column("patient_id", sa.String(length=80), nullable=True),
        sa.Column("device_id", sa.String(length=80), nullable=False),
        sa.Column("extra", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id", "seq", name=op.f("pk_observations")),
    )
    op.create_index("ix_observations_gateway_time", "observations", ["gateway_id", "time_ms"], unique=False)
    op.create_index(
        "ix_observations_patient_metric_time", "observations", ["patient_id", "metric", "time_ms"], unique=False
    )
    op.create_table(
        "gateways",
        sa.Column("id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("first_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_contact_ms", sa.BigInteger(), nullable=True),
        sa.Column("software", sa.String(length=100), server_default="", nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("backlog_total", sa.Integer(), server_default="0", nullable=False),
        sa.Column("backlog_json", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("drain_rate_per_s", sa.Float(), nullable=True),
        sa.Column("devices_json", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("committed_seq", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("complete_below", sa.BigInteger(), server_default="0", nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"], name=op.f("fk_gateways_clinic_id_clinics")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_gateways")),
    )


def downgrade() -> None:
    op.drop_table("gateways")
    op.drop_index("ix_observations_patient_metric_time", table_name="observations")
    op.drop_index("ix_observations_gateway_time", table_name="observations")
    op.drop_table("observations")
    op.drop_table("hq_meta")
    op.drop_table("clinics")
