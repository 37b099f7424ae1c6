"""The fleet's tables: clinics, gateways, the observations they send, and facts about the database itself.

Only the schema: reads and writes live in `hq.store` and `hq.queries`; migration 0001 creates these tables.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import Millis, metadata

clinics = sa.Table(
    "clinics",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
)

gateways = sa.Table(
    "gateways",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # "online" | "offline"
    sa.Column("first_seen_ms", Millis, nullable=False),
    sa.Column("last_contact_ms", Millis),  # null until the gateway itself was heard (a will is the broker)
    sa.Column("software", sa.String(100), nullable=False, server_default=""),
    sa.Column("started_ms", Millis),
    sa.Column("backlog_total", sa.Integer, nullable=False, server_default="0"),
    sa.Column("backlog_json", sa.JSON(none_as_null=True)),  # {"alarm": [count, oldest_ms], ...}
    sa.Column("drain_rate_per_s", sa.Float),  # entries/s HQ confirmed, as the gateway last reported
    sa.Column("devices_json", sa.JSON(none_as_null=True)),  # [{"device_id", "protocol", "state", ...}]
    sa.Column("committed_seq", sa.BigInteger, nullable=False, server_default="0"),
    # Every seq below it is here (or was dropped by the gateway's quota, with a gap saying so): where a
    # replay starts after this database is restored from a replica. Written in the data's transaction.
    sa.Column("complete_below", sa.BigInteger, nullable=False, server_default="0"),
    # The version of HQ-managed settings the gateway says it runs (0: only its local TOML); migration 0008.
    sa.Column("config_version", sa.Integer, nullable=False, server_default="0"),
)

# Facts about this database itself, e.g. that it was restored and the gateways must replay.
hq_meta = sa.Table(
    "hq_meta",
    metadata,
    sa.Column("key", sa.String(64), primary_key=True),
    sa.Column("value", sa.Text, nullable=False),
)

observations = sa.Table(
    "observations",
    metadata,
    # (gateway_id, seq) is the key: what makes redelivery harmless. No surrogate id: on PostgreSQL it cost a
    # sequence and one more index per reading.
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("clinic_id", sa.String(64), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(80), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("unit", sa.String(40)),
    sa.Column("time_ms", Millis, nullable=False),  # the source's own time (UTC)
    sa.Column("recv_ms", Millis, nullable=False),  # when the gateway received it
    sa.Column("hq_ms", Millis, nullable=False),  # when HQ committed it
    sa.Column("patient_id", sa.String(80)),
    sa.Column("device_id", sa.String(80), nullable=False),
    sa.Column("extra", sa.JSON(none_as_null=True)),
    sa.Index("ix_observations_patient_metric_time", "patient_id", "metric", "time_ms"),
    sa.Index("ix_observations_gateway_time", "gateway_id", "time_ms"),
)
