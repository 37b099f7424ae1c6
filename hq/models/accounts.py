"""Console accounts: users with one role each, their browser sessions, API tokens, failed logins.

Only the schema; the rules (hashing, throttling, who may see what) are in `hq.accounts` and `hq.auth`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import Millis, id_column, metadata, ref

ROLES = ("admin", "coordinator", "department_head", "expert", "clinic_staff")

users = sa.Table(
    "users",
    metadata,
    id_column(),
    sa.Column("username", sa.String(64), nullable=False, unique=True),
    sa.Column("display_name", sa.String(200), nullable=False),
    sa.Column("password_hash", sa.String(255)),  # argon2id; null: cannot log in with a password
    sa.Column("role", sa.String(32), nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id")),  # clinic staff: their clinic
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("updated_ms", Millis, nullable=False),
    sa.Column("password_changed_ms", Millis),
    sa.Column("deactivated_ms", Millis),
    sa.CheckConstraint(f"role IN ({', '.join(repr(r) for r in ROLES)})", name="role"),
)

sessions = sa.Table(
    "sessions",
    metadata,
    sa.Column("id", sa.String(64), primary_key=True),  # sha256 of the cookie's token: a stolen table is useless
    ref("user_id", "users.id", nullable=False, ondelete="CASCADE"),
    sa.Column("csrf_token", sa.String(64), nullable=False),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("last_seen_ms", Millis, nullable=False),
    sa.Column("expires_ms", Millis, nullable=False),
    sa.Column("ip", sa.String(64)),
    sa.Column("user_agent", sa.String(300)),
    sa.Index("ix_sessions_user_id", "user_id"),
)

api_tokens = sa.Table(
    "api_tokens",
    metadata,
    id_column(),
    ref("user_id", "users.id", nullable=False, ondelete="CASCADE"),
    sa.Column("name", sa.String(100), nullable=False),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("last_used_ms", Millis),
    sa.Column("revoked_ms", Millis),
)

login_failures = sa.Table(
    "login_failures",
    metadata,
    id_column(),
    sa.Column("username", sa.String(64), nullable=False),
    sa.Column("ip", sa.String(64), nullable=False),
    sa.Column("at_ms", Millis, nullable=False),
    sa.Index("ix_login_failures_username_at", "username", "at_ms"),
    sa.Index("ix_login_failures_ip_at", "ip", "at_ms"),
)
