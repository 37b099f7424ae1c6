"""Scheduling: experts' weekly availability (in their own time zone) and its exceptions, appointments, and
the slot claims that make a double booking impossible.

Only the schema; slot computation and booking are in `hq.scheduling`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import BigId, Millis, id_column, metadata, ref

availability_rules = sa.Table(
    "availability_rules",
    metadata,
    id_column(),
    ref("expert_id", "experts.id", nullable=False, ondelete="CASCADE"),
    sa.Column("weekday", sa.SmallInteger, nullable=False),  # 0 Monday .. 6 Sunday, in the expert's zone
    sa.Column("start_time", sa.String(5), nullable=False),  # "HH:MM", expert's local time
    sa.Column("end_time", sa.String(5), nullable=False),
    sa.Column("slot_minutes", sa.Integer, nullable=False),
    sa.Column("valid_from", sa.Date),
    sa.Column("valid_until", sa.Date),
    sa.Index("ix_availability_rules_expert_id", "expert_id"),
)

availability_exceptions = sa.Table(
    "availability_exceptions",
    metadata,
    id_column(),
    ref("expert_id", "experts.id", nullable=False, ondelete="CASCADE"),
    sa.Column("starts_ms", Millis, nullable=False),
    sa.Column("ends_ms", Millis, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # leave | clinic_duty
    sa.Column("note", sa.Text),
    sa.Index("ix_availability_exceptions_expert_starts", "expert_id", "starts_ms"),
)

appointments = sa.Table(
    "appointments",
    metadata,
    id_column(),
    ref("expert_id", "experts.id", nullable=False),
    sa.Column("start_ms", Millis, nullable=False),
    sa.Column("end_ms", Millis, nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    ref("patient_id", "patients.id"),
    ref("consultation_id", "consultations.id"),
    sa.Column("status", sa.String(20), nullable=False),  # booked | pending_approval | rejected | cancelled | done
    sa.Column("urgent_extra", sa.Boolean, nullable=False, server_default=sa.false()),
    ref("requested_by_user_id", "users.id"),
    ref("decided_by_user_id", "users.id"),
    sa.Column("decided_ms", Millis),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("confirmed_ms", Millis),  # the clinic's gateway has the confirmation
    sa.Column("reminded_ms", Millis),
    sa.Index("ix_appointments_expert_start", "expert_id", "start_ms"),
    sa.Index("ix_appointments_clinic_start", "clinic_id", "start_ms"),
)

# One row per expert and 5-minute unit an active appointment covers: two overlapping bookings collide on
# the primary key in any database, under any concurrency.
slot_claims = sa.Table(
    "slot_claims",
    metadata,
    sa.Column("expert_id", BigId, sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("unit_start_ms", Millis, primary_key=True),
    sa.Column("appointment_id", BigId, sa.ForeignKey("appointments.id", ondelete="CASCADE"), nullable=False),
)
