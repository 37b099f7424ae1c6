"""Shared patient records: one patient across all clinics, their per-clinic record numbers, the search keys,
duplicate candidates and merges, visits, imaging (DICOM) attachments, and the summaries of their readings
that keep a timeline fast however long the history (daily rollups, alarms and gaps copied out).

Only the schema; matching, merging, search and the timeline are in `hq.records` and `hq.patient_search`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import BigId, Millis, id_column, metadata, ref

ORIGINS = ("console", "checkin", "device", "import")  # how a patient record came to be

patients = sa.Table(
    "patients",
    metadata,
    id_column(),
    sa.Column("national_id", sa.String(40)),  # normalised (upper case, no spaces); unique when known
    sa.Column("family_name", sa.String(100)),
    sa.Column("given_name", sa.String(100)),
    sa.Column("name", sa.String(200), nullable=False),  # as it is displayed
    sa.Column("alt_name", sa.String(200)),  # the name in another script, e.g. the pinyin of 张伟: Zhang Wei
    sa.Column("sex", sa.String(16)),  # FHIR administrative gender: female | male | other | unknown
    sa.Column("birth_date", sa.Date),
    sa.Column("phone", sa.String(40)),
    # "device": made from readings whose patient id HQ did not know; no demographics until a check-in.
    sa.Column("origin", sa.String(16), nullable=False, server_default="console"),
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("updated_ms", Millis, nullable=False),
    ref("merged_into_id", "patients.id"),  # a duplicate merged into another record points at it
    sa.Index("uq_patients_national_id", "national_id", unique=True,
             sqlite_where=sa.text("national_id IS NOT NULL"), postgresql_where=sa.text("national_id IS NOT NULL")),
    sa.Index("ix_patients_merged_into_id", "merged_into_id"),
    sa.CheckConstraint(f"origin IN ({', '.join(repr(o) for o in ORIGINS)})", name="origin"),
)

# Byte order on PostgreSQL too: a prefix search is a range scan [term, successor(term)), which holds only if the
# index sorts by code point (SQLite's default BINARY collation does; a linguistic collation may not).
SearchKey = sa.String(100).with_variant(sa.String(100, collation="C"), "postgresql")

# Every normalised name token, whole name, national id and record number of a live (not merged-away) patient,
# once for the whole chain (scope "") and once per clinic where the patient has a record number or a visit (scope
# = the clinic id): a search term matches by prefix with one index range scan, in any script, and clinic staff
# search their clinic's scope directly instead of filtering the chain's hits (see `hq.patient_search`).
patient_search_keys = sa.Table(
    "patient_search_keys",
    metadata,
    sa.Column("scope", sa.String(64), primary_key=True),
    sa.Column("key", SearchKey, primary_key=True),
    sa.Column("patient_id", BigId, sa.ForeignKey("patients.id"), primary_key=True),
    sa.Column("kind", sa.String(8), nullable=False),  # name | nid | mrn
    sa.Index("ix_patient_search_keys_patient_id_key", "patient_id", "key"),
    # SQLite: rows clustered by the key, so a range scan reads them in place (no rowid lookup per key).
    sqlite_with_rowid=False,
)

# The record number a clinic (and its devices, as PID-3) knows the patient by.
patient_identifiers = sa.Table(
    "patient_identifiers",
    metadata,
    id_column(),
    ref("patient_id", "patients.id", nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    sa.Column("mrn", sa.String(80), nullable=False),
    sa.Column("created_ms", Millis, nullable=False),
    sa.UniqueConstraint("clinic_id", "mrn"),
    sa.Index("ix_patient_identifiers_patient_id", "patient_id"),
)

# Two records that may be one person (a check-in whose national id and record number disagree, conflicting
# demographics): never merged silently, listed on the merge screen until merged or dismissed.
patient_duplicates = sa.Table(
    "patient_duplicates",
    metadata,
    id_column(),
    ref("patient_id", "patients.id", nullable=False),  # the lower id of the pair
    ref("other_id", "patients.id", nullable=False),
    sa.Column("reason", sa.Text, nullable=False),
    sa.Column("source", sa.String(32), nullable=False),  # checkin | register | merge
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("resolved_ms", Millis),
    sa.Column("resolution", sa.String(16)),  # merged | dismissed
    ref("resolved_by_user_id", "users.id"),
    sa.UniqueConstraint("patient_id", "other_id"),
    sa.Index("ix_patient_duplicates_open", "resolved_ms"),
)

patient_merges = sa.Table(
    "patient_merges",
    metadata,
    id_column(),
    ref("survivor_id", "patients.id", nullable=False),
    ref("merged_id", "patients.id", nullable=False),
    ref("by_user_id", "users.id"),
    sa.Column("reason", sa.Text),
    sa.Column("at_ms", Millis, nullable=False),
    # Exactly what moved (row ids per table, the national id, fields filled in): enough to undo the merge.
    sa.Column("moved", sa.JSON, nullable=False),
    sa.Column("undone_ms", Millis),
    ref("undone_by_user_id", "users.id"),
    sa.Index("ix_patient_merges_survivor_id", "survivor_id"),
    sa.Index("ix_patient_merges_merged_id", "merged_id"),
)

visits = sa.Table(
    "visits",
    metadata,
    id_column(),
    ref("patient_id", "patients.id", nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    sa.Column("gateway_id", sa.String(64)),
    sa.Column("external_id", sa.String(64), unique=True),  # the gateway's check-in id: idempotent replays
    sa.Column("started_ms", Millis, nullable=False),  # the check-in, on the clinic's clock
    sa.Column("ended_ms", Millis),
    sa.Column("reason", sa.Text),
    sa.Column("created_ms", Millis, nullable=False),  # when HQ recorded it
    sa.Index("ix_visits_patient_started", "patient_id", "started_ms"),
)

imaging = sa.Table(
    "imaging",
    metadata,
    id_column(),
    ref("patient_id", "patients.id", nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id")),
    sa.Column("sha256", sa.String(64), nullable=False),
    sa.Column("size_bytes", sa.BigInteger, nullable=False),
    sa.Column("storage_path", sa.String(500), nullable=False),  # relative to [records] attachments_dir
    sa.Column("filename", sa.String(300)),
    sa.Column("modality", sa.String(16)),
    sa.Column("study_instance_uid", sa.String(64)),
    sa.Column("series_instance_uid", sa.String(64)),
    sa.Column("sop_instance_uid", sa.String(64), unique=True),
    sa.Column("study_date", sa.Date),
    sa.Column("study_description", sa.String(300)),
    sa.Column("body_part", sa.String(64)),
    sa.Column("tags", sa.JSON(none_as_null=True)),  # the key DICOM tags shown, as read at upload
    ref("uploaded_by_user_id", "users.id"),
    sa.Column("uploaded_ms", Millis, nullable=False),
    sa.Index("ix_imaging_patient_id", "patient_id"),
)

# Readings summed per patient key (clinic, the device's patient id), metric, kind and UTC day by
# `hq.observation_rollup` from rows HQ holds completely (below each gateway's complete_below): a timeline over
# a year reads at most 365 rows per metric, never the raw readings.
observation_rollups = sa.Table(
    "observation_rollups",
    metadata,
    sa.Column("clinic_id", sa.String(64), primary_key=True),
    sa.Column("patient_key", sa.String(80), primary_key=True),  # observations.patient_id = an MRN
    sa.Column("day_ms", Millis, primary_key=True),
    sa.Column("metric", sa.String(80), primary_key=True),
    sa.Column("kind", sa.String(16), primary_key=True),  # observation | alarm | gap
    sa.Column("unit", sa.String(40)),
    sa.Column("count", sa.Integer, nullable=False),
    sa.Column("value_count", sa.Integer, nullable=False),  # rows with a value: the mean's denominator
    sa.Column("value_min", sa.Float),
    sa.Column("value_max", sa.Float),
    sa.Column("value_sum", sa.Float),
    sa.Column("first_ms", Millis, nullable=False),
    sa.Column("last_ms", Millis, nullable=False),
    sqlite_with_rowid=False,  # a patient's days are read as one range, in place
)

# Alarms and gaps (rare, and what a clinician looks for) copied out of observations by the rollup, so that
# the timeline lists them by patient and time without scanning the patient's readings.
observation_highlights = sa.Table(
    "observation_highlights",
    metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("seq", sa.BigInteger, primary_key=True, autoincrement=False),
    sa.Column("clinic_id", sa.String(64), nullable=False),
    sa.Column("patient_key", sa.String(80), nullable=False),
    sa.Column("kind", sa.String(16), nullable=False),
    sa.Column("metric", sa.String(80), nullable=False),
    sa.Column("value", sa.Float),
    sa.Column("unit", sa.String(40)),
    sa.Column("time_ms", Millis, nullable=False),
    sa.Column("device_id", sa.String(80), nullable=False),
    sa.Column("extra", sa.JSON(none_as_null=True)),
    sa.Index("ix_observation_highlights_patient_time", "clinic_id", "patient_key", "time_ms"),
)

# How far each gateway's readings are summed: every seq below rolled_below is in the rollups.
rollup_progress = sa.Table(
    "rollup_progress",
    metadata,
    sa.Column("gateway_id", sa.String(64), primary_key=True),
    sa.Column("rolled_below", sa.BigInteger, nullable=False),
    sa.Column("updated_ms", Millis, nullable=False),
)
