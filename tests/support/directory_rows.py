"""Rows of the expert directory, clinics and patients written straight into HQ's tables, for tests that need
a few experts to dispatch to (the directory's own import and rules are tested by the experts' tests).

Only inserts: no rules, no matching.
"""

from __future__ import annotations

from collections.abc import Sequence

import sqlalchemy as sa

from hq import accounts
from hq.clock import now_ms
from hq.models import clinics, departments, expert_tags, experts, patient_identifiers, patients


def clinic(conn: sa.Connection, clinic_id: str, name: str | None = None) -> str:
    if conn.execute(sa.select(clinics.c.id).where(clinics.c.id == clinic_id)).first() is None:
        conn.execute(clinics.insert().values(id=clinic_id, name=name or clinic_id))
    return clinic_id


def department(conn: sa.Connection, code: str, name: str | None = None) -> int:
    found = conn.execute(sa.select(departments.c.id).where(departments.c.code == code)).scalar()
    if found is not None:
        return int(found)
    result = conn.execute(departments.insert().values(code=code, name=name or code.title()))
    return int(result.inserted_primary_key[0])  # type: ignore[index]


def expert(conn: sa.Connection, username: str, department_id: int, *, name: str | None = None,
           title: str = "Attending physician", hospital: str = "Central Hospital", tags: Sequence[str] = (),
           languages: Sequence[str] = ("zh", "en"), daily_cap: int = 8, password: str | None = None,
           time_zone: str = "UTC") -> tuple[int, int]:
    """An expert with a console account; returns (expert_id, user_id)."""
    display = name or f"Dr. {username.title()}"
    user_id = accounts.create_user(conn, username, "expert", display_name=display, password=password)
    at = now_ms()
    result = conn.execute(experts.insert().values(
        user_id=user_id, name=display, title=title, hospital=hospital, department_id=department_id,
        time_zone=time_zone, languages=list(languages), daily_cap=daily_cap, active=True, created_ms=at,
        profile_updated_ms=at))
    expert_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    for tag in tags:
        conn.execute(expert_tags.insert().values(expert_id=expert_id, tag=tag))
    return expert_id, user_id


def patient(conn: sa.Connection, clinic_id: str, mrn: str, name: str = "Test Patient") -> int:
    at = now_ms()
    result = conn.execute(patients.insert().values(name=name, created_ms=at, updated_ms=at, search_text=name.lower()))
    patient_id = int(result.inserted_primary_key[0])  # type: ignore[index]
    conn.execute(patient_identifiers.insert().values(patient_id=patient_id, clinic_id=clinic_id, mrn=mrn,
                                                     created_ms=at))
    return patient_id
