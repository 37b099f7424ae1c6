"""Consultations, dispatch offers, chat, structured advice, reports, attachments.

Revision 0005, after 0004.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005"
down_revision = "0004"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "consultations",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("public_id", sa.String(length=40), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("status", sa.String(length=24), nullable=False),
        sa.Column("stage", sa.String(length=24), nullable=True),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=True),
        sa.Column("patient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("department_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("requested_expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("requested_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("requested_by", sa.String(length=200), nullable=True),
        sa.Column("tags", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("language", sa.String(length=16), nullable=True),
        sa.Column("requested_ms", sa.BigInteger(), nullable=False),
        sa.Column("scheduled_ms", sa.BigInteger(), nullable=True),
        sa.Column("received_ms", sa.BigInteger(), nullable=False),
        sa.Column("accepted_ms", sa.BigInteger(), nullable=True),
        sa.Column("started_ms", sa.BigInteger(), nullable=True),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("form_due_ms", sa.BigInteger(), nullable=True),
        sa.Column("form_received_ms", sa.BigInteger(), nullable=True),
        sa.Column("form_overdue_ms", sa.BigInteger(), nullable=True),
        sa.Column("chief_complaint", sa.Text(), nullable=True),
        sa.Column("preliminary_diagnosis", sa.Text(), nullable=True),
        sa.Column("question", sa.Text(), nullable=True),
        sa.Column("vitals", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("escalation_round", sa.Integer(), server_default="0", nullable=False),
        sa.Column("next_escalation_ms", sa.BigInteger(), nullable=True),
        sa.Column("coordinators_notified_ms", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_ms", sa.BigInteger(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.Column("rating", sa.Integer(), nullable=True),
        sa.Column("rating_comment", sa.Text(), nullable=True),
        sa.Column("rated_ms", sa.BigInteger(), nullable=True),
        sa.Column("advice_adopted", sa.Boolean(), nullable=True),
        sa.Column("adoption_note", sa.Text(), nullable=True),
        sa.Column("adoption_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"], name=op.f("fk_consultations_clinic_id_clinics")),
        sa.ForeignKeyConstraint(
            ["department_id"], ["departments.id"], name=op.f("fk_consultations_department_id_departments")
        ),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_consultations_expert_id_experts")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_consultations_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["requested_by_user_id"], ["users.id"], name=op.f("fk_consultations_requested_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["requested_expert_id"], ["experts.id"], name=op.f("fk_consultations_requested_expert_id_experts")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultations")),
        sa.UniqueConstraint("public_id", name=op.f("uq_consultations_public_id")),
    )
    op.create_index("ix_consultations_clinic_requested", "consultations", ["clinic_id", "requested_ms"], unique=False)
    op.create_index("ix_consultations_expert_status", "consultations", ["expert_id", "status"], unique=False)
    op.create_index("ix_consultations_patient_id", "consultations", ["patient_id"], unique=False)
    op.create_index("ix_consultations_next_escalation_ms", "consultations", ["next_escalation_ms"], unique=False)
    op.create_index("ix_consultations_status", "consultations", ["status"], unique=False)
    op.create_table(
        "advice_items",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("body", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_advice_items_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_advice_items")),
        sa.UniqueConstraint("consultation_id", "position", name=op.f("uq_advice_items_consultation_id_position")),
    )
    op.create_table(
        "consultation_attachments",
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("imaging_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_attachments_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["imaging_id"], ["imaging.id"], name=op.f("fk_consultation_attachments_imaging_id_imaging")
        ),
        sa.PrimaryKeyConstraint("consultation_id", "imaging_id", name=op.f("pk_consultation_attachments")),
    )
    op.create_table(
        "consultation_messages",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("author_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("author", sa.String(length=200), nullable=False),
        sa.Column("kind", sa.String(length=16), server_default="chat", nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(
            ["author_user_id"], ["users.id"], name=op.f("fk_consultation_messages_author_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_consultation_messages_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_consultation_messages")),
    )
    op.create_index(
        "ix_consultation_messages_consultation_at", "consultation_messages", ["consultation_id", "at_ms"], unique=False
    )
    op.create_table(
        "dispatch_offers",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("round", sa.Integer(), nullable=False),
        sa.Column("offered_ms", sa.BigInteger(), nullable=False),
        sa.Column("responded_ms", sa.BigInteger(), nullable=True),
        sa.Column("outcome", sa.String(length=16), nullable=False),
        sa.Column("score", sa.Float(), server_default="0", nullable=False),
        sa.Column("reasons", sa.JSON(none_as_null=True), nullable=True),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_dispatch_offers_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_dispatch_offers_expert_id_experts")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_dispatch_offers")),
        sa.UniqueConstraint("consultation_id", "expert_id", name=op.f("uq_dispatch_offers_consultation_id_expert_id")),
    )
    op.create_index("ix_dispatch_offers_expert_outcome", "dispatch_offers", ["expert_id", "outcome"], unique=False)
    op.create_table(
        "reports",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("html", sa.Text(), nullable=False),
        sa.Column("pdf", sa.LargeBinary(), nullable=False),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("created_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("delivered_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(
            ["consultation_id"],
            ["consultations.id"],
            name=op.f("fk_reports_consultation_id_consultations"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(["created_by_user_id"], ["users.id"], name=op.f("fk_reports_created_by_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_reports")),
        sa.UniqueConstraint("consultation_id", "version", name=op.f("uq_reports_consultation_id_version")),
    )


def downgrade() -> None:
    op.drop_table("reports")
    op.drop_index("ix_dispatch_offers_expert_outcome", table_name="dispatch_offers")
    op.drop_table("dispatch_offers")
    op.drop_index("ix_consultation_messages_consultation_at", table_name="consultation_messages")
    op.drop_table("consultation_messages")
    op.drop_table("consultation_attachments")
    op.drop_table("advice_items")
    op.drop_index("ix_consultations_status", table_name="consultations")
    op.drop_index("ix_consultations_next_escalation_ms", table_name="consultations")
    op.drop_index("ix_consultations_patient_id", table_name="consultations")
    op.drop_index("ix_consultations_expert_status", table_name="consultations")
    op.drop_index("ix_consultations_clinic_requested", table_name="consultations")
    op.drop_table("consultations")
