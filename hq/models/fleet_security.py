"""The fleet's identities and remote configuration: enrolment tokens, the certificates HQ's CA issued, revoked
gateways, and the versions of each gateway's HQ-managed settings with the gateway's answer to each.

Only the schema; `hq.enrolment`, `hq.revocation` and `hq.gateway_settings` hold the rules. Migration 0008.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import Millis, id_column, metadata, ref

CONFIG_STATES = ("pending", "applied", "rejected", "superseded")

enrolment_tokens = sa.Table(
    "enrolment_tokens",
    metadata,
    id_column(),
    # sha256 of the token: the token itself is shown once to the coordinator and never stored.
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("clinic_id", sa.String(64), nullable=False),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),  # audit actor label, e.g. "user:alice"
    sa.Column("expires_ms", Millis, nullable=False),
    sa.Column("used_ms", Millis),  # set once, by the one redemption that succeeded
    sa.Column("certificate_serial", sa.String(40)),
    sa.Index("ix_enrolment_tokens_gateway_id", "gateway_id"),
)

gateway_certificates = sa.Table(
    "gateway_certificates",
    metadata,
    sa.Column("serial", sa.String(40), primary_key=True),  # hexadecimal, as in the CRL
    sa.Column("gateway_id", sa.String(64), nullable=False),
    sa.Column("clinic_id", sa.String(64), nullable=False),
    sa.Column("issued_ms", Millis, nullable=False),
    sa.Column("not_after_ms", Millis, nullable=False),
    ref("token_id", "enrolment_tokens.id"),
    sa.Column("revoked_ms", Millis),  # listed in the CRL from then on
    sa.Column("revoke_reason", sa.String(32)),  # "revoked" (the gateway) | "superseded" (a newer certificate)
    sa.Index("ix_gateway_certificates_gateway_issued", "gateway_id", "issued_ms"),
)

# A revoked gateway id is never enrolled again: a replacement joins under a new id (its outbox starts at seq 1,
# which HQ would take for duplicates of the old gateway's readings anyway).
revoked_gateways = sa.Table(
    "revoked_gateways",
    metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("revoked_ms", Millis, nullable=False),
    sa.Column("revoked_by", sa.String(100), nullable=False),
    sa.Column("reason", sa.Text),
    # When the broker confirmed it denies the gateway and dropped its connection (dynamic security); null while
    # HQ still has to tell it (e.g. the broker was unreachable).
    sa.Column("broker_applied_ms", Millis),
)

gateway_config_versions = sa.Table(
    "gateway_config_versions",
    metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("version", sa.Integer, primary_key=True, autoincrement=False),  # 1, 2, 3 ... per gateway
    sa.Column("settings", sa.JSON, nullable=False),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("created_by", sa.String(100), nullable=False),
    sa.Column("state", sa.String(16), nullable=False),
    sa.Column("acked_ms", Millis),  # when the gateway's answer (applied or rejected) reached HQ
    sa.Column("reason", sa.Text),  # the gateway's reason for rejecting it
    sa.CheckConstraint(f"state IN ({', '.join(repr(s) for s in CONFIG_STATES)})", name="state"),
)
