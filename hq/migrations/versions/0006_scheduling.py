"""Availability rules and exceptions, appointments (with urgent extra slots, cancellation and reminders) and
their slot claims.

Revision 0006, after 0005.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "availability_exceptions",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("starts_ms", sa.BigInteger(), nullable=False),
        sa.Column("ends_ms", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("note", sa.Text(), nullable=True),
        sa.Column("created_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.CheckConstraint("ends_ms > starts_ms", name=op.f("ck_availability_exceptions_span")),
        sa.CheckConstraint("kind IN ('leave', 'clinic_duty')", name=op.f("ck_availability_exceptions_kind")),
        sa.ForeignKeyConstraint(
            ["created_by_user_id"], ["users.id"], name=op.f("fk_availability_exceptions_created_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["experts.id"], name=op.f("fk_availability_exceptions_expert_id_experts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_exceptions")),
    )
    op.create_index(
        "ix_availability_exceptions_expert_starts", "availability_exceptions", ["expert_id", "starts_ms"], unique=False
    )
    op.create_table(
        "availability_rules",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("weekday", sa.SmallInteger(), nullable=False),
        sa.Column("start_time", sa.String(length=5), nullable=False),
        sa.Column("end_time", sa.String(length=5), nullable=False),
        sa.Column("slot_minutes", sa.Integer(), nullable=False),
        sa.Column("valid_from", sa.Date(), nullable=True),
        sa.Column("valid_until", sa.Date(), nullable=True),
        sa.CheckConstraint("weekday BETWEEN 0 AND 6", name=op.f("ck_availability_rules_weekday")),
        sa.CheckConstraint("slot_minutes > 0", name=op.f("ck_availability_rules_slot_minutes")),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["experts.id"], name=op.f("fk_availability_rules_expert_id_experts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_availability_rules")),
    )
    op.create_index("ix_availability_rules_expert_id", "availability_rules", ["expert_id"], unique=False)
    op.create_table(
        "appointments",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False),
        sa.Column("expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("department_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("start_ms", sa.BigInteger(), nullable=False),
        sa.Column("end_ms", sa.BigInteger(), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("patient_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("consultation_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("status", sa.String(length=20), nullable=False),
        sa.Column("urgent_extra", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("requested_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("decided_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("decided_ms", sa.BigInteger(), nullable=True),
        sa.Column("decision_note", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("confirmed_ms", sa.BigInteger(), nullable=True),
        sa.Column("reminded_ms", sa.BigInteger(), nullable=True),
        sa.Column("cancelled_by_user_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=True),
        sa.Column("cancelled_ms", sa.BigInteger(), nullable=True),
        sa.Column("cancel_reason", sa.Text(), nullable=True),
        sa.CheckConstraint("end_ms > start_ms", name=op.f("ck_appointments_span")),
        sa.CheckConstraint("status IN ('booked', 'pending_approval', 'rejected', 'cancelled')",
                           name=op.f("ck_appointments_status")),
        sa.ForeignKeyConstraint(
            ["cancelled_by_user_id"], ["users.id"], name=op.f("fk_appointments_cancelled_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"], name=op.f("fk_appointments_clinic_id_clinics")),
        sa.ForeignKeyConstraint(
            ["consultation_id"], ["consultations.id"], name=op.f("fk_appointments_consultation_id_consultations")
        ),
        sa.ForeignKeyConstraint(
            ["decided_by_user_id"], ["users.id"], name=op.f("fk_appointments_decided_by_user_id_users")
        ),
        sa.ForeignKeyConstraint(
            ["department_id"], ["departments.id"], name=op.f("fk_appointments_department_id_departments")
        ),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_appointments_expert_id_experts")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_appointments_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["requested_by_user_id"], ["users.id"], name=op.f("fk_appointments_requested_by_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_appointments")),
    )
    op.create_index("ix_appointments_clinic_start", "appointments", ["clinic_id", "start_ms"], unique=False)
    op.create_index("ix_appointments_expert_start", "appointments", ["expert_id", "start_ms"], unique=False)
    op.create_index("ix_appointments_status_start", "appointments", ["status", "start_ms"], unique=False)
    op.create_table(
        "slot_claims",
        sa.Column("expert_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("unit_start_ms", sa.BigInteger(), nullable=False),
        sa.Column("appointment_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.ForeignKeyConstraint(
            ["appointment_id"],
            ["appointments.id"],
            name=op.f("fk_slot_claims_appointment_id_appointments"),
            ondelete="CASCADE",
        ),
        sa.ForeignKeyConstraint(
            ["expert_id"], ["experts.id"], name=op.f("fk_slot_claims_expert_id_experts"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("expert_id", "unit_start_ms", name=op.f("pk_slot_claims")),
    )


def downgrade() -> None:
    op.drop_table("slot_claims")
    op.drop_index("ix_appointments_status_start", table_name="appointments")
    op.drop_index("ix_appointments_expert_start", table_name="appointments")
    op.drop_index("ix_appointments_clinic_start", table_name="appointments")
    op.drop_table("appointments")
    op.drop_index("ix_availability_rules_expert_id", table_name="availability_rules")
    op.drop_table("availability_rules")
    op.drop_index("ix_availability_exceptions_expert_starts", table_name="availability_exceptions")
    op.drop_table("availability_exceptions")
