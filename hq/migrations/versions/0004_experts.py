"""The expert directory: departments (seeded with the common departments and their synonyms) and synonyms,
department heads, experts, credentials, tags, capability figures.

Revision 0004, after 0003.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None

_ID = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "departments",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("code", sa.String(length=64), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("name_zh", sa.String(length=200), server_default="", nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_departments")),
        sa.UniqueConstraint("code", name=op.f("uq_departments_code")),
    )
    op.create_table(
        "department_synonyms",
        sa.Column("synonym", sa.String(length=200), nullable=False),
        sa.Column("department_id", _ID, nullable=False),
        sa.Column("display", sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name=op.f("fk_department_synonyms_department_id_departments"), ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("synonym", name=op.f("pk_department_synonyms")),
    )
    op.create_index("ix_department_synonyms_department_id", "department_synonyms", ["department_id"])
    op.create_table(
        "department_heads",
        sa.Column("department_id", _ID, nullable=False),
        sa.Column("user_id", _ID, nullable=False),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name=op.f("fk_department_heads_department_id_departments"), ondelete="CASCADE"),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_department_heads_user_id_users"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("department_id", "user_id", name=op.f("pk_department_heads")),
    )
    op.create_table(
        "experts",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("user_id", _ID, nullable=True),
        sa.Column("external_ref", sa.String(length=64), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("title", sa.String(length=200), server_default="", nullable=False),
        sa.Column("hospital", sa.String(length=200), server_default="", nullable=False),
        sa.Column("department_id", _ID, nullable=False),
        sa.Column("scope_of_practice", sa.Text(), server_default="", nullable=False),
        sa.Column("time_zone", sa.String(length=64), server_default="UTC", nullable=False),
        sa.Column("languages", sa.JSON(), nullable=False),
        sa.Column("daily_cap", sa.Integer(), server_default="8", nullable=False),
        sa.Column("active", sa.Boolean(), server_default=sa.true(), nullable=False),
        sa.Column("credentials_expire_on", sa.Date(), nullable=True),
        sa.Column("search_text", sa.String(length=600), server_default="", nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("profile_updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("reviewed_ms", sa.BigInteger(), nullable=True),
        sa.ForeignKeyConstraint(["department_id"], ["departments.id"],
                                name=op.f("fk_experts_department_id_departments")),
        sa.ForeignKeyConstraint(["user_id"], ["users.id"], name=op.f("fk_experts_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_experts")),
        sa.UniqueConstraint("user_id", name=op.f("uq_experts_user_id")),
        sa.UniqueConstraint("external_ref", name=op.f("uq_experts_external_ref")),
    )
    op.create_index("ix_experts_department_id", "experts", ["department_id"])
    op.create_table(
        "expert_credentials",
        sa.Column("id", _ID, autoincrement=True, nullable=False),
        sa.Column("expert_id", _ID, nullable=False),
        sa.Column("kind", sa.String(length=64), nullable=False),
        sa.Column("identifier", sa.String(length=100), server_default="", nullable=False),
        sa.Column("issuer", sa.String(length=200), server_default="", nullable=False),
        sa.Column("expires_on", sa.Date(), nullable=True),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_expert_credentials_expert_id_experts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_expert_credentials")),
    )
    op.create_index("ix_expert_credentials_expert_id", "expert_credentials", ["expert_id"])
    op.create_table(
        "expert_tags",
        sa.Column("expert_id", _ID, nullable=False),
        sa.Column("tag", sa.String(length=100), nullable=False),
        sa.Column("display", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_expert_tags_expert_id_experts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("expert_id", "tag", name=op.f("pk_expert_tags")),
    )
    op.create_index("ix_expert_tags_tag", "expert_tags", ["tag"])
    op.create_table(
        "expert_capability",
        sa.Column("expert_id", _ID, nullable=False),
        sa.Column("consultations_done", sa.Integer(), nullable=False),
        sa.Column("offers", sa.Integer(), nullable=False),
        sa.Column("offers_accepted", sa.Integer(), nullable=False),
        sa.Column("median_response_s", sa.Float(), nullable=True),
        sa.Column("p90_response_s", sa.Float(), nullable=True),
        sa.Column("ratings", sa.Integer(), nullable=False),
        sa.Column("rating_avg", sa.Float(), nullable=True),
        sa.Column("adoption_answers", sa.Integer(), nullable=False),
        sa.Column("adopted", sa.Integer(), nullable=False),
        sa.Column("last_consultation_ms", sa.BigInteger(), nullable=True),
        sa.Column("computed_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["expert_id"], ["experts.id"], name=op.f("fk_expert_capability_expert_id_experts"),
                                ondelete="CASCADE"),
        sa.PrimaryKeyConstraint("expert_id", name=op.f("pk_expert_capability")),
    )
    # The seeded taxonomy. HQ also adds seeded names that a later version brings at every start (insert-only,
    # so synonyms coordinators added are kept): see `hq.departments.seed_taxonomy`.
    from hq.departments import seed_taxonomy

    seed_taxonomy(op.get_bind())


def downgrade() -> None:
    op.drop_table("expert_capability")
    op.drop_index("ix_expert_tags_tag", table_name="expert_tags")
    op.drop_table("expert_tags")
    op.drop_index("ix_expert_credentials_expert_id", table_name="expert_credentials")
    op.drop_table("expert_credentials")
    op.drop_index("ix_experts_department_id", table_name="experts")
    op.drop_table("experts")
    op.drop_table("department_heads")
    op.drop_index("ix_department_synonyms_department_id", table_name="department_synonyms")
    op.drop_table("department_synonyms")
    op.drop_table("departments")
