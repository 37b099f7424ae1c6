"""Scheduling: experts' weekly availability (in their own time zone) and its exceptions, appointments, and
the slot claims that make a double booking impossible.

Only the schema; slot computation is in `hq.slots`, booking and its rules in `hq.scheduling`.
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
    sa.Column("valid_from", sa.Date),  # the expert's local dates, both included
    sa.Column("valid_until", sa.Date),
    sa.CheckConstraint("weekday BETWEEN 0 AND 6", name="weekday"),
    sa.CheckConstraint("slot_minutes > 0", name="slot_minutes"),
    sa.Index("ix_availability_rules_expert_weekday", "expert_id", "weekday"),
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
    ref("created_by_user_id", "users.id"),
    sa.Column("created_ms", Millis, nullable=False),
    sa.CheckConstraint("ends_ms > starts_ms", name="span"),
    sa.CheckConstraint("kind IN ('leave', 'clinic_duty')", name="kind"),
    sa.Index("ix_availability_exceptions_expert_starts", "expert_id", "starts_ms"),
    sa.Index("ix_availability_exceptions_expert_ends", "expert_id", "ends_ms"),  # what covers an instant
)

APPOINTMENT_STATUSES = ("booked", "pending_approval", "rejected", "cancelled")

appointments = sa.Table(
    "appointments",
    metadata,
    id_column(),
    ref("expert_id", "experts.id", nullable=False),
    ref("department_id", "departments.id", nullable=False),  # the expert's department when it was booked
    sa.Column("start_ms", Millis, nullable=False),
    sa.Column("end_ms", Millis, nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    ref("patient_id", "patients.id"),
    ref("consultation_id", "consultations.id"),
    # booked | pending_approval (an urgent extra slot waiting for a department head) | rejected | cancelled
    sa.Column("status", sa.String(20), nullable=False),
    sa.Column("urgent_extra", sa.Boolean, nullable=False, server_default=sa.false()),
    sa.Column("reason", sa.Text),  # the clinic's question, or why an extra slot is urgent
    ref("requested_by_user_id", "users.id"),
    ref("decided_by_user_id", "users.id"),  # the department head who approved or rejected an extra slot
    sa.Column("decided_ms", Millis),
    sa.Column("decision_note", sa.Text),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("updated_ms", Millis, nullable=False),
    sa.Column("confirmed_ms", Millis),  # the clinic's gateway has the confirmation (its receipt came back)
    sa.Column("reminded_ms", Millis),  # the reminder was queued to the clinic and shown to the expert
    ref("cancelled_by_user_id", "users.id"),
    sa.Column("cancelled_ms", Millis),
    sa.Column("cancel_reason", sa.Text),
    sa.CheckConstraint("end_ms > start_ms", name="span"),
    sa.CheckConstraint(f"status IN ({', '.join(repr(s) for s in APPOINTMENT_STATUSES)})", name="status"),
    sa.Index("ix_appointments_expert_start", "expert_id", "start_ms"),
    sa.Index("ix_appointments_expert_end", "expert_id", "end_ms"),  # what covers an instant
    sa.Index("ix_appointments_clinic_start", "clinic_id", "start_ms"),
    sa.Index("ix_appointments_status_start", "status", "start_ms"),
)

# One row per expert and 5-minute unit (`hq.slots.UNIT_MS`) a booked or pending appointment covers, written in
# the booking's transaction: two overlapping bookings collide on the primary key in any database, under any
# concurrency, whatever the application checked before. Cancelling or rejecting deletes the rows.
slot_claims = sa.Table(
    "slot_claims",
    metadata,
    sa.Column("expert_id", BigId, sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("unit_start_ms", Millis, primary_key=True),
    sa.Column("appointment_id", BigId, sa.ForeignKey("appointments.id", ondelete="CASCADE"), nullable=False),
)

# Who is available when, precomputed (`hq.presence`): matching an emergency asks it of thousands of experts at
# once. An expert's free windows (published availability minus leave, clinic duty and booked appointments) over
# [from_ms, until_ms) of their presence row; a row whose range does not cover the instant asked about (until_ms 0:
# made stale) is not used. Triggers (revision 0010) make an expert's row stale, and bump its generation, in the
# transaction that changes their rules, exceptions, appointments or time zone; the refresher writes only rows
# whose generation it read before the data it computed them from.
expert_presence = sa.Table(
    "expert_presence",
    metadata,
    sa.Column("expert_id", BigId, sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("generation", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("from_ms", Millis, nullable=False, server_default="0"),
    sa.Column("until_ms", Millis, nullable=False, server_default="0"),
)

expert_free_windows = sa.Table(
    "expert_free_windows",
    metadata,
    sa.Column("expert_id", BigId, sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("starts_ms", Millis, primary_key=True),
    sa.Column("ends_ms", Millis, nullable=False),
)
