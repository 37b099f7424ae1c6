"""Video consultations: call participants, call-quality samples and alerts, recordings.

Revision 0007, after 0008 (both were made on 0006; one chain keeps a single head).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0007"
down_revision = "0008"  # chained after main's 0008 (fleet security), which also follows 0006
branch_labels = None
depends_on = None

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "call_participants",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("consultation_public_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("user_id", BIG_ID, nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("role", sa.String(length=32), nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("joined_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_seen_ms", sa.BigInteger(), nullable=False),
        sa.Column("left_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_call_participants_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_participants")),
        sa.UniqueConstraint("peer_id", name=op.f("uq_call_participants_peer_id")),
    )
    op.create_index("ix_call_participants_consultation_public_id", "call_participants", ["consultation_public_id"])
    op.create_table(
        "call_quality_samples",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("consultation_public_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.Column("direction", sa.String(length=4), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("rtt_ms", sa.Float(), nullable=True),
        sa.Column("loss_pct", sa.Float(), nullable=True),
        sa.Column("jitter_ms", sa.Float(), nullable=True),
        sa.Column("fps", sa.Float(), nullable=True),
        sa.Column("kbps", sa.Float(), nullable=True),
        sa.Column("tier", sa.String(length=8), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_quality_samples")),
        sa.UniqueConstraint("gateway_id", "peer_id", "stream", "at_ms",
                            name=op.f("uq_call_quality_samples_gateway_id_peer_id_stream_at_ms")),
    )
    op.create_index("ix_call_quality_samples_at_ms", "call_quality_samples", ["at_ms"])
    op.create_index("ix_call_quality_samples_consultation_at", "call_quality_samples",
                    ["consultation_public_id", "at_ms"])
    op.create_table(
        "call_alerts",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("consultation_public_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("peer_id", sa.String(length=64), nullable=False),
        sa.Column("stream", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.Float(), nullable=False),
        sa.Column("threshold", sa.Float(), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("open_key", sa.String(length=200), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_call_alerts")),
        sa.UniqueConstraint("open_key", name=op.f("uq_call_alerts_open_key")),
    )
    op.create_index("ix_call_alerts_consultation_started", "call_alerts", ["consultation_public_id", "started_ms"])
    op.create_table(
        "recordings",
        sa.Column("id", BIG_ID, autoincrement=True, nullable=False),
        sa.Column("recording_id", sa.String(length=100), nullable=False),
        sa.Column("consultation_public_id", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("patient_ref", sa.String(length=64), nullable=True),
        sa.Column("mime", sa.String(length=40), nullable=False),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("received_bytes", sa.BigInteger(), server_default="0", nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("storage_path", sa.String(length=500), nullable=True),
        sa.Column("announced_ms", sa.BigInteger(), nullable=False),
        sa.Column("completed_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_recordings")),
        sa.UniqueConstraint("recording_id", name=op.f("uq_recordings_recording_id")),
    )
    op.create_index("ix_recordings_consultation_public_id", "recordings", ["consultation_public_id"])


def downgrade() -> None:
    op.drop_index("ix_recordings_consultation_public_id", table_name="recordings")
    op.drop_table("recordings")
    op.drop_index("ix_call_alerts_consultation_started", table_name="call_alerts")
    op.drop_table("call_alerts")
    op.drop_index("ix_call_quality_samples_consultation_at", table_name="call_quality_samples")
    op.drop_index("ix_call_quality_samples_at_ms", table_name="call_quality_samples")
    op.drop_table("call_quality_samples")
    op.drop_index("ix_call_participants_consultation_public_id", table_name="call_participants")
    op.drop_table("call_participants")
