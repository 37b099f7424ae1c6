"""Messages from HQ to a gateway (confirmations, reminders, consultation updates, reports, configuration),
kept until the gateway confirms it stored them.

Only the schema; `hq.downlink` queues, publishes and retires them.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import Millis, id_column, metadata

downlink_messages = sa.Table(
    "downlink_messages",
    metadata,
    id_column(),
    sa.Column("gateway_id", sa.String(64), sa.ForeignKey("gateways.id"), nullable=False),
    sa.Column("kind", sa.String(40), nullable=False),
    sa.Column("body", sa.JSON, nullable=False),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("sent_ms", Millis),  # last publish
    sa.Column("attempts", sa.Integer, nullable=False, server_default="0"),
    sa.Column("delivered_ms", Millis),  # the gateway's receipt, through its outbox
    sa.Column("outcome", sa.String(16)),  # stored | applied | rejected, as the receipt says
    sa.Column("outcome_detail", sa.Text),
    sa.Index("ix_downlink_messages_pending", "gateway_id", "delivered_ms", "id"),
)
