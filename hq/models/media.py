"""Video consultations: who joined a call, the call-quality samples the gateways send and the alerts raised
from them, and the recordings the gateways upload.

Only the schema; signalling and quality rules are in `hq.calls` and `hq.call_quality`, uploads in
`hq.recordings`. A consultation is named by its public id (it may reach HQ after its recording does). Access to a
recording is written to the audit log (`hq.audit`), not here.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import Millis, id_column, metadata, ref

call_participants = sa.Table(
    "call_participants",
    metadata,
    id_column(),
    sa.Column("peer_id", sa.String(64), nullable=False, unique=True),
    sa.Column("consultation_public_id", sa.String(40), nullable=False),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    ref("user_id", "users.id"),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False),  # sha256 of the resume token the browser holds
    sa.Column("joined_ms", Millis, nullable=False),
    sa.Column("last_seen_ms", Millis, nullable=False),  # its signalling socket last (re)attached or spoke
    sa.Column("left_ms", Millis),
    sa.Index("ix_call_participants_consultation_public_id", "consultation_public_id"),
)

call_quality_samples = sa.Table(
    "call_quality_samples",
    metadata,
    id_column(),
    sa.Column("consultation_public_id", sa.String(40), nullable=False),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("peer_id", sa.String(64), nullable=False),
    sa.Column("stream", sa.String(40), nullable=False),
    sa.Column("kind", sa.String(8), nullable=False),  # audio | video
    sa.Column("direction", sa.String(4), nullable=False),  # out (gateway -> participant) | in
    sa.Column("at_ms", Millis, nullable=False),  # the gateway's time of the sample
    sa.Column("rtt_ms", sa.Float),
    sa.Column("loss_pct", sa.Float),
    sa.Column("jitter_ms", sa.Float),
    sa.Column("fps", sa.Float),
    sa.Column("kbps", sa.Float),
    sa.Column("tier", sa.String(8)),
    # Every HQ worker receives every sample (for its live pages): the key makes storing it idempotent.
    sa.UniqueConstraint("gateway_id", "peer_id", "stream", "at_ms"),
    sa.Index("ix_call_quality_samples_consultation_at", "consultation_public_id", "at_ms"),
    sa.Index("ix_call_quality_samples_at_ms", "at_ms"),
)

call_alerts = sa.Table(
    "call_alerts",
    metadata,
    id_column(),
    sa.Column("consultation_public_id", sa.String(40), nullable=False),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("peer_id", sa.String(64), nullable=False),
    sa.Column("stream", sa.String(40), nullable=False),  # "" for the connection as a whole
    sa.Column("kind", sa.String(16), nullable=False),  # loss | rtt | jitter | low_fps | disconnected
    sa.Column("value", sa.Float, nullable=False),  # the figure that opened it
    sa.Column("threshold", sa.Float, nullable=False),
    sa.Column("started_ms", Millis, nullable=False),
    sa.Column("ended_ms", Millis),
    # Set while the alert is open, null once closed: two workers seeing the same sample open it once.
    sa.Column("open_key", sa.String(200), unique=True),
    sa.Index("ix_call_alerts_consultation_started", "consultation_public_id", "started_ms"),
)

recordings = sa.Table(
    "recordings",
    metadata,
    id_column(),
    sa.Column("recording_id", sa.String(100), nullable=False, unique=True),  # made by the gateway
    sa.Column("consultation_public_id", sa.String(40), nullable=False),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("clinic_id", sa.String(64), nullable=False),
    sa.Column("patient_ref", sa.String(64)),  # the patient as the gateway names them, if it knows
    sa.Column("mime", sa.String(40), nullable=False),
    sa.Column("started_ms", Millis, nullable=False),
    sa.Column("ended_ms", Millis, nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("received_bytes", sa.BigInteger, nullable=False, server_default="0"),
    sa.Column("state", sa.String(16), nullable=False),  # uploading | complete | refused
    sa.Column("storage_path", sa.String(500)),  # relative to [recordings] dir, once complete
    sa.Column("announced_ms", Millis, nullable=False),
    sa.Column("completed_ms", Millis),
    sa.Index("ix_recordings_consultation_public_id", "consultation_public_id"),
)
