"""The expert directory: the canonical department taxonomy with its synonyms, experts, their credentials,
skill and disease tags, and who heads which department.

Only the schema; normalisation, import and capability figures are in `hq.experts`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import BigId, Millis, id_column, metadata, ref

departments = sa.Table(
    "departments",
    metadata,
    id_column(),
    sa.Column("code", sa.String(64), nullable=False, unique=True),  # e.g. "cardiology"
    sa.Column("name", sa.String(200), nullable=False),  # canonical display name
)

# Every name a hospital uses for a department (心血管内科, 心内科, "Cardiology"), normalised, -> one department.
department_synonyms = sa.Table(
    "department_synonyms",
    metadata,
    sa.Column("synonym", sa.String(200), primary_key=True),
    ref("department_id", "departments.id", nullable=False, ondelete="CASCADE"),
    sa.Column("display", sa.String(200), nullable=False),
)

department_heads = sa.Table(
    "department_heads",
    metadata,
    sa.Column("department_id", BigId,
              sa.ForeignKey("departments.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("user_id", BigId,
              sa.ForeignKey("users.id", ondelete="CASCADE"), primary_key=True),
)

experts = sa.Table(
    "experts",
    metadata,
    id_column(),
    ref("user_id", "users.id"),  # the expert's console account
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("title", sa.String(200), nullable=False, server_default=""),
    sa.Column("hospital", sa.String(200), nullable=False, server_default=""),
    ref("department_id", "departments.id", nullable=False),
    sa.Column("scope_of_practice", sa.Text, nullable=False, server_default=""),
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("languages", sa.JSON, nullable=False),  # BCP 47 tags, e.g. ["zh", "en"]
    sa.Column("daily_cap", sa.Integer, nullable=False, server_default="8"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("profile_updated_ms", Millis, nullable=False),
    sa.Column("last_consultation_ms", Millis),
    sa.UniqueConstraint("user_id"),
    sa.Index("ix_experts_department_id", "department_id"),
)

expert_credentials = sa.Table(
    "expert_credentials",
    metadata,
    id_column(),
    ref("expert_id", "experts.id", nullable=False, ondelete="CASCADE"),
    sa.Column("kind", sa.String(64), nullable=False),  # e.g. "medical license", "board certification"
    sa.Column("identifier", sa.String(100), nullable=False, server_default=""),
    sa.Column("issuer", sa.String(200), nullable=False, server_default=""),
    sa.Column("expires_on", sa.Date),
)

expert_tags = sa.Table(
    "expert_tags",
    metadata,
    sa.Column("expert_id", BigId,
              sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(100), primary_key=True),  # normalised skill or disease
    sa.Index("ix_expert_tags_tag", "tag"),
)
