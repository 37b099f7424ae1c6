"""Indexes for dispatch at scale: the directory's time zones (`hq.experts.time_zones`), each expert's rules by
weekday, leave and bookings by their end (what covers "now" is what has not ended), consultations each expert
accepted by time (today's load) and consultations by request time (chain-wide lists).

Revision 0009, after 0007 (the head on main: 0006, 0008, 0007). No tables change; the old rules index by expert
alone is replaced by the composite.
"""

from __future__ import annotations

from alembic import op

revision = "0009"
down_revision = "0007"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_experts_time_zone", "experts", ["time_zone"], unique=False)
    op.create_index("ix_availability_rules_expert_weekday", "availability_rules", ["expert_id", "weekday"],
                    unique=False)
    op.drop_index("ix_availability_rules_expert_id", table_name="availability_rules")
    op.create_index("ix_availability_exceptions_expert_ends", "availability_exceptions", ["expert_id", "ends_ms"],
                    unique=False)
    op.create_index("ix_appointments_expert_end", "appointments", ["expert_id", "end_ms"], unique=False)
    op.create_index("ix_consultations_expert_accepted", "consultations", ["expert_id", "accepted_ms"], unique=False)
    op.create_index("ix_consultations_requested_ms", "consultations", ["requested_ms"], unique=False)


def downgrade() -> None:
    op.drop_index("ix_consultations_requested_ms", table_name="consultations")
    op.drop_index("ix_consultations_expert_accepted", table_name="consultations")
    op.drop_index("ix_appointments_expert_end", table_name="appointments")
    op.drop_index("ix_availability_exceptions_expert_ends", table_name="availability_exceptions")
    op.create_index("ix_availability_rules_expert_id", "availability_rules", ["expert_id"], unique=False)
    op.drop_index("ix_availability_rules_expert_weekday", table_name="availability_rules")
    op.drop_index("ix_experts_time_zone", table_name="experts")
