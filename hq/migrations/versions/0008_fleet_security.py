"""Fleet security: enrolment tokens, issued gateway certificates, revoked gateways, versions of each gateway's
HQ-managed settings, and the settings version a gateway reports (gateways.config_version).

Revision 0008, after 0006 (the integrator re-chains revisions when merging).
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008"
down_revision = "0006"
branch_labels = None
depends_on = None

_BIG_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "enrolment_tokens",
        sa.Column("id", _BIG_ID, autoincrement=True, nullable=False),
        sa.Column("token_hash", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("expires_ms", sa.BigInteger(), nullable=False),
        sa.Column("used_ms", sa.BigInteger(), nullable=True),
        sa.Column("certificate_serial", sa.String(length=40), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_enrolment_tokens")),
        sa.UniqueConstraint("token_hash", name=op.f("uq_enrolment_tokens_token_hash")),
    )
    op.create_index("ix_enrolment_tokens_gateway_id", "enrolment_tokens", ["gateway_id"], unique=False)
    op.create_table(
        "gateway_certificates",
        sa.Column("serial", sa.String(length=40), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("issued_ms", sa.BigInteger(), nullable=False),
        sa.Column("not_after_ms", sa.BigInteger(), nullable=False),
        sa.Column("token_id", _BIG_ID, nullable=True),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=True),
        sa.Column("revoke_reason", sa.String(length=32), nullable=True),
        sa.ForeignKeyConstraint(["token_id"], ["enrolment_tokens.id"],
                                name=op.f("fk_gateway_certificates_token_id_enrolment_tokens")),
        sa.PrimaryKeyConstraint("serial", name=op.f("pk_gateway_certificates")),
    )
    op.create_index("ix_gateway_certificates_gateway_issued", "gateway_certificates", ["gateway_id", "issued_ms"],
                    unique=False)
    op.create_table(
        "revoked_gateways",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("revoked_ms", sa.BigInteger(), nullable=False),
        sa.Column("revoked_by", sa.String(length=100), nullable=False),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("broker_applied_ms", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_revoked_gateways")),
    )
    op.create_table(
        "gateway_config_versions",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("version", sa.Integer(), autoincrement=False, nullable=False),
        sa.Column("settings", sa.JSON(), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("acked_ms", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.CheckConstraint("state IN ('pending', 'applied', 'rejected', 'superseded')",
                           name=op.f("ck_gateway_config_versions_state")),
        sa.PrimaryKeyConstraint("gateway_id", "version", name=op.f("pk_gateway_config_versions")),
    )
    with op.batch_alter_table("gateways") as batch_op:
        batch_op.add_column(sa.Column("config_version", sa.Integer(), server_default="0", nullable=False))


def downgrade() -> None:
    with op.batch_alter_table("gateways") as batch_op:
        batch_op.drop_column("config_version")
    op.drop_table("gateway_config_versions")
    op.drop_table("revoked_gateways")
    op.drop_index("ix_gateway_certificates_gateway_issued", table_name="gateway_certificates")
    op.drop_table("gateway_certificates")
    op.drop_index("ix_enrolment_tokens_gateway_id", table_name="enrolment_tokens")
    op.drop_table("enrolment_tokens")
