"""The expert directory: the canonical department taxonomy with its synonyms, experts, their credentials,
skill and disease tags, who heads which department, and each expert's capability figures from history.

Only the schema; the taxonomy is in `hq.taxonomy` / `hq.departments`, the directory's rules in `hq.experts`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import BigId, Millis, id_column, metadata, ref

departments = sa.Table(
    "departments",
    metadata,
    id_column(),
    sa.Column("code", sa.String(64), nullable=False, unique=True),  # e.g. "cardiology"
    sa.Column("name", sa.String(200), nullable=False),  # canonical display name (English)
    sa.Column("name_zh", sa.String(200), nullable=False, server_default=""),  # canonical Chinese name
)

# Every name a hospital uses for a department (心血管内科, 心内科, "Cardiology"), normalised by
# `hq.taxonomy.normalise`, -> one department.
department_synonyms = sa.Table(
    "department_synonyms",
    metadata,
    sa.Column("synonym", sa.String(200), primary_key=True),
    ref("department_id", "departments.id", nullable=False, ondelete="CASCADE"),
    sa.Column("display", sa.String(200), nullable=False),
    sa.Index("ix_department_synonyms_department_id", "department_id"),
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
    # The expert's staff or licence number at their hospital: what a CSV import updates by.
    sa.Column("external_ref", sa.String(64), unique=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("title", sa.String(200), nullable=False, server_default=""),
    sa.Column("hospital", sa.String(200), nullable=False, server_default=""),
    ref("department_id", "departments.id", nullable=False),
    sa.Column("scope_of_practice", sa.Text, nullable=False, server_default=""),
    sa.Column("time_zone", sa.String(64), nullable=False, server_default="UTC"),
    sa.Column("languages", sa.JSON, nullable=False),  # BCP 47 tags, e.g. ["zh", "en"]
    sa.Column("daily_cap", sa.Integer, nullable=False, server_default="8"),
    sa.Column("active", sa.Boolean, nullable=False, server_default=sa.true()),
    # The earliest expiry of the expert's credentials, kept by `hq.experts` whenever they change: an expert
    # whose credential has expired is not matched, and the directory filters on it without a join.
    sa.Column("credentials_expire_on", sa.Date),
    sa.Column("search_text", sa.String(600), nullable=False, server_default=""),  # normalised name, hospital...
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("profile_updated_ms", Millis, nullable=False),
    sa.Column("reviewed_ms", Millis),  # a coordinator confirmed the profile is still right
    sa.UniqueConstraint("user_id"),
    sa.Index("ix_experts_department_id", "department_id"),
    sa.Index("ix_experts_time_zone", "time_zone"),  # hq.experts.time_zones
)

expert_credentials = sa.Table(
    "expert_credentials",
    metadata,
    id_column(),
    ref("expert_id", "experts.id", nullable=False, ondelete="CASCADE"),
    sa.Column("kind", sa.String(64), nullable=False),  # e.g. "medical license", "board certification"
    sa.Column("identifier", sa.String(100), nullable=False, server_default=""),
    sa.Column("issuer", sa.String(200), nullable=False, server_default=""),
    sa.Column("expires_on", sa.Date),  # valid through this day (UTC); null: does not expire
    sa.Column("updated_ms", Millis, nullable=False),
    sa.Index("ix_expert_credentials_expert_id", "expert_id"),
)

expert_tags = sa.Table(
    "expert_tags",
    metadata,
    sa.Column("expert_id", BigId,
              sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("tag", sa.String(100), primary_key=True),  # skill or disease, normalised by hq.taxonomy.normalise
    sa.Column("display", sa.String(100), nullable=False),  # as it was entered
    sa.Index("ix_expert_tags_tag", "tag"),
)

# Capability figures from history (`consultations`, `dispatch_offers`), recomputed by SQL aggregation in
# `hq.experts.refresh_capability`: matching reads them for thousands of experts at once, so they are kept
# rather than aggregated per request.
expert_capability = sa.Table(
    "expert_capability",
    metadata,
    sa.Column("expert_id", BigId, sa.ForeignKey("experts.id", ondelete="CASCADE"), primary_key=True),
    sa.Column("consultations_done", sa.Integer, nullable=False),  # reported or closed
    sa.Column("offers", sa.Integer, nullable=False),  # dispatch offers received
    sa.Column("offers_accepted", sa.Integer, nullable=False),
    sa.Column("median_response_s", sa.Float),  # offer to acceptance
    sa.Column("p90_response_s", sa.Float),
    sa.Column("ratings", sa.Integer, nullable=False),
    sa.Column("rating_avg", sa.Float),  # 1..5
    sa.Column("adoption_answers", sa.Integer, nullable=False),  # consultations whose clinic said yes or no
    sa.Column("adopted", sa.Integer, nullable=False),
    sa.Column("last_consultation_ms", Millis),
    sa.Column("computed_ms", Millis, nullable=False),  # when these figures were computed (they changed then)
)

# One row, one number: it grows in every transaction that changes experts, their tags or their capability figures
# (triggers, revision 0011), so a process that keeps the directory in memory for matching (`hq.experts`'
# candidate pools) knows with one read whether its copy is current.
directory_version = sa.Table(
    "directory_version",
    metadata,
    sa.Column("id", sa.SmallInteger, primary_key=True, autoincrement=False),
    sa.Column("version", sa.BigInteger, nullable=False),
    sa.CheckConstraint("id = 1", name="single_row"),
)
