"""Shared patient records: one patient across all clinics, their per-clinic record numbers, visits and
imaging (DICOM) attachments.

Only the schema; matching, merging and the timeline are in `hq.records`.
"""

from __future__ import annotations

import sqlalchemy as sa

from hq.models.types import Millis, id_column, metadata, ref

patients = sa.Table(
    "patients",
    metadata,
    id_column(),
    sa.Column("national_id", sa.String(40)),  # unique when known
    sa.Column("family_name", sa.String(100)),
    sa.Column("given_name", sa.String(100)),
    sa.Column("name", sa.String(200), nullable=False),  # as it is displayed
    sa.Column("sex", sa.String(16)),  # FHIR administrative gender: female | male | other | unknown
    sa.Column("birth_date", sa.Date),
    sa.Column("phone", sa.String(40)),
    sa.Column("search_text", sa.String(500), nullable=False, server_default=""),  # normalised names and ids
    sa.Column("created_ms", Millis, nullable=False),
    sa.Column("updated_ms", Millis, nullable=False),
    ref("merged_into_id", "patients.id"),  # a duplicate merged into another record points at it
    sa.Index("uq_patients_national_id", "national_id", unique=True,
             sqlite_where=sa.text("national_id IS NOT NULL"), postgresql_where=sa.text("national_id IS NOT NULL")),
    sa.Index("ix_patients_search_text", "search_text"),
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

patient_merges = sa.Table(
    "patient_merges",
    metadata,
    id_column(),
    ref("survivor_id", "patients.id", nullable=False),
    ref("merged_id", "patients.id", nullable=False),
    ref("by_user_id", "users.id"),
    sa.Column("reason", sa.Text),
    sa.Column("at_ms", Millis, nullable=False),
)

visits = sa.Table(
    "visits",
    metadata,
    id_column(),
    ref("patient_id", "patients.id", nullable=False),
    sa.Column("clinic_id", sa.String(64), sa.ForeignKey("clinics.id"), nullable=False),
    sa.Column("gateway_id", sa.String(64)),
    sa.Column("external_id", sa.String(64), unique=True),  # the gateway's check-in id: idempotent replays
    sa.Column("started_ms", Millis, nullable=False),
    sa.Column("ended_ms", Millis),
    sa.Column("reason", sa.Text),
    sa.Column("created_ms", Millis, nullable=False),
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
    sa.Column("storage_path", sa.String(500), nullable=False),  # relative to the configured attachment store
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
