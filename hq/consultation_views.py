"""JSON shapes of consultations: the summary in lists, live messages and offers, and the names it shows
(patient, clinic, department, expert), read in the caller's transaction.

Shapes only: what may be seen is decided by `hq.consultations`, the markup is `hq.console.consultations`'.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import sqlalchemy as sa

from hq.clock import iso_from_ms
from hq.models import clinics, departments, experts, patient_identifiers, patients

FORM_FIELDS = ("chief_complaint", "preliminary_diagnosis", "question")


def names(conn: sa.Connection, row: Mapping[str, Any]) -> dict[str, Any]:
    """The display names a consultation refers to (one small lookup each)."""
    found: dict[str, Any] = {"clinic": row["clinic_id"], "department": None, "patient": None, "mrn": None,
                             "expert": None, "expert_title": None, "expert_hospital": None, "expert_user_id": None}
    clinic = conn.execute(sa.select(clinics.c.name).where(clinics.c.id == row["clinic_id"])).scalar()
    if clinic:
        found["clinic"] = clinic
    if row["department_id"] is not None:
        found["department"] = conn.execute(sa.select(departments.c.name)
                                           .where(departments.c.id == row["department_id"])).scalar()
    if row["patient_id"] is not None:
        found["patient"] = conn.execute(sa.select(patients.c.name).where(patients.c.id == row["patient_id"])).scalar()
        found["mrn"] = conn.execute(sa.select(patient_identifiers.c.mrn).where(
            patient_identifiers.c.patient_id == row["patient_id"],
            patient_identifiers.c.clinic_id == row["clinic_id"])).scalar()
    if row["expert_id"] is not None:
        expert = conn.execute(sa.select(experts.c.name, experts.c.title, experts.c.hospital, experts.c.user_id)
                              .where(experts.c.id == row["expert_id"])).first()
        if expert is not None:
            found.update(expert=expert.name, expert_title=expert.title, expert_hospital=expert.hospital,
                         expert_user_id=expert.user_id)
    return found


def form_overdue(row: Mapping[str, Any], now: int) -> bool:
    return (row["form_due_ms"] is not None and row["form_received_ms"] is None and now > row["form_due_ms"]
            and row["status"] not in ("cancelled", "closed"))


def summary(conn: sa.Connection, row: Mapping[str, Any], now: int) -> dict[str, Any]:
    """A consultation in a list, a live message or an offer."""
    n = names(conn, row)
    return {
        "public_id": row["public_id"], "kind": row["kind"], "status": row["status"], "stage": row["stage"],
        "clinic_id": row["clinic_id"], "clinic": n["clinic"], "gateway_id": row["gateway_id"],
        "patient_id": row["patient_id"], "patient": n["patient"], "mrn": n["mrn"],
        "department_id": row["department_id"], "department": n["department"],
        "expert_id": row["expert_id"], "expert": n["expert"], "expert_title": n["expert_title"],
        "expert_hospital": n["expert_hospital"], "requested_by": row["requested_by"],
        "requested": iso_from_ms(row["requested_ms"]),
        "received": iso_from_ms(row["received_ms"]), "accepted": iso_from_ms(row["accepted_ms"]),
        "scheduled": iso_from_ms(row["scheduled_ms"]), "form_due": iso_from_ms(row["form_due_ms"]),
        "form_received": iso_from_ms(row["form_received_ms"]), "form_overdue": form_overdue(row, now),
        **{f: row[f] for f in FORM_FIELDS},
        "round": row["escalation_round"], "next_escalation": iso_from_ms(row["next_escalation_ms"]),
        "rating": row["rating"], "advice_adopted": row["advice_adopted"],
    }
