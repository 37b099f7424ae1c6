"""Consultations (routine, urgent, emergency): the request and its short form, dispatch offers to experts,
the session's chat, structured advice, reports, attachments, the clinic's rating and follow-up.

Only the schema; the rules (matching, dispatch, escalation, the session flow) are in `hq.consultations`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import BigId, Millis, id_column, metadata, ref

consultations = sa.Table(
    "consultations",
    metadata,
    id_column(),
    sa.Column("public_id", sa.String(40), nullable=False, unique=True),  # made by the gateway when offline
    sa.Column("kind", sa.String(16), nullable=False),  # routine | urgent | emergency
    sa.Column("status", sa.String(24), nullable=False),  # the vocabulary is hq.consultations.Status
    sa.Column("stage", sa.String(24)),  # identity_check | case_presentation | discussion | opinion
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    sa.Column("gateway_id", sa.String(64)),
    ref("patient_id", "patients.id"),
    ref("department_id", "departments.id"),
    ref("requested_expert_id", "experts.id"),
    ref("expert_id", "experts.id"),  # who took it
    ref("requested_by_user_id", "users.id"),
    sa.Column("requested_by", sa.String(200)),  # who asked, as shown (a gateway's local screen has no user id)
    sa.Column("tags", sa.JSON(none_as_null=True)),  # skills / diseases asked for, for matching
    sa.Column("language", sa.String(16)),  # BCP 47, when the clinic needs a particular language
    sa.Column("requested_ms", Millis, nullable=False),  # the click, on the clinic's clock
    sa.Column("scheduled_ms", Millis),  # routine consultations booked in a slot: its start
    sa.Column("received_ms", Millis, nullable=False),  # when HQ committed the request
    sa.Column("accepted_ms", Millis),
    sa.Column("started_ms", Millis),
    sa.Column("ended_ms", Millis),
    sa.Column("form_due_ms", Millis),
    sa.Column("form_received_ms", Millis),
    sa.Column("form_overdue_ms", Millis),  # when the short form was flagged overdue (and people told, once)
    sa.Column("chief_complaint", sa.Text),
    sa.Column("preliminary_diagnosis", sa.Text),
    sa.Column("question", sa.Text),
    sa.Column("vitals", sa.JSON(none_as_null=True)),  # the vitals attached when the request was made
    sa.Column("escalation_round", sa.Integer, nullable=False, server_default="0"),
    sa.Column("next_escalation_ms", Millis),  # the current round's offers time out then (null: none waiting)
    sa.Column("coordinators_notified_ms", Millis),
    sa.Column("cancelled_ms", Millis),
    sa.Column("cancel_reason", sa.Text),
    sa.Column("rating", sa.Integer),
    sa.Column("rating_comment", sa.Text),
    sa.Column("rated_ms", Millis),
    sa.Column("advice_adopted", sa.Boolean),
    sa.Column("adoption_note", sa.Text),
    sa.Column("adoption_ms", Millis),
    sa.Index("ix_consultations_status", "status"),
    sa.Index("ix_consultations_expert_status", "expert_id", "status"),
    sa.Index("ix_consultations_clinic_requested", "clinic_id", "requested_ms"),
    sa.Index("ix_consultations_patient_id", "patient_id"),
    sa.Index("ix_consultations_next_escalation_ms", "next_escalation_ms"),
    sa.Index("ix_consultations_expert_accepted", "expert_id", "accepted_ms"),  # today's load
    sa.Index("ix_consultations_requested_ms", "requested_ms"),
)

dispatch_offers = sa.Table(
    "dispatch_offers",
    metadata,
    id_column(),
    ref("consultation_id", "consultations.id", nullable=False, ondelete="CASCADE"),
    ref("expert_id", "experts.id", nullable=False),
    sa.Column("round", sa.Integer, nullable=False),
    sa.Column("offered_ms", Millis, nullable=False),
    sa.Column("responded_ms", Millis),
    sa.Column("outcome", sa.String(16), nullable=False),  # pending | accepted | declined | withdrawn | expired
    sa.Column("score", sa.Float, nullable=False, server_default="0"),
    sa.Column("reasons", sa.JSON(none_as_null=True)),  # why matching chose the expert, shown with the offer
    sa.UniqueConstraint("consultation_id", "expert_id"),
    sa.Index("ix_dispatch_offers_expert_outcome", "expert_id", "outcome"),
)

consultation_messages = sa.Table(
    "consultation_messages",
    metadata,
    id_column(),
    ref("consultation_id", "consultations.id", nullable=False, ondelete="CASCADE"),
    ref("author_user_id", "users.id"),
    sa.Column("author", sa.String(200), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False, server_default="chat"),  # chat | stage (the flow moved on)
    sa.Column("body", sa.Text, nullable=False),
    sa.Column("at_ms", Millis, nullable=False),
    sa.Index("ix_consultation_messages_consultation_at", "consultation_id", "at_ms"),
)

advice_items = sa.Table(
    "advice_items",
    metadata,
    id_column(),
    ref("consultation_id", "consultations.id", nullable=False, ondelete="CASCADE"),
    sa.Column("position", sa.Integer, nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),  # drug | procedure | diagnosis | note
    sa.Column("body", sa.JSON, nullable=False),  # validated per kind by hq.consultations
    sa.UniqueConstraint("consultation_id", "position"),
)

reports = sa.Table(
    "reports",
    metadata,
    id_column(),
    ref("consultation_id", "consultations.id", nullable=False, ondelete="CASCADE"),
    sa.Column("version", sa.Integer, nullable=False),
    sa.Column("html", sa.Text, nullable=False),
    sa.Column("pdf", sa.LargeBinary, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    ref("created_by_user_id", "users.id"),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("delivered_ms", Millis),  # the clinic's gateway confirmed it has the report
    sa.UniqueConstraint("consultation_id", "version"),
)

consultation_attachments = sa.Table(
    "consultation_attachments",
    metadata,
    sa.Column("consultation_id", BigId, sa.ForeignKey("consultations.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("imaging_id", BigId, sa.ForeignKey("imaging.id"), primary_key=True),
)
