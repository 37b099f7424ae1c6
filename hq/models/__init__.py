"""HQ's database schema as SQLAlchemy Core tables, one module per domain, all in one `metadata`.

Only the schema: reads and writes live in the domain modules; `hq/migrations` creates and evolves it
(a test checks that the migrations produce exactly these tables).
"""

from hq.models.accounts import api_tokens, login_failures, sessions, users
from hq.models.audit import audit_head, audit_log
from hq.models.consultations import (
    advice_items,
    consultation_attachments,
    consultation_messages,
    consultations,
    dispatch_offers,
    reports,
)
from hq.models.downlink import downlink_messages
from hq.models.experts import (
    department_heads,
    department_synonyms,
    departments,
    directory_version,
    expert_capability,
    expert_credentials,
    expert_tags,
    experts,
)
from hq.models.fleet import clinics, gateways, hq_meta, observations
from hq.models.fleet_security import enrolment_tokens, gateway_certificates, gateway_config_versions, revoked_gateways
from hq.models.media import call_alerts, call_participants, call_quality_samples, recordings
from hq.models.records import (
    imaging,
    observation_highlights,
    observation_rollups,
    patient_duplicates,
    patient_identifiers,
    patient_merges,
    patient_search_keys,
    patients,
    rollup_progress,
    visits,
)
from hq.models.scheduling import (
    appointments,
    availability_exceptions,
    availability_rules,
    expert_free_windows,
    expert_presence,
    slot_claims,
)
from hq.models.types import BigId, Millis, metadata

__all__ = [
    "BigId",
    "Millis",
    "advice_items",
    "api_tokens",
    "appointments",
    "audit_head", "audit_log",
    "availability_exceptions",
    "availability_rules",
    "call_alerts",
    "call_participants",
    "call_quality_samples",
    "clinics",
    "consultation_attachments",
    "consultation_messages",
    "consultations",
    "department_heads",
    "department_synonyms",
    "departments",
    "directory_version",
    "dispatch_offers",
    "downlink_messages",
    "enrolment_tokens",
    "expert_capability",
    "expert_credentials",
    "expert_free_windows",
    "expert_presence",
    "expert_tags",
    "experts",
    "gateway_certificates",
    "gateway_config_versions",
    "gateways",
    "hq_meta",
    "imaging",
    "login_failures",
    "metadata",
    "observation_highlights",
    "observation_rollups",
    "observations",
    "patient_duplicates",
    "patient_identifiers",
    "patient_merges",
    "patient_search_keys",
    "patients",
    "recordings",
    "reports",
    "revoked_gateways",
    "rollup_progress",
    "sessions",
    "slot_claims",
    "users",
    "visits",
]
