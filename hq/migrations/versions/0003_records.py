"""Shared patient records: patients, search keys, per-clinic record numbers, duplicate candidates, merges,
visits, imaging, and the readings' rollups and highlights that the timeline reads.

Revision 0003, after 0002.
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")
SearchKey = sa.String(length=100).with_variant(sa.String(length=100, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "patients",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("national_id", sa.String(length=40), nullable=True),
        sa.Column("family_name", sa.String(length=100), nullable=True),
        sa.Column("given_name", sa.String(length=100), nullable=True),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("alt_name", sa.String(length=200), nullable=True),
        sa.Column("sex", sa.String(length=16), nullable=True),
        sa.Column("birth_date", sa.Date(), nullable=True),
        sa.Column("phone", sa.String(length=40), nullable=True),
        sa.Column("origin", sa.String(length=16), server_default="console", nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.Column("merged_into_id", BigId, nullable=True),
        sa.CheckConstraint("origin IN ('console', 'checkin', 'device', 'import')", name=op.f("ck_patients_origin")),
        sa.ForeignKeyConstraint(["merged_into_id"], ["patients.id"], name=op.f("fk_patients_merged_into_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patients")),
    )
    op.create_index("ix_patients_merged_into_id", "patients", ["merged_into_id"], unique=False)
    op.create_index(
        "uq_patients_national_id", "patients", ["national_id"], unique=True,
        sqlite_where=sa.text("national_id IS NOT NULL"), postgresql_where=sa.text("national_id IS NOT NULL"),
    )
    op.create_table(
        "patient_search_keys",
        sa.Column("scope", sa.String(length=64), nullable=False),
        sa.Column("key", SearchKey, nullable=False),
        sa.Column("patient_id", BigId, nullable=False),
        sa.Column("kind", sa.String(length=8), nullable=False),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name=op.f("fk_patient_search_keys_patient_id_patients")),
        sa.PrimaryKeyConstraint("scope", "key", "patient_id", name=op.f("pk_patient_search_keys")),
        sqlite_with_rowid=False,
    )
    op.create_index("ix_patient_search_keys_patient_id_key", "patient_search_keys", ["patient_id", "key"],
                    unique=False)
    if op.get_bind().dialect.name == "postgresql":
        # A search term is a narrow prefix range over many keys that share it ("qiang": thousands of rows). With
        # the default 100 histogram buckets PostgreSQL estimates such a range at 1 row and then joins a second
        # term by scanning its whole range for every candidate (seconds); 2000 buckets estimate it well.
        op.execute("ALTER TABLE patient_search_keys ALTER COLUMN key SET STATISTICS 2000")
    op.create_table(
        "patient_identifiers",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("patient_id", BigId, nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("mrn", sa.String(length=80), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"], name=op.f("fk_patient_identifiers_clinic_id_clinics")),
        sa.ForeignKeyConstraint(
            ["patient_id"], ["patients.id"], name=op.f("fk_patient_identifiers_patient_id_patients")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_identifiers")),
        sa.UniqueConstraint("clinic_id", "mrn", name=op.f("uq_patient_identifiers_clinic_id_mrn")),
    )
    op.create_index("ix_patient_identifiers_patient_id", "patient_identifiers", ["patient_id"], unique=False)
    op.create_table(
        "patient_duplicates",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("patient_id", BigId, nullable=False),
        sa.Column("other_id", BigId, nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.Column("resolved_ms", sa.BigInteger(), nullable=True),
        sa.Column("resolution", sa.String(length=16), nullable=True),
        sa.Column("resolved_by_user_id", BigId, nullable=True),
        sa.ForeignKeyConstraint(["other_id"], ["patients.id"], name=op.f("fk_patient_duplicates_other_id_patients")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"],
                                name=op.f("fk_patient_duplicates_patient_id_patients")),
        sa.ForeignKeyConstraint(["resolved_by_user_id"], ["users.id"],
                                name=op.f("fk_patient_duplicates_resolved_by_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_duplicates")),
        sa.UniqueConstraint("patient_id", "other_id", name=op.f("uq_patient_duplicates_patient_id_other_id")),
    )
    op.create_index("ix_patient_duplicates_open", "patient_duplicates", ["resolved_ms"], unique=False)
    op.create_table(
        "patient_merges",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("survivor_id", BigId, nullable=False),
        sa.Column("merged_id", BigId, nullable=False),
        sa.Column("by_user_id", BigId, nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("at_ms", sa.BigInteger(), nullable=False),
        sa.Column("moved", sa.JSON(), nullable=False),
        sa.Column("undone_ms", sa.BigInteger(), nullable=True),
        sa.Column("undone_by_user_id", BigId, nullable=True),
        sa.ForeignKeyConstraint(["by_user_id"], ["users.id"], name=op.f("fk_patient_merges_by_user_id_users")),
        sa.ForeignKeyConstraint(["merged_id"], ["patients.id"], name=op.f("fk_patient_merges_merged_id_patients")),
        sa.ForeignKeyConstraint(["survivor_id"], ["patients.id"], name=op.f("fk_patient_merges_survivor_id_patients")),
        sa.ForeignKeyConstraint(["undone_by_user_id"], ["users.id"],
                                name=op.f("fk_patient_merges_undone_by_user_id_users")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_patient_merges")),
    )
    op.create_index("ix_patient_merges_merged_id", "patient_merges", ["merged_id"], unique=False)
    op.create_index("ix_patient_merges_survivor_id", "patient_merges", ["survivor_id"], unique=False)
    op.create_table(
        "visits",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("patient_id", BigId, nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("gateway_id", sa.String(length=64), nullable=True),
        sa.Column("external_id", sa.String(length=64), nullable=True),
        sa.Column("started_ms", sa.BigInteger(), nullable=False),
        sa.Column("ended_ms", sa.BigInteger(), nullable=True),
        sa.Column("reason", sa.Text(), nullable=True),
        sa.Column("created_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"], name=op.f("fk_visits_clinic_id_clinics")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_visits_patient_id_patients")),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_visits")),
        sa.UniqueConstraint("external_id", name=op.f("uq_visits_external_id")),
    )
    op.create_index("ix_visits_patient_started", "visits", ["patient_id", "started_ms"], unique=False)
    op.create_table(
        "imaging",
        sa.Column("id", BigId, autoincrement=True, nullable=False),
        sa.Column("patient_id", BigId, nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=True),
        sa.Column("sha256", sa.String(length=64), nullable=False),
        sa.Column("size_bytes", sa.BigInteger(), nullable=False),
        sa.Column("storage_path", sa.String(length=500), nullable=False),
        sa.Column("filename", sa.String(length=300), nullable=True),
        sa.Column("modality", sa.String(length=16), nullable=True),
        sa.Column("study_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("series_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("sop_instance_uid", sa.String(length=64), nullable=True),
        sa.Column("study_date", sa.Date(), nullable=True),
        sa.Column("study_description", sa.String(length=300), nullable=True),
        sa.Column("body_part", sa.String(length=64), nullable=True),
        sa.Column("tags", sa.JSON(none_as_null=True), nullable=True),
        sa.Column("uploaded_by_user_id", BigId, nullable=True),
        sa.Column("uploaded_ms", sa.BigInteger(), nullable=False),
        sa.ForeignKeyConstraint(["clinic_id"], ["clinics.id"], name=op.f("fk_imaging_clinic_id_clinics")),
        sa.ForeignKeyConstraint(["patient_id"], ["patients.id"], name=op.f("fk_imaging_patient_id_patients")),
        sa.ForeignKeyConstraint(
            ["uploaded_by_user_id"], ["users.id"], name=op.f("fk_imaging_uploaded_by_user_id_users")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_imaging")),
        sa.UniqueConstraint("sop_instance_uid", name=op.f("uq_imaging_sop_instance_uid")),
    )
    op.create_index("ix_imaging_patient_id", "imaging", ["patient_id"], unique=False)
    op.create_table(
        "observation_rollups",
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=80), nullable=False),
        sa.Column("day_ms", sa.BigInteger(), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("unit", sa.String(length=40), nullable=True),
        sa.Column("count", sa.Integer(), nullable=False),
        sa.Column("value_count", sa.Integer(), nullable=False),
        sa.Column("value_min", sa.Float(), nullable=True),
        sa.Column("value_max", sa.Float(), nullable=True),
        sa.Column("value_sum", sa.Float(), nullable=True),
        sa.Column("first_ms", sa.BigInteger(), nullable=False),
        sa.Column("last_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("clinic_id", "patient_key", "day_ms", "metric", "kind",
                                name=op.f("pk_observation_rollups")),
        sqlite_with_rowid=False,
    )
    op.create_table(
        "observation_highlights",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("clinic_id", sa.String(length=64), nullable=False),
        sa.Column("patient_key", sa.String(length=80), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("metric", sa.String(length=80), nullable=False),
        sa.Column("value", sa.Float(), nullable=True),
        sa.Column("unit", sa.String(length=40), nullable=True),
        sa.Column("time_ms", sa.BigInteger(), nullable=False),
        sa.Column("device_id", sa.String(length=80), nullable=False),
        sa.Column("extra", sa.JSON(none_as_null=True), nullable=True),
        sa.PrimaryKeyConstraint("gateway_id", "seq", name=op.f("pk_observation_highlights")),
    )
    op.create_index("ix_observation_highlights_patient_time", "observation_highlights",
                    ["clinic_id", "patient_key", "time_ms"], unique=False)
    op.create_table(
        "rollup_progress",
        sa.Column("gateway_id", sa.String(length=64), nullable=False),
        sa.Column("rolled_below", sa.BigInteger(), nullable=False),
        sa.Column("updated_ms", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("gateway_id", name=op.f("pk_rollup_progress")),
    )


def downgrade() -> None:
    op.drop_table("rollup_progress")
    op.drop_index("ix_observation_highlights_patient_time", table_name="observation_highlights")
    op.drop_table("observation_highlights")
    op.drop_table("observation_rollups")
    op.drop_index("ix_imaging_patient_id", table_name="imaging")
    op.drop_table("imaging")
    op.drop_index("ix_visits_patient_started", table_name="visits")
    op.drop_table("visits")
    op.drop_index("ix_patient_merges_survivor_id", table_name="patient_merges")
    op.drop_index("ix_patient_merges_merged_id", table_name="patient_merges")
    op.drop_table("patient_merges")
    op.drop_index("ix_patient_duplicates_open", table_name="patient_duplicates")
    op.drop_table("patient_duplicates")
    op.drop_index("ix_patient_identifiers_patient_id", table_name="patient_identifiers")
    op.drop_table("patient_identifiers")
    op.drop_index("ix_patient_search_keys_patient_id_key", table_name="patient_search_keys")
    op.drop_table("patient_search_keys")
    op.drop_index("uq_patients_national_id", table_name="patients",
                  sqlite_where=sa.text("national_id IS NOT NULL"), postgresql_where=sa.text("national_id IS NOT NULL"))
    op.drop_index("ix_patients_merged_into_id", table_name="patients")
    op.drop_table("patients")
