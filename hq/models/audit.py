"""The audit log: append-only, one row per access or change, each row's hash covering the one before.

Only the schema; `hq.audit` writes and verifies the chain. Migration 0002 adds triggers refusing UPDATE and
DELETE on this table.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import BigId, Millis, metadata

audit_log = sa.Table(
    "audit_log",
    metadata,
    sa.Column("id", BigId, primary_key=True, autoincrement=False),  # 1, 2, 3 ... in chain order, no gaps
    sa.Column("at_ms", Millis, nullable=False),
    sa.Column("actor_user_id", sa.BigInteger),  # no foreign key: the log outlives what it names
    sa.Column("actor", sa.String(100), nullable=False),  # "user:alice", "gateway:gw-1", "system"
    sa.Column("action", sa.String(64), nullable=False),  # e.g. "patient.read", "login.failed", "export"
    sa.Column("target_type", sa.String(40)),
    sa.Column("target_id", sa.String(100)),
    sa.Column("clinic_id", sa.String(64)),
    sa.Column("detail", sa.JSON(none_as_null=True)),
    sa.Column("prev_hash", sa.String(64), nullable=False),
    sa.Column("hash", sa.String(64), nullable=False),
    sa.Index("ix_audit_log_target", "target_type", "target_id"),
    sa.Index("ix_audit_log_actor_user_id", "actor_user_id"),
)

# One row: the newest entry's id and hash. Appending updates it first, which serialises appenders (a row lock
# on PostgreSQL, the write lock on SQLite) so the chain never forks. Verification never trusts it alone.
audit_head = sa.Table(
    "audit_head",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),  # always 1
    sa.Column("last_id", BigId, nullable=False),
    sa.Column("last_hash", sa.String(64), nullable=False),
)
